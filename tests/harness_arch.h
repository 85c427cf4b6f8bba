/* SPDX-License-Identifier: MIT */
/*
 * The harness's per-architecture part (tests/harness_x86.c with
 * tests/guest.S, tests/harness_arm64.c with tests/guest_arm64.S): guest
 * code, registers, the irqchip, and the translation of the guest's exits
 * into the harness's vocabulary (KVM_EXIT_IO with a port for the
 * programs' reports, KVM_EXIT_HLT for their halt), so that tests and
 * hooks read the same on every architecture.
 */
#ifndef VCPUREQ_HARNESS_ARCH_H
#define VCPUREQ_HARNESS_ARCH_H

#include "harness.h"

struct kvm_run;

#define H_MEM_SIZE 0x100000u
#define H_CODE_GPA 0x1000u
#define H_DATA_GPA(id) (0x80000u + (id) * 64u)
#define H_STACK_GPA(id) (0x20000u + (id) * 256u)

/* Copy the guest code (and its vectors) into guest memory at 0. */
void h_arch_load(uint8_t *mem);
/* The registers of vCPU index @id for @prog (its fd @fd). */
int h_arch_set_regs(struct h_vm *h, unsigned int id, enum h_prog prog, int fd);
/* VM-wide set-up before the first vCPU (H_F_IRQCHIP, H_F_SPLIT_IRQCHIP):
 * 0, -errno, or H_SKIP after printing why (no such set-up here). */
int h_arch_vm_setup(struct h_vm *h, int vm_fd);
/* After the create's vCPUs are added (arm64: the vGIC's init). */
int h_arch_vm_finish(struct h_vm *h, int vm_fd);
/* A vCPU fd the harness created itself (H_F_ADOPT): make it runnable. */
int h_arch_vcpu_init(int vm_fd, int vcpu_fd);
/* A KVM exit in the harness's vocabulary: KVM_EXIT_IO (with *@port one of
 * H_PORT_*), KVM_EXIT_HLT, or KVM's own reason (*@port -1). */
int h_arch_exit(struct kvm_run *run, int *port);
/* Answer the pending exit of the VMM loop: an H_PORT_IN read gets
 * @in_value; arm64's interrupt acknowledge gets the vector taken from the
 * mailbox (vcpureq_vcpu_take_interrupt()). */
void h_arch_answer(struct vcpureq_vcpu *v, struct kvm_run *run,
		   uint8_t in_value);

#endif /* VCPUREQ_HARNESS_ARCH_H */
