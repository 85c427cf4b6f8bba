// SPDX-License-Identifier: MIT
//! The hand-written declarations against the C header: every size, field
//! offset and constant of src/sys.rs (and of tests/common/kvm.rs, which the
//! example shares) compared with what the C compiler says in abi/check.c,
//! built by build.rs against the header of the library linked.  A row
//! missing on either side, or a different value, fails.
mod common;

use common::kvm;
use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use vcpureq::sys::*;

macro_rules! rows {
    ($($name:expr => $v:expr),* $(,)?) => { vec![$(($name.to_string(), $v as u64)),*] };
}

fn rust_rows() -> Vec<(String, u64)> {
    rows! {
        "sizeof vcpureq_vm_opts" => size_of::<vcpureq_vm_opts>(),
        "alignof vcpureq_vm_opts" => align_of::<vcpureq_vm_opts>(),
        "offsetof vcpureq_vm_opts.size" => offset_of!(vcpureq_vm_opts, size),
        "offsetof vcpureq_vm_opts.backend" => offset_of!(vcpureq_vm_opts, backend),
        "offsetof vcpureq_vm_opts.nr_vcpus" => offset_of!(vcpureq_vm_opts, nr_vcpus),
        "offsetof vcpureq_vm_opts.kick_signal" => offset_of!(vcpureq_vm_opts, kick_signal),
        "offsetof vcpureq_vm_opts.handle_requests" => offset_of!(vcpureq_vm_opts, handle_requests),
        "offsetof vcpureq_vm_opts.runnable" => offset_of!(vcpureq_vm_opts, runnable),
        "offsetof vcpureq_vm_opts.guest" => offset_of!(vcpureq_vm_opts, guest),
        "offsetof vcpureq_vm_opts.opaque" => offset_of!(vcpureq_vm_opts, opaque),
        "offsetof vcpureq_vm_opts.halt_poll_ns" => offset_of!(vcpureq_vm_opts, halt_poll_ns),
        "offsetof vcpureq_vm_opts.kick" => offset_of!(vcpureq_vm_opts, kick),
        "offsetof vcpureq_vm_opts.max_vcpus" => offset_of!(vcpureq_vm_opts, max_vcpus),
        "offsetof vcpureq_vm_opts.kvm_vm_type" => offset_of!(vcpureq_vm_opts, kvm_vm_type),
        "offsetof vcpureq_vm_opts.flags" => offset_of!(vcpureq_vm_opts, flags),
        "sizeof enum vcpureq_backend" => size_of::<vcpureq_backend>(),
        "sizeof enum vcpureq_kick_mechanism" => size_of::<vcpureq_kick_mechanism>(),
        "sizeof enum vcpureq_mode" => size_of::<vcpureq_mode>(),
        "sizeof enum vcpureq_dump_format" => size_of::<vcpureq_dump_format>(),
        "sizeof vcpureq_deadline" => size_of::<vcpureq_deadline>(),
        "alignof vcpureq_deadline" => align_of::<vcpureq_deadline>(),
        "offsetof vcpureq_deadline.size" => offset_of!(vcpureq_deadline, size),
        "offsetof vcpureq_deadline.when" => offset_of!(vcpureq_deadline, when),
        "offsetof vcpureq_deadline.pending" => offset_of!(vcpureq_deadline, pending),
        "offsetof vcpureq_deadline.pending_bits" => offset_of!(vcpureq_deadline, pending_bits),
        "sizeof timespec" => size_of::<timespec>(),
        "offsetof timespec.tv_sec" => offset_of!(timespec, tv_sec),
        "offsetof timespec.tv_nsec" => offset_of!(timespec, tv_nsec),
        "sizeof vcpureq_request_stats" => size_of::<vcpureq_request_stats>(),
        "offsetof vcpureq_request_stats.made" => offset_of!(vcpureq_request_stats, made),
        "offsetof vcpureq_request_stats.handled" => offset_of!(vcpureq_request_stats, handled),
        "offsetof vcpureq_request_stats.signals" => offset_of!(vcpureq_request_stats, signals),
        "offsetof vcpureq_request_stats.waits" => offset_of!(vcpureq_request_stats, waits),
        "sizeof vcpureq_stats" => size_of::<vcpureq_stats>(),
        "offsetof vcpureq_stats.requests_made" => offset_of!(vcpureq_stats, requests_made),
        "offsetof vcpureq_stats.requests_handled" => offset_of!(vcpureq_stats, requests_handled),
        "offsetof vcpureq_stats.kicks" => offset_of!(vcpureq_stats, kicks),
        "offsetof vcpureq_stats.signals_sent" => offset_of!(vcpureq_stats, signals_sent),
        "offsetof vcpureq_stats.signals_coalesced" => offset_of!(vcpureq_stats, signals_coalesced),
        "offsetof vcpureq_stats.wakeups" => offset_of!(vcpureq_stats, wakeups),
        "offsetof vcpureq_stats.acks_waited" => offset_of!(vcpureq_stats, acks_waited),
        "offsetof vcpureq_stats.entries" => offset_of!(vcpureq_stats, entries),
        "offsetof vcpureq_stats.entry_aborts" => offset_of!(vcpureq_stats, entry_aborts),
        "offsetof vcpureq_stats.exits" => offset_of!(vcpureq_stats, exits),
        "offsetof vcpureq_stats.kicked_exits" => offset_of!(vcpureq_stats, kicked_exits),
        "offsetof vcpureq_stats.spurious_exits" => offset_of!(vcpureq_stats, spurious_exits),
        "offsetof vcpureq_stats.blocks" => offset_of!(vcpureq_stats, blocks),
        "offsetof vcpureq_stats.halt_poll_hits" => offset_of!(vcpureq_stats, halt_poll_hits),
        "offsetof vcpureq_stats.interrupts_posted" => offset_of!(vcpureq_stats, interrupts_posted),
        "offsetof vcpureq_stats.interrupts_injected" => offset_of!(vcpureq_stats, interrupts_injected),
        "offsetof vcpureq_stats.foreign_exits" => offset_of!(vcpureq_stats, foreign_exits),
        "offsetof vcpureq_stats.halt_poll_ns" => offset_of!(vcpureq_stats, halt_poll_ns),
        "offsetof vcpureq_stats.ack_rechecks" => offset_of!(vcpureq_stats, ack_rechecks),
        "offsetof vcpureq_stats.acks_at_recheck" => offset_of!(vcpureq_stats, acks_at_recheck),
        "sizeof vcpureq_trace_opts" => size_of::<vcpureq_trace_opts>(),
        "offsetof vcpureq_trace_opts.size" => offset_of!(vcpureq_trace_opts, size),
        "offsetof vcpureq_trace_opts.ring_events" => offset_of!(vcpureq_trace_opts, ring_events),
        "sizeof vcpureq_trace_counts" => size_of::<vcpureq_trace_counts>(),
        "offsetof vcpureq_trace_counts.recorded" => offset_of!(vcpureq_trace_counts, recorded),
        "offsetof vcpureq_trace_counts.lost" => offset_of!(vcpureq_trace_counts, lost),
        "offsetof vcpureq_trace_counts.ring_events" => offset_of!(vcpureq_trace_counts, ring_events),
        "offsetof vcpureq_trace_counts.recording" => offset_of!(vcpureq_trace_counts, recording),

        "VCPUREQ_VERSION" => VCPUREQ_VERSION,
        "VCPUREQ_REQUEST_MASK" => VCPUREQ_REQUEST_MASK,
        "VCPUREQ_REQUEST_NO_WAKEUP" => VCPUREQ_REQUEST_NO_WAKEUP,
        "VCPUREQ_REQUEST_WAIT" => VCPUREQ_REQUEST_WAIT,
        "VCPUREQ_REQUEST_NO_ACTION" => VCPUREQ_REQUEST_NO_ACTION,
        "VCPUREQ_REQUEST_ARCH_BASE" => VCPUREQ_REQUEST_ARCH_BASE,
        "VCPUREQ_REQUEST_NR_MAX" => VCPUREQ_REQUEST_NR_MAX,
        "VCPUREQ_REQUEST_BAD_NR" => VCPUREQ_REQUEST_BAD_NR,
        "VCPUREQ_REQ_TLB_FLUSH" => vcpureq::Request::TLB_FLUSH.raw(),
        "VCPUREQ_REQ_VM_DEAD" => vcpureq::Request::VM_DEAD.raw(),
        "VCPUREQ_REQ_UNBLOCK" => vcpureq::Request::UNBLOCK.raw(),
        "VCPUREQ_REQ_OUTSIDE_GUEST_MODE" => vcpureq::Request::OUTSIDE_GUEST_MODE.raw(),
        "VCPUREQ_ARCH_REQ(0)" => vcpureq::Request::arch::<0>().raw(),
        "VCPUREQ_ARCH_REQ(55)" => vcpureq::Request::arch::<55>().raw(),
        "VCPUREQ_ARCH_REQ_FLAGS(3, VCPUREQ_REQUEST_WAIT)" => vcpureq::Request::arch::<3>().wait().raw(),
        "VCPUREQ_OUTSIDE_GUEST_MODE" => VCPUREQ_OUTSIDE_GUEST_MODE,
        "VCPUREQ_IN_GUEST_MODE" => VCPUREQ_IN_GUEST_MODE,
        "VCPUREQ_EXITING_GUEST_MODE" => VCPUREQ_EXITING_GUEST_MODE,
        "VCPUREQ_READING_SHADOW_PAGE_TABLES" => VCPUREQ_READING_SHADOW_PAGE_TABLES,
        "VCPUREQ_BACKEND_KVM" => VCPUREQ_BACKEND_KVM,
        "VCPUREQ_BACKEND_THREAD" => VCPUREQ_BACKEND_THREAD,
        "VCPUREQ_KICK_DEFAULT" => VCPUREQ_KICK_DEFAULT,
        "VCPUREQ_KICK_SIGMASK" => VCPUREQ_KICK_SIGMASK,
        "VCPUREQ_KICK_IMMEDIATE_EXIT" => VCPUREQ_KICK_IMMEDIATE_EXIT,
        "VCPUREQ_GUEST_KICKED" => VCPUREQ_GUEST_KICKED as i64,
        "VCPUREQ_VM_RETURN_FOREIGN_EINTR" => VCPUREQ_VM_RETURN_FOREIGN_EINTR,
        "VCPUREQ_HALT_POLL_NS_MAX" => VCPUREQ_HALT_POLL_NS_MAX,
        "VCPUREQ_THREAD_MAX_VCPUS" => VCPUREQ_THREAD_MAX_VCPUS,
        "VCPUREQ_RUN_ENTER" => VCPUREQ_RUN_ENTER,
        "VCPUREQ_RUN_EXIT" => VCPUREQ_RUN_EXIT,
        "VCPUREQ_RUN_REQUEST" => VCPUREQ_RUN_REQUEST,
        "VCPUREQ_RUN_AGAIN" => VCPUREQ_RUN_AGAIN,
        "VCPUREQ_RUN_INTR" => VCPUREQ_RUN_INTR,
        "VCPUREQ_WAKE_RUNNABLE" => VCPUREQ_WAKE_RUNNABLE,
        "VCPUREQ_WAKE_INTERRUPT" => VCPUREQ_WAKE_INTERRUPT,
        "VCPUREQ_WAKE_REQUEST" => VCPUREQ_WAKE_REQUEST,
        "VCPUREQ_WAKE_UNBLOCK" => VCPUREQ_WAKE_UNBLOCK,
        "VCPUREQ_WAKE_DEAD" => VCPUREQ_WAKE_DEAD,
        "VCPUREQ_DUMP_TEXT" => VCPUREQ_DUMP_TEXT,
        "VCPUREQ_DUMP_JSON" => VCPUREQ_DUMP_JSON,

        "KVM_GET_API_VERSION" => kvm::KVM_GET_API_VERSION,
        "KVM_CREATE_VM" => kvm::KVM_CREATE_VM,
        "KVM_GET_VCPU_MMAP_SIZE" => kvm::KVM_GET_VCPU_MMAP_SIZE,
        "KVM_CREATE_VCPU" => kvm::KVM_CREATE_VCPU,
        "KVM_SET_USER_MEMORY_REGION" => kvm::KVM_SET_USER_MEMORY_REGION,
        "KVM_SET_TSS_ADDR" => kvm::KVM_SET_TSS_ADDR,
        "KVM_RUN" => kvm::KVM_RUN,
        "KVM_GET_REGS" => kvm::KVM_GET_REGS,
        "KVM_SET_REGS" => kvm::KVM_SET_REGS,
        "KVM_GET_SREGS" => kvm::KVM_GET_SREGS,
        "KVM_SET_SREGS" => kvm::KVM_SET_SREGS,
        "KVM_CREATE_IRQCHIP" => kvm::KVM_CREATE_IRQCHIP,
        "KVM_SET_MP_STATE" => kvm::KVM_SET_MP_STATE,
        "KVM_EXIT_IO" => kvm::KVM_EXIT_IO,
        "KVM_EXIT_HLT" => kvm::KVM_EXIT_HLT,
        "KVM_EXIT_INTR" => kvm::KVM_EXIT_INTR,
        "sizeof kvm_regs" => size_of::<kvm::kvm_regs>(),
        "sizeof kvm_sregs" => size_of::<kvm::kvm_sregs>(),
        "sizeof kvm_segment" => size_of::<kvm::kvm_segment>(),
        "sizeof kvm_dtable" => size_of::<kvm::kvm_dtable>(),
        "offsetof kvm_sregs.cs" => offset_of!(kvm::kvm_sregs, cs),
        "offsetof kvm_sregs.ds" => offset_of!(kvm::kvm_sregs, ds),
        "offsetof kvm_sregs.ss" => offset_of!(kvm::kvm_sregs, ss),
        "offsetof kvm_sregs.gdt" => offset_of!(kvm::kvm_sregs, gdt),
        "offsetof kvm_sregs.cr0" => offset_of!(kvm::kvm_sregs, cr0),
        "offsetof kvm_sregs.interrupt_bitmap" => offset_of!(kvm::kvm_sregs, interrupt_bitmap),
        "offsetof kvm_segment.selector" => offset_of!(kvm::kvm_segment, selector),
        "offsetof kvm_segment.type" => offset_of!(kvm::kvm_segment, type_),
        "offsetof kvm_segment.unusable" => offset_of!(kvm::kvm_segment, unusable),
        "offsetof kvm_regs.rsp" => offset_of!(kvm::kvm_regs, rsp),
        "offsetof kvm_regs.rip" => offset_of!(kvm::kvm_regs, rip),
        "offsetof kvm_regs.rflags" => offset_of!(kvm::kvm_regs, rflags),
        "sizeof kvm_userspace_memory_region" => size_of::<kvm::kvm_userspace_memory_region>(),
        "offsetof kvm_userspace_memory_region.guest_phys_addr" => offset_of!(kvm::kvm_userspace_memory_region, guest_phys_addr),
        "offsetof kvm_userspace_memory_region.userspace_addr" => offset_of!(kvm::kvm_userspace_memory_region, userspace_addr),
        "offsetof kvm_run.immediate_exit" => offset_of!(kvm::kvm_run_head, immediate_exit),
        "offsetof kvm_run.exit_reason" => offset_of!(kvm::kvm_run_head, exit_reason),
        "offsetof kvm_run.io" => offset_of!(kvm::kvm_run_head, io_direction),
        "offsetof kvm_run.io.port" => offset_of!(kvm::kvm_run_head, io_port),
        "offsetof kvm_run.io.data_offset" => offset_of!(kvm::kvm_run_head, io_data_offset),
    }
}

