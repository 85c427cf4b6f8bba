/* SPDX-License-Identifier: MIT */
/*
 * The harness's arm64 part (tests/harness_arch.h): AArch64 guest code
 * (tests/guest_arm64.S), registers through KVM_SET_ONE_REG, the in-kernel
 * vGICv3 (H_F_IRQCHIP), and the programs' MMIO reports seen as the x86
 * programs' port I/O: a write to the halt port is KVM_EXIT_HLT, any other
 * report KVM_EXIT_IO with its port (h_exit_port()).
 */
#include "harness_arch.h"

#include <linux/kvm.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <unistd.h>

extern const uint8_t vg_code_start[], vg_code_end[];
extern const uint8_t vg_spin[], vg_out[], vg_halt[], vg_irq[], vg_in[],
	vg_pic[];

/* The report page (no memslot: every access exits) and its ports beyond
 * harness.h's (guest_arm64.S). */
#define MMIO_BASE 0x10000000u
#define PORT_BAD 0x1d
#define PORT_HALT 0x1e
#define PORT_ACK 0x1f
/* The vGICv3 where QEMU's virt machine has it (arm64.md). */
#define GICD_BASE 0x08000000u
#define GICR_BASE 0x080a0000u
#define GICR_SIZE 0x20000u /* per vCPU: RD_base + SGI_base */
#define GIC_NR_IRQS 128u

const uint32_t h_irqchip_line =
	(uint32_t)KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT | 32u;

const bool h_kick_ends_inkernel_halt = true;

uint32_t h_prog_gpa(enum h_prog p)
{
	const uint8_t *at = p == H_SPIN ? vg_spin : p == H_OUT ? vg_out :
			    p == H_HALT ? vg_halt : p == H_IRQ ? vg_irq :
			    p == H_PIC ? vg_pic : vg_in;

	return H_CODE_GPA + (uint32_t)(at - vg_code_start);
}

void h_arch_load(uint8_t *mem)
{
	memcpy(mem + H_CODE_GPA, vg_code_start,
	       (size_t)(vg_code_end - vg_code_start));
}

#define CORE_REG(field)                                                  \
	(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |           \
	 (offsetof(struct kvm_regs, field) / sizeof(uint32_t)))

static int set_reg(int fd, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)&value };

	return ioctl(fd, KVM_SET_ONE_REG, &reg) < 0 ? -errno : 0;
}

int h_arch_set_regs(struct h_vm *h, unsigned int id, enum h_prog prog, int fd)
{
	int r;

	(void)h;
	/* EL1h with D, A, I, F masked, as KVM_ARM_VCPU_INIT leaves it. */
	if ((r = set_reg(fd, CORE_REG(regs.pstate), 0x3c5)) ||
	    (r = set_reg(fd, CORE_REG(regs.regs[0]), H_DATA_GPA(id))) ||
	    (r = set_reg(fd, CORE_REG(regs.regs[1]), MMIO_BASE)) ||
	    (r = set_reg(fd, CORE_REG(regs.regs[2]),
			 GICR_BASE + (uint64_t)id * GICR_SIZE)) ||
	    (r = set_reg(fd, CORE_REG(regs.regs[3]), GICD_BASE)) ||
	    (r = set_reg(fd, CORE_REG(regs.pc), h_prog_gpa(prog))))
		return r;
	return 0;
}

static int vgic_attr(int dev, uint32_t group, uint64_t attr, void *val)
{
	struct kvm_device_attr a = { .group = group, .attr = attr,
				     .addr = (uintptr_t)val };

	return ioctl(dev, KVM_SET_DEVICE_ATTR, &a) < 0 ? -errno : 0;
}

/* H_F_IRQCHIP: the in-kernel vGICv3, created and placed before the vCPUs
 * (its init comes after them: h_arch_vm_finish). */
