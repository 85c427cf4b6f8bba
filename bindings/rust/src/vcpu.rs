// SPDX-License-Identifier: MIT
//! The vCPU handle (any thread), the bound vCPU thread's guard, and the
//! view of the vCPU that the closures get on the vCPU thread.
use crate::error::{check, errno, Error, Result};
use crate::os;
use crate::sys;
use crate::types::*;
use crate::vm::Vm;
use core::ffi::{c_int, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A vCPU (`struct vcpureq_vcpu *`) for any thread: requests, kicks,
/// run-on-vCPU, stats.  `Send + Sync`, clonable; it keeps its VM alive.
/// The calls reserved to the vCPU's own thread are on the guard
/// [`Vcpu::bind`] returns.
#[derive(Clone)]
pub struct Vcpu {
    vm: Vm,
    raw: NonNull<sys::vcpureq_vcpu>,
}

// SAFETY: the C functions reachable from a Vcpu are the header's "any
// thread" ones; the vCPU memory lives until vcpureq_vm_free(), which the
// Vm handle inside defers.
unsafe impl Send for Vcpu {}
unsafe impl Sync for Vcpu {}

impl std::fmt::Debug for Vcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcpu")
            .field("index", &self.index())
            .field("id", &self.id())
            .finish()
    }
}

impl Vcpu {
    pub(crate) fn new(vm: Vm, raw: NonNull<sys::vcpureq_vcpu>) -> Vcpu {
        Vcpu { vm, raw }
    }
    /// The C handle, for calls of [`crate::sys`] (valid while `self` is).
    pub fn as_raw(&self) -> *mut sys::vcpureq_vcpu {
        self.raw.as_ptr()
    }
    pub fn vm(&self) -> &Vm {
        &self.vm
    }
    /// The index: order of addition, the bit in a [`VcpuSet`].
    pub fn index(&self) -> u32 {
        unsafe { sys::vcpureq_vcpu_index(self.as_raw()) }
    }
    /// The VMM's id (KVM_CREATE_VCPU's).
    pub fn id(&self) -> u64 {
        unsafe { sys::vcpureq_vcpu_id(self.as_raw()) as u64 }
    }

    /// `vcpureq_vcpu_bind()`: make the calling thread this vCPU's thread.
    /// The guard is neither `Send` nor `Sync`, so the calls reserved to
    /// the vCPU thread can only be made on this thread; dropping it
    /// unbinds (`vcpureq_vcpu_unbind()`; [`BoundVcpu::unbind`] reports
    /// errors).
    pub fn bind(&self) -> Result<BoundVcpu> {
        check(unsafe { sys::vcpureq_vcpu_bind(self.as_raw()) })?;
        Ok(BoundVcpu {
            vcpu: self.clone(),
            thread: VcpuThread {
                raw: self.raw,
                _not_send: PhantomData,
            },
            bound: true,
        })
    }

