// SPDX-License-Identifier: MIT
//! The VM handle, its builder and the pause guard.
use crate::error::{check, errno, Error, Result};
use crate::os;
use crate::sys;
use crate::types::*;
use crate::vcpu::{Vcpu, VcpuThread};
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// What the request handler tells the vCPU (its C return value).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// 0: go on into the guest (what it left pending still makes the
    /// call return [`RunResult::Request`]).
    Continue,
    /// > 0: make `run()`/`enter()` return [`RunResult::Request`].
    ReturnRequest,
    /// < 0: make `run()`/`enter()` fail with this errno (positive).
    Fail(i32),
}

type HandlerFn = dyn Fn(&VcpuThread) -> Handled + Send + Sync;
type RunnableFn = dyn Fn(&VcpuThread) -> bool + Send + Sync;
type GuestFn = dyn Fn(&VcpuThread) -> i32 + Send + Sync;

/// The closures the C library calls through `opts.opaque`; they live as
/// long as the C VM (dropped after `vcpureq_vm_free()`).  A closure that
/// holds a [`Vm`] or [`Vcpu`] of its own VM keeps the VM alive for ever:
/// hold a [`WeakVm`] instead.
#[derive(Default)]
struct Callbacks {
    handler: Option<Box<HandlerFn>>,
    runnable: Option<Box<RunnableFn>>,
    guest: Option<Box<GuestFn>>,
}

unsafe extern "C" fn handler_tramp(v: *mut sys::vcpureq_vcpu, opaque: *mut c_void) -> c_int {
    // SAFETY: opaque is the VM's Callbacks, alive until vcpureq_vm_free();
    // v is the calling vCPU thread's vCPU.
    let cb = unsafe { &*(opaque as *const Callbacks) };
    let t = unsafe { VcpuThread::from_raw(v) };
    let Some(h) = cb.handler.as_ref() else {
        return 1;
    };
    match catch_unwind(AssertUnwindSafe(|| h(&t))) {
        Ok(Handled::Continue) => 0,
        Ok(Handled::ReturnRequest) => 1,
        Ok(Handled::Fail(e)) => -(e.unsigned_abs().max(1) as c_int),
        Err(p) => {
            os::stash_panic("request handler", p);
            -errno::ENOTRECOVERABLE
        }
    }
}

unsafe extern "C" fn runnable_tramp(v: *mut sys::vcpureq_vcpu, opaque: *mut c_void) -> bool {
    // SAFETY: as handler_tramp.
    let cb = unsafe { &*(opaque as *const Callbacks) };
    let t = unsafe { VcpuThread::from_raw(v) };
    let Some(h) = cb.runnable.as_ref() else {
        return false;
    };
    match catch_unwind(AssertUnwindSafe(|| h(&t))) {
        Ok(b) => b,
        Err(p) => {
            os::stash_panic("runnable hook", p);
            true // let block() return, so that the panic is reported
        }
    }
}

unsafe extern "C" fn guest_tramp(v: *mut sys::vcpureq_vcpu, opaque: *mut c_void) -> c_int {
    // SAFETY: as handler_tramp.
    let cb = unsafe { &*(opaque as *const Callbacks) };
    let t = unsafe { VcpuThread::from_raw(v) };
    let Some(h) = cb.guest.as_ref() else { return 0 };
    match catch_unwind(AssertUnwindSafe(|| h(&t))) {
        Ok(r) => r,
        Err(p) => {
            os::stash_panic("guest callback", p);
            -errno::ENOTRECOVERABLE
        }
    }
}

pub(crate) struct VmInner {
    raw: NonNull<sys::vcpureq_vm>,
    freed: bool,
    // After raw: dropped after vcpureq_vm_free() (in Drop, below).
    _callbacks: Box<Callbacks>,
    backend: Backend,
}

// SAFETY: every C function on a VM is thread-safe but vcpureq_vm_destroy()
// and vcpureq_vm_free(), which only run with the last handle (Drop,
// Vm::destroy), when no other thread can reach the VM.
unsafe impl Send for VmInner {}
unsafe impl Sync for VmInner {}

