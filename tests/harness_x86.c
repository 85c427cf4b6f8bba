/* SPDX-License-Identifier: MIT */
/*
 * The harness's x86 part (tests/harness_arch.h): 16-bit real-mode guest
 * code (tests/guest.S) with its interrupt vector table, segment
 * registers, the in-kernel irqchip (full or split), port I/O exits.
 *
 * With VCPUREQ_TEST_GUEST=native, the same programs as 64-bit code
 * (tests/guest_native.S) whose spin and exit loops run at CPL3: natively
 * on a machine whose KVM emulates CPL0 and real-mode code (nested KVM
 * without hardware virtualization in the guest, as here).  Their page
 * tables, GDT, TSS and IDT are built here; their exits from CPL3 are MMIO
 * stores, read as the report of the same port.
 */
#include "harness_arch.h"

#include <linux/kvm.h>
#include <stdlib.h>
#include <sys/ioctl.h>

extern const uint8_t vg_code_start[], vg_code_end[];
extern const uint8_t vg_spin[], vg_out[], vg_halt[], vg_irq[],
	vg_irq_handler[], vg_in[], vg_pic[], vg_pic_handler[];
extern const uint8_t vn_code_start[], vn_code_end[];
extern const uint8_t vn_spin[], vn_out[], vn_halt[], vn_irq[], vn_in[],
	vn_pic[], vn_handler[], vn_pic_handler[];

/* The native guest's memory (below H_MEM_SIZE, above the real-mode
 * programs' data blocks): page tables, one IDT, the code, and per vCPU a
 * GDT, a TSS and two stacks. */
#define N_PML4_GPA 0x90000u /* then the PDPT and the PD */
#define N_IDT_GPA 0x93000u
#define N_CODE_GPA 0x94000u
#define N_VCPU_GPA(id) (0xa0000u + (id) * 0x400u)
#define N_MAX_VCPUS 256u
#define N_MMIO_REPORT 0x1ff000u /* guest_native.S's VN_MMIO_REPORT */

/* Whether the programs run as the native guest (VCPUREQ_TEST_GUEST). */
bool h_native_guest(void)
{
	const char *g = getenv("VCPUREQ_TEST_GUEST");

	return g && !strcmp(g, "native");
}

static uint64_t n_gpa(const uint8_t *at)
{
	return N_CODE_GPA + (uint64_t)(at - vn_code_start);
}

static uint32_t n_prog_gpa(enum h_prog p);

static void n_gate(uint64_t *idt, unsigned int vector, uint64_t handler)
{
	/* 64-bit interrupt gate, present, DPL 0, kernel code 0x08. */
	idt[vector * 2] = (handler & 0xffff) | (UINT64_C(0x08) << 16) |
			  (UINT64_C(0x8e) << 40) |
			  (((handler >> 16) & 0xffff) << 48);
	idt[vector * 2 + 1] = handler >> 32;
}

static void n_load(uint8_t *mem)
{
	uint64_t *pml4 = (uint64_t *)(mem + N_PML4_GPA);
	uint64_t *idt = (uint64_t *)(mem + N_IDT_GPA);

	/* Identity map of the first 2 MiB: one large page, present,
	 * writable, user-accessible (the CPL3 loops touch their data). */
	pml4[0] = (N_PML4_GPA + 0x1000) | 7;
	pml4[512] = (N_PML4_GPA + 0x2000) | 7; /* the PDPT's entry 0 */
	pml4[1024] = 0x87;		       /* the PD's entry 0 */
	memcpy(mem + N_CODE_GPA, vn_code_start,
	       (size_t)(vn_code_end - vn_code_start));
	n_gate(idt, H_IRQ_VECTOR, n_gpa(vn_handler));
	n_gate(idt, H_PIC_VECTOR, n_gpa(vn_pic_handler));
}

static void n_seg(struct kvm_segment *s, uint16_t sel, bool code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->present = 1;
	s->s = 1;
	s->type = code ? 0xb : 0x3;
	s->l = code;
	s->db = !code;
	s->g = 1;
}

