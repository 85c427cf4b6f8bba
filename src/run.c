/* SPDX-License-Identifier: MIT */
/*
 * Guest entry with the full protocol (kernel: vcpu_enter_guest() in
 * arch/x86/kvm/x86.c), as an enter/exit pair around a guest entry that the
 * VMM may perform itself, and vcpureq_vcpu_run(), a loop over the pair:
 *
 *   vcpureq_vcpu_enter()
 *     1. process requests (handler), outside guest mode
 *     2. the backend forgets the kicks of ended instances (immediate_exit,
 *        the kicked flag, a pending kick signal)
 *     3. mode = IN_GUEST_MODE; smp_mb(); final check        (vcpu_mode.c)
 *        (abort: OUTSIDE, epoch++, back to 1)
 *   the guest: KVM_RUN, or the thread backend's code.  A kick sent after
 *     3 ends it: pending signal (SIGMASK) or immediate_exit set by the
 *     handler (IMMEDIATE_EXIT) makes KVM_RUN return -EINTR at once, or
 *     the signal interrupts the running (or halted) guest
 *   vcpureq_vcpu_exit()
 *     4. mode = OUTSIDE, epoch++ (acknowledgement), wake WAIT requesters
 *     5. classify: an exit for the VMM, a kick, a foreign EINTR
 */
#include <errno.h>

#include "internal.h"

/* Returns 0 to go on into the guest, VCPUREQ_RUN_REQUEST or -errno. */
static int process_requests(struct vcpureq_vcpu *vcpu)
{
	const struct vcpureq_vm_opts *o = &vcpu->vm->opts;
	uint64_t before;
	int r;

	/* Requests are about to be processed, so the waking hint is spent.
	 * The exchange (acquire) precedes the reads of the bitmap: a hint
	 * stored after we cleared it survives for block.  Not spent, it
	 * would make a block after the entry return for requests handled. */
	if (atomic_load_explicit(&vcpu->wake_hint, memory_order_relaxed))
		atomic_exchange_explicit(&vcpu->wake_hint, 0,
					 memory_order_acquire);
	if (!atomic_load_explicit(&vcpu->requests, memory_order_relaxed))
		return 0;
	if (vcpureq_check_request(VCPUREQ_REQ_VM_DEAD, vcpu) > 0 ||
	    vcpureq__vm_dead(vcpu->vm))
		return vcpureq__err(-EIO, "the VM is dead (VM_DEAD)");
	/* UNBLOCK is for block only: it never carries work into entry. */
	vcpureq_clear_request(VCPUREQ_REQ_UNBLOCK, vcpu);
	/* The library's own requests, before the handler sees any bit. */
	if (vcpureq__take_request(vcpu, VCPUREQ__REQ_PAUSE) &&
	    (r = vcpureq__park_if_paused(vcpu)))
		return r;
	if (vcpureq__take_request(vcpu, VCPUREQ__REQ_WORK)) {
		/* Work functions run where the handler does, with its limits
		 * (no run, enter or unbind from inside). */
		vcpu->in_handler = true;
		vcpureq__work_run(vcpu, false);
		vcpu->in_handler = false;
	}
	/* Only the caller's bits.  A PAUSE or WORK bit made since we took
	 * ours (a work function that queued more work, a pause from another
	 * thread) is the library's: the handler cannot consume it
	 * (check_request() refuses its number), so it must never make the
	 * call return VCPUREQ_RUN_REQUEST; the final check sees it, aborts
	 * the entry and brings us back above, where it is processed. */
	before = atomic_load_explicit(&vcpu->requests, memory_order_relaxed);
	before &= ~VCPUREQ__LIBRARY_BITS;
	if (!before)
		return 0;
	if (!o->handle_requests)
		return VCPUREQ_RUN_REQUEST;
	vcpu->in_handler = true;
	r = o->handle_requests(vcpu, o->opaque);
	vcpu->in_handler = false;
	if (r < 0)
		return r;
	/* Bits the handler saw and left are the caller's.  Bits made while
	 * it ran are not: the final check sees them, aborts the entry and
	 * brings us back here. */
	if (r > 0 ||
	    (atomic_load_explicit(&vcpu->requests, memory_order_relaxed) &
	     before))
		return VCPUREQ_RUN_REQUEST;
	return 0;
}

static int enter_checks(const struct vcpureq_vcpu *vcpu)
{
	if (vcpu->in_handler)
		return vcpureq__err(-EBUSY, "guest entry from the request handler");
	if (vcpu->entered)
		return vcpureq__err(-EBUSY, "guest entry already in progress: call vcpureq_vcpu_exit() first");
	if (vcpu->in_walk)
		return vcpureq__err(-EINVAL, "guest entry inside a lockless walk");
	if (atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
	    VCPUREQ_OUTSIDE_GUEST_MODE)
		return vcpureq__err(-EBUSY, "guest entry from guest mode (the guest callback)");
	return 0;
}