impl VmInner {
    fn destroy_and_free(&mut self) -> Result<()> {
        if self.freed {
            return Ok(());
        }
        // SAFETY: the last handle: no other call on this VM is under way.
        let r = unsafe { sys::vcpureq_vm_destroy(self.raw.as_ptr()) };
        check(r)?;
        let r = unsafe { sys::vcpureq_vm_free(self.raw.as_ptr()) };
        check(r)?;
        self.freed = true;
        Ok(())
    }
}

impl Drop for VmInner {
    fn drop(&mut self) {
        // An error here (-EBUSY: a vCPU still bound, its BoundVcpu leaked
        // with mem::forget) leaves the C VM allocated: leaked, never freed
        // under a thread that may still use it.
        if self.destroy_and_free().is_err() {
            std::mem::forget(std::mem::take(&mut self._callbacks));
        }
    }
}

/// A VM (`struct vcpureq_vm *`): a cheap, clonable handle shared by every
/// thread (`Send + Sync`, like an `Arc`).  The C VM is destroyed and freed
/// when the last handle goes (the [`Vcpu`] handles and bound guards hold
/// one each), or by [`Vm::destroy`], which reports errors.
#[derive(Clone)]
pub struct Vm {
    pub(crate) inner: Arc<VmInner>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("raw", &self.inner.raw)
            .field("backend", &self.inner.backend)
            .field("nr_vcpus", &self.nr_vcpus())
            .finish()
    }
}

/// Options of a VM (`struct vcpureq_vm_opts`) and the closures the library
/// calls.  [`Vm::builder`] makes one.
pub struct VmBuilder {
    opts: sys::vcpureq_vm_opts,
    cb: Callbacks,
    backend: Backend,
}

impl VmBuilder {
    /// `opts.nr_vcpus` for [`VmBuilder::create`]: vCPUs 0..n at once.
    pub fn vcpus(mut self, n: u32) -> Self {
        self.opts.nr_vcpus = n;
        self
    }
    /// `opts.kick_signal` (0: SIGRTMIN + 5).
    pub fn kick_signal(mut self, sig: i32) -> Self {
        self.opts.kick_signal = sig;
        self
    }
    /// `opts.kick` (KVM backend).
    pub fn kick(mut self, k: KickMechanism) -> Self {
        self.opts.kick = k.raw();
        self
    }
    /// `opts.halt_poll_ns`.
    pub fn halt_poll_ns(mut self, ns: u64) -> Self {
        self.opts.halt_poll_ns = ns;
        self
    }
    /// `opts.max_vcpus`.
    pub fn max_vcpus(mut self, n: u32) -> Self {
        self.opts.max_vcpus = n;
        self
    }
    /// `opts.kvm_vm_type` (the KVM_CREATE_VM type when vcpureq creates it).
    pub fn kvm_vm_type(mut self, t: u64) -> Self {
        self.opts.kvm_vm_type = t as _;
        self
    }
    /// `VCPUREQ_VM_RETURN_FOREIGN_EINTR`.
    pub fn return_foreign_eintr(mut self, on: bool) -> Self {
        if on {
            self.opts.flags |= sys::VCPUREQ_VM_RETURN_FOREIGN_EINTR;
        } else {
            self.opts.flags &= !sys::VCPUREQ_VM_RETURN_FOREIGN_EINTR;
        }
        self
    }
    /// `opts.handle_requests`: called on the vCPU thread, outside guest
    /// mode, by `run()`/`enter()` when requests are pending; it consumes
    /// them with [`VcpuThread::check_request`].  A panic is caught: the
    /// call that ran it returns an [`Error`] with `is_panic()`.
    pub fn request_handler<F>(mut self, f: F) -> Self
    where
        F: Fn(&VcpuThread) -> Handled + Send + Sync + 'static,
    {
        self.cb.handler = Some(Box::new(f));
        self.opts.handle_requests = Some(handler_tramp);
        self
    }
    /// `opts.runnable`: the block hook (kernel: `kvm_arch_vcpu_runnable()`),
    /// on the vCPU thread in `block()`.  Whoever makes it true calls
    /// [`Vcpu::wake_up`].  A panic counts as runnable and is reported by
    /// `block()`.
    pub fn runnable<F>(mut self, f: F) -> Self
    where
        F: Fn(&VcpuThread) -> bool + Send + Sync + 'static,
    {
        self.cb.runnable = Some(Box::new(f));
        self.opts.runnable = Some(runnable_tramp);
        self
    }
    /// `opts.guest` (thread backend): one guest-mode instance, on the vCPU
    /// thread; return [`crate::GUEST_KICKED`] promptly once
    /// [`VcpuThread::guest_kicked`] is true, any other value to exit.  A
    /// panic ends the instance and `run()` reports it.
    pub fn guest<F>(mut self, f: F) -> Self
    where
        F: Fn(&VcpuThread) -> i32 + Send + Sync + 'static,
    {
        self.cb.guest = Some(Box::new(f));
        self.opts.guest = Some(guest_tramp);
        self
    }

