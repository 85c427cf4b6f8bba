/* SPDX-License-Identifier: MIT */
/*
 * Guest entry with the full protocol (kernel: vcpu_enter_guest() in
 * arch/x86/kvm/x86.c and the "Ensuring Requests Are Seen" section of
 * vcpu-requests.rst).  The vCPU's half of the Dekker pattern:
 *
 *   1. process requests (handler), outside guest mode
 *   2. the kick signal is blocked (KVM: always, outside KVM_RUN;
 *      thread backend: the "kicked" flag is cleared, like immediate_exit)
 *   3. mode = IN_GUEST_MODE; smp_mb()                              [V]
 *   4. sync the mailbox; if mode != IN_GUEST_MODE or a request is
 *      pending or the VM is dead: abort (OUTSIDE, epoch++), back to 1
 *   5. enter: KVM unblocks the signal only inside KVM_RUN, so a kick sent
 *      after 4 is pending and KVM_RUN returns -EINTR at once (the kernel's
 *      "enable interrupts atomically when entering the guest")
 *   6. mode = OUTSIDE, epoch++ (acknowledgement), wake WAIT requesters
 */
#include <errno.h>

#include "internal.h"

static bool dead(const struct vcpureq_vcpu *vcpu)
{
	/* Acquire: pairs with the release of the VM_DEAD request bit. */
	return atomic_load_explicit(&vcpu->vm->dead, memory_order_acquire);
}

/* Returns 0 to go on into the guest, VCPUREQ_RUN_REQUEST or -errno. */
static int process_requests(struct vcpureq_vcpu *vcpu)
{
	const struct vcpureq_vm_opts *o = &vcpu->vm->opts;
	uint64_t before;
	int r;

	/* Requests are about to be processed, so the waking hint is spent.
	 * The exchange (acquire) precedes the reads of the bitmap: a hint
	 * stored after we cleared it survives for block. */
	if (atomic_load_explicit(&vcpu->wake_hint, memory_order_relaxed))
		atomic_exchange_explicit(&vcpu->wake_hint, 0,
					 memory_order_acquire);
	if (!atomic_load_explicit(&vcpu->requests, memory_order_relaxed))
		return 0;
	if (vcpureq_check_request(VCPUREQ_REQ_VM_DEAD, vcpu) > 0 || dead(vcpu))
		return vcpureq__err(-EIO, "the VM is dead (VM_DEAD)");
	/* UNBLOCK is for block only: it never carries work into entry. */
	vcpureq_clear_request(VCPUREQ_REQ_UNBLOCK, vcpu);
	before = atomic_load_explicit(&vcpu->requests, memory_order_relaxed);
	if (!before)
		return 0;
	if (!o->handle_requests)
		return VCPUREQ_RUN_REQUEST;
	r = o->handle_requests(vcpu, o->opaque);
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

/* Publish IN_GUEST_MODE and run the final check.  true: go on. */
static bool enter_guest_mode(struct vcpureq_vcpu *vcpu)
{
	int mode;

	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_PUBLISH);
	atomic_store_explicit(&vcpu->mode, VCPUREQ_IN_GUEST_MODE,
			      memory_order_relaxed);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_PUBLISH);
	/*
	 * [V] pairs with the requester's [R] (kick.c, mailbox.c): either the
	 * loads below see its request bit (or ON), or its load of the mode
	 * sees IN_GUEST_MODE and it signals us.  Without [V] the store could
	 * sit in the store buffer while we read "no request", and the
	 * requester read "outside": a request stranded in guest mode.
	 */
	VCPUREQ__MB_V();
	vcpureq__mailbox_sync(vcpu);
	mode = atomic_load_explicit(&vcpu->mode, memory_order_relaxed);
	if (mode != VCPUREQ_IN_GUEST_MODE ||
#ifndef VCPUREQ_MUTANT_NO_FINAL_CHECK
	    atomic_load_explicit(&vcpu->requests, memory_order_relaxed) ||
#endif
	    dead(vcpu)) {
		VCPUREQ__STAT_INC(vcpu, vstats, entry_aborts);
		vcpureq__exit_guest_mode(vcpu);
		/*
		 * A kicker won IN -> EXITING: its signal is for this aborted
		 * instance.  If it has been sent (kick_inflight back to 0;
		 * acquire pairs with the kicker's release decrement after
		 * tgkill), take it before the next publish, or the next KVM_RUN
		 * would return -EINTR at once for nothing (the kernel absorbs
		 * that IPI when it re-enables interrupts).  If it is still on
		 * its way, leave it: one spurious exit, no waiting here.
		 */
		if (mode == VCPUREQ_EXITING_GUEST_MODE && vcpu->run &&
		    !atomic_load_explicit(&vcpu->kick_inflight,
					  memory_order_acquire))
			vcpu->drain_pending = true;
		return false;
	}
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_ENTER);
	return true;
}

