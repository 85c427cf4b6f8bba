/* SPDX-License-Identifier: MIT */
/*
 * Sets of target vCPUs (targets.c): the vCPUs a broadcast, a pause or a
 * resume acts on, the kick of all of them, and a deadline's report of those
 * that did not answer in time.  Used by make_request.c and pause.c.
 */
#ifndef VCPUREQ_TARGETS_H
#define VCPUREQ_TARGETS_H

#include "internal.h"

/*
 * The targets of a broadcast: the vCPUs whose index is set in @mask (its
 * first @mask_bits bits), or every vCPU if @mask is NULL, among the @n that
 * were online when the broadcast started (a vCPU added later is not a
 * target, as in the kernel's kvm_for_each_vcpu()).
 */
struct targets {
	const uint64_t *mask;
	size_t mask_bits;
	unsigned int n;
};

/* Where a WAIT broadcast keeps, per target index, the epoch snapshot and
 * whether to wait.  Heap, not stack: the vCPU count is the kernel's. */
struct acks {
	uint64_t *waits;  /* bitmap, one bit per index */
	uint32_t *snaps;  /* per index */
};

/* Word @w of the target set (w * 64 < t->n). */
uint64_t vcpureq__tword(const struct targets *t, unsigned int w);

#define for_each_word(t, w) for ((w) = 0; (size_t)(w) * 64 < (t)->n; (w)++)
#define for_each_bit(m, i, w)                                                \
	for (; (m) && ((i) = (w) * 64 + (unsigned int)__builtin_ctzll(m), 1); \
	     (m) &= (m) - 1)

/* Validate @mask (its first @mask_bits bits; NULL: every vCPU) against the
 * VM's vCPUs online now, into @t.  0 or -EINVAL (message set). */
int vcpureq__targets_of(const struct vcpureq_vm *vm, const uint64_t *mask,
			size_t mask_bits, struct targets *t);
/* Set the request bit of every target (none for NO_ACTION). */
void vcpureq__set_bits(struct vcpureq_vm *vm, unsigned int req,
		       const struct targets *t);
/* Kick every target (after [R]); with @a, note those to wait for.
 * Returns 1 if a signal was sent, 0 if not; *err gets the first error
 * (the other targets are kicked all the same). */
int vcpureq__kick_all(struct vcpureq_vm *vm, unsigned int req,
		      const struct targets *t, struct acks *a, int *err);
/* A deadline's report: clear @dl->pending, the bits it can hold. */
void vcpureq__pending_clear(const struct vcpureq_deadline *dl);
/* Fold one target's wait result @r into @err: a target that timed out is
 * marked in the pending mask, and the first hard error beats a timeout. */
void vcpureq__note_wait(const struct vcpureq_deadline *dl, unsigned int i,
			int r, int *err);

/* A waiter (WAIT acknowledgement, pause) looks again this often: if the
 * target is back IN_GUEST_MODE in the same instance, the kick it relied on
 * could not be sent (see kick_in_guest() in kick.c) and it kicks again
 * itself (vcpureq__rekick()). */
#define VCPUREQ__RECHECK_NS 20000000l

#endif /* VCPUREQ_TARGETS_H */