    fn finish(
        self,
        f: impl FnOnce(&sys::vcpureq_vm_opts, *mut *mut sys::vcpureq_vm) -> c_int,
    ) -> Result<Vm> {
        let mut cb = Box::new(self.cb);
        let mut opts = self.opts;
        opts.opaque = &mut *cb as *mut Callbacks as *mut c_void;
        let mut raw = core::ptr::null_mut();
        check(f(&opts, &mut raw))?;
        let raw =
            NonNull::new(raw).ok_or_else(|| Error::new(errno::ENOMEM, "vcpureq returned no VM"))?;
        Ok(Vm {
            inner: Arc::new(VmInner {
                raw,
                freed: false,
                _callbacks: cb,
                backend: self.backend,
            }),
        })
    }
    /// `vcpureq_vm_create()`: the VM and its `vcpus(n)` vCPUs (ids and
    /// indexes 0..n).  KVM: vcpureq opens /dev/kvm, creates the VM and
    /// vCPUs, and closes them at destroy.
    pub fn create(self) -> Result<Vm> {
        // SAFETY: valid options and out pointer; opaque outlives the VM.
        self.finish(|o, out| unsafe { sys::vcpureq_vm_create(o, out) })
    }
    /// `vcpureq_vm_open(opts, -1)`: a VM with no vCPUs (KVM: vcpureq makes
    /// the VM fd); add them with [`Vm::create_vcpu`] or [`Vm::adopt_vcpu`].
    pub fn open(self) -> Result<Vm> {
        // SAFETY: as create().
        self.finish(|o, out| unsafe { sys::vcpureq_vm_open(o, -1, out) })
    }
    /// `vcpureq_vm_open(opts, vm_fd)`: wrap the VMM's own VM fd (e.g.
    /// `kvm_ioctls::VmFd::as_raw_fd()`); vcpureq never closes it.
    ///
    /// # Safety
    /// `vm_fd` must stay open, and be the same VM, until the returned
    /// [`Vm`] and every handle of it are gone (vcpureq keeps issuing
    /// ioctls on it).
    pub unsafe fn open_fd(self, vm_fd: RawFd) -> Result<Vm> {
        // SAFETY: as create(); the fd is the caller's contract.
        self.finish(|o, out| unsafe { sys::vcpureq_vm_open(o, vm_fd, out) })
    }
}

/// A handle of a [`Vm`] that does not keep it alive ([`Vm::downgrade`]):
/// for the VM's own closures (a request handler that makes requests of
/// other vCPUs), which would otherwise keep their VM alive forever.
#[derive(Clone)]
pub struct WeakVm {
    inner: std::sync::Weak<VmInner>,
}

impl WeakVm {
    /// The VM, if a handle of it is still alive.
    pub fn upgrade(&self) -> Option<Vm> {
        self.inner.upgrade().map(|inner| Vm { inner })
    }
}

