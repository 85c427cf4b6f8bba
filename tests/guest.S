/* SPDX-License-Identifier: MIT */
/*
 * Real guest code for the KVM tests, demo and benchmarks: 16-bit real mode,
 * position independent (relative jumps only), copied by guest.c to guest
 * physical 0x1000.  Each vCPU gets its own DS (a 64-byte data block, whose
 * dword 0 counts loop iterations and dword 1 interrupts taken) and its own
 * SS:SP.  Assembled here as data: the host never executes it.
 */
#include "guest_pic.inc"

	.section .rodata
	.code16

	.globl vg_code_start, vg_code_end
	.globl vg_spin, vg_out, vg_halt, vg_irq, vg_irq_handler, vg_in
	.globl vg_pic, vg_pic_handler
vg_code_start:

/* Spin in the guest forever, counting: only a kick gets it out. */
vg_spin:
	addl	$1, %ds:0
	jmp	vg_spin

/* An I/O exit (port 0x10) per iteration. */
vg_out:
	addl	$1, %ds:0
	outb	%al, $0x10
	jmp	vg_out

/* Halt (exit to user space, no in-kernel irqchip) per iteration. */
vg_halt:
	addl	$1, %ds:0
	hlt
	jmp	vg_halt

/* Wait for interrupts with interrupts enabled. */
vg_irq:
	addl	$1, %ds:0
	sti
	hlt
	jmp	vg_irq

/* The interrupt handler (vector 0x20): count, report on port 0x11. */
vg_irq_handler:
	addl	$1, %ds:4
	outb	%al, $0x11
	iret

/* Read port 0x12, store the byte at ds:8, report it on port 0x13, halt. */
vg_in:
	inb	$0x12, %al
	movb	%al, %ds:8
	outb	%al, $0x13
	hlt
	jmp	vg_in

/*
 * In-kernel irqchip: program the in-kernel 8259 PIC (IRQ0..7 at vectors
 * 0x28..0x2f, only IRQ0 unmasked), then wait for interrupts with sti; hlt
 * (KVM halts the vCPU inside KVM_RUN).  Each pass counts at ds:0.
 */
vg_pic:
	PIC_INIT
vg_pic_loop:
	addl	$1, %ds:0
	sti
	hlt
	jmp	vg_pic_loop

/* IRQ0 through the PIC (vector 0x28): count at ds:4, report on port
 * 0x11, EOI to the PIC. */
vg_pic_handler:
	pushw	%ax
	addl	$1, %ds:4
	outb	%al, $0x11
	movb	$0x20, %al
	outb	%al, $0x20
	popw	%ax
	iret

vg_code_end:
	.section .note.GNU-stack,"",@progbits
