/* SPDX-License-Identifier: MIT */
/*
 * Lockless-reader sections (kernel: walk_shadow_page_lockless_begin/end()
 * on x86, which set READING_SHADOW_PAGE_TABLES with interrupts disabled so
 * that a KVM_REQ_TLB_FLUSH sender's IPI waits for the walk).
 *
 *   walker                             WAIT requester
 *   mode = READING                     publish new structure, make request
 *   smp_mb()                [V]        smp_mb()                     [R]
 *   read structure                     epoch snapshot; read mode
 *   mode = OUTSIDE (release)           READING: wait for the epoch to move
 *   epoch++ (release), wake waiters    free / poison the old structure
 *
 * Either the walker's reads come after [R] (it sees the new structure) or
 * the requester sees READING and waits for the walk to end.
 */
#include <errno.h>

#include "internal.h"

int vcpureq_walk_lockless_begin(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	if (vcpu->in_walk)
		return vcpureq__err(-EBUSY, "lockless walk already begun (not nestable)");
	if (atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
	    VCPUREQ_OUTSIDE_GUEST_MODE)
		return vcpureq__err(-EBUSY, "lockless walk begun in guest mode (from the guest callback)");
	vcpu->in_walk = true;
	atomic_store_explicit(&vcpu->mode, VCPUREQ_READING_SHADOW_PAGE_TABLES,
			      memory_order_relaxed);
	vcpureq__smp_mb(); /* [V] pairs with the requester's [R] in kick.c */
	return 0;
}

int vcpureq_walk_lockless_end(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	if (!vcpu->in_walk)
		return vcpureq__err(-EINVAL, "no lockless walk in progress");
	vcpu->in_walk = false;
	/* Release store OUTSIDE, release epoch bump, wake waiters. */
	vcpureq__exit_guest_mode(vcpu);
	return 0;
}