impl Vm {
    /// A [`WeakVm`] of this VM.
    pub fn downgrade(&self) -> WeakVm {
        WeakVm {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Options with everything at its default (`VCPUREQ_VM_OPTS_INIT`).
    pub fn builder(backend: Backend) -> VmBuilder {
        let opts = sys::vcpureq_vm_opts {
            backend: match backend {
                Backend::Kvm => sys::VCPUREQ_BACKEND_KVM,
                Backend::Thread => sys::VCPUREQ_BACKEND_THREAD,
            },
            ..Default::default()
        };
        VmBuilder {
            opts,
            cb: Callbacks::default(),
            backend,
        }
    }

    /// The C handle, for calls of [`crate::sys`] (valid while `self` is).
    pub fn as_raw(&self) -> *mut sys::vcpureq_vm {
        self.inner.raw.as_ptr()
    }
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Destroy and free the C VM now, reporting errors (dropping the last
    /// handle does the same silently).  `EBUSY` if other handles of this VM
    /// ([`Vm`] clones, [`Vcpu`]s, [`BoundVcpu`](crate::BoundVcpu)s, pause
    /// guards) are still alive: the destroy is the last handle's (the C
    /// API forbids it concurrently with other calls on the VM); this
    /// handle is dropped then.
    pub fn destroy(self) -> Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.destroy_and_free(),
            Err(arc) => Err(Error::new(
                errno::EBUSY,
                format!(
                    "vcpureq: destroy with {} other handles of the VM alive (Vm clones, Vcpus, bound vCPUs, pause guards): drop them first",
                    Arc::strong_count(&arc) - 1
                ),
            )),
        }
    }

    /// vCPUs added so far (`vcpureq_vm_nr_vcpus()`).
    pub fn nr_vcpus(&self) -> u32 {
        // SAFETY: a live VM.
        unsafe { sys::vcpureq_vm_nr_vcpus(self.as_raw()) }
    }
    /// `vcpureq_vm_max_vcpus()`.
    pub fn max_vcpus(&self) -> u32 {
        unsafe { sys::vcpureq_vm_max_vcpus(self.as_raw()) }
    }
    /// The vCPU of index `index` (`vcpureq_vm_vcpu()`).
    pub fn vcpu(&self, index: u32) -> Option<Vcpu> {
        let p = unsafe { sys::vcpureq_vm_vcpu(self.as_raw(), index) };
        NonNull::new(p).map(|p| Vcpu::new(self.clone(), p))
    }
    /// Every vCPU, by index.
    pub fn vcpus(&self) -> Vec<Vcpu> {
        (0..self.nr_vcpus()).filter_map(|i| self.vcpu(i)).collect()
    }
    /// The vCPU whose id is `id` (`vcpureq_vm_vcpu_by_id()`).
    pub fn vcpu_by_id(&self, id: u64) -> Option<Vcpu> {
        let p = unsafe { sys::vcpureq_vm_vcpu_by_id(self.as_raw(), id as _) };
        NonNull::new(p).map(|p| Vcpu::new(self.clone(), p))
    }
    /// `vcpureq_vcpu_create()`: a vCPU with the VMM's `id` (KVM: vcpureq
    /// makes the fd and maps kvm_run).
    pub fn create_vcpu(&self, id: u64) -> Result<Vcpu> {
        let mut out = core::ptr::null_mut();
        check(unsafe { sys::vcpureq_vcpu_create(self.as_raw(), id as _, &mut out) })?;
        Ok(Vcpu::new(
            self.clone(),
            NonNull::new(out).expect("vcpureq_vcpu_create: a vCPU"),
        ))
    }
    /// `vcpureq_vcpu_adopt()`: a vCPU the VMM created itself: `fd` from its
    /// `KVM_CREATE_VCPU` of `id` on this VM (`VcpuFd::as_raw_fd()` in
    /// kvm-ioctls), `run` its kvm_run mapping of `run_size` bytes
    /// (`VcpuFd::get_kvm_run()` as a pointer; `KVM_GET_VCPU_MMAP_SIZE`), or
    /// null to have vcpureq map one.
    ///
    /// # Safety
    /// `fd` stays open and `run` mapped (`run_size` bytes, the fd's
    /// kvm_run) until this VM and every handle of it are gone: vcpureq
    /// writes `immediate_exit` through `run` from its signal handler.
    pub unsafe fn adopt_vcpu(
        &self,
        id: u64,
        fd: RawFd,
        run: *mut sys::kvm_run,
        run_size: usize,
    ) -> Result<Vcpu> {
        let mut out = core::ptr::null_mut();
        check(unsafe {
            sys::vcpureq_vcpu_adopt(self.as_raw(), id as _, fd, run, run_size, &mut out)
        })?;
        Ok(Vcpu::new(
            self.clone(),
            NonNull::new(out).expect("vcpureq_vcpu_adopt: a vCPU"),
        ))
    }
    /// The kick signal in use.
    pub fn kick_signal(&self) -> i32 {
        unsafe { sys::vcpureq_vm_kick_signal(self.as_raw()) }
    }
    /// The kick mechanism in use (never `Default`).
    pub fn kick_mechanism(&self) -> KickMechanism {
        match unsafe { sys::vcpureq_vm_kick_mechanism(self.as_raw()) } {
            sys::VCPUREQ_KICK_SIGMASK => KickMechanism::SigMask,
            sys::VCPUREQ_KICK_IMMEDIATE_EXIT => KickMechanism::ImmediateExit,
            _ => KickMechanism::Default,
        }
    }
    /// KVM backend: the VM fd (for memory slots and VM-wide setup); `None`
    /// on the thread backend.  Borrowed: vcpureq or the VMM owns it.
    pub fn kvm_fd(&self) -> Option<RawFd> {
        let fd = unsafe { sys::vcpureq_vm_kvm_fd(self.as_raw()) };
        (fd >= 0).then_some(fd)
    }

    /// `vcpureq_make_all_cpus_request()` (kernel:
    /// `kvm_make_all_cpus_request()`): make the request of every vCPU
    /// online at the call and kick them; with WAIT, all signals first,
    /// then every acknowledgement (no lock held).  `Ok(true)` if a signal
    /// was sent.  Any thread; blocks only with WAIT.  Ordering: release on
    /// each bit, full fence before the mode reads; with WAIT, every
    /// guest-mode or lockless-walk instance in progress at the fence has
    /// ended at the return (acquire on the exit epochs).
    pub fn make_all_cpus_request(&self, req: Request) -> Result<bool> {
        check(unsafe { sys::vcpureq_make_all_cpus_request(self.as_raw(), req.raw()) })
            .map(|r| r > 0)
    }
    /// `vcpureq_make_vcpus_request_mask()` for the vCPUs of `set`.
    pub fn make_vcpus_request(&self, req: Request, set: &VcpuSet) -> Result<bool> {
        let (m, bits) = set.raw();
        check(unsafe { sys::vcpureq_make_vcpus_request_mask(self.as_raw(), req.raw(), m, bits) })
            .map(|r| r > 0)
    }
    /// `vcpureq_make_vcpus_request()`: a list of indexes.
    pub fn make_vcpus_request_ids(&self, req: Request, ids: &[u32]) -> Result<bool> {
        check(unsafe {
            sys::vcpureq_make_vcpus_request(self.as_raw(), req.raw(), ids.as_ptr(), ids.len())
        })
        .map(|r| r > 0)
    }
    /// `vcpureq_make_vcpus_request_deadline()` (`set` `None`: every vCPU):
    /// a WAIT target that has not acknowledged by `deadline` makes it
    /// `ETIMEDOUT`, and [`Error::late_vcpus`] names it.
    pub fn make_vcpus_request_deadline(
        &self,
        req: Request,
        set: Option<&VcpuSet>,
        deadline: Deadline,
    ) -> Result<bool> {
        let (m, bits) = set_raw(set);
        self.with_deadline(deadline, |dl| unsafe {
            sys::vcpureq_make_vcpus_request_deadline(self.as_raw(), req.raw(), m, bits, dl)
        })
        .map(|r| r > 0)
    }

    fn with_deadline(
        &self,
        deadline: Deadline,
        f: impl FnOnce(*const sys::vcpureq_deadline) -> c_int,
    ) -> Result<c_int> {
        let words = (self.nr_vcpus() as usize).div_ceil(64).max(1) + 1;
        let mut pending = vec![0u64; words];
        let dl = sys::vcpureq_deadline {
            size: core::mem::size_of::<sys::vcpureq_deadline>(),
            when: deadline.timespec(),
            pending: pending.as_mut_ptr(),
            pending_bits: words * 64,
        };
        let r = f(&dl);
        if r < 0 {
            let e = Error::last(r);
            if e.errno() == errno::ETIMEDOUT {
                let late = (0..(words * 64) as u32)
                    .filter(|&i| pending[(i / 64) as usize] & (1u64 << (i % 64)) != 0)
                    .collect();
                return Err(e.with_late(late));
            }
            return Err(e);
        }
        Ok(r)
    }

    /// `vcpureq_vm_dead()`: make VM_DEAD of every vCPU; every `run()`/
    /// `enter()` returns `EIO` from then on.
    pub fn vm_dead(&self) -> Result<()> {
        check(unsafe { sys::vcpureq_vm_dead(self.as_raw()) }).map(|_| ())
    }
    pub fn is_dead(&self) -> bool {
        unsafe { sys::vcpureq_vm_is_dead(self.as_raw()) }
    }

    /// `vcpureq_pause()` of `set` (`None`: every vCPU), no deadline:
    /// returns once every target is parked (outside guest mode, staying
    /// out: a vCPU in guest mode gets one kick; one asleep in `block()` or
    /// unbound counts as parked and parks at its next entry); the guard
    /// resumes them when dropped ([`PauseGuard::resume`] reports errors).
    /// Pauses are counted.  Any thread; blocks, holding no lock.
    /// Ordering: what a target did in guest mode happens before the
    /// return.  `EDEADLK` from guest mode or a walk; `EIO` on a dead VM.
    pub fn pause(&self, set: Option<&VcpuSet>) -> Result<PauseGuard> {
        let (m, bits) = set_raw(set);
        check(unsafe { sys::vcpureq_pause(self.as_raw(), m, bits, core::ptr::null()) })?;
        Ok(PauseGuard {
            vm: self.clone(),
            set: set.cloned(),
            active: true,
        })
    }
    /// `vcpureq_pause()` with a deadline.  Past it the pause stays in force:
    /// the error carries its guard ([`PauseError::guard`]: wait again with
    /// [`PauseGuard::wait`], or resume) and names the late vCPUs.
    pub fn pause_until(
        &self,
        set: Option<&VcpuSet>,
        deadline: Deadline,
    ) -> std::result::Result<PauseGuard, PauseError> {
        let (m, bits) = set_raw(set);
        match self.with_deadline(deadline, |dl| unsafe {
            sys::vcpureq_pause(self.as_raw(), m, bits, dl)
        }) {
            Ok(_) => Ok(PauseGuard {
                vm: self.clone(),
                set: set.cloned(),
                active: true,
            }),
            Err(error) => {
                let guard = (error.errno() == errno::ETIMEDOUT).then(|| PauseGuard {
                    vm: self.clone(),
                    set: set.cloned(),
                    active: true,
                });
                Err(PauseError { error, guard })
            }
        }
    }

    /// `vcpureq_vm_dump_stats()` into a string.
    pub fn dump_stats(&self, format: DumpFormat) -> Result<String> {
        let fmt = match format {
            DumpFormat::Text => sys::VCPUREQ_DUMP_TEXT,
            DumpFormat::Json => sys::VCPUREQ_DUMP_JSON,
        };
        let mut err = None;
        let (s, r) = os::with_memstream(|f| {
            let r = unsafe { sys::vcpureq_vm_dump_stats(self.as_raw(), f, fmt) };
            if r < 0 {
                err = Some(Error::last(r));
            }
            r
        })
        .map_err(|r| Error::new(-r, "open_memstream failed"))?;
        match err {
            Some(e) if r < 0 => Err(e),
            _ => Ok(s),
        }
    }
    /// `vcpureq_vm_request_stats()` of `req`'s number.
    pub fn request_stats(&self, req: Request) -> Result<RequestStats> {
        let mut out = RequestStats::default();
        check(unsafe {
            sys::vcpureq_vm_request_stats(
                self.as_raw(),
                req.raw(),
                &mut out,
                core::mem::size_of::<RequestStats>(),
            )
        })?;
        Ok(out)
    }
    /// The counters of the kicks made without a request (NO_ACTION).
    pub fn kick_stats(&self) -> Result<RequestStats> {
        let mut out = RequestStats::default();
        check(unsafe {
            sys::vcpureq_vm_request_stats(
                self.as_raw(),
                sys::VCPUREQ_REQUEST_NO_ACTION,
                &mut out,
                core::mem::size_of::<RequestStats>(),
            )
        })?;
        Ok(out)
    }
    /// `vcpureq_vm_reset_stats()`.
    pub fn reset_stats(&self) -> Result<()> {
        check(unsafe { sys::vcpureq_vm_reset_stats(self.as_raw()) }).map(|_| ())
    }

    /// `vcpureq_trace_start()` (`ring_events` 0: 8192 per ring).
    pub fn trace_start(&self, ring_events: u32) -> Result<()> {
        let o = sys::vcpureq_trace_opts {
            size: core::mem::size_of::<sys::vcpureq_trace_opts>(),
            ring_events,
        };
        check(unsafe { sys::vcpureq_trace_start(self.as_raw(), &o) }).map(|_| ())
    }
    /// `vcpureq_trace_stop()`.
    pub fn trace_stop(&self) -> Result<()> {
        check(unsafe { sys::vcpureq_trace_stop(self.as_raw()) }).map(|_| ())
    }
    /// `vcpureq_trace_write_json()` into a string (Chrome trace-event JSON,
    /// for Perfetto), with the number of events.
    pub fn trace_json(&self) -> Result<(String, u64)> {
        let mut err = None;
        let mut n = 0u64;
        let (s, _) = os::with_memstream(|f| {
            let r = unsafe { sys::vcpureq_trace_write_json(self.as_raw(), f) };
            if r < 0 {
                err = Some(Error::last(r as c_int));
            } else {
                n = r as u64;
            }
            0
        })
        .map_err(|r| Error::new(-r, "open_memstream failed"))?;
        match err {
            Some(e) => Err(e),
            None => Ok((s, n)),
        }
    }
    /// `vcpureq_trace_counts()`.
    pub fn trace_counts(&self) -> Result<TraceCounts> {
        let mut out = TraceCounts::default();
        check(unsafe {
            sys::vcpureq_trace_counts(self.as_raw(), &mut out, core::mem::size_of::<TraceCounts>())
        })?;
        Ok(out)
    }
}

/// A pause in force (`vcpureq_pause()`): dropping it resumes its vCPUs
/// (`vcpureq_resume()`, errors ignored); [`PauseGuard::resume`] reports
/// them.  Pauses are counted: two guards of one vCPU need both dropped.
#[must_use = "dropping the guard resumes the vCPUs at once"]
pub struct PauseGuard {
    vm: Vm,
    set: Option<VcpuSet>,
    active: bool,
}

impl std::fmt::Debug for PauseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseGuard")
            .field("vcpus", &self.set)
            .field("active", &self.active)
            .finish()
    }
}

