/* SPDX-License-Identifier: MIT */
/*
 * Sets of target vCPUs (targets.h): the mask of a broadcast, a pause or a
 * resume, validated against the vCPUs online; the bits set and the kicks
 * sent to all of them after one fence [R]; the deadline's report of the
 * targets that did not answer in time.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "targets.h"

/* Validate @mask (its first @mask_bits bits; NULL: every vCPU) against the
 * VM's vCPUs online now, into @t. */
int vcpureq__targets_of(const struct vcpureq_vm *vm, const uint64_t *mask,
			size_t mask_bits, struct targets *t)
{
	/* Not (mask_bits + 63) / 64: that wraps for a length near SIZE_MAX. */
	size_t w, words = mask_bits / 64 + (mask_bits % 64 != 0);

	t->mask = mask;
	t->mask_bits = mask_bits;
	t->n = vcpureq__nr_vcpus(vm);
	if (!mask)
		return 0;
	/* No VM has 2^32 vCPUs (KVM's ids are 32-bit): a longer mask is a
	 * length gone wrong (a wrapped size), not a mask to read. */
	if (mask_bits > UINT32_MAX)
		return vcpureq__errf(-EINVAL, "mask_bits %zu is impossible (above 2^32 - 1)",
				     mask_bits);
	/* Every set bit must name an online vCPU: the words past the VM's
	 * are read here (and only here), never copied. */
	for (w = t->n / 64; w < words; w++) {
		uint64_t bits = mask[w];
		size_t base = w * 64;

		if (mask_bits - base < 64)
			bits &= (UINT64_C(1) << (mask_bits - base)) - 1;
		if (base < t->n)
			bits >>= t->n - base; /* t->n - base < 64 here */
		if (bits)
			return vcpureq__err(-EINVAL,
					    "mask names a vCPU index >= the VM's vCPU count");
	}
	return 0;
}

/* Word @w of the target set (w * 64 < t->n). */
uint64_t vcpureq__tword(const struct targets *t, unsigned int w)
{
	size_t base = (size_t)w * 64;
	uint64_t m = ~UINT64_C(0);

	if (t->mask) {
		if (base >= t->mask_bits)
			return 0;
		m = t->mask[w];
		if (t->mask_bits - base < 64)
			m &= (UINT64_C(1) << (t->mask_bits - base)) - 1;
	}
	if (t->n - base < 64)
		m &= (UINT64_C(1) << (t->n - base)) - 1;
	return m;
}

/* Set the request bit of every target. */
void vcpureq__set_bits(struct vcpureq_vm *vm, unsigned int req,
		       const struct targets *t)
{
	unsigned int w, i;

	if (req & VCPUREQ_REQUEST_NO_ACTION)
		return;
	for_each_word(t, w) {
		uint64_t m = vcpureq__tword(t, w);

		for_each_bit(m, i, w)
			vcpureq__set_request(vm->vcpus[i], req);
	}
}

/* Kick every target (after [R]); with @a, note those to wait for.
 * Returns 1 if a signal was sent, 0 if not; *err gets the first error
 * (the other targets are kicked all the same). */
int vcpureq__kick_all(struct vcpureq_vm *vm, unsigned int req,
		      const struct targets *t, struct acks *a, int *err)
{
	unsigned int w, i;
	uint32_t snap;
	int sent = 0;

	for_each_word(t, w) {
		uint64_t m = vcpureq__tword(t, w);

		for_each_bit(m, i, w) {
			bool wait;
			int r = vcpureq__kick_after_fence(vm->vcpus[i], req, &wait,
							  a ? &a->snaps[i] : &snap);

			if (r < 0 && !*err)
				*err = r;
			else if (r > 0)
				sent = 1;
			if (wait && a)
				a->waits[w] |= UINT64_C(1) << (i % 64);
		}
	}
	return sent;
}

int vcpureq__check_deadline(const struct vcpureq_deadline *dl)
{
	if (!dl)
		return 0;
	if (dl->size < sizeof(*dl))
		return vcpureq__err(-EINVAL, "dl->size: set it to sizeof(struct vcpureq_deadline)");
	return vcpureq__check_time(&dl->when,
				   "dl->when.tv_sec is negative (nothing was done)",
				   "dl->when.tv_nsec is outside [0, 999999999] (nothing was done)");
}

/* A deadline's report: clear @dl->pending, the bits it can hold. */
void vcpureq__pending_clear(const struct vcpureq_deadline *dl)
{
	if (dl && dl->pending && dl->pending_bits)
		memset(dl->pending, 0,
		       (dl->pending_bits / 64 + (dl->pending_bits % 64 != 0)) *
			       sizeof(uint64_t));
}

static void pending_set(const struct vcpureq_deadline *dl, unsigned int i)
{
	if (dl && dl->pending && i < dl->pending_bits)
		dl->pending[i / 64] |= UINT64_C(1) << (i % 64);
}

/* Fold one target's wait result @r into @err: a target that timed out is
 * marked in the pending mask, and the first hard error beats a timeout. */
void vcpureq__note_wait(const struct vcpureq_deadline *dl, unsigned int i, int r,
			int *err)
{
	if (r == -ETIMEDOUT)
		pending_set(dl, i);
	if (r < 0 && (!*err || *err == -ETIMEDOUT))
		*err = r;
}
