// SPDX-License-Identifier: MIT
//! The raw C API of `<vcpureq/vcpureq.h>`, declared by hand (no bindgen):
//! every function, struct and constant, with the header's names.
//! `tests/abi.rs` checks each size, offset and constant here against the
//! header the crate was built with (`abi/check.c`), and `build.rs` each
//! function's parameter and return types (every declaration below is
//! redeclared in C after the header: a difference does not compile), so a
//! drift fails the build or the tests.  Every contract is the header's (and its man pages'); the safe
//! layer of this crate ([`crate::Vm`], [`crate::BoundVcpu`]...) encodes
//! most of them in types.
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};

/// `struct vcpureq_vm` (opaque).
#[repr(C)]
pub struct vcpureq_vm {
    _opaque: [u8; 0],
    _pin: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}
/// `struct vcpureq_vcpu` (opaque).
#[repr(C)]
pub struct vcpureq_vcpu {
    _opaque: [u8; 0],
    _pin: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}
/// `struct kvm_run` of `<linux/kvm.h>` (opaque here: the mapping is the VMM's).
#[repr(C)]
pub struct kvm_run {
    _opaque: [u8; 0],
    _pin: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}
/// stdio's `FILE` (opaque).
#[repr(C)]
pub struct FILE {
    _opaque: [u8; 0],
}

/// `struct timespec` (x86-64 and aarch64 Linux: two 64-bit fields).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct timespec {
    pub tv_sec: i64,
    pub tv_nsec: c_long,
}

/// `VCPUREQ_VERSION` of the header these declarations follow: 0.1.0.
pub const VCPUREQ_VERSION: c_uint = 1 << 8;

pub const VCPUREQ_REQUEST_MASK: c_uint = 0xff;
pub const VCPUREQ_REQUEST_NO_WAKEUP: c_uint = 1 << 8;
pub const VCPUREQ_REQUEST_WAIT: c_uint = 1 << 9;
pub const VCPUREQ_REQUEST_NO_ACTION: c_uint = 1 << 10;
pub const VCPUREQ_REQUEST_ARCH_BASE: c_uint = 8;
pub const VCPUREQ_REQUEST_NR_MAX: c_uint = 63;
pub const VCPUREQ_REQUEST_BAD_NR: c_uint = 1 << 31;
pub const VCPUREQ_REQ_TLB_FLUSH: c_uint = VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_WAKEUP;
pub const VCPUREQ_REQ_VM_DEAD: c_uint = 1 | VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_WAKEUP;
pub const VCPUREQ_REQ_UNBLOCK: c_uint = 2;
pub const VCPUREQ_REQ_OUTSIDE_GUEST_MODE: c_uint =
    VCPUREQ_REQUEST_NO_ACTION | VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_WAKEUP;

/// `enum vcpureq_mode`.
pub type vcpureq_mode = c_uint;
pub const VCPUREQ_OUTSIDE_GUEST_MODE: vcpureq_mode = 0;
pub const VCPUREQ_IN_GUEST_MODE: vcpureq_mode = 1;
pub const VCPUREQ_EXITING_GUEST_MODE: vcpureq_mode = 2;
pub const VCPUREQ_READING_SHADOW_PAGE_TABLES: vcpureq_mode = 3;

/// `enum vcpureq_backend`.
pub type vcpureq_backend = c_uint;
pub const VCPUREQ_BACKEND_KVM: vcpureq_backend = 0;
pub const VCPUREQ_BACKEND_THREAD: vcpureq_backend = 1;

/// `enum vcpureq_kick_mechanism`.
pub type vcpureq_kick_mechanism = c_uint;
pub const VCPUREQ_KICK_DEFAULT: vcpureq_kick_mechanism = 0;
pub const VCPUREQ_KICK_SIGMASK: vcpureq_kick_mechanism = 1;
pub const VCPUREQ_KICK_IMMEDIATE_EXIT: vcpureq_kick_mechanism = 2;

pub const VCPUREQ_GUEST_KICKED: c_int = -4;
pub const VCPUREQ_VM_RETURN_FOREIGN_EINTR: c_uint = 1 << 0;
pub const VCPUREQ_HALT_POLL_NS_MAX: c_uint = 10_000_000;
pub const VCPUREQ_THREAD_MAX_VCPUS: c_uint = 4096;

/// `enum vcpureq_run_result`.
pub const VCPUREQ_RUN_ENTER: c_int = 0;
pub const VCPUREQ_RUN_EXIT: c_int = 1;
pub const VCPUREQ_RUN_REQUEST: c_int = 2;
pub const VCPUREQ_RUN_AGAIN: c_int = 3;
pub const VCPUREQ_RUN_INTR: c_int = 4;

