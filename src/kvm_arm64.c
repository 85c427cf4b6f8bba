/* SPDX-License-Identifier: MIT */
/*
 * The KVM backend's arm64 part (src/kvm_arch.h).  What differs from x86:
 * - a vCPU runs only after KVM_ARM_VCPU_INIT (vcpureq does it for the
 *   vCPUs it creates: the preferred target, PSCI 0.2; a VMM that needs
 *   other features initialises its vCPUs itself and adopts them);
 * - guest exits to the VMM are MMIO (no port I/O): an MMIO exit completes
 *   on the next KVM_RUN, as an x86 I/O exit does;
 * - the interrupt controller is the vGIC: in the kernel (KVM_CREATE_DEVICE
 *   KVM_DEV_TYPE_ARM_VGIC_V3 or _V2) or in the VMM, which then drives each
 *   vCPU's IRQ line with KVM_IRQ_LINE (KVM_ARM_IRQ_TYPE_CPU);
 * - wfi never exits to user space: with or without an in-kernel vGIC the
 *   vCPU sleeps inside KVM_RUN until an interrupt or a signal (a kick).
 */
#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "internal.h"
#include "kvm_arch.h"

const char vcpureq__kvm_arch_no_kvm_hint[] =
	"boot the kernel at EL2 with KVM built in or loaded (dmesg | grep kvm says why not)";

int vcpureq__kvm_arch_vcpu_init(struct vcpureq_vcpu *vcpu, int vm_fd)
{
	struct kvm_vcpu_init init;

	memset(&init, 0, sizeof(init));
	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return vcpureq__errf(-errno, "KVM_ARM_PREFERRED_TARGET: %s",
				     strerror(errno));
	init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
	if (ioctl(vcpu->fd, KVM_ARM_VCPU_INIT, &init) < 0)
		return vcpureq__errf(-errno,
				     "KVM_ARM_VCPU_INIT of vCPU %lu (target %u, PSCI 0.2): %s",
				     vcpu->id, init.target, strerror(errno));
	return 0;
}

/* The vCPU's IRQ line as KVM_IRQ_LINE names it: type CPU, the vCPU's
 * index (KVM's creation order, taken to be its id: see
 * vcpureq_post_interrupt() in the header), line @num. */
static uint32_t cpu_line(unsigned long idx, uint32_t num)
{
	return (uint32_t)KVM_ARM_IRQ_TYPE_CPU << KVM_ARM_IRQ_TYPE_SHIFT |
	       (uint32_t)((idx >> 8) & KVM_ARM_IRQ_VCPU2_MASK)
		       << KVM_ARM_IRQ_VCPU2_SHIFT |
	       (uint32_t)(idx & KVM_ARM_IRQ_VCPU_MASK) << KVM_ARM_IRQ_VCPU_SHIFT |
	       num << KVM_ARM_IRQ_NUM_SHIFT;
}

/* KVM_IRQ_LINE of a CPU line refuses with ENXIO when the VM has an
 * in-kernel vGIC, before it looks at the vCPU or the line; asked for a
 * line that does not exist (2: neither IRQ nor FIQ) it changes nothing
 * and answers EINVAL without one.  (The vGIC is created before the vCPUs
 * are added to vcpureq: KVM_CREATE_DEVICE, then the vCPUs, then its
 * KVM_DEV_ARM_VGIC_CTRL_INIT.) */
bool vcpureq__kvm_arch_irqchip_in_kernel(int vm_fd, int vcpu_fd)
{
	struct kvm_irq_level probe = { .irq = cpu_line(0, 2), .level = 0 };

	(void)vcpu_fd;
	return ioctl(vm_fd, KVM_IRQ_LINE, &probe) < 0 && errno == ENXIO;
}

bool vcpureq__kvm_arch_needs_completion(uint32_t reason)
{
	return reason == KVM_EXIT_MMIO;
}

/* User-space irqchip: the vCPU's IRQ line is high while the IRR holds a
 * vector (level-triggered, as a GIC's output to the CPU is); KVM takes
 * the interrupt when the guest unmasks it (PSTATE.I), and wakes a wfi.
 * The guest acknowledges at the VMM's interrupt controller (an MMIO
 * read, as a GIC's IAR), whose handler takes the vector with
 * vcpureq_vcpu_take_interrupt(); the entry after the last one lowers the
 * line.  Changed only when it must (irq_line: what vcpureq last set). */
void vcpureq__kvm_arch_inject(struct vcpureq_vcpu *vcpu)
{
	bool want = vcpureq__irr_pending(vcpu);
	struct kvm_irq_level irq;

	if (want == vcpu->irq_line)
		return;
	irq.irq = cpu_line(vcpu->id, KVM_ARM_IRQ_CPU_IRQ);
	irq.level = want;
	/* (interrupts_injected counts in vcpureq_vcpu_take_interrupt().) */
	if (ioctl(vcpu->vm->vm_fd, KVM_IRQ_LINE, &irq) == 0)
		vcpu->irq_line = want;
}

bool vcpureq__kvm_arch_own_exit(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu; /* no interrupt window on arm64: the line is level */
	return false;
}

void vcpureq__kvm_arch_on_park(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu; /* no KVM_KVMCLOCK_CTRL on arm64 */
}
