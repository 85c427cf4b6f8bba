/* SPDX-License-Identifier: MIT */
/*
 * The interrupt mailbox (kernel: posted interrupts, vmx_deliver_posted_
 * interrupt() / vmx_sync_pir_to_irr()).  The ON bit takes the place of the
 * request bit in the Dekker pattern, which is what makes this the one
 * correct request-less kick:
 *
 *   poster                             vCPU thread
 *   PIR |= vector (relaxed)            mode = IN_GUEST_MODE
 *   ON = 1 (RMW, release)              smp_mb()                     [V]
 *   smp_mb()                [R]        if ON: ON = 0 (acquire), PIR -> IRR
 *   kick (wake / CAS + signal)
 */
#include <errno.h>

#include "internal.h"

int vcpureq_post_interrupt(struct vcpureq_vcpu *vcpu, unsigned int vector)
{
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	if (vector > 255)
		return vcpureq__err(-EINVAL, "interrupt vector above 255");
	if (vcpu->lapic_in_kernel)
		return vcpureq__err(-ENOTSUP,
				    "the vCPU has an in-kernel irqchip (x86 LAPIC, arm64 vGIC): deliver interrupts with KVM_IRQ_LINE, KVM_SIGNAL_MSI or an irqfd (KVM posts them itself, no kick needed)");
	atomic_fetch_or_explicit(&vcpu->pir[vector / 64],
				 UINT64_C(1) << (vector % 64),
				 memory_order_relaxed);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_PIR);
	/* Release: the PIR bit before ON; pairs with the acquire exchange of
	 * ON in vcpureq__mailbox_sync(). */
	atomic_fetch_or_explicit(&vcpu->pir_on, 1, memory_order_release);
	VCPUREQ__STAT_INC(vcpu, rstats, interrupts_posted);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_ON);
	return vcpureq__kick_fenced(vcpu);
}

void vcpureq__mailbox_sync(struct vcpureq_vcpu *vcpu)
{
	unsigned int i;

	if (!atomic_load_explicit(&vcpu->pir_on, memory_order_relaxed))
		return;
	/* Clear ON before taking PIR: a vector posted after we took PIR
	 * leaves ON set for the next sync (and kicks us if we are in guest
	 * mode by then).  Taking PIR first, then clearing ON, would strand
	 * a vector posted between the two in PIR with ON clear until the
	 * next post. */
	atomic_exchange_explicit(&vcpu->pir_on, 0, memory_order_acquire);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_SYNC_ON);
	for (i = 0; i < 4; i++)
		vcpu->irr[i] |= atomic_exchange_explicit(&vcpu->pir[i], 0,
							 memory_order_relaxed);
}

int vcpureq__irr_take_highest(struct vcpureq_vcpu *vcpu)
{
	int i;

	for (i = 3; i >= 0; i--) {
		if (vcpu->irr[i]) {
			int b = 63 - __builtin_clzll(vcpu->irr[i]);

			vcpu->irr[i] &= ~(UINT64_C(1) << b);
			return i * 64 + b;
		}
	}
	return -ENOENT;
}

int vcpureq_vcpu_take_interrupt(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	vcpureq__mailbox_sync(vcpu);
	r = vcpureq__irr_take_highest(vcpu);
	if (r >= 0)
		VCPUREQ__STAT_INC(vcpu, vstats, interrupts_injected);
	else
		vcpureq__err(r, "no interrupt pending");
	return r;
}