/// `enum vcpureq_wake_reason`.
pub const VCPUREQ_WAKE_RUNNABLE: c_int = 1 << 0;
pub const VCPUREQ_WAKE_INTERRUPT: c_int = 1 << 1;
pub const VCPUREQ_WAKE_REQUEST: c_int = 1 << 2;
pub const VCPUREQ_WAKE_UNBLOCK: c_int = 1 << 3;
pub const VCPUREQ_WAKE_DEAD: c_int = 1 << 4;

/// `enum vcpureq_dump_format`.
pub type vcpureq_dump_format = c_uint;
pub const VCPUREQ_DUMP_TEXT: vcpureq_dump_format = 0;
pub const VCPUREQ_DUMP_JSON: vcpureq_dump_format = 1;

pub type vcpureq_handler_fn = unsafe extern "C" fn(*mut vcpureq_vcpu, *mut c_void) -> c_int;
pub type vcpureq_runnable_fn = unsafe extern "C" fn(*mut vcpureq_vcpu, *mut c_void) -> bool;
pub type vcpureq_work_fn = unsafe extern "C" fn(*mut vcpureq_vcpu, *mut c_void) -> c_int;
pub type vcpureq_done_fn = unsafe extern "C" fn(*mut c_void, c_int);

/// `struct vcpureq_vm_opts`.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct vcpureq_vm_opts {
    pub size: usize,
    pub backend: vcpureq_backend,
    pub nr_vcpus: c_uint,
    pub kick_signal: c_int,
    pub handle_requests: Option<vcpureq_handler_fn>,
    pub runnable: Option<vcpureq_runnable_fn>,
    pub guest: Option<vcpureq_handler_fn>,
    pub opaque: *mut c_void,
    pub halt_poll_ns: u64,
    pub kick: vcpureq_kick_mechanism,
    pub max_vcpus: c_uint,
    pub kvm_vm_type: c_ulong,
    pub flags: c_uint,
}

impl Default for vcpureq_vm_opts {
    /// `VCPUREQ_VM_OPTS_INIT`.
    fn default() -> Self {
        vcpureq_vm_opts {
            size: core::mem::size_of::<vcpureq_vm_opts>(),
            backend: VCPUREQ_BACKEND_KVM,
            nr_vcpus: 0,
            kick_signal: 0,
            handle_requests: None,
            runnable: None,
            guest: None,
            opaque: core::ptr::null_mut(),
            halt_poll_ns: 0,
            kick: VCPUREQ_KICK_DEFAULT,
            max_vcpus: 0,
            kvm_vm_type: 0,
            flags: 0,
        }
    }
}

/// `struct vcpureq_deadline`.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct vcpureq_deadline {
    pub size: usize,
    pub when: timespec,
    pub pending: *mut u64,
    pub pending_bits: usize,
}

/// `struct vcpureq_request_stats`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct vcpureq_request_stats {
    pub made: u64,
    pub handled: u64,
    pub signals: u64,
    pub waits: u64,
}

/// `struct vcpureq_stats` (the header's comments say what each counts).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct vcpureq_stats {
    pub requests_made: u64,
    pub requests_handled: u64,
    pub kicks: u64,
    pub signals_sent: u64,
    pub signals_coalesced: u64,
    pub wakeups: u64,
    pub acks_waited: u64,
    pub entries: u64,
    pub entry_aborts: u64,
    pub exits: u64,
    pub kicked_exits: u64,
    pub spurious_exits: u64,
    pub blocks: u64,
    pub halt_poll_hits: u64,
    pub interrupts_posted: u64,
    pub interrupts_injected: u64,
    pub foreign_exits: u64,
    pub halt_poll_ns: u64,
    pub ack_rechecks: u64,
    pub acks_at_recheck: u64,
}

/// `struct vcpureq_trace_opts`.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct vcpureq_trace_opts {
    pub size: usize,
    pub ring_events: c_uint,
}

/// `struct vcpureq_trace_counts`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct vcpureq_trace_counts {
    pub recorded: u64,
    pub lost: u64,
    pub ring_events: c_uint,
    pub recording: bool,
}