    /// `vcpureq_vcpu_set_user_data()`: a per-vCPU pointer for the VMM
    /// (release store; vcpureq never reads it).  Dereferencing it later is
    /// the VMM's `unsafe`.
    // vcpureq stores the pointer and never dereferences it.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn set_user_data(&self, data: *mut c_void) {
        unsafe { sys::vcpureq_vcpu_set_user_data(self.as_raw(), data) };
    }
    /// `vcpureq_vcpu_user_data()` (acquire load), null until set.
    pub fn user_data(&self) -> *mut c_void {
        unsafe { sys::vcpureq_vcpu_user_data(self.as_raw()) }
    }

    /// `vcpureq_make_request()`: set the bit, no kick.  Any thread; never
    /// blocks.  Ordering: what the caller wrote before is visible to the
    /// vCPU thread once its `check_request()` returns true for it
    /// (release on the bit, acquire in the check).
    pub fn make_request(&self, req: Request) -> Result<()> {
        check(unsafe { sys::vcpureq_make_request(req.raw(), self.as_raw()) }).map(|_| ())
    }
    /// `vcpureq_vcpu_kick()`: wake the vCPU if it sleeps in `block()`,
    /// signal it once if it is in guest mode; `Ok(true)` if a signal was
    /// sent.  Any thread; never blocks (but a bounded back-off on a full
    /// signal queue: `EAGAIN`).  Ordering: a full fence before it reads
    /// the vCPU's state, so a request made before it is never stranded.
    pub fn kick(&self) -> Result<bool> {
        check(unsafe { sys::vcpureq_vcpu_kick(self.as_raw()) }).map(|r| r > 0)
    }
    /// `vcpureq_request()`: make and kick with the full flag semantics
    /// (NO_WAKEUP, WAIT, NO_ACTION) for this one vCPU; `Ok(true)` if a
    /// signal was sent.  Any thread; blocks (futex) only with WAIT, until
    /// the guest-mode instance the vCPU was in has ended (never waiting on
    /// itself).  Ordering: as `make_request()` and `kick()`; with WAIT, the
    /// ended instance happens before the return.
    pub fn request(&self, req: Request) -> Result<bool> {
        check(unsafe { sys::vcpureq_request(req.raw(), self.as_raw()) }).map(|r| r > 0)
    }
    /// `vcpureq_vcpu_wake_up()`: `true` if it woke the vCPU.
    pub fn wake_up(&self) -> bool {
        unsafe { sys::vcpureq_vcpu_wake_up(self.as_raw()) > 0 }
    }
    /// `vcpureq_post_interrupt()` (user-space irqchip): `Ok(true)` if a
    /// signal was sent.
    pub fn post_interrupt(&self, vector: u8) -> Result<bool> {
        check(unsafe { sys::vcpureq_post_interrupt(self.as_raw(), vector as u32) }).map(|r| r > 0)
    }
    pub fn paused(&self) -> bool {
        unsafe { sys::vcpureq_vcpu_paused(self.as_raw()) }
    }
    pub fn parked(&self) -> bool {
        unsafe { sys::vcpureq_vcpu_parked(self.as_raw()) }
    }
    /// The mode now (relaxed: for tests and monitoring).
    pub fn mode(&self) -> Mode {
        Mode::from_raw(unsafe { sys::vcpureq_vcpu_mode(self.as_raw()) })
    }
    pub fn exit_epoch(&self) -> u32 {
        unsafe { sys::vcpureq_vcpu_exit_epoch(self.as_raw()) }
    }
    pub fn is_blocking(&self) -> bool {
        unsafe { sys::vcpureq_vcpu_is_blocking(self.as_raw()) }
    }
    /// `vcpureq_vcpu_stats()`.
    pub fn stats(&self) -> Stats {
        stats(self.raw)
    }
    /// KVM backend: the vCPU fd (borrowed); `None` on the thread backend.
    pub fn kvm_fd(&self) -> Option<RawFd> {
        let fd = unsafe { sys::vcpureq_vcpu_kvm_fd(self.as_raw()) };
        (fd >= 0).then_some(fd)
    }
    /// KVM backend: the kvm_run mapping (null on the thread backend).
    pub fn kvm_run(&self) -> *mut sys::kvm_run {
        unsafe { sys::vcpureq_vcpu_kvm_run(self.as_raw()) }
    }
    pub fn lapic_in_kernel(&self) -> bool {
        unsafe { sys::vcpureq_vcpu_lapic_in_kernel(self.as_raw()) }
    }

    /// `vcpureq_run_on_vcpu()`: run `f` on the vCPU's thread, outside
    /// guest mode, and return its result.  Any thread; blocks until it
    /// ran (a vCPU asleep in `block()` is woken for it, one in guest mode
    /// kicked out); from the vCPU's own thread it runs inline.  Items run
    /// in FIFO order per vCPU, before the request handler.  Ordering: what
    /// the caller wrote before happens before `f` runs, and what `f` did
    /// before the return.  `EDEADLK` where it would close a cycle of
    /// run-on-vCPU waits or from guest mode; `EIO` on a dead VM.  `ECANCELED`
    /// if it never will (the VM died); a panic in `f` is caught on the vCPU
    /// thread and returned here as an error ([`Error::is_panic`]).
    pub fn run_on_vcpu<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&VcpuThread) -> R + Send,
        R: Send,
    {
        struct Slot<F, R> {
            f: Option<F>,
            out: Option<std::thread::Result<R>>,
        }
        unsafe extern "C" fn tramp<F: FnOnce(&VcpuThread) -> R, R>(
            v: *mut sys::vcpureq_vcpu,
            arg: *mut c_void,
        ) -> c_int {
            // SAFETY: arg is the caller's Slot, alive while it waits.
            let slot = unsafe { &mut *(arg as *mut Slot<F, R>) };
            let t = unsafe { VcpuThread::from_raw(v) };
            if let Some(f) = slot.f.take() {
                slot.out = Some(catch_unwind(AssertUnwindSafe(|| f(&t))));
            }
            0
        }
        let mut slot = Slot::<F, R> {
            f: Some(f),
            out: None,
        };
        let r = unsafe {
            sys::vcpureq_run_on_vcpu(
                self.as_raw(),
                tramp::<F, R>,
                &mut slot as *mut Slot<F, R> as *mut c_void,
                core::ptr::null_mut(),
            )
        };
        check(r)?;
        match slot.out {
            Some(Ok(v)) => Ok(v),
            Some(Err(p)) => Err(Error::panicked(format!(
                "panic in the run_on_vcpu closure: {}",
                os::panic_text(&*p)
            ))),
            None => Err(Error::new(
                errno::ECANCELED,
                "vcpureq: the work function did not run",
            )),
        }
    }

    /// `vcpureq_run_on_vcpu_async()`: queue `f` for the vCPU's thread and
    /// return at once.  `done` gets `f`'s result once it ran (on the vCPU
    /// thread), or `ECANCELED` if it never will (the VM died or was
    /// destroyed first: then on the thread that made it so), or the panic
    /// of `f`.  A panic in `done` is caught and printed to stderr (nothing
    /// is left to report it to).  A closure that holds a [`Vm`] or
    /// [`Vcpu`] of this VM keeps the VM alive until it has run.
    pub fn run_on_vcpu_async<F, D>(&self, f: F, done: D) -> Result<()>
    where
        F: FnOnce(&VcpuThread) -> i32 + Send + 'static,
        D: FnOnce(Result<i32>) + Send + 'static,
    {
        struct Item<F, D> {
            f: Option<F>,
            done: Option<D>,
            panic: Option<String>,
        }
        unsafe extern "C" fn work<F: FnOnce(&VcpuThread) -> i32, D>(
            v: *mut sys::vcpureq_vcpu,
            arg: *mut c_void,
        ) -> c_int {
            // SAFETY: arg is the Item, freed only by done_tramp.
            let item = unsafe { &mut *(arg as *mut Item<F, D>) };
            let t = unsafe { VcpuThread::from_raw(v) };
            let Some(f) = item.f.take() else {
                return -errno::ECANCELED;
            };
            match catch_unwind(AssertUnwindSafe(|| f(&t))) {
                Ok(r) => r,
                Err(p) => {
                    item.panic = Some(format!(
                        "panic in the run_on_vcpu_async closure: {}",
                        os::panic_text(&*p)
                    ));
                    -errno::ENOTRECOVERABLE
                }
            }
        }
        unsafe extern "C" fn done_tramp<F, D: FnOnce(Result<i32>)>(
            arg: *mut c_void,
            result: c_int,
        ) {
            // SAFETY: called exactly once per queued item (header).
            let item = unsafe { Box::from_raw(arg as *mut Item<F, D>) };
            // Everything here, drops included, stays on this side of C.
            let r = catch_unwind(AssertUnwindSafe(move || {
                let mut item = item;
                let res = if let Some(p) = item.panic.take() {
                    Err(Error::panicked(p))
                } else if item.f.is_some() {
                    Err(Error::new(
                        if result < 0 {
                            -result
                        } else {
                            errno::ECANCELED
                        },
                        "vcpureq: the work item was cancelled before it ran (VM dead or destroyed)",
                    ))
                } else {
                    Ok(result)
                };
                drop(item.f.take());
                if let Some(d) = item.done.take() {
                    d(res);
                }
            }));
            if let Err(p) = r {
                eprintln!(
                    "vcpureq: panic in a run_on_vcpu_async closure's done or drop: {}",
                    os::panic_text(&*p)
                );
            }
        }
        let item = Box::into_raw(Box::new(Item::<F, D> {
            f: Some(f),
            done: Some(done),
            panic: None,
        }));
        let r = unsafe {
            sys::vcpureq_run_on_vcpu_async(
                self.as_raw(),
                work::<F, D>,
                Some(done_tramp::<F, D>),
                item as *mut c_void,
            )
        };
        if r < 0 {
            let e = Error::last(r);
            // Not queued: done will not be called; the item is ours again.
            drop(unsafe { Box::from_raw(item) });
            return Err(e);
        }
        Ok(())
    }
}

