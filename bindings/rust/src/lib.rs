// SPDX-License-Identifier: MIT
//! vcpureq: the KVM vCPU-request protocol for user-space VMMs (docs below).
#![doc = include_str!("crate-doc.md")]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod os;
pub mod sys;
mod types;
mod vcpu;
mod vm;

pub use error::{errno, Error, Result};
pub use types::{
    Backend, Deadline, DumpFormat, KickMechanism, Mode, Request, RequestStats, RunResult, Stats,
    TraceCounts, VcpuSet, WakeReasons,
};
pub use vcpu::{BoundVcpu, Vcpu, VcpuThread, Walk};
pub use vm::{Handled, PauseError, PauseGuard, Vm, VmBuilder, WeakVm};

/// What the thread backend's guest closure returns when it stopped because
/// [`VcpuThread::guest_kicked`] was true (`VCPUREQ_GUEST_KICKED`).
pub const GUEST_KICKED: i32 = sys::VCPUREQ_GUEST_KICKED;

/// `vcpureq_version()` of the library linked: `(major << 16) | (minor << 8) | patch`.
pub fn version() -> u32 {
    unsafe { sys::vcpureq_version() }
}

/// `vcpureq_version_string()` of the library linked.
pub fn version_string() -> &'static str {
    // SAFETY: static storage, NUL-terminated.
    unsafe { core::ffi::CStr::from_ptr(sys::vcpureq_version_string()) }
        .to_str()
        .unwrap_or("?")
}

/// How this crate was linked: `cmake BUILD_DIR` or `pkg-config LIBDIRS`.
pub const LINKED: &str = env!("VCPUREQ_LINKED");