#[test]
fn declarations_match_the_header() {
    let c: BTreeMap<String, u64> = abi_rows().into_iter().collect();
    let rust: BTreeMap<String, u64> = rust_rows().into_iter().collect();
    let mut bad = Vec::new();
    for (name, v) in &c {
        match rust.get(name) {
            None => bad.push(format!(
                "{name}: in abi/check.c, not checked on the Rust side"
            )),
            Some(r) if r != v => bad.push(format!("{name}: C says {v}, Rust {r}")),
            _ => {}
        }
    }
    for name in rust.keys().filter(|n| !c.contains_key(*n)) {
        bad.push(format!("{name}: on the Rust side, not in abi/check.c"));
    }
    assert!(
        bad.is_empty(),
        "the hand-written FFI disagrees with the header:\n  {}",
        bad.join("\n  ")
    );
    assert!(c.len() >= 140, "only {} rows compared", c.len());
}

/// The version of the library linked is the one the declarations are for.
#[test]
fn linked_library_version() {
    assert_eq!(
        vcpureq::version(),
        VCPUREQ_VERSION,
        "linked {}",
        vcpureq::LINKED
    );
    assert_eq!(vcpureq::version_string(), "0.1.0");
    eprintln!("linked: {}", vcpureq::LINKED);
}

/// Every vcpureq_* function of the header is declared in sys.rs (a
/// function added to the header and not bound fails here).
#[test]
fn every_header_function_is_declared() {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../include/vcpureq/vcpureq.h"
    );
    let Ok(h) = std::fs::read_to_string(root) else {
        common::skip(
            "abi::every_header_function_is_declared",
            "the repository's header is not at ../../include",
        );
        return;
    };
    let sys = include_str!("../src/sys.rs");
    let mut missing = Vec::new();
    for line in h.lines() {
        let l = line.trim_start();
        if l.starts_with("#") || l.starts_with("*") || l.starts_with("/*") {
            continue;
        }
        if let Some(i) = l.find("vcpureq_") {
            let rest = &l[i..];
            if let Some(j) = rest.find('(') {
                let name = &rest[..j];
                if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.ends_with("_fn")
                    && !sys.contains(&format!("pub fn {name}("))
                {
                    missing.push(name.to_string());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "declared in the header, not in src/sys.rs: {missing:?}"
    );
}
