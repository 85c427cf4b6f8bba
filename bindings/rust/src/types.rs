// SPDX-License-Identifier: MIT
//! Requests, modes, run results, vCPU sets, deadlines: the C API's values,
//! typed.
use crate::os;
use crate::sys;
use std::time::Duration;

/// A request (the header's `unsigned int req`): a number 0..63 and its
/// flags.  The generic ones are associated constants; the VMM's own are
/// built with [`Request::arch`], whose number is checked at compile time,
/// as `VCPUREQ_ARCH_REQ(nr)` is in C:
///
/// ```
/// use vcpureq::Request;
/// const FLUSH_MY_CACHE: Request = Request::arch::<0>();
/// const STOP: Request = Request::arch::<1>().wait();
/// assert_eq!(FLUSH_MY_CACHE.number(), 8);
/// assert!(STOP.is_wait());
/// ```
///
/// A number above 55 does not compile:
///
/// ```compile_fail,E0080
/// use vcpureq::Request;
/// let too_big = Request::arch::<56>();
/// # let _ = too_big;
/// ```
///
/// A number known only at run time goes through [`Request::try_arch`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Request(u32);

impl Request {
    /// `VCPUREQ_REQ_TLB_FLUSH` (WAIT, NO_WAKEUP).
    pub const TLB_FLUSH: Request = Request(sys::VCPUREQ_REQ_TLB_FLUSH);
    /// `VCPUREQ_REQ_VM_DEAD`: sticky, the whole VM (see [`crate::Vm::vm_dead`]).
    pub const VM_DEAD: Request = Request(sys::VCPUREQ_REQ_VM_DEAD);
    /// `VCPUREQ_REQ_UNBLOCK`: make `block()` return.
    pub const UNBLOCK: Request = Request(sys::VCPUREQ_REQ_UNBLOCK);
    /// `VCPUREQ_REQ_OUTSIDE_GUEST_MODE`: no bit, kick and wait.
    pub const OUTSIDE_GUEST_MODE: Request = Request(sys::VCPUREQ_REQ_OUTSIDE_GUEST_MODE);
    /// Highest `nr` of [`Request::arch`].
    pub const ARCH_NR_MAX: u32 = sys::VCPUREQ_REQUEST_NR_MAX - sys::VCPUREQ_REQUEST_ARCH_BASE;

    /// `VCPUREQ_ARCH_REQ(NR)`: the VMM's request `NR` (0..55), bit `NR + 8`.
    /// Out of range, it does not compile (a `const` assertion).
    pub const fn arch<const NR: u32>() -> Request {
        const {
            assert!(
                NR <= sys::VCPUREQ_REQUEST_NR_MAX - sys::VCPUREQ_REQUEST_ARCH_BASE,
                "vcpureq: Request::arch::<NR>() needs NR in 0..=55"
            )
        };
        Request(NR + sys::VCPUREQ_REQUEST_ARCH_BASE)
    }
    /// `VCPUREQ_ARCH_REQ(nr)` for a run-time `nr`: `None` above 55.
    pub const fn try_arch(nr: u32) -> Option<Request> {
        if nr <= Self::ARCH_NR_MAX {
            Some(Request(nr + sys::VCPUREQ_REQUEST_ARCH_BASE))
        } else {
            None
        }
    }
    /// With `VCPUREQ_REQUEST_WAIT`.
    pub const fn wait(self) -> Request {
        Request(self.0 | sys::VCPUREQ_REQUEST_WAIT)
    }
    /// With `VCPUREQ_REQUEST_NO_WAKEUP`.
    pub const fn no_wakeup(self) -> Request {
        Request(self.0 | sys::VCPUREQ_REQUEST_NO_WAKEUP)
    }
    /// The bit number (0..63).
    pub const fn number(self) -> u32 {
        self.0 & sys::VCPUREQ_REQUEST_MASK
    }
    pub const fn is_wait(self) -> bool {
        self.0 & sys::VCPUREQ_REQUEST_WAIT != 0
    }
    /// The C value, flags included.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

/// `enum vcpureq_mode` (the kernel's `vcpu->mode`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    OutsideGuest,
    InGuest,
    ExitingGuest,
    ReadingShadowPageTables,
}

impl Mode {
    pub(crate) fn from_raw(m: sys::vcpureq_mode) -> Mode {
        match m {
            sys::VCPUREQ_IN_GUEST_MODE => Mode::InGuest,
            sys::VCPUREQ_EXITING_GUEST_MODE => Mode::ExitingGuest,
            sys::VCPUREQ_READING_SHADOW_PAGE_TABLES => Mode::ReadingShadowPageTables,
            _ => Mode::OutsideGuest,
        }
    }
}

/// `enum vcpureq_backend`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Real vCPUs on /dev/kvm: guest mode is `ioctl(KVM_RUN)`.
    Kvm,
    /// Guest mode is a closure ([`crate::VmBuilder::guest`]) or what the
    /// caller runs between `enter()` and `exit()`.
    Thread,
}

/// `enum vcpureq_kick_mechanism` (KVM backend).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KickMechanism {
    Default,
    SigMask,
    ImmediateExit,
}

impl KickMechanism {
    pub(crate) fn raw(self) -> sys::vcpureq_kick_mechanism {
        match self {
            KickMechanism::Default => sys::VCPUREQ_KICK_DEFAULT,
            KickMechanism::SigMask => sys::VCPUREQ_KICK_SIGMASK,
            KickMechanism::ImmediateExit => sys::VCPUREQ_KICK_IMMEDIATE_EXIT,
        }
    }
}

