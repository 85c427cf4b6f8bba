/* SPDX-License-Identifier: MIT */
/*
 * The KVM backend: guest mode is ioctl(KVM_RUN) on a real vCPU.
 *
 * The kick signal, "variant A": the signal is blocked in the vCPU thread at
 * all times, and KVM_SET_SIGNAL_MASK gives KVM_RUN a mask with it unblocked.
 * KVM applies that mask only for the duration of the ioctl and checks for
 * pending signals before every entry into the guest, so a kick sent at any
 * time after the final request check (run.c, step 4) is either pending when
 * KVM_RUN starts (immediate -EINTR) or interrupts the running guest: the
 * user-space equivalent of "enable interrupts atomically when entering the
 * guest".  No handler runs; the pending signal is taken with one
 * sigtimedwait() after a kicked exit, once the requests are handled and
 * before the next IN_GUEST_MODE publish (run.c, drain_pending).  Why not variant B (a handler that
 * sets kvm_run->immediate_exit): it needs the signal unblocked in the vCPU
 * thread, so every late kick lands in the VMM's own code as a handler call
 * and an EINTR from whatever system call it was in, and it costs a signal
 * frame and rt_sigreturn per kick where A costs one sigtimedwait; see
 * docs/protocol.md for the numbers measured on this machine.
 *
 * immediate_exit is still used, for two things only the vCPU thread does:
 * completing a pending I/O exit without running the guest, and a request
 * made from the vCPU thread itself while in guest mode (a signal handler).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define KVM_DEV "/dev/kvm"

static int need_cap(int kvm_fd, int cap, const char *name)
{
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap) <= 0)
		return vcpureq__errf(-ENOTSUP,
				     "%s lacks capability %s, which vcpureq needs; use a newer kernel or the thread backend",
				     KVM_DEV, name);
	return 0;
}

int vcpureq__kvm_vm_init(struct vcpureq_vm *vm)
{
	int r, mmap_size, max;
	unsigned int i;

	vm->kvm_fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int e = errno;

		if (e == ENOENT || e == ENODEV || e == ENXIO)
			return vcpureq__errf(-e,
					     "%s: %s; load the kvm module (kvm_intel/kvm_amd) and enable virtualization, or use the thread backend",
					     KVM_DEV, strerror(e));
		if (e == EACCES || e == EPERM)
			return vcpureq__errf(-e,
					     "%s: %s; add this user to the 'kvm' group (or fix the device's permissions)",
					     KVM_DEV, strerror(e));
		return vcpureq__errf(-e, "%s: %s", KVM_DEV, strerror(e));
	}
	r = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION)
		return vcpureq__errf(-ENOTSUP, "%s: KVM API version %d, need %d",
				     KVM_DEV, r, KVM_API_VERSION);
	if ((r = need_cap(vm->kvm_fd, KVM_CAP_IMMEDIATE_EXIT,
			  "KVM_CAP_IMMEDIATE_EXIT")) ||
	    (r = need_cap(vm->kvm_fd, KVM_CAP_USER_MEMORY,
			  "KVM_CAP_USER_MEMORY")))
		return r;
	max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && vm->nr_vcpus > (unsigned int)max)
		return vcpureq__errf(-EINVAL,
				     "%u vCPUs requested, %s allows %d (KVM_CAP_MAX_VCPUS)",
				     vm->nr_vcpus, KVM_DEV, max);
	mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < (int)sizeof(struct kvm_run))
		return vcpureq__errf(-ENOTSUP, "KVM_GET_VCPU_MMAP_SIZE failed: %s",
				     strerror(errno));
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return vcpureq__errf(-errno, "KVM_CREATE_VM: %s", strerror(errno));
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct vcpureq_vcpu *v = &vm->vcpus[i];
		void *p;

		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (v->fd < 0)
			return vcpureq__errf(-errno, "KVM_CREATE_VCPU %u: %s", i,
					     strerror(errno));
		p = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, v->fd, 0);
		if (p == MAP_FAILED)
			return vcpureq__errf(-errno, "mmap of kvm_run for vCPU %u: %s",
					     i, strerror(errno));
		v->run = p;
		v->run_size = (size_t)mmap_size;
	}
	return 0;
}

void vcpureq__kvm_vm_fini(struct vcpureq_vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		struct vcpureq_vcpu *v = &vm->vcpus[i];

		if (v->run)
			munmap(v->run, v->run_size);
		v->run = NULL;
		if (v->fd >= 0)
			close(v->fd);
		v->fd = -1;
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
}

int vcpureq__kvm_bind(struct vcpureq_vcpu *vcpu, const sigset_t *guest_mask)
{
	/* The kernel's sigset for KVM_SET_SIGNAL_MASK is 8 bytes on the
	 * 64-bit architectures KVM runs on (_NSIG / 8). */
	union {
		struct kvm_signal_mask m;
		unsigned char buf[sizeof(struct kvm_signal_mask) + 8];
	} km;

	km.m.len = 8;
	memcpy(km.buf + sizeof(struct kvm_signal_mask), guest_mask, 8);
	if (ioctl(vcpu->fd, KVM_SET_SIGNAL_MASK, &km.m) < 0)
		return vcpureq__errf(-errno, "KVM_SET_SIGNAL_MASK: %s",
				     strerror(errno));
	return 0;
}