extern "C" {
    pub fn vcpureq_version() -> c_uint;
    pub fn vcpureq_version_string() -> *const c_char;

    pub fn vcpureq_vm_open(
        opts: *const vcpureq_vm_opts,
        vm_fd: c_int,
        out: *mut *mut vcpureq_vm,
    ) -> c_int;
    pub fn vcpureq_vm_create(opts: *const vcpureq_vm_opts, out: *mut *mut vcpureq_vm) -> c_int;
    pub fn vcpureq_vcpu_create(
        vm: *mut vcpureq_vm,
        vcpu_id: c_ulong,
        out: *mut *mut vcpureq_vcpu,
    ) -> c_int;
    pub fn vcpureq_vcpu_adopt(
        vm: *mut vcpureq_vm,
        vcpu_id: c_ulong,
        vcpu_fd: c_int,
        run: *mut kvm_run,
        run_size: usize,
        out: *mut *mut vcpureq_vcpu,
    ) -> c_int;
    pub fn vcpureq_vm_destroy(vm: *mut vcpureq_vm) -> c_int;
    pub fn vcpureq_vm_free(vm: *mut vcpureq_vm) -> c_int;

    pub fn vcpureq_vm_vcpu(vm: *const vcpureq_vm, index: c_uint) -> *mut vcpureq_vcpu;
    pub fn vcpureq_vm_vcpu_by_id(vm: *const vcpureq_vm, vcpu_id: c_ulong) -> *mut vcpureq_vcpu;
    pub fn vcpureq_vm_nr_vcpus(vm: *const vcpureq_vm) -> c_uint;
    pub fn vcpureq_vm_max_vcpus(vm: *const vcpureq_vm) -> c_uint;
    pub fn vcpureq_vcpu_id(vcpu: *const vcpureq_vcpu) -> c_ulong;
    pub fn vcpureq_vcpu_index(vcpu: *const vcpureq_vcpu) -> c_uint;
    pub fn vcpureq_vcpu_vm(vcpu: *const vcpureq_vcpu) -> *mut vcpureq_vm;
    pub fn vcpureq_vcpu_set_user_data(vcpu: *mut vcpureq_vcpu, data: *mut c_void) -> c_int;
    pub fn vcpureq_vcpu_user_data(vcpu: *const vcpureq_vcpu) -> *mut c_void;
    pub fn vcpureq_vm_kick_signal(vm: *const vcpureq_vm) -> c_int;
    pub fn vcpureq_vm_kick_mechanism(vm: *const vcpureq_vm) -> vcpureq_kick_mechanism;
    pub fn vcpureq_vm_kvm_fd(vm: *const vcpureq_vm) -> c_int;
    pub fn vcpureq_vcpu_kvm_fd(vcpu: *const vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_kvm_run(vcpu: *const vcpureq_vcpu) -> *mut kvm_run;
    pub fn vcpureq_vcpu_lapic_in_kernel(vcpu: *const vcpureq_vcpu) -> bool;

    pub fn vcpureq_errmsg() -> *const c_char;

    pub fn vcpureq_make_request(req: c_uint, vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_kick(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_request(req: c_uint, vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_make_all_cpus_request(vm: *mut vcpureq_vm, req: c_uint) -> c_int;
    pub fn vcpureq_make_vcpus_request_mask(
        vm: *mut vcpureq_vm,
        req: c_uint,
        mask: *const u64,
        mask_bits: usize,
    ) -> c_int;
    pub fn vcpureq_make_vcpus_request(
        vm: *mut vcpureq_vm,
        req: c_uint,
        ids: *const c_uint,
        nr_ids: usize,
    ) -> c_int;
    pub fn vcpureq_vm_dead(vm: *mut vcpureq_vm) -> c_int;
    pub fn vcpureq_vm_is_dead(vm: *const vcpureq_vm) -> bool;

    pub fn vcpureq_request_pending(vcpu: *const vcpureq_vcpu) -> c_int;
    pub fn vcpureq_test_request(req: c_uint, vcpu: *const vcpureq_vcpu) -> c_int;
    pub fn vcpureq_clear_request(req: c_uint, vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_check_request(req: c_uint, vcpu: *mut vcpureq_vcpu) -> c_int;

    pub fn vcpureq_vcpu_bind(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_unbind(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_run(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_enter(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_exit(vcpu: *mut vcpureq_vcpu, ret: c_int) -> c_int;
    pub fn vcpureq_vcpu_guest_ret(vcpu: *const vcpureq_vcpu) -> c_int;
    pub fn vcpureq_guest_kicked(vcpu: *const vcpureq_vcpu) -> bool;
    pub fn vcpureq_vcpu_block(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_wake_up(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_walk_lockless_begin(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_walk_lockless_end(vcpu: *mut vcpureq_vcpu) -> c_int;
    pub fn vcpureq_vcpu_is_blocking(vcpu: *const vcpureq_vcpu) -> bool;
    pub fn vcpureq_vcpu_exit_epoch(vcpu: *const vcpureq_vcpu) -> u32;
    pub fn vcpureq_vcpu_mode(vcpu: *const vcpureq_vcpu) -> vcpureq_mode;

    pub fn vcpureq_make_vcpus_request_deadline(
        vm: *mut vcpureq_vm,
        req: c_uint,
        mask: *const u64,
        mask_bits: usize,
        dl: *const vcpureq_deadline,
    ) -> c_int;
    pub fn vcpureq_pause(
        vm: *mut vcpureq_vm,
        mask: *const u64,
        mask_bits: usize,
        dl: *const vcpureq_deadline,
    ) -> c_int;
    pub fn vcpureq_pause_wait(
        vm: *mut vcpureq_vm,
        mask: *const u64,
        mask_bits: usize,
        dl: *const vcpureq_deadline,
    ) -> c_int;
    pub fn vcpureq_resume(vm: *mut vcpureq_vm, mask: *const u64, mask_bits: usize) -> c_int;
    pub fn vcpureq_vcpu_paused(vcpu: *const vcpureq_vcpu) -> bool;
    pub fn vcpureq_vcpu_parked(vcpu: *const vcpureq_vcpu) -> bool;
    pub fn vcpureq_run_on_vcpu(
        vcpu: *mut vcpureq_vcpu,
        f: vcpureq_work_fn,
        arg: *mut c_void,
        result: *mut c_int,
    ) -> c_int;
    pub fn vcpureq_run_on_vcpu_async(
        vcpu: *mut vcpureq_vcpu,
        f: vcpureq_work_fn,
        done: Option<vcpureq_done_fn>,
        arg: *mut c_void,
    ) -> c_int;
    pub fn vcpureq_vcpu_block_deadline(vcpu: *mut vcpureq_vcpu, when: *const timespec) -> c_int;

    pub fn vcpureq_vm_dump_stats(
        vm: *const vcpureq_vm,
        f: *mut FILE,
        format: vcpureq_dump_format,
    ) -> c_int;
    pub fn vcpureq_vm_request_stats(
        vm: *const vcpureq_vm,
        req: c_uint,
        out: *mut vcpureq_request_stats,
        size: usize,
    ) -> c_int;
    pub fn vcpureq_vm_reset_stats(vm: *mut vcpureq_vm) -> c_int;

    pub fn vcpureq_trace_start(vm: *mut vcpureq_vm, opts: *const vcpureq_trace_opts) -> c_int;
    pub fn vcpureq_trace_stop(vm: *mut vcpureq_vm) -> c_int;
    pub fn vcpureq_trace_write_json(vm: *mut vcpureq_vm, f: *mut FILE) -> c_long;
    pub fn vcpureq_trace_counts(
        vm: *const vcpureq_vm,
        out: *mut vcpureq_trace_counts,
        size: usize,
    ) -> c_int;

    pub fn vcpureq_post_interrupt(vcpu: *mut vcpureq_vcpu, vector: c_uint) -> c_int;
    pub fn vcpureq_vcpu_take_interrupt(vcpu: *mut vcpureq_vcpu) -> c_int;

    pub fn vcpureq_vcpu_stats(
        vcpu: *const vcpureq_vcpu,
        out: *mut vcpureq_stats,
        size: usize,
    ) -> c_int;
}

/// One row of the C side's ABI table (`abi/check.c`).
#[doc(hidden)]
#[repr(C)]
pub struct vcpureq_rs_abi_row {
    pub name: *const c_char,
    pub value: u64,
}

extern "C" {
    #[doc(hidden)]
    pub static vcpureq_rs_abi: [vcpureq_rs_abi_row; 0];
}

/// The rows of `abi/check.c`: (name, value) as the C compiler saw them.
#[doc(hidden)]
pub fn abi_rows() -> Vec<(String, u64)> {
    let mut v = Vec::new();
    // SAFETY: a static array terminated by a NULL name (abi/check.c).
    unsafe {
        let mut p = core::ptr::addr_of!(vcpureq_rs_abi) as *const vcpureq_rs_abi_row;
        while !(*p).name.is_null() {
            let name = core::ffi::CStr::from_ptr((*p).name)
                .to_string_lossy()
                .into_owned();
            v.push((name, (*p).value));
            p = p.add(1);
        }
    }
    v
}
