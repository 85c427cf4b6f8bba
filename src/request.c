/* SPDX-License-Identifier: MIT */
/*
 * The request bitmap: make, test, clear, check (kernel: kvm_make_request()
 * and friends in include/linux/kvm_host.h).
 */
#include <errno.h>

#include "internal.h"

#define VALID_FLAGS (VCPUREQ_REQUEST_MASK | VCPUREQ_REQUEST_NO_WAKEUP | \
		     VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_ACTION)
/* The architecture-independent requests the library defines: TLB_FLUSH (0),
 * VM_DEAD (1), UNBLOCK (2). */
#define GENERIC_NR 3

int vcpureq__check_req(unsigned int req, bool allow_no_action)
{
	if (req & VCPUREQ_REQUEST_BAD_NR)
		return vcpureq__err(-EINVAL,
				    "VCPUREQ_ARCH_REQ(nr) with nr outside 0..55");
	if (req & ~VALID_FLAGS)
		return vcpureq__err(-EINVAL,
				    "request has unknown flag bits (above bit 10)");
	if (req & VCPUREQ_REQUEST_NO_ACTION) {
		if (!allow_no_action)
			return vcpureq__err(-EINVAL,
					    "NO_ACTION sets no bit: use vcpureq_request() or a broadcast to kick/wait");
		return 0;
	}
	if ((req & VCPUREQ_REQUEST_MASK) > VCPUREQ_REQUEST_NR_MAX)
		return vcpureq__err(-EINVAL,
				    "request number above 63 (the bitmap has 64 bits)");
	/*
	 * 0-7 are the architecture-independent numbers (the kernel reserves
	 * them below KVM_REQUEST_ARCH_BASE); the library defines 0-2.  A raw
	 * 3-7 is refused rather than taken as a user request that a later
	 * generic request would silently share.
	 */
	if ((req & VCPUREQ_REQUEST_MASK) >= GENERIC_NR &&
	    (req & VCPUREQ_REQUEST_MASK) < VCPUREQ_REQUEST_ARCH_BASE)
		return vcpureq__err(-EINVAL,
				    "request numbers 3-7 are reserved for architecture-independent requests (kernel: below KVM_REQUEST_ARCH_BASE); use VCPUREQ_ARCH_REQ(n)");
	return 0;
}

static inline uint64_t req_bit(unsigned int req)
{
	return UINT64_C(1) << (req & VCPUREQ_REQUEST_MASK);
}

static void set_wake_hint(struct vcpureq_vcpu *vcpu, unsigned int req);

void vcpureq__set_request(struct vcpureq_vcpu *vcpu, unsigned int req)
{
	uint64_t ts, old;

	/* Counted before the bit is set: the release below publishes the
	 * count with the bit, so a handler that has checked the request
	 * reads a requests_made that includes it. */
	VCPUREQ__STAT_INC(vcpu, rstats, requests_made);
	atomic_fetch_add_explicit(&vcpureq__nr_stats_of(vcpu->vm, req)->made, 1,
				  memory_order_relaxed);
	/* Stamped before the bit is set (trace.h), recorded after, with
	 * whether the bit was already set (the make coalesced). */
	ts = VCPUREQ__TRACE_TS(vcpu->vm);
	/*
	 * kernel: smp_wmb(); set_bit().  Release orders the caller's payload
	 * (and the dead flag) before the bit; pairs with the acquire in
	 * vcpureq_test_request()/vcpureq_check_request().  Without it the vCPU
	 * could see the bit and read a stale payload.
	 */
	old = atomic_fetch_or_explicit(&vcpu->requests, req_bit(req),
				       VCPUREQ__MO_PAYLOAD(memory_order_release));
	VCPUREQ__TRACE_AT(vcpu->vm, vcpu, make, req, (old & req_bit(req)) != 0,
			  ts);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_BIT);
	set_wake_hint(vcpu, req);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_HINT);
}

static void set_wake_hint(struct vcpureq_vcpu *vcpu, unsigned int req)
{
	/*
	 * A request without NO_WAKEUP makes vcpureq_vcpu_block() return.
	 * Stored after the bit with release (pairs with the acquire exchange
	 * in block.c/run.c), so whoever consumes the hint sees the bit.
	 * Unconditional: skipping the store because the hint looked set
	 * could race with the vCPU consuming it, and lose a wake-up.
	 */
	if (!(req & VCPUREQ_REQUEST_NO_WAKEUP))
		atomic_store_explicit(&vcpu->wake_hint, 1, memory_order_release);
}

int vcpureq_request_pending(const struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	return atomic_load_explicit(&vcpu->requests, memory_order_relaxed) != 0;
}

int vcpureq_test_request(unsigned int req, const struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (!r)
		r = vcpureq__check_req(req, false);
	if (r)
		return r;
	/* Acquire: pairs with the release RMW in vcpureq__set_request(). */
	return (atomic_load_explicit(&vcpu->requests,
				     VCPUREQ__MO_PAYLOAD(memory_order_acquire)) &
		req_bit(req)) != 0;
}

int vcpureq_clear_request(unsigned int req, struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (!r)
		r = vcpureq__check_req(req, false);
	if (r)
		return r;
	if (atomic_fetch_and_explicit(&vcpu->requests, ~req_bit(req),
				      memory_order_relaxed) & req_bit(req))
		VCPUREQ__TRACE(vcpu->vm, vcpu, clear, req, 0);
	return 0;
}

/* Test and clear @req's bit (the vCPU thread; checks done). */
static bool take_bit(struct vcpureq_vcpu *vcpu, unsigned int req)
{
	uint64_t bit = req_bit(req);

	if (!(atomic_load_explicit(&vcpu->requests, memory_order_relaxed) & bit))
		return false;
	/*
	 * kernel: clear_bit(); smp_mb__after_atomic().  A seq_cst RMW: its
	 * acquire half pairs with the release of every make that set the bit
	 * (release sequence on the bitmap), so all their payloads are
	 * visible even when requests coalesced; its full-fence half orders
	 * the clear before the handler's reads of the payload, so a request
	 * made again after those reads is not lost to this clear.
	 */
	atomic_fetch_and_explicit(&vcpu->requests, ~bit,
				  VCPUREQ__MO_PAYLOAD(memory_order_seq_cst));
	VCPUREQ__STAT_INC(vcpu, vstats, requests_handled);
	atomic_fetch_add_explicit(&vcpureq__nr_stats_of(vcpu->vm, req)->handled,
				  1, memory_order_relaxed);
	/* Stamped after the clear (trace.h). */
	VCPUREQ__TRACE(vcpu->vm, vcpu, handle, req, 0);
	return true;
}

bool vcpureq__take_request(struct vcpureq_vcpu *vcpu, unsigned int req)
{
	return take_bit(vcpu, req);
}

int vcpureq_check_request(unsigned int req, struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_self(vcpu);

	if (!r)
		r = vcpureq__check_req(req, false);
	if (r)
		return r;
	return take_bit(vcpu, req);
}