void vcpureq__kvm_self_kick(struct vcpureq_vcpu *vcpu)
{
	/* Only this thread (and the kernel, when KVM_RUN starts) reads it. */
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_RELAXED);
}

void vcpureq__kvm_clear_immediate_exit(struct vcpureq_vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_RELAXED);
}

/* Exits whose operation completes only on the next KVM_RUN (api.rst). */
static bool needs_completion(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_IO:
	case KVM_EXIT_MMIO:
	case KVM_EXIT_X86_RDMSR:
	case KVM_EXIT_X86_WRMSR:
	case KVM_EXIT_HYPERCALL:
		return true;
	default:
		return false;
	}
}

int vcpureq__kvm_complete_io(struct vcpureq_vcpu *vcpu)
{
	int r;

	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_RELAXED);
	r = ioctl(vcpu->fd, KVM_RUN, 0);
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_RELAXED);
	vcpu->io_pending = false;
	if (r < 0 && errno != EINTR)
		return vcpureq__errf(-errno, "KVM_RUN (completing I/O): %s",
				     strerror(errno));
	/* A kick may have been pending too; it has done its job. */
	vcpu->drain_pending = true;
	return 0;
}

/* Inject from the IRR with KVM_INTERRUPT when the guest takes it, else ask
 * for an interrupt-window exit (no in-kernel irqchip). */
static void inject(struct vcpureq_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	if (!vcpureq__irr_pending(vcpu)) {
		run->request_interrupt_window = 0;
		return;
	}
	if (run->ready_for_interrupt_injection && run->if_flag) {
		struct kvm_interrupt irq;
		int v = vcpureq__irr_take_highest(vcpu);

		irq.irq = (uint32_t)v;
		if (ioctl(vcpu->fd, KVM_INTERRUPT, &irq) == 0)
			VCPUREQ__STAT_INC(vcpu, vstats, interrupts_injected);
		else
			vcpu->irr[v / 64] |= UINT64_C(1) << (v % 64);
	}
	run->request_interrupt_window = vcpureq__irr_pending(vcpu);
}

int vcpureq__kvm_enter(struct vcpureq_vcpu *vcpu)
{
	int r;

	inject(vcpu);
	r = ioctl(vcpu->fd, KVM_RUN, 0);
	vcpu->io_pending = false;
	if (r < 0) {
		if (errno == EINTR) {
			/* The kick signal is pending (blocked here); it is
			 * taken just before the next IN_GUEST_MODE publish,
			 * after the requests are handled, so the drain is
			 * off the kick-to-handler path. */
			vcpu->drain_pending = true;
			return 1;
		}
		if (errno == EAGAIN)
			return 2;
		return vcpureq__errf(-errno, "KVM_RUN: %s", strerror(errno));
	}
	if (vcpu->run->exit_reason == KVM_EXIT_IRQ_WINDOW_OPEN)
		return 2;
	vcpu->io_pending = needs_completion(vcpu->run->exit_reason);
	return 0;
}

int vcpureq_vm_kvm_fd(const struct vcpureq_vm *vm)
{
	if (!vm || vm->opts.backend != VCPUREQ_BACKEND_KVM)
		return vcpureq__err(-ENOTSUP, "not a KVM-backend VM");
	return vm->vm_fd;
}

int vcpureq_vcpu_kvm_fd(const struct vcpureq_vcpu *vcpu)
{
	if (!vcpu || !vcpu->run)
		return vcpureq__err(-ENOTSUP, "not a KVM-backend vCPU");
	return vcpu->fd;
}

struct kvm_run *vcpureq_vcpu_kvm_run(const struct vcpureq_vcpu *vcpu)
{
	return vcpu ? vcpu->run : NULL;
}
