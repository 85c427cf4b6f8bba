/* SPDX-License-Identifier: MIT */
/*
 * Real guest code for the KVM tests on arm64, the programs of tests/guest.S
 * (enum h_prog) in AArch64: EL1h, MMU off, interrupts masked at entry,
 * position independent (PC-relative only), copied by harness_arm64.c to
 * guest physical 0x1000.  Registers set by the harness:
 *   x0  this vCPU's 64-byte data block: word 0 counts loop iterations,
 *       word 1 interrupts taken, byte 8 the H_IN byte
 *   x1  the report page (MMIO: no memslot): a report on "port" P is a
 *       32-bit access at x1 + P * 8 (harness_arch.h's H_PORT_*; P 0x1e is
 *       the halt, 0x1f the interrupt acknowledge, 0x1d an unexpected
 *       exception)
 *   x2  this vCPU's GICv3 redistributor, x3 the distributor (H_PIC)
 * arm64 has no user-space halt: wfi sleeps inside KVM_RUN whether or not
 * the vGIC is in the kernel.  The programs' "halt" is a write to the halt
 * port (an MMIO exit), after which the VMM blocks in vcpureq_vcpu_block(),
 * as it does on an x86 hlt exit.  The main loops use w10; the interrupt
 * handlers w11 and w12 (no stack).  Assembled here as data: the host never
 * executes it.
 */
	.section .rodata
	.balign 4096

#define PORT(p) ((p) * 8)
#define P_OUT PORT(0x10)
#define P_IRQ PORT(0x11)
#define P_IN PORT(0x12)
#define P_IN_REPORT PORT(0x13)
#define P_BAD PORT(0x1d)
#define P_HALT PORT(0x1e)
#define P_ACK PORT(0x1f)

#define ICC_IAR1_EL1 S3_0_C12_C12_0
#define ICC_EOIR1_EL1 S3_0_C12_C12_1
#define ICC_SRE_EL1 S3_0_C12_C12_5
#define ICC_IGRPEN1_EL1 S3_0_C12_C12_7
#define ICC_PMR_EL1 S3_0_C4_C6_0

	.globl vg_code_start, vg_code_end
	.globl vg_spin, vg_out, vg_halt, vg_irq, vg_in, vg_pic
vg_code_start:

/* Vector tables (VBAR_EL1: 2 KiB aligned; the blob is loaded at a 4 KiB
 * boundary).  Only "IRQ, current EL with SP_ELx" (+0x280) is expected;
 * every other entry is zero (an undefined instruction: a synchronous
 * exception, +0x200), which reports on the bad port and stops. */
vg_vectors_line:
	.org vg_vectors_line + 0x200
	b	vg_bad
	.org vg_vectors_line + 0x280
	b	vg_line_handler
	.org vg_vectors_line + 0x800
vg_vectors_gic:
	.org vg_vectors_gic + 0x200
	b	vg_bad
	.org vg_vectors_gic + 0x280
	b	vg_gic_handler
	.org vg_vectors_gic + 0x800

vg_bad:
	mrs	x11, esr_el1
	str	w11, [x1, #P_BAD]
	b	vg_bad

/* Spin in the guest forever, counting: only a kick gets it out. */
vg_spin:
	ldr	w10, [x0]
	add	w10, w10, #1
	str	w10, [x0]
	b	vg_spin

/* An MMIO exit (port 0x10) per iteration. */
vg_out:
	ldr	w10, [x0]
	add	w10, w10, #1
	str	w10, [x0]
	str	w10, [x1, #P_OUT]
	b	vg_out

/* Halt (an exit to the VMM, which blocks) per iteration. */
vg_halt:
	ldr	w10, [x0]
	add	w10, w10, #1
	str	w10, [x0]
	str	w10, [x1, #P_HALT]
	b	vg_halt

/* Wait for interrupts with interrupts unmasked: the VMM's irqchip raises
 * the vCPU's IRQ line (vcpureq's mailbox, KVM_IRQ_LINE). */
vg_irq:
	adr	x11, vg_vectors_line
	msr	vbar_el1, x11
	isb
	msr	daifclr, #2
1:	ldr	w10, [x0]
	add	w10, w10, #1
	str	w10, [x0]
	str	w10, [x1, #P_HALT]
	b	1b

/* The line's interrupt: acknowledge at the VMM's irqchip (the read gives
 * the vector, 1023 if none: spurious), count, report on port 0x11. */
vg_line_handler:
	ldr	w11, [x1, #P_ACK]
	cmp	w11, #1020
	b.hs	1f
	ldr	w12, [x0, #4]
	add	w12, w12, #1
	str	w12, [x0, #4]
	str	w11, [x1, #P_IRQ]
1:	eret

/* Read port 0x12, store the byte at data+8, report it on port 0x13, halt. */
vg_in:
	ldr	w10, [x1, #P_IN]
	strb	w10, [x0, #8]
	str	w10, [x1, #P_IN_REPORT]
	str	w10, [x1, #P_HALT]
	b	vg_in

/*
 * In-kernel vGICv3: enable the CPU interface (system registers), wake the
 * redistributor, route SPI 32 as an edge-triggered group-1 interrupt to
 * vCPU 0 and enable it (every vCPU writes the same), then wait for
 * interrupts with wfi (KVM sleeps the vCPU inside KVM_RUN).  Each pass
 * counts at data+0.
 */
vg_pic:
	adr	x11, vg_vectors_gic
	msr	vbar_el1, x11
	mrs	x11, ICC_SRE_EL1
	orr	x11, x11, #1
	msr	ICC_SRE_EL1, x11
	isb
	mov	x11, #0xff
	msr	ICC_PMR_EL1, x11
	mov	x11, #1
	msr	ICC_IGRPEN1_EL1, x11
	isb
	str	wzr, [x2, #0x14]	/* GICR_WAKER: ProcessorSleep = 0 */
	mov	w11, #0x12		/* GICD_CTLR: ARE, EnableGrp1 */
	str	w11, [x3]
	mov	w11, #1
	str	w11, [x3, #0x84]	/* GICD_IGROUPR1: SPI 32 in group 1 */
	mov	w11, #0xa0
	strb	w11, [x3, #0x420]	/* GICD_IPRIORITYR: SPI 32 */
	mov	w11, #2
	str	w11, [x3, #0xc08]	/* GICD_ICFGR2: SPI 32 edge */
	str	xzr, [x3, #0x6100]	/* GICD_IROUTER32: vCPU 0 */
	mov	w11, #1
	str	w11, [x3, #0x104]	/* GICD_ISENABLER1: SPI 32 */
	dsb	sy
	isb
	msr	daifclr, #2
1:	ldr	w10, [x0]
	add	w10, w10, #1
	str	w10, [x0]
	wfi
	b	1b

/* SPI 32 through the vGIC: acknowledge (IAR1), count at data+4, report
 * on port 0x11, end it (EOIR1). */
vg_gic_handler:
	mrs	x11, ICC_IAR1_EL1
	cmp	w11, #1020
	b.hs	1f
	ldr	w12, [x0, #4]
	add	w12, w12, #1
	str	w12, [x0, #4]
	str	w11, [x1, #P_IRQ]
	msr	ICC_EOIR1_EL1, x11
1:	eret

vg_code_end:
	.section .note.GNU-stack,"",@progbits