fn stats(raw: NonNull<sys::vcpureq_vcpu>) -> Stats {
    let mut out = Stats::default();
    unsafe { sys::vcpureq_vcpu_stats(raw.as_ptr(), &mut out, core::mem::size_of::<Stats>()) };
    out
}

/// The vCPU as its own thread sees it: the vCPU-thread-only tests of
/// requests, and the thread backend's kick flag.
///
/// The request tests return `bool`: the types exclude the C errors (the
/// thread is the vCPU's, the VM alive, the number valid) but two, which
/// panic as a misuse would: `Request::OUTSIDE_GUEST_MODE` (NO_ACTION sets
/// no bit: there is nothing to test) and a call in a `fork()` child.  The closures the library
/// calls on the vCPU thread (request handler, guest callback, runnable
/// hook, run-on-vCPU work) get a `&VcpuThread`; the bound guard
/// dereferences to one.  Neither `Send` nor `Sync`: it cannot leave the
/// vCPU thread.
pub struct VcpuThread {
    raw: NonNull<sys::vcpureq_vcpu>,
    _not_send: PhantomData<*mut ()>,
}

impl VcpuThread {
    /// # Safety
    /// `raw` is a live vCPU and the calling thread is its bound thread.
    pub(crate) unsafe fn from_raw(raw: *mut sys::vcpureq_vcpu) -> VcpuThread {
        VcpuThread {
            raw: NonNull::new(raw).expect("vcpureq passed a vCPU"),
            _not_send: PhantomData,
        }
    }
    /// The C handle.
    pub fn as_raw(&self) -> *mut sys::vcpureq_vcpu {
        self.raw.as_ptr()
    }
    pub fn index(&self) -> u32 {
        unsafe { sys::vcpureq_vcpu_index(self.as_raw()) }
    }
    pub fn id(&self) -> u64 {
        unsafe { sys::vcpureq_vcpu_id(self.as_raw()) as u64 }
    }
    /// The mode now.
    pub fn mode(&self) -> Mode {
        Mode::from_raw(unsafe { sys::vcpureq_vcpu_mode(self.as_raw()) })
    }
    pub fn stats(&self) -> Stats {
        stats(self.raw)
    }
    /// `vcpureq_vcpu_user_data()`.
    pub fn user_data(&self) -> *mut c_void {
        unsafe { sys::vcpureq_vcpu_user_data(self.as_raw()) }
    }
    /// The C return of a vCPU-thread test: the types exclude its errors
    /// (the thread is the vCPU's, the request valid, the VM alive).
    fn flag(r: c_int, what: &str) -> bool {
        assert!(r >= 0, "vcpureq: {what} failed: {}", Error::last(r));
        r > 0
    }
    /// `vcpureq_request_pending()`: any request pending (relaxed).
    pub fn request_pending(&self) -> bool {
        Self::flag(
            unsafe { sys::vcpureq_request_pending(self.as_raw()) },
            "request_pending",
        )
    }
    /// `vcpureq_test_request()`: pending, not cleared (acquire: the
    /// payload written before the make is visible when true).
    pub fn test_request(&self, req: Request) -> bool {
        Self::flag(
            unsafe { sys::vcpureq_test_request(req.raw(), self.as_raw()) },
            "test_request",
        )
    }
    /// `vcpureq_clear_request()`: clear without acting.
    pub fn clear_request(&self, req: Request) {
        Self::flag(
            unsafe { sys::vcpureq_clear_request(req.raw(), self.as_raw()) },
            "clear_request",
        );
    }
    /// `vcpureq_check_request()`: test and clear (fully ordered: the
    /// payload written before the make is visible when it returns true).
    pub fn check_request(&self, req: Request) -> bool {
        Self::flag(
            unsafe { sys::vcpureq_check_request(req.raw(), self.as_raw()) },
            "check_request",
        )
    }
    /// `vcpureq_vcpu_take_interrupt()`: the highest pending posted vector.
    pub fn take_interrupt(&self) -> Option<u8> {
        let r = unsafe { sys::vcpureq_vcpu_take_interrupt(self.as_raw()) };
        (r >= 0).then_some(r as u8)
    }
    /// `vcpureq_guest_kicked()` (thread backend, in the guest callback):
    /// this guest-mode instance was kicked: return [`crate::GUEST_KICKED`].
    pub fn guest_kicked(&self) -> bool {
        unsafe { sys::vcpureq_guest_kicked(self.as_raw()) }
    }
}