static int enter(struct vcpureq_vcpu *vcpu)
{
	const struct vcpureq__backend *ops = vcpu->ops;
	int r;

	for (;;) {
		r = vcpureq__vm_dead(vcpu->vm) ?
			    vcpureq__err(-EIO, "the VM is dead (VM_DEAD)") :
			    process_requests(vcpu);
		if (r == -EIO) {
			/* Queued work will never run: complete it as
			 * cancelled, on this thread. */
			vcpureq__work_run(vcpu, true);
			return r;
		}
		if (r) {
			/* api.rst: I/O completes only on re-entry; do it
			 * now so the VMM sees consistent registers. */
			if (r == VCPUREQ_RUN_REQUEST && vcpu->io_pending &&
			    ops->complete_io) {
				int e = ops->complete_io(vcpu);

				if (e < 0)
					return e;
			}
			return r;
		}
		ops->prepare_entry(vcpu);
		if (!vcpureq__enter_guest_mode(vcpu))
			continue;
		if (ops->inject)
			ops->inject(vcpu);
		VCPUREQ__STAT_INC(vcpu, vstats, entries);
		vcpu->entered = true;
		return VCPUREQ_RUN_ENTER;
	}
}

static int exit_(struct vcpureq_vcpu *vcpu, int ret)
{
	int left, kind;

	vcpu->entered = false;
	/* The hint is spent only where requests are processed (enter) or
	 * where block returns for it.  Spent at the exit it would be spent
	 * too early: a request made in guest mode would no longer end the
	 * block that follows a halt exit. */
	left = vcpureq__exit_guest_mode(vcpu, VCPUREQ__LEAVE_EXIT);
	VCPUREQ__STAT_INC(vcpu, vstats, exits);
	kind = vcpu->ops->classify_exit(vcpu, ret, left);
	switch (kind) {
	case VCPUREQ__EXIT_GUEST:
		return VCPUREQ_RUN_EXIT;
	case VCPUREQ__EXIT_KICKED:
		/* Back to the requests.  Nothing pending means the kick was
		 * stale or request-less (a NO_ACTION WAIT). */
		VCPUREQ__STAT_INC(vcpu, vstats, kicked_exits);
		if (!atomic_load_explicit(&vcpu->requests,
					  memory_order_relaxed) &&
		    !atomic_load_explicit(&vcpu->pir_on, memory_order_relaxed) &&
		    !vcpureq__vm_dead(vcpu->vm))
			VCPUREQ__STAT_INC(vcpu, vstats, spurious_exits);
		return VCPUREQ_RUN_AGAIN;
	case VCPUREQ__EXIT_AGAIN:
		return VCPUREQ_RUN_AGAIN;
	case VCPUREQ__EXIT_FOREIGN:
		VCPUREQ__STAT_INC(vcpu, vstats, foreign_exits);
		return (vcpu->vm->opts.flags & VCPUREQ_VM_RETURN_FOREIGN_EINTR) ?
			       VCPUREQ_RUN_INTR : VCPUREQ_RUN_AGAIN;
	default:
		return kind; /* -errno, message set */
	}
}

int vcpureq_vcpu_enter(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (!r)
		r = enter_checks(vcpu);
	return r ? r : enter(vcpu);
}

int vcpureq_vcpu_exit(struct vcpureq_vcpu *vcpu, int ret)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	if (!vcpu->entered)
		return vcpureq__err(-EINVAL, "no guest entry in progress (vcpureq_vcpu_enter() did not return VCPUREQ_RUN_ENTER)");
	return exit_(vcpu, ret);
}

int vcpureq_vcpu_run(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	if (vcpu->in_run)
		return vcpureq__err(-EBUSY, "vcpureq_vcpu_run() is not reentrant (called from the guest callback or a hook)");
	if (!vcpu->vm->can_run)
		return vcpureq__err(-EINVAL, "the thread backend's vcpureq_vcpu_run() needs opts.guest");
	r = enter_checks(vcpu);
	if (r)
		return r;
	vcpu->in_run = true;
	do {
		r = enter(vcpu);
		if (r != VCPUREQ_RUN_ENTER)
			break;
		r = exit_(vcpu, vcpu->ops->run_guest(vcpu));
	} while (r == VCPUREQ_RUN_AGAIN);
	vcpu->in_run = false;
	return r;
}

int vcpureq_vcpu_guest_ret(const struct vcpureq_vcpu *vcpu)
{
	return vcpu ? vcpu->guest_ret : -EINVAL;
}

bool vcpureq_guest_kicked(const struct vcpureq_vcpu *vcpu)
{
	return vcpu && atomic_load_explicit(&vcpu->kicked,
					    memory_order_relaxed);
}
