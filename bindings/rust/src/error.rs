// SPDX-License-Identifier: MIT
use crate::sys;
use core::ffi::{c_int, CStr};
use std::fmt;

/// The errno values the C API returns (Linux, every architecture this
/// crate builds for), for matching [`Error::errno`].
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ESRCH: i32 = 3;
    pub const EINTR: i32 = 4;
    pub const EIO: i32 = 5;
    pub const E2BIG: i32 = 7;
    pub const EBADF: i32 = 9;
    pub const ECHILD: i32 = 10;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EDEADLK: i32 = 35;
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const ENOTSUP: i32 = 95;
    pub const ESHUTDOWN: i32 = 108;
    pub const ETIMEDOUT: i32 = 110;
    pub const ECANCELED: i32 = 125;
    /// What a closure that panicked makes the C call return (the panic
    /// itself is reported by the crate call as [`super::Error::is_panic`]).
    pub const ENOTRECOVERABLE: i32 = 131;
}

/// An error of the C library: its errno and `vcpureq_errmsg()`'s text,
/// read on the thread that got it, right after the call; or a panic caught
/// in a closure the library called (never unwound through C).  A deadline
/// that passed also names the vCPUs that were late ([`Error::late_vcpus`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    message: String,
    late: Vec<u32>,
    panic: bool,
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// From a C return value `r < 0`: errno `-r` and the thread's
    /// `vcpureq_errmsg()` (call at once, on the thread of the failed call).
    pub(crate) fn last(r: c_int) -> Error {
        // SAFETY: vcpureq_errmsg() returns a NUL-terminated per-thread string.
        let msg = unsafe { CStr::from_ptr(sys::vcpureq_errmsg()) };
        Error {
            errno: -r,
            message: msg.to_string_lossy().into_owned(),
            late: Vec::new(),
            panic: false,
        }
    }
    pub(crate) fn new(errno: i32, message: impl Into<String>) -> Error {
        Error {
            errno,
            message: message.into(),
            late: Vec::new(),
            panic: false,
        }
    }
    pub(crate) fn panicked(message: String) -> Error {
        Error {
            errno: errno::ENOTRECOVERABLE,
            message,
            late: Vec::new(),
            panic: true,
        }
    }
    pub(crate) fn with_late(mut self, late: Vec<u32>) -> Error {
        self.late = late;
        self
    }
    /// The positive errno (`EIO`, `ETIMEDOUT`...: see [`errno`]).
    pub fn errno(&self) -> i32 {
        self.errno
    }
    /// `vcpureq_errmsg()`'s text: the problem, named (may be empty if
    /// the library left none); for a panic, its message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// For a deadline that passed (`ETIMEDOUT`): the indexes of the vCPUs
    /// that had not acknowledged or parked by then.
    pub fn late_vcpus(&self) -> &[u32] {
        &self.late
    }
    /// A closure (handler, guest callback, runnable hook, work) panicked;
    /// the panic was caught before it could unwind into C.
    pub fn is_panic(&self) -> bool {
        self.panic
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.panic {
            return write!(f, "{}", self.message);
        }
        let os = std::io::Error::from_raw_os_error(self.errno);
        if self.message.is_empty() {
            write!(f, "{os}")?;
        } else {
            write!(f, "{} ({os})", self.message)?;
        }
        if !self.late.is_empty() {
            write!(f, "; late vCPUs: {:?}", self.late)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        std::io::Error::new(std::io::Error::from_raw_os_error(e.errno).kind(), e)
    }
}

/// `r < 0` is an error (read `vcpureq_errmsg()` now), else the value.
pub(crate) fn check(r: c_int) -> Result<c_int> {
    if r < 0 {
        Err(Error::last(r))
    } else {
        Ok(r)
    }
}
