/* SPDX-License-Identifier: MIT */
/*
 * The backend interface: the few operations in which "guest mode" differs
 * between a real vCPU in KVM_RUN (two kick mechanisms) and the thread
 * backend's callback.  The protocol (vcpu_mode.c, run.c, kick.c, block.c)
 * calls these and never asks which backend it runs on.
 *
 * Every operation runs on the vCPU's bound thread unless it says
 * otherwise; none may block except run_guest (which is the guest).
 */
#ifndef VCPUREQ_BACKEND_H
#define VCPUREQ_BACKEND_H

#include <stddef.h>

struct vcpureq_vm;
struct vcpureq_vcpu;
struct kvm_run;

/* What ended a guest-mode instance (classify_exit). */
enum vcpureq__exit_kind {
	VCPUREQ__EXIT_GUEST = 0,   /* an exit for the VMM */
	VCPUREQ__EXIT_KICKED = 1,  /* a kick of ours (now or a stale one) */
	VCPUREQ__EXIT_AGAIN = 2,   /* handled inside: interrupt window, EAGAIN */
	VCPUREQ__EXIT_FOREIGN = 3, /* EINTR from a signal that is not ours */
};

struct vcpureq__backend {
	const char *name;
	/* The kick mechanism it implements (never DEFAULT). */
	enum vcpureq_kick_mechanism kick;

	/* VM and vCPU lifetime (any thread, under the VM's add lock for the
	 * vCPU ones).  vm_open: @vm_fd < 0 creates the VM, else wraps it.
	 * vcpu_adopt: @run NULL maps one.  vcpu_release / vm_close undo
	 * what vcpureq itself opened or mapped, and nothing else. */
	int (*vm_open)(struct vcpureq_vm *vm, int vm_fd);
	void (*vm_close)(struct vcpureq_vm *vm);
	int (*vcpu_create)(struct vcpureq_vcpu *vcpu);
	int (*vcpu_adopt)(struct vcpureq_vcpu *vcpu, int fd,
			  struct kvm_run *run, size_t run_size);
	void (*vcpu_release)(struct vcpureq_vcpu *vcpu);

	/* bind: vcpureq__self is set and the kick signal is blocked in this
	 * thread; make the thread ready to be kicked (a mask for KVM_RUN, or
	 * the handler's pointer and then unblock).  unbind: the signal is
	 * blocked again and no kicker is in flight; undo bind. */
	int (*bind)(struct vcpureq_vcpu *vcpu);
	void (*unbind)(struct vcpureq_vcpu *vcpu);

	/* Before IN_GUEST_MODE is published: forget the kicks of instances
	 * that have ended (immediate_exit, the kicked flag, a kick signal
	 * left pending).  After it, a new kick may be on its way, and
	 * forgetting it would strand a request. */
	void (*prepare_entry)(struct vcpureq_vcpu *vcpu);
	/* A kick signal was sent for an instance that has ended (an aborted
	 * entry, a kicked exit): take it before the next entry if the
	 * mechanism leaves it pending.  May be NULL. */
	void (*stale_kick)(struct vcpureq_vcpu *vcpu);
	/* After the final check, before entry: inject from the interrupt
	 * mailbox (user-space irqchip).  May be NULL. */
	void (*inject)(struct vcpureq_vcpu *vcpu);
	/* One guest entry for vcpureq_vcpu_run(): KVM_RUN's 0 or -errno;
	 * the callback's value.  NULL where the VMM must run the guest. */
	int (*run_guest)(struct vcpureq_vcpu *vcpu);
	/* After the instance ended and OUTSIDE is published: what ended it.
	 * @ret as given to vcpureq_vcpu_exit(), @left the mode it left.
	 * Returns enum vcpureq__exit_kind or -errno (message set). */
	int (*classify_exit)(struct vcpureq_vcpu *vcpu, int ret, int left);
	/* A request from the vCPU thread itself while in guest mode (a signal
	 * handler, the thread backend's callback): end the entry without a
	 * signal.  May run in a signal handler: async-signal-safe. */
	void (*self_kick)(struct vcpureq_vcpu *vcpu);
	/* Complete a pending I/O or MMIO exit without running the guest
	 * (api.rst: it completes only on the next KVM_RUN).  May be NULL. */
	int (*complete_io)(struct vcpureq_vcpu *vcpu);
	/* The vCPU parks for a pause (KVM: KVM_KVMCLOCK_CTRL).  May be
	 * NULL. */
	void (*on_park)(struct vcpureq_vcpu *vcpu);
};

extern const struct vcpureq__backend vcpureq__backend_kvm_sigmask;
extern const struct vcpureq__backend vcpureq__backend_kvm_immediate_exit;
extern const struct vcpureq__backend vcpureq__backend_thread;

#endif /* VCPUREQ_BACKEND_H */
