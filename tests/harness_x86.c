/* SPDX-License-Identifier: MIT */
/*
 * The harness's x86 part (tests/harness_arch.h): 16-bit real-mode guest
 * code (tests/guest.S) with its interrupt vector table, segment
 * registers, the in-kernel irqchip (full or split), port I/O exits.
 */
#include "harness_arch.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

extern const uint8_t vg_code_start[], vg_code_end[];
extern const uint8_t vg_spin[], vg_out[], vg_halt[], vg_irq[],
	vg_irq_handler[], vg_in[], vg_pic[], vg_pic_handler[];

const uint32_t h_irqchip_line = 0; /* IRQ0 */

const bool h_kick_ends_inkernel_halt = false;

uint32_t h_prog_gpa(enum h_prog p)
{
	const uint8_t *at = p == H_SPIN ? vg_spin : p == H_OUT ? vg_out :
			    p == H_HALT ? vg_halt : p == H_IRQ ? vg_irq :
			    p == H_PIC ? vg_pic : vg_in;

	return H_CODE_GPA + (uint32_t)(at - vg_code_start);
}

void h_arch_load(uint8_t *mem)
{
	uint16_t *ivt;

	memcpy(mem + H_CODE_GPA, vg_code_start,
	       (size_t)(vg_code_end - vg_code_start));
	ivt = (uint16_t *)(mem + H_IRQ_VECTOR * 4);
	ivt[0] = (uint16_t)(H_CODE_GPA + (vg_irq_handler - vg_code_start));
	ivt[1] = 0;
	ivt = (uint16_t *)(mem + H_PIC_VECTOR * 4);
	ivt[0] = (uint16_t)(H_CODE_GPA + (vg_pic_handler - vg_code_start));
	ivt[1] = 0;
}

static void set_seg(struct kvm_segment *s, uint32_t base)
{
	s->base = base;
	s->selector = (uint16_t)(base >> 4);
	s->limit = 0xffff;
}

int h_arch_set_regs(struct h_vm *h, unsigned int id, enum h_prog prog, int fd)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	set_seg(&sregs.cs, 0);
	set_seg(&sregs.ds, H_DATA_GPA(id));
	set_seg(&sregs.es, H_DATA_GPA(id));
	set_seg(&sregs.ss, H_STACK_GPA(id));
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = h_prog_gpa(prog);
	regs.rsp = 0xfe;
	regs.rflags = 0x2;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	if (h->flags & (H_F_IRQCHIP | H_F_SPLIT_IRQCHIP)) {
		/* With an in-kernel LAPIC, application processors wait for
		 * INIT/SIPI; start every vCPU at once, as VMMs that load
		 * the guest's state themselves do. */
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

		if (ioctl(fd, KVM_SET_MP_STATE, &mp) < 0)
			return -errno;
	}
	return 0;
}

/* VM-wide setup a production VMM does before its first vCPU: a full
 * in-kernel irqchip, or a split one (LAPIC in the kernel, PIC and IOAPIC
 * in user space: QEMU's and cloud-hypervisor's default). */
int h_arch_vm_setup(struct h_vm *h, int vm_fd)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP,
				      .args = { 24 } };
	bool split = h->flags & H_F_SPLIT_IRQCHIP;

	if (!(h->flags & (H_F_IRQCHIP | H_F_SPLIT_IRQCHIP)))
		return 0;
	if (ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		return -errno;
	if (split ? ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0 :
		    ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return -errno;
	return 0;
}

int h_arch_vm_finish(struct h_vm *h, int vm_fd)
{
	(void)h;
	(void)vm_fd;
	return 0;
}

int h_arch_vcpu_init(int vm_fd, int vcpu_fd)
{
	(void)vm_fd;
	(void)vcpu_fd;
	return 0;
}

int h_arch_exit(struct kvm_run *run, int *port)
{
	*port = run->exit_reason == KVM_EXIT_IO ? run->io.port : -1;
	return (int)run->exit_reason;
}

void h_arch_answer(struct vcpureq_vcpu *v, struct kvm_run *run,
		   uint8_t in_value)
{
	(void)v;
	if (run->exit_reason == KVM_EXIT_IO &&
	    run->io.direction == KVM_EXIT_IO_IN)
		*((uint8_t *)run + run->io.data_offset) = in_value;
}

const unsigned int h_in_insn_len = 2; /* in al, 0x12 */

int h_in_regs(struct h_vm *h, unsigned int id, uint64_t *value, uint64_t *pc)
{
	struct kvm_regs regs;

	if (ioctl(vcpureq_vcpu_kvm_fd(vcpureq_vm_vcpu(h->vm, id)),
		  KVM_GET_REGS, &regs) < 0)
		return -errno;
	*value = regs.rax & 0xff;
	*pc = regs.rip;
	return 0;
}
