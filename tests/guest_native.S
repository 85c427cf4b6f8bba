/* SPDX-License-Identifier: MIT */
/*
 * The native guest: the programs of tests/guest.S as 64-bit long-mode
 * code whose busy part (spin, and the exit-per-iteration loop) runs at
 * CPL3.  On a machine whose KVM runs
 * CPL0 and real-mode guest code in its instruction emulator (nested KVM
 * without hardware virtualization in the guest, as here), CPL3 code runs
 * on the CPU: the spinning vCPU of these programs is a guest running
 * natively, as a user's guest is, not a thread inside KVM's emulator.
 *
 * The x86 harness (tests/harness_x86.c, VCPUREQ_TEST_GUEST=native)
 * builds identity page tables (one 2 MiB page,
 * user-accessible), a GDT per vCPU (kernel code 0x08, kernel data 0x10,
 * user data 0x1b, user code 0x23, the vCPU's TSS 0x28), a TSS whose RSP0
 * is the vCPU's kernel stack, and one IDT (vector 0x20: vn_handler, 0x28:
 * vn_pic_handler), and enters at the program's CPL0 entry with:
 *   %rbx  the vCPU's data block (dword 0: iterations, dword 1: interrupts)
 *   %rsi  the vCPU's user stack top
 *   %rsp  the vCPU's kernel stack top (also TSS.RSP0)
 * Programs that run at CPL3 enter it with iretq, IF set; their reports to
 * the VMM are MMIO stores (vn_out).
 * Assembled here as data: the host never executes it.
 */
#include "guest_pic.inc"

	.section .rodata
	.code64

/* Outside every memslot, inside the identity map: a store there is a
 * KVM_EXIT_MMIO, which the harness reads as the report of port
 * (address - VN_MMIO_REPORT). */
	.set	VN_MMIO_REPORT, 0x1ff000

	.globl vn_code_start, vn_code_end
	.globl vn_spin, vn_out, vn_halt, vn_irq, vn_in, vn_pic
	.globl vn_handler, vn_pic_handler
vn_code_start:

/* Drop to CPL3 at the address in %rdi, IF = 1. */
vn_to_user:
	pushq	$0x1b		/* SS: user data, RPL 3 */
	pushq	%rsi		/* RSP: user stack */
	pushq	$0x202		/* RFLAGS: IF, reserved bit 1 */
	pushq	$0x23		/* CS: user code, RPL 3 */
	pushq	%rdi		/* RIP */
	iretq

/* Spin at CPL3, counting: only a kick (or an interrupt) gets it out. */
vn_spin:
	leaq	vn_spin_user(%rip), %rdi
	jmp	vn_to_user
vn_spin_user:
	addl	$1, (%rbx)
	jmp	vn_spin_user

/* An exit to the VMM per iteration, from CPL3: a store to the MMIO
 * report address of port 0x10 (an OUT from CPL3 faults under some
 * hypervisors whatever IOPL says; an MMIO store exits everywhere). */
vn_out:
	leaq	vn_out_user(%rip), %rdi
	jmp	vn_to_user
vn_out_user:
	addl	$1, (%rbx)
	movb	%al, VN_MMIO_REPORT + 0x10
	jmp	vn_out_user

/* Halt at CPL0 (exit to user space, no in-kernel irqchip) per iteration. */
vn_halt:
	addl	$1, (%rbx)
	hlt
	jmp	vn_halt

/* Wait for interrupts at CPL0 with interrupts enabled. */
vn_irq:
	addl	$1, (%rbx)
	sti
	hlt
	jmp	vn_irq

/* Read port 0x12, store the byte at 8(%rbx), report it on port 0x13,
 * halt (CPL0). */
vn_in:
	inb	$0x12, %al
	movb	%al, 8(%rbx)
	outb	%al, $0x13
	hlt
	jmp	vn_in

/* In-kernel irqchip: program the in-kernel 8259 PIC (IRQ0..7 at vectors
 * 0x28..0x2f, only IRQ0 unmasked), then wait for interrupts with sti; hlt
 * at CPL0 (KVM halts the vCPU inside KVM_RUN). */
vn_pic:
	PIC_INIT
vn_pic_loop:
	addl	$1, (%rbx)
	sti
	hlt
	jmp	vn_pic_loop

/* Vector 0x20 (the mailbox's, KVM_INTERRUPT): count at 4(%rbx), report
 * on port 0x11. */
vn_handler:
	addl	$1, 4(%rbx)
	outb	%al, $0x11
	iretq

/* Vector 0x28 (IRQ0 through the in-kernel PIC): the same, then the
 * PIC's EOI. */
vn_pic_handler:
	pushq	%rax
	addl	$1, 4(%rbx)
	outb	%al, $0x11
	movb	$0x20, %al
	outb	%al, $0x20
	popq	%rax
	iretq

vn_code_end:
	.section .note.GNU-stack,"",@progbits