int h_arch_vm_setup(struct h_vm *h, int vm_fd)
{
	struct kvm_create_device cd = { .type = KVM_DEV_TYPE_ARM_VGIC_V3 };
	uint64_t dist = GICD_BASE, redist = GICR_BASE;
	int r;

	if (h->flags & H_F_SPLIT_IRQCHIP) {
		printf("SKIP: x86-only: the split irqchip (an in-kernel LAPIC with the PIC and IOAPIC in user space) has no arm64 counterpart\n");
		return H_SKIP;
	}
	if (!(h->flags & H_F_IRQCHIP))
		return 0;
	if (ioctl(vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
		return -errno;
	h->irqchip_fd = (int)cd.fd;
	if ((r = vgic_attr(h->irqchip_fd, KVM_DEV_ARM_VGIC_GRP_ADDR,
			   KVM_VGIC_V3_ADDR_TYPE_DIST, &dist)) ||
	    (r = vgic_attr(h->irqchip_fd, KVM_DEV_ARM_VGIC_GRP_ADDR,
			   KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist)))
		return r;
	return 0;
}

int h_arch_vm_finish(struct h_vm *h, int vm_fd)
{
	uint32_t nr = GIC_NR_IRQS;
	int r;

	(void)vm_fd;
	if (!(h->flags & H_F_IRQCHIP))
		return 0;
	if ((r = vgic_attr(h->irqchip_fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0,
			   &nr)) ||
	    (r = vgic_attr(h->irqchip_fd, KVM_DEV_ARM_VGIC_GRP_CTRL,
			   KVM_DEV_ARM_VGIC_CTRL_INIT, NULL)))
		return r;
	return 0;
}

/* What vcpureq_vcpu_create() does for the vCPUs it creates (kvm_arm64.c). */
int h_arch_vcpu_init(int vm_fd, int vcpu_fd)
{
	struct kvm_vcpu_init init;

	memset(&init, 0, sizeof(init));
	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return -errno;
	init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
	return ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0 ? -errno : 0;
}

static int mmio_port(const struct kvm_run *run)
{
	uint64_t a = run->mmio.phys_addr;

	if (run->exit_reason != KVM_EXIT_MMIO || a < MMIO_BASE ||
	    a >= MMIO_BASE + 0x100 || a % 8)
		return -1;
	return (int)((a - MMIO_BASE) / 8);
}

int h_arch_exit(struct kvm_run *run, int *port)
{
	int p = mmio_port(run);

	*port = -1;
	if (p < 0)
		return (int)run->exit_reason;
	if (p == PORT_HALT)
		return KVM_EXIT_HLT;
	if (p == PORT_BAD)
		fprintf(stderr, "guest: unexpected exception, ESR_EL1 %#x\n",
			(unsigned int)*(uint32_t *)run->mmio.data);
	*port = p;
	return KVM_EXIT_IO;
}

void h_arch_answer(struct vcpureq_vcpu *v, struct kvm_run *run,
		   uint8_t in_value)
{
	int p = mmio_port(run);
	uint32_t val;

	if (p < 0 || run->mmio.is_write)
		return;
	if (p == H_PORT_IN) {
		val = in_value;
	} else if (p == PORT_ACK) {
		/* The VMM's interrupt controller: the guest acknowledges,
		 * the vector comes from vcpureq's mailbox (1023: none). */
		int vec = vcpureq_vcpu_take_interrupt(v);

		val = vec < 0 ? 1023u : (uint32_t)vec;
	} else {
		val = 0;
	}
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	memcpy(run->mmio.data, &val, sizeof(val));
}

const unsigned int h_in_insn_len = 4; /* ldr w10, [x1, #P_IN] */

static int get_reg(int fd, uint64_t id, uint64_t *value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)value };

	return ioctl(fd, KVM_GET_ONE_REG, &reg) < 0 ? -errno : 0;
}

int h_in_regs(struct h_vm *h, unsigned int id, uint64_t *value, uint64_t *pc)
{
	int fd = vcpureq_vcpu_kvm_fd(vcpureq_vm_vcpu(h->vm, id));
	int r = get_reg(fd, CORE_REG(regs.regs[10]), value);

	return r ? r : get_reg(fd, CORE_REG(regs.pc), pc);
}

/* One guest form on arm64: its programs run at EL1. */
bool h_native_guest(void)
{
	return false;
}