impl PauseGuard {
    /// The paused vCPUs (`None`: every vCPU online at the pause).
    pub fn vcpus(&self) -> Option<&VcpuSet> {
        self.set.as_ref()
    }
    /// `vcpureq_pause_wait()`: wait again, adding no pause, for a pause
    /// that timed out.
    pub fn wait(&self, deadline: Option<Deadline>) -> Result<()> {
        let (m, bits) = set_raw(self.set.as_ref());
        match deadline {
            None => check(unsafe {
                sys::vcpureq_pause_wait(self.vm.as_raw(), m, bits, core::ptr::null())
            })
            .map(|_| ()),
            Some(d) => self
                .vm
                .with_deadline(d, |dl| unsafe {
                    sys::vcpureq_pause_wait(self.vm.as_raw(), m, bits, dl)
                })
                .map(|_| ()),
        }
    }
    /// `vcpureq_resume()`, reporting errors.
    pub fn resume(mut self) -> Result<()> {
        self.active = false;
        let (m, bits) = set_raw(self.set.as_ref());
        check(unsafe { sys::vcpureq_resume(self.vm.as_raw(), m, bits) }).map(|_| ())
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        if self.active {
            let (m, bits) = set_raw(self.set.as_ref());
            // SAFETY: a live VM; an error (a dead VM) leaves nothing to undo.
            unsafe { sys::vcpureq_resume(self.vm.as_raw(), m, bits) };
        }
    }
}

/// A [`Vm::pause_until`] that failed: the error and, for `ETIMEDOUT`, the
/// pause that stays in force.
pub struct PauseError {
    pub error: Error,
    pub guard: Option<PauseGuard>,
}

impl std::fmt::Debug for PauseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PauseError({:?}, in force: {})",
            self.error,
            self.guard.is_some()
        )
    }
}
