// SPDX-License-Identifier: MIT
//! The few libc functions the safe layer needs (no libc crate: CI has no
//! registry), and the thread-local slot where a caught panic waits to be
//! reported by the call that ran the closure.
use crate::sys::{timespec, FILE};
use core::ffi::{c_char, c_int, c_void};
use std::any::Any;
use std::cell::RefCell;

pub(crate) const CLOCK_MONOTONIC: c_int = 1;

extern "C" {
    pub(crate) fn clock_gettime(clk: c_int, ts: *mut timespec) -> c_int;
    pub(crate) fn open_memstream(ptr: *mut *mut c_char, size: *mut usize) -> *mut FILE;
    pub(crate) fn fclose(f: *mut FILE) -> c_int;
    pub(crate) fn free(p: *mut c_void);
}

pub(crate) fn now_monotonic() -> timespec {
    let mut ts = timespec::default();
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    ts
}

/// Text of a panic payload (a &str or String message, else a placeholder).
pub(crate) fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}

thread_local! {
    /// A panic caught in a closure the C library called on this thread
    /// (request handler, runnable hook, guest callback), kept for the
    /// crate call on this thread that made the C library call it.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub(crate) fn stash_panic(what: &str, p: Box<dyn Any + Send>) {
    let msg = format!("panic in the {what}: {}", panic_text(&*p));
    PANIC.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(msg);
        }
    });
}

pub(crate) fn take_panic() -> Option<String> {
    PANIC.with(|s| s.borrow_mut().take())
}

/// Write into a memory stream with `f`, return what it wrote.
pub(crate) fn with_memstream(f: impl FnOnce(*mut FILE) -> c_int) -> Result<(String, c_int), c_int> {
    let mut buf: *mut c_char = core::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: open_memstream with valid out pointers; the buffer is ours
    // after fclose (freed with free()).
    unsafe {
        let file = open_memstream(&mut buf, &mut len);
        if file.is_null() {
            return Err(-12); // ENOMEM
        }
        let r = f(file);
        fclose(file);
        let out = if buf.is_null() {
            String::new()
        } else {
            let s = core::slice::from_raw_parts(buf as *const u8, len);
            let s = String::from_utf8_lossy(s).into_owned();
            free(buf as *mut c_void);
            s
        };
        Ok((out, r))
    }
}