static int n_set_regs(struct h_vm *h, unsigned int id, enum h_prog prog,
		      int fd)
{
	uint32_t area = N_VCPU_GPA(id), tss = area + 0x40;
	uint64_t *gdt = (uint64_t *)(h->mem + area);
	uint64_t ksp = area + 0x200;
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	gdt[0] = 0;
	gdt[1] = UINT64_C(0x00af9b000000ffff); /* kernel code, 64-bit */
	gdt[2] = UINT64_C(0x00cf93000000ffff); /* kernel data */
	gdt[3] = UINT64_C(0x00cff3000000ffff); /* user data, DPL 3 */
	gdt[4] = UINT64_C(0x00affb000000ffff); /* user code, 64-bit, DPL 3 */
	gdt[5] = 103 | ((uint64_t)(tss & 0xffffff) << 16) |
		 (UINT64_C(0x8b) << 40) | ((uint64_t)(tss >> 24) << 56);
	gdt[6] = 0; /* the TSS base's upper half */
	memset(h->mem + tss, 0, 104);
	memcpy(h->mem + tss + 4, &ksp, 8);      /* RSP0 */
	*(uint16_t *)(h->mem + tss + 102) = 104; /* no I/O bitmap */
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cr0 = 0x80050033; /* PG, AM, WP, NE, ET, MP, PE */
	sregs.cr4 = 0x20;       /* PAE */
	sregs.efer = 0x500;     /* LMA, LME */
	sregs.cr3 = N_PML4_GPA;
	n_seg(&sregs.cs, 0x08, true);
	n_seg(&sregs.ds, 0x10, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = area;
	sregs.gdt.limit = 7 * 8 - 1;
	sregs.idt.base = N_IDT_GPA;
	sregs.idt.limit = 0xfff;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.selector = 0x28;
	sregs.tr.base = tss;
	sregs.tr.limit = 103;
	sregs.tr.type = 0xb; /* busy 64-bit TSS */
	sregs.tr.present = 1;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = n_prog_gpa(prog);
	regs.rsp = ksp;
	regs.rsi = area + 0x400; /* the user stack's top */
	regs.rbx = H_DATA_GPA(id);
	regs.rflags = 0x2;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

const uint32_t h_irqchip_line = 0; /* IRQ0 */

const bool h_kick_ends_inkernel_halt = false;

static uint32_t real_prog_gpa(enum h_prog p)
{
	const uint8_t *at = p == H_SPIN ? vg_spin : p == H_OUT ? vg_out :
			    p == H_HALT ? vg_halt : p == H_IRQ ? vg_irq :
			    p == H_PIC ? vg_pic : vg_in;

	return H_CODE_GPA + (uint32_t)(at - vg_code_start);
}

static uint32_t n_prog_gpa(enum h_prog p)
{
	return (uint32_t)n_gpa(p == H_SPIN ? vn_spin : p == H_OUT ? vn_out :
			       p == H_HALT ? vn_halt : p == H_IRQ ? vn_irq :
			       p == H_PIC ? vn_pic : vn_in);
}

/* Where vCPUs below N_MAX_VCPUS start @p (the others run real mode). */
uint32_t h_prog_gpa(enum h_prog p)
{
	return h_native_guest() ? n_prog_gpa(p) : real_prog_gpa(p);
}

void h_arch_load(uint8_t *mem)
{
	uint16_t *ivt;

	n_load(mem);

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

static int real_set_regs(unsigned int id, enum h_prog prog, int fd);

int h_arch_set_regs(struct h_vm *h, unsigned int id, enum h_prog prog, int fd)
{
	int r;

	if (h_native_guest() && id < N_MAX_VCPUS)
		r = n_set_regs(h, id, prog, fd);
	else
		r = real_set_regs(id, prog, fd);
	if (r)
		return r;
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

/* Real mode (the state a vCPU is created in, set again in full: a vCPU
 * pointed back from a native program leaves long mode). */
static int real_set_regs(unsigned int id, enum h_prog prog, int fd)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cr0 = 0x60000010; /* the reset value: CD, NW, ET */
	sregs.cr4 = 0;
	sregs.efer = 0;
	set_seg(&sregs.cs, 0);
	set_seg(&sregs.ds, H_DATA_GPA(id));
	set_seg(&sregs.es, H_DATA_GPA(id));
	set_seg(&sregs.ss, H_STACK_GPA(id));
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = real_prog_gpa(prog);
	regs.rsp = 0xfe;
	regs.rflags = 0x2;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
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
	/* The native programs' reports from CPL3: an MMIO store to
	 * N_MMIO_REPORT + port, read as that port's I/O exit. */
	if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
	    run->mmio.phys_addr >= N_MMIO_REPORT &&
	    run->mmio.phys_addr < N_MMIO_REPORT + 0x100) {
		*port = (int)(run->mmio.phys_addr - N_MMIO_REPORT);
		return KVM_EXIT_IO;
	}
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