int vcpureq_vcpu_run(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	if (vcpu->in_walk)
		return vcpureq__err(-EINVAL, "vcpureq_vcpu_run() inside a lockless walk");
	if (atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
	    VCPUREQ_OUTSIDE_GUEST_MODE)
		return vcpureq__err(-EBUSY, "vcpureq_vcpu_run() from guest mode (the guest callback)");
	for (;;) {
		if (dead(vcpu))
			return vcpureq__err(-EIO, "the VM is dead (VM_DEAD)");
		r = process_requests(vcpu);
		if (r) {
			/* api.rst: I/O completes only on re-entry; do it
			 * now so the VMM sees consistent registers. */
			if (r == VCPUREQ_RUN_REQUEST && vcpu->io_pending) {
				int e = vcpureq__kvm_complete_io(vcpu);

				if (e < 0)
					return e;
			}
			return r;
		}
		/* Step 2: immediate_exit / kicked / a pending signal from an
		 * older instance must not end this one; all are cleared
		 * before the publish.  (Not after: once IN_GUEST_MODE is
		 * published a new kick may be on its way, and draining it
		 * would lose it.) */
		atomic_store_explicit(&vcpu->kicked, 0, memory_order_relaxed);
		if (vcpu->run) {
			vcpureq__kvm_clear_immediate_exit(vcpu);
			if (vcpu->drain_pending) {
				vcpu->drain_pending = false;
				vcpureq__signal_drain(vcpu->vm->kick_signal,
						      false);
			}
		}
		if (!enter_guest_mode(vcpu))
			continue;
		VCPUREQ__STAT_INC(vcpu, vstats, entries);
		r = vcpu->run ? vcpureq__kvm_enter(vcpu) :
				vcpureq__thread_enter(vcpu);
		vcpureq__exit_guest_mode(vcpu);
		VCPUREQ__STAT_INC(vcpu, vstats, exits);
		if (r == 0)
			return VCPUREQ_RUN_EXIT;
		if (r < 0)
			return r;
		if (r == 1) {
			/* Kicked (-EINTR): back to the requests.  Nothing
			 * pending means the kick was stale or not ours. */
			VCPUREQ__STAT_INC(vcpu, vstats, kicked_exits);
			if (!atomic_load_explicit(&vcpu->requests,
						  memory_order_relaxed) &&
			    !atomic_load_explicit(&vcpu->pir_on,
						  memory_order_relaxed) &&
			    !dead(vcpu))
				VCPUREQ__STAT_INC(vcpu, vstats, spurious_exits);
		}
		/* r == 2: handled here (interrupt window): loop. */
	}
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

enum vcpureq_mode vcpureq_vcpu_mode(const struct vcpureq_vcpu *vcpu)
{
	return (enum vcpureq_mode)atomic_load_explicit(&vcpu->mode,
						       memory_order_relaxed);
}

uint32_t vcpureq_vcpu_exit_epoch(const struct vcpureq_vcpu *vcpu)
{
	return atomic_load_explicit(&vcpu->exit_epoch, memory_order_acquire);
}