/// The vCPU thread's guard, from [`Vcpu::bind`]: the calls reserved to
/// the vCPU's bound thread (run, enter/exit, block, lockless walks, and the
/// request tests of [`VcpuThread`], which it dereferences to).  Neither
/// `Send` nor `Sync`, so those calls cannot be made from another thread:
///
/// ```
/// # fn f(vcpu: vcpureq::Vcpu) -> vcpureq::Result<()> {
/// let bound = vcpu.bind()?;           // this thread is the vCPU thread
/// let _pending = bound.request_pending();
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0277
/// # fn f(vcpu: vcpureq::Vcpu) -> vcpureq::Result<()> {
/// let bound = vcpu.bind()?;
/// std::thread::spawn(move || bound.check_request(vcpureq::Request::arch::<0>()));
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0277
/// # fn f(vcpu: vcpureq::Vcpu) -> vcpureq::Result<()> {
/// let bound = vcpu.bind()?;
/// std::thread::scope(|s| { s.spawn(|| bound.run()); });
/// # Ok(()) }
/// ```
///
/// Dropping it unbinds (`vcpureq_vcpu_unbind()`, errors ignored: it cannot
/// fail but between `enter()` and `exit()`); [`BoundVcpu::unbind`]
/// reports them.
pub struct BoundVcpu {
    vcpu: Vcpu,
    thread: VcpuThread,
    bound: bool,
}

