/* SPDX-License-Identifier: MIT */
/*
 * The KVM backend's x86 part (src/kvm_arch.h): the LAPIC probe, port I/O
 * and MSR exits, injection with KVM_INTERRUPT and the interrupt window,
 * KVM_KVMCLOCK_CTRL.  Also what architectures other than arm64 build (no
 * LAPIC there: the probe answers false).
 */
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "internal.h"
#include "kvm_arch.h"

const char vcpureq__kvm_arch_no_kvm_hint[] =
	"load the kvm module (kvm_intel/kvm_amd) and enable virtualization";

int vcpureq__kvm_arch_vcpu_init(struct vcpureq_vcpu *vcpu, int vm_fd)
{
	(void)vcpu; /* a created x86 vCPU runs from its reset state */
	(void)vm_fd;
	return 0;
}

/* An in-kernel LAPIC (KVM_CREATE_IRQCHIP or split irqchip) answers
 * KVM_GET_LAPIC; without one KVM refuses it with EINVAL. */
bool vcpureq__kvm_arch_irqchip_in_kernel(int vm_fd, int vcpu_fd)
{
	(void)vm_fd;
#if defined(__x86_64__) || defined(__i386__)
	struct kvm_lapic_state lapic;

	return ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) == 0;
#else
	(void)vcpu_fd;
	return false;
#endif
}

bool vcpureq__kvm_arch_needs_completion(uint32_t reason)
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

/* Inject from the IRR with KVM_INTERRUPT when the guest takes it, else ask
 * for an interrupt-window exit (user-space irqchip only: the mailbox
 * refuses vCPUs with an in-kernel LAPIC, so the IRR stays empty there).
 * request_interrupt_window is touched only while vcpureq needs it
 * (window_requested), so a VMM that asks for the window itself keeps it. */
void vcpureq__kvm_arch_inject(struct vcpureq_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	if (!vcpureq__irr_pending(vcpu)) {
		if (vcpu->window_requested) {
			run->request_interrupt_window = 0;
			vcpu->window_requested = false;
		}
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
	vcpu->window_requested = vcpureq__irr_pending(vcpu);
	run->request_interrupt_window = vcpu->window_requested;
}

bool vcpureq__kvm_arch_own_exit(struct vcpureq_vcpu *vcpu)
{
	return vcpu->run->exit_reason == KVM_EXIT_IRQ_WINDOW_OPEN &&
	       vcpu->window_requested; /* ours: inject on re-entry */
}

/* A paused kvmclock guest must not take the stopped time for a soft
 * lock-up: KVM_KVMCLOCK_CTRL sets PVCLOCK_GUEST_STOPPED for it (what
 * Firecracker and cloud-hypervisor do on every pause).  A guest without
 * kvmclock answers EINVAL: nothing to tell it. */
void vcpureq__kvm_arch_on_park(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu;
#ifdef KVM_KVMCLOCK_CTRL
	(void)ioctl(vcpu->fd, KVM_KVMCLOCK_CTRL, 0);
#endif
}
