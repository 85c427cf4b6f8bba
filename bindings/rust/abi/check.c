/* SPDX-License-Identifier: MIT */
/*
 * The C side of the crate's ABI check: sizes, field offsets and constants
 * as the C compiler sees them in <vcpureq/vcpureq.h> (and <linux/kvm.h>
 * for the ioctls the tests and the example declare by hand).  build.rs
 * compiles this against the header of the library it links;
 * tests/abi.rs compares every row with the value the hand-written Rust
 * declarations give, by name: a row missing on either side or a
 * different value fails the test.
 */
#include <stddef.h>
#include <linux/kvm.h>
#include <vcpureq/vcpureq.h>

struct vcpureq_rs_abi_row {
	const char *name;
	unsigned long long value;
};

#define SZ(t) { "sizeof " #t, sizeof(struct t) }
#define AL(t) { "alignof " #t, _Alignof(struct t) }
#define OFF(t, f) { "offsetof " #t "." #f, offsetof(struct t, f) }
#define C(k) { #k, (unsigned long long)(k) }

const struct vcpureq_rs_abi_row vcpureq_rs_abi[] = {
	SZ(vcpureq_vm_opts), AL(vcpureq_vm_opts),
	OFF(vcpureq_vm_opts, size), OFF(vcpureq_vm_opts, backend),
	OFF(vcpureq_vm_opts, nr_vcpus), OFF(vcpureq_vm_opts, kick_signal),
	OFF(vcpureq_vm_opts, handle_requests), OFF(vcpureq_vm_opts, runnable),
	OFF(vcpureq_vm_opts, guest), OFF(vcpureq_vm_opts, opaque),
	OFF(vcpureq_vm_opts, halt_poll_ns), OFF(vcpureq_vm_opts, kick),
	OFF(vcpureq_vm_opts, max_vcpus), OFF(vcpureq_vm_opts, kvm_vm_type),
	OFF(vcpureq_vm_opts, flags),
	{ "sizeof enum vcpureq_backend", sizeof(enum vcpureq_backend) },
	{ "sizeof enum vcpureq_kick_mechanism", sizeof(enum vcpureq_kick_mechanism) },
	{ "sizeof enum vcpureq_mode", sizeof(enum vcpureq_mode) },
	{ "sizeof enum vcpureq_dump_format", sizeof(enum vcpureq_dump_format) },
	SZ(vcpureq_deadline), AL(vcpureq_deadline),
	OFF(vcpureq_deadline, size), OFF(vcpureq_deadline, when),
	OFF(vcpureq_deadline, pending), OFF(vcpureq_deadline, pending_bits),
	SZ(timespec), OFF(timespec, tv_sec), OFF(timespec, tv_nsec),
	SZ(vcpureq_request_stats), OFF(vcpureq_request_stats, made),
	OFF(vcpureq_request_stats, handled), OFF(vcpureq_request_stats, signals),
	OFF(vcpureq_request_stats, waits),
	SZ(vcpureq_stats),
	OFF(vcpureq_stats, requests_made), OFF(vcpureq_stats, requests_handled),
	OFF(vcpureq_stats, kicks), OFF(vcpureq_stats, signals_sent),
	OFF(vcpureq_stats, signals_coalesced), OFF(vcpureq_stats, wakeups),
	OFF(vcpureq_stats, acks_waited), OFF(vcpureq_stats, entries),
	OFF(vcpureq_stats, entry_aborts), OFF(vcpureq_stats, exits),
	OFF(vcpureq_stats, kicked_exits), OFF(vcpureq_stats, spurious_exits),
	OFF(vcpureq_stats, blocks), OFF(vcpureq_stats, halt_poll_hits),
	OFF(vcpureq_stats, interrupts_posted),
	OFF(vcpureq_stats, interrupts_injected),
	OFF(vcpureq_stats, foreign_exits), OFF(vcpureq_stats, halt_poll_ns),
	OFF(vcpureq_stats, ack_rechecks), OFF(vcpureq_stats, acks_at_recheck),
	SZ(vcpureq_trace_opts), OFF(vcpureq_trace_opts, size),
	OFF(vcpureq_trace_opts, ring_events),
	SZ(vcpureq_trace_counts), OFF(vcpureq_trace_counts, recorded),
	OFF(vcpureq_trace_counts, lost), OFF(vcpureq_trace_counts, ring_events),
	OFF(vcpureq_trace_counts, recording),

	C(VCPUREQ_VERSION),
	C(VCPUREQ_REQUEST_MASK), C(VCPUREQ_REQUEST_NO_WAKEUP),
	C(VCPUREQ_REQUEST_WAIT), C(VCPUREQ_REQUEST_NO_ACTION),
	C(VCPUREQ_REQUEST_ARCH_BASE), C(VCPUREQ_REQUEST_NR_MAX),
	C(VCPUREQ_REQUEST_BAD_NR),
	C(VCPUREQ_REQ_TLB_FLUSH), C(VCPUREQ_REQ_VM_DEAD), C(VCPUREQ_REQ_UNBLOCK),
	C(VCPUREQ_REQ_OUTSIDE_GUEST_MODE),
	C(VCPUREQ_ARCH_REQ(0)), C(VCPUREQ_ARCH_REQ(55)),
	C(VCPUREQ_ARCH_REQ_FLAGS(3, VCPUREQ_REQUEST_WAIT)),
	C(VCPUREQ_OUTSIDE_GUEST_MODE), C(VCPUREQ_IN_GUEST_MODE),
	C(VCPUREQ_EXITING_GUEST_MODE), C(VCPUREQ_READING_SHADOW_PAGE_TABLES),
	C(VCPUREQ_BACKEND_KVM), C(VCPUREQ_BACKEND_THREAD),
	C(VCPUREQ_KICK_DEFAULT), C(VCPUREQ_KICK_SIGMASK),
	C(VCPUREQ_KICK_IMMEDIATE_EXIT),
	{ "VCPUREQ_GUEST_KICKED", (unsigned long long)(long long)VCPUREQ_GUEST_KICKED },
	C(VCPUREQ_VM_RETURN_FOREIGN_EINTR), C(VCPUREQ_HALT_POLL_NS_MAX),
	C(VCPUREQ_THREAD_MAX_VCPUS),
	C(VCPUREQ_RUN_ENTER), C(VCPUREQ_RUN_EXIT), C(VCPUREQ_RUN_REQUEST),
	C(VCPUREQ_RUN_AGAIN), C(VCPUREQ_RUN_INTR),
	C(VCPUREQ_WAKE_RUNNABLE), C(VCPUREQ_WAKE_INTERRUPT),
	C(VCPUREQ_WAKE_REQUEST), C(VCPUREQ_WAKE_UNBLOCK), C(VCPUREQ_WAKE_DEAD),
	C(VCPUREQ_DUMP_TEXT), C(VCPUREQ_DUMP_JSON),

	/* <linux/kvm.h>: what tests/common/kvm.rs and the example declare. */
	C(KVM_GET_API_VERSION), C(KVM_CREATE_VM), C(KVM_GET_VCPU_MMAP_SIZE),
	C(KVM_CREATE_VCPU), C(KVM_SET_USER_MEMORY_REGION), C(KVM_SET_TSS_ADDR),
	C(KVM_RUN), C(KVM_GET_REGS), C(KVM_SET_REGS), C(KVM_GET_SREGS),
	C(KVM_SET_SREGS), C(KVM_CREATE_IRQCHIP), C(KVM_SET_MP_STATE),
	C(KVM_EXIT_IO), C(KVM_EXIT_HLT), C(KVM_EXIT_INTR),
	SZ(kvm_regs), SZ(kvm_sregs), SZ(kvm_segment), SZ(kvm_dtable),
	OFF(kvm_sregs, cs), OFF(kvm_sregs, ds), OFF(kvm_sregs, ss),
	OFF(kvm_sregs, gdt), OFF(kvm_sregs, cr0), OFF(kvm_sregs, interrupt_bitmap),
	OFF(kvm_segment, selector), OFF(kvm_segment, type),
	OFF(kvm_segment, unusable),
	OFF(kvm_regs, rsp), OFF(kvm_regs, rip), OFF(kvm_regs, rflags),
	SZ(kvm_userspace_memory_region),
	OFF(kvm_userspace_memory_region, guest_phys_addr),
	OFF(kvm_userspace_memory_region, userspace_addr),
	OFF(kvm_run, immediate_exit), OFF(kvm_run, exit_reason),
	OFF(kvm_run, io),
	{ "offsetof kvm_run.io.port", offsetof(struct kvm_run, io.port) },
	{ "offsetof kvm_run.io.data_offset", offsetof(struct kvm_run, io.data_offset) },
	{ 0, 0 },
};