/// `enum vcpureq_run_result`: what `run()`, `enter()` and `exit()` return.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// `enter()`: enter the guest now, then call `exit()`.
    Enter,
    /// A guest exit for the VMM (KVM: `kvm_run->exit_reason`; thread
    /// backend: [`crate::BoundVcpu::guest_ret`]).
    Exit,
    /// Requests the handler left pending: check them, run again.
    Request,
    /// `exit()`: nothing for the VMM; enter again.
    Again,
    /// A foreign EINTR (with [`crate::VmBuilder::return_foreign_eintr`]).
    Intr,
}

impl RunResult {
    pub(crate) fn from_raw(r: i32) -> RunResult {
        match r {
            sys::VCPUREQ_RUN_ENTER => RunResult::Enter,
            sys::VCPUREQ_RUN_EXIT => RunResult::Exit,
            sys::VCPUREQ_RUN_REQUEST => RunResult::Request,
            sys::VCPUREQ_RUN_AGAIN => RunResult::Again,
            sys::VCPUREQ_RUN_INTR => RunResult::Intr,
            other => panic!("vcpureq: unknown run result {other} (crate and library disagree)"),
        }
    }
}

/// `enum vcpureq_wake_reason` bits: why `block()` returned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WakeReasons(pub u32);

impl WakeReasons {
    pub const RUNNABLE: u32 = sys::VCPUREQ_WAKE_RUNNABLE as u32;
    pub const INTERRUPT: u32 = sys::VCPUREQ_WAKE_INTERRUPT as u32;
    pub const REQUEST: u32 = sys::VCPUREQ_WAKE_REQUEST as u32;
    pub const UNBLOCK: u32 = sys::VCPUREQ_WAKE_UNBLOCK as u32;
    pub const DEAD: u32 = sys::VCPUREQ_WAKE_DEAD as u32;
    pub fn runnable(self) -> bool {
        self.0 & Self::RUNNABLE != 0
    }
    pub fn interrupt(self) -> bool {
        self.0 & Self::INTERRUPT != 0
    }
    pub fn request(self) -> bool {
        self.0 & Self::REQUEST != 0
    }
    pub fn unblock(self) -> bool {
        self.0 & Self::UNBLOCK != 0
    }
    pub fn dead(self) -> bool {
        self.0 & Self::DEAD != 0
    }
}

/// `enum vcpureq_dump_format`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    Text,
    Json,
}

/// A set of vCPU indexes: the C API's `mask` / `mask_bits` (bit i names
/// the vCPU of index i, as `vcpu_idx` in the kernel).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuSet {
    words: Vec<u64>,
}

impl VcpuSet {
    pub fn new() -> VcpuSet {
        VcpuSet::default()
    }
    /// The set of these indexes.
    pub fn of(indexes: impl IntoIterator<Item = u32>) -> VcpuSet {
        let mut s = VcpuSet::new();
        for i in indexes {
            s.insert(i);
        }
        s
    }
    pub fn insert(&mut self, index: u32) {
        let w = (index / 64) as usize;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1u64 << (index % 64);
    }
    pub fn contains(&self, index: u32) -> bool {
        self.words
            .get((index / 64) as usize)
            .is_some_and(|w| w & (1u64 << (index % 64)) != 0)
    }
    /// The indexes, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.words.len() as u32 * 64).filter(move |&i| self.contains(i))
    }
    /// The words and bit count for the C API: only as many bits as the
    /// highest member needs (bits at or above the vCPU count must be clear).
    pub(crate) fn raw(&self) -> (*const u64, usize) {
        let bits = self
            .words
            .iter()
            .rposition(|&w| w != 0)
            .map(|w| w * 64 + 64 - self.words[w].leading_zeros() as usize)
            .unwrap_or(0);
        (self.words.as_ptr(), bits)
    }
}

pub(crate) fn set_raw(s: Option<&VcpuSet>) -> (*const u64, usize) {
    match s {
        Some(s) => s.raw(),
        None => (core::ptr::null(), 0),
    }
}

/// An absolute CLOCK_MONOTONIC time, for the calls that take a deadline
/// (`struct vcpureq_deadline`'s `when`, `vcpureq_vcpu_block_deadline()`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Deadline {
    when: sys::timespec,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        let now = os::now_monotonic();
        let mut sec = now.tv_sec.saturating_add(timeout.as_secs() as i64);
        let mut nsec = now.tv_nsec + timeout.subsec_nanos() as i64;
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.saturating_add(1);
        }
        Deadline {
            when: sys::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
        }
    }
    /// An absolute CLOCK_MONOTONIC time as the C API takes it (checked by
    /// the library: a negative `tv_sec` or a `tv_nsec` outside
    /// 0..=999999999 is `EINVAL`).
    pub fn at(when: sys::timespec) -> Deadline {
        Deadline { when }
    }
    pub fn timespec(&self) -> sys::timespec {
        self.when
    }
}

/// `struct vcpureq_stats`: a vCPU's counters.
pub type Stats = sys::vcpureq_stats;
/// `struct vcpureq_request_stats`: one request number's counters.
pub type RequestStats = sys::vcpureq_request_stats;
/// `struct vcpureq_trace_counts`.
pub type TraceCounts = sys::vcpureq_trace_counts;
