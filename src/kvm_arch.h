/* SPDX-License-Identifier: MIT */
/*
 * The architecture's part of the KVM backend: what differs between x86-64
 * (src/kvm_x86.c) and arm64 (src/kvm_arm64.c), and nothing of the
 * protocol.  backend_kvm.c calls these and never asks which architecture
 * it runs on; CMake builds the one file of the target's architecture.
 * Every function runs where its caller in backend_kvm.c runs (said there);
 * none blocks.
 */
#ifndef VCPUREQ_KVM_ARCH_H
#define VCPUREQ_KVM_ARCH_H

#include <stdbool.h>
#include <stdint.h>

struct vcpureq_vcpu;

/* What to do when /dev/kvm is missing (the architecture's words). */
extern const char vcpureq__kvm_arch_no_kvm_hint[];

/* A vCPU vcpureq created itself (KVM_CREATE_VCPU), before its kvm_run is
 * mapped: make it runnable (x86: nothing; arm64: KVM_ARM_PREFERRED_TARGET
 * + KVM_ARM_VCPU_INIT with PSCI 0.2).  Adopted vCPUs are the VMM's: not
 * called.  0 or -errno with the message set.  Any thread, under add_lock. */
int vcpureq__kvm_arch_vcpu_init(struct vcpureq_vcpu *vcpu, int vm_fd);

/* Whether the vCPU's interrupt controller is in the kernel (x86: an
 * in-kernel LAPIC, full or split irqchip; arm64: an in-kernel vGIC), so
 * that its halt (hlt / wfi) sleeps inside KVM_RUN and the mailbox is
 * refused.  Probed once when the vCPU is added; no side effect. */
bool vcpureq__kvm_arch_irqchip_in_kernel(int vm_fd, int vcpu_fd);

/* Exits whose operation completes only on the next KVM_RUN (api.rst):
 * x86 I/O, MMIO, MSR and hypercall exits; arm64 MMIO. */
bool vcpureq__kvm_arch_needs_completion(uint32_t exit_reason);

/* After the final check, before KVM_RUN, vCPU thread: deliver what the
 * mailbox's IRR holds (user-space irqchip only; the IRR stays empty with
 * an in-kernel one).  x86: KVM_INTERRUPT when the guest takes it, else an
 * interrupt-window exit; arm64: the vCPU's IRQ line (KVM_IRQ_LINE) is high
 * while the IRR is not empty. */
void vcpureq__kvm_arch_inject(struct vcpureq_vcpu *vcpu);

/* Whether a KVM exit (KVM_RUN returned 0) was asked for by inject and is
 * vcpureq's own (x86: the interrupt window it requested): re-entered
 * without the VMM seeing it.  vCPU thread. */
bool vcpureq__kvm_arch_own_exit(struct vcpureq_vcpu *vcpu);

/* The vCPU parks for a pause (x86: KVM_KVMCLOCK_CTRL; arm64: nothing,
 * the guest's arch timer has no such flag).  vCPU thread. */
void vcpureq__kvm_arch_on_park(struct vcpureq_vcpu *vcpu);

#endif /* VCPUREQ_KVM_ARCH_H */
