/* SPDX-License-Identifier: MIT */
/*
 * Every vCPU-side transition of vcpu->mode, in one place (kernel:
 * vcpu_enter_guest() in arch/x86/kvm/x86.c, the "Ensuring Requests Are
 * Seen" section of vcpu-requests.rst, and walk_shadow_page_lockless_*()):
 *
 *   OUTSIDE -> IN_GUEST        vcpureq__enter_guest_mode(): publish, [V],
 *                              final check
 *   IN_GUEST/EXITING -> OUTSIDE   vcpureq__exit_guest_mode(): the guest
 *                              instance ended (or the entry aborted)
 *   OUTSIDE -> READING -> OUTSIDE vcpureq_walk_lockless_begin()/end()
 *
 * Requesters make the one other transition, IN_GUEST -> EXITING (the CAS
 * in kick.c), and never leave EXITING: only this thread does.
 *
 *   requester                          vCPU thread
 *   set request bit (release)          mode = IN_GUEST_MODE
 *   smp_mb()              [R]          smp_mb()               [V]
 *   read mode / CAS IN -> EXITING      read requests: abort entry if any
 */
#include <errno.h>
#include <limits.h>

#include "futex.h"
#include "internal.h"

bool vcpureq__enter_guest_mode(struct vcpureq_vcpu *vcpu)
{
	int mode;

	/*
	 * The backend's prepare_entry cleared immediate_exit / kicked just
	 * before this.  The kick handler runs on this thread, so the CPU
	 * keeps program order with it; the compiler must too: without this
	 * signal fence it could sink those relaxed clears below the relaxed
	 * publish, and a kick whose handler ran in between would be erased
	 * (the entry would run with the request stranded).
	 */
	atomic_signal_fence(memory_order_seq_cst);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_PUBLISH);
	atomic_store_explicit(&vcpu->mode, VCPUREQ_IN_GUEST_MODE,
			      memory_order_relaxed);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_PUBLISH);
	/*
	 * [V] pairs with the requester's [R] (make_request.c, kick.c, mailbox.c): either the
	 * loads below see its request bit (or ON), or its load of the mode
	 * sees IN_GUEST_MODE and it signals us.  Without [V] the store could
	 * sit in the store buffer while we read "no request", and the
	 * requester read "outside": a request stranded in guest mode.
	 */
	VCPUREQ__MB_V();
	vcpureq__mailbox_sync(vcpu);
	mode = atomic_load_explicit(&vcpu->mode, memory_order_relaxed);
	if (mode != VCPUREQ_IN_GUEST_MODE ||
	    atomic_load_explicit(&vcpu->requests, memory_order_relaxed) ||
	    vcpureq__vm_dead(vcpu->vm)) {
		VCPUREQ__STAT_INC(vcpu, vstats, entry_aborts);
		vcpureq__exit_guest_mode(vcpu, VCPUREQ__LEAVE_ABORT);
		/*
		 * A kicker won IN -> EXITING: its signal is for this aborted
		 * instance.  If it has been sent (kick_inflight back to 0;
		 * acquire pairs with the kicker's release decrement after
		 * tgkill), let the backend take it before the next publish,
		 * or the next entry would end at once for nothing (the kernel
		 * absorbs that IPI when it re-enables interrupts).  If it is
		 * still on its way, leave it: one spurious exit, no waiting
		 * here.
		 */
		if (mode == VCPUREQ_EXITING_GUEST_MODE && vcpu->ops->stale_kick &&
		    !atomic_load_explicit(&vcpu->kick_inflight,
					  memory_order_acquire))
			vcpu->ops->stale_kick(vcpu);
		return false;
	}
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_ENTER);
	VCPUREQ__TRACE(vcpu->vm, vcpu, enter, 0, 0);
	return true;
}

int vcpureq__exit_guest_mode(struct vcpureq_vcpu *vcpu, unsigned int why)
{
	/*
	 * Only this thread leaves IN_GUEST/EXITING/READING; requesters only
	 * ever move IN_GUEST to EXITING.  The exchange tells which of the two
	 * this instance ended in (EXITING: a kicker won the CAS for it).
	 * Release pairs with the acquire mode load (and CAS failure) in
	 * kick_after_fence(): a requester that finds us OUTSIDE does not
	 * wait, so what this instance did (a walk's reads) must be visible
	 * to it first.
	 */
	int left;

	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_EXIT);
	left = atomic_exchange_explicit(&vcpu->mode,
					    VCPUREQ_OUTSIDE_GUEST_MODE,
					    memory_order_release);
	/* Stamped after OUTSIDE and before the epoch moves (trace.h): later
	 * than the CAS of any kick that signalled this instance, earlier
	 * than any WAIT that sees the bump. */
	VCPUREQ__TRACE(vcpu->vm, vcpu, leave, (uint32_t)left, why);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_EPOCH);
	/*
	 * The acknowledgement.  Release pairs with the acquire load of the
	 * epoch in wait_ack(): everything this thread did in the instance
	 * (guest run, lockless reads of a structure) happens before the
	 * WAIT requester returns and, say, frees that structure.
	 */
	atomic_fetch_add_explicit(&vcpu->exit_epoch, 1, memory_order_release);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_EPOCH);
	/*
	 * [E] pairs with [W] in wait_ack(): either the waiter sees the new
	 * epoch, or we see its registration and wake it.  Without it the
	 * waiter could sleep on an epoch that already moved: a hang.
	 */
	vcpureq__smp_mb();
	/* Every waiter: several requesters may WAIT on this vCPU at once.
	 * Waking one would leave the others to find the ack at their
	 * recheck, up to 20 ms late. */
	if (atomic_load_explicit(&vcpu->ack_waiters, memory_order_relaxed))
		vcpureq__futex_wake(&vcpu->exit_epoch, INT_MAX);
	return left;
}

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
int vcpureq_walk_lockless_begin(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	if (vcpu->in_walk)
		return vcpureq__err(-EBUSY, "lockless walk already begun (not nestable)");
	if (atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
	    VCPUREQ_OUTSIDE_GUEST_MODE)
		return vcpureq__err(-EBUSY, "lockless walk begun in guest mode (between enter and exit, or from the guest callback)");
	vcpu->in_walk = true;
	atomic_store_explicit(&vcpu->mode, VCPUREQ_READING_SHADOW_PAGE_TABLES,
			      memory_order_relaxed);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_WALK_PUBLISH);
	vcpureq__smp_mb(); /* [V] pairs with the requester's [R] (make_request.c) */
	VCPUREQ__TRACE(vcpu->vm, vcpu, walk_begin, 0, 0);
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
	/* Release OUTSIDE, release epoch bump, wake waiters. */
	vcpureq__exit_guest_mode(vcpu, VCPUREQ__LEAVE_WALK);
	return 0;
}

enum vcpureq_mode vcpureq_vcpu_mode(const struct vcpureq_vcpu *vcpu)
{
	if (!vcpu)
		return VCPUREQ_OUTSIDE_GUEST_MODE;
	return (enum vcpureq_mode)atomic_load_explicit(&vcpu->mode,
						       memory_order_relaxed);
}

uint32_t vcpureq_vcpu_exit_epoch(const struct vcpureq_vcpu *vcpu)
{
	if (!vcpu)
		return 0;
	return atomic_load_explicit(&vcpu->exit_epoch, memory_order_acquire);
}