impl std::fmt::Debug for BoundVcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundVcpu")
            .field("vcpu", &self.vcpu)
            .field("bound", &self.bound)
            .finish()
    }
}

impl std::ops::Deref for BoundVcpu {
    type Target = VcpuThread;
    fn deref(&self) -> &VcpuThread {
        &self.thread
    }
}

impl BoundVcpu {
    /// The any-thread handle of this vCPU (to hand to other threads).
    pub fn vcpu(&self) -> &Vcpu {
        &self.vcpu
    }
    fn after(&self, r: c_int) -> Result<c_int> {
        if let Some(msg) = os::take_panic() {
            return Err(Error::panicked(msg));
        }
        check(r)
    }
    /// `vcpureq_vcpu_run()`: enter, KVM_RUN (thread backend: the guest
    /// closure), exit, looping over kicks; returns for an exit, requests
    /// the handler left, a foreign EINTR (if asked), or an error (`EIO`
    /// once the VM is dead; a panic of the handler or guest closure).
    /// Blocks in the guest, and while the vCPU is paused (it parks here).
    pub fn run(&self) -> Result<RunResult> {
        let r = unsafe { sys::vcpureq_vcpu_run(self.as_raw()) };
        self.after(r).map(RunResult::from_raw)
    }
    /// `vcpureq_vcpu_enter()`, for a VMM with its own `KVM_RUN` loop:
    /// [`RunResult::Enter`] means the vCPU is IN_GUEST_MODE: enter at once,
    /// then call [`BoundVcpu::exit`] whatever happens.
    pub fn enter(&self) -> Result<RunResult> {
        let r = unsafe { sys::vcpureq_vcpu_enter(self.as_raw()) };
        self.after(r).map(RunResult::from_raw)
    }
    /// `vcpureq_vcpu_exit(ret)`: `ret` is what the entry returned
    /// (`KVM_RUN`'s 0 or -errno; thread backend 0 or `GUEST_KICKED`).
    pub fn exit(&self, ret: i32) -> Result<RunResult> {
        let r = unsafe { sys::vcpureq_vcpu_exit(self.as_raw(), ret) };
        self.after(r).map(RunResult::from_raw)
    }
    /// `enter()`, then `guest()` (the VMM's own `KVM_RUN`, returning 0 or
    /// -errno) if it says [`RunResult::Enter`], then `exit()` even if
    /// `guest` panics (the panic goes on after the exit).
    pub fn enter_guest(&self, guest: impl FnOnce() -> i32) -> Result<RunResult> {
        let r = self.enter()?;
        if r != RunResult::Enter {
            return Ok(r);
        }
        match catch_unwind(AssertUnwindSafe(guest)) {
            Ok(ret) => self.exit(ret),
            Err(p) => {
                let _ = self.exit(-errno::EINTR);
                std::panic::resume_unwind(p)
            }
        }
    }
    /// Thread backend: the guest closure's last return value.
    pub fn guest_ret(&self) -> i32 {
        unsafe { sys::vcpureq_vcpu_guest_ret(self.as_raw()) }
    }
    /// `vcpureq_vcpu_block()` (kernel: `kvm_vcpu_block()`): sleep (futex,
    /// after the halt poll) until runnable, a posted interrupt, a waking
    /// request, UNBLOCK or VM_DEAD; returns why.  Ordering: registers as
    /// a sleeper, full fence, then checks: pairs with the waker's fence,
    /// so no wake-up is lost.  `EBUSY` between `enter()` and `exit()`.
    pub fn block(&self) -> Result<WakeReasons> {
        let r = unsafe { sys::vcpureq_vcpu_block(self.as_raw()) };
        self.after(r).map(|r| WakeReasons(r as u32))
    }
    /// `vcpureq_vcpu_block_deadline()`: `ETIMEDOUT` past `deadline`.
    pub fn block_until(&self, deadline: Deadline) -> Result<WakeReasons> {
        let ts = deadline.timespec();
        let r = unsafe { sys::vcpureq_vcpu_block_deadline(self.as_raw(), &ts) };
        self.after(r).map(|r| WakeReasons(r as u32))
    }
    /// `vcpureq_walk_lockless_begin()`; the guard's drop is
    /// `vcpureq_walk_lockless_end()`.  Not nestable (the `&mut`).
    pub fn walk_lockless(&mut self) -> Result<Walk<'_>> {
        check(unsafe { sys::vcpureq_walk_lockless_begin(self.as_raw()) })?;
        Ok(Walk { bound: self })
    }
    /// `vcpureq_vcpu_unbind()`, reporting errors (`EBUSY` between
    /// `enter()` and `exit()`: then the vCPU stays bound and the guard is
    /// given back).
    pub fn unbind(mut self) -> std::result::Result<(), (BoundVcpu, Error)> {
        let r = unsafe { sys::vcpureq_vcpu_unbind(self.as_raw()) };
        if r < 0 {
            return Err((self, Error::last(r)));
        }
        self.bound = false;
        Ok(())
    }
}

impl Drop for BoundVcpu {
    fn drop(&mut self) {
        if self.bound {
            // SAFETY: we are the bound thread (the guard is !Send).
            unsafe { sys::vcpureq_vcpu_unbind(self.as_raw()) };
        }
    }
}

/// A lockless-walk section (kernel: `walk_shadow_page_lockless_begin()` /
/// `_end()`): WAIT requesters wait for it to end.
pub struct Walk<'a> {
    bound: &'a mut BoundVcpu,
}

impl std::ops::Deref for Walk<'_> {
    type Target = VcpuThread;
    fn deref(&self) -> &VcpuThread {
        self.bound
    }
}

impl Walk<'_> {
    /// End the section, reporting errors.
    pub fn end(self) -> Result<()> {
        let r = unsafe { sys::vcpureq_walk_lockless_end(self.bound.as_raw()) };
        std::mem::forget(self);
        check(r).map(|_| ())
    }
}

impl Drop for Walk<'_> {
    fn drop(&mut self) {
        unsafe { sys::vcpureq_walk_lockless_end(self.bound.as_raw()) };
    }
}
