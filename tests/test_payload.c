/* SPDX-License-Identifier: MIT */
/*
 * "VCPU Requests with Associated State" (vcpu-requests.rst): the state a
 * requester writes before vcpureq_make_request() is visible to the vCPU
 * thread once vcpureq_test_request() or vcpureq_check_request() returns 1
 * (release on the bit, acquire on the test / check).
 *
 * The payload here is plain memory (no atomics), as a VMM's would be, so
 * nothing but the request bit orders it.  In a normal build on x86 the
 * check of the values can fail only through compiler reordering; under
 * ThreadSanitizer (make test-tsan, and the payload-tsan programs of
 * tests/torture) it fails deterministically when the happens-before edge
 * is missing: the VCPUREQ_MUTANT_RELAXED_PAYLOAD mutant makes TSan report
 * the data race on the first round.
 *
 * The requester makes with NO_WAKEUP and never kicks, so that the bit is
 * the only edge: the wake hint's release/acquire would be a second one.
 */
#include "harness.h"

#include <sched.h>

#define P_ROUNDS 1000
#define REQ_PAYLOAD (VCPUREQ_ARCH_REQ(40) | VCPUREQ_REQUEST_NO_WAKEUP)

struct payload {
	uint64_t seq;
	uint64_t words[7];
};

static struct payload p_data;        /* plain: written by the requester */
static _Atomic uint64_t p_consumed;  /* vCPU -> requester: round done */
static _Atomic int p_bound, p_bad;
static _Atomic uint64_t p_bad_seq;

static void *p_vcpu_main(void *arg)
{
	struct vcpureq_vcpu *v = arg;
	uint64_t want = 1;

	if (vcpureq_vcpu_bind(v)) {
		atomic_store(&p_bad, -1);
		atomic_store(&p_bound, 1);
		return NULL;
	}
	atomic_store(&p_bound, 1);
	while (want <= P_ROUNDS && !atomic_load(&p_bad)) {
		int seen;
		unsigned int k;

		/* Even rounds: test (acquire), then clear; odd: check. */
		if (want % 2) {
			seen = vcpureq_check_request(REQ_PAYLOAD, v);
		} else {
			seen = vcpureq_test_request(REQ_PAYLOAD, v);
			if (seen > 0 && vcpureq_clear_request(REQ_PAYLOAD, v))
				seen = -1;
		}
		if (seen < 0) {
			atomic_store(&p_bad, -2);
			break;
		}
		if (!seen) {
			sched_yield();
			continue;
		}
		/* The bit said so: the payload of this round is here. */
		if (p_data.seq != want)
			atomic_store(&p_bad, 1);
		for (k = 0; k < 7; k++)
			if (p_data.words[k] != want * 7 + k)
				atomic_store(&p_bad, 2);
		if (atomic_load(&p_bad))
			atomic_store(&p_bad_seq, want);
		/* Release: our reads of the payload happen before the
		 * requester's next writes (pairs with its acquire load). */
		atomic_store_explicit(&p_consumed, want, memory_order_release);
		want++;
	}
	vcpureq_vcpu_unbind(v);
	return NULL;
}

TEST_BOTH(payload_plain_visible)
{
	struct vcpureq_vcpu *v;
	struct vcpureq_stats st;
	struct h_vm h;
	pthread_t t;
	uint64_t seq, end;
	unsigned int k;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(pthread_create(&t, NULL, p_vcpu_main, v), 0);
	while (!atomic_load(&p_bound))
		sched_yield();
	for (seq = 1; seq <= P_ROUNDS && !atomic_load(&p_bad); seq++) {
		p_data.seq = seq;
		for (k = 0; k < 7; k++)
			p_data.words[k] = seq * 7 + k;
		CHECK_EQ(vcpureq_make_request(REQ_PAYLOAD, v), 0);
		end = h_now_ns() + 10000000000ull;
		while (atomic_load_explicit(&p_consumed, memory_order_acquire) <
			       seq &&
		       !atomic_load(&p_bad)) {
			if (h_now_ns() > end) {
				fprintf(stderr, "round %llu: the vCPU thread did not see the request in 10 s\n",
					(unsigned long long)seq);
				return 1;
			}
			sched_yield();
		}
	}
	pthread_join(t, NULL);
	if (atomic_load(&p_bad))
		fprintf(stderr, "round %llu: error %d (1: stale seq, 2: stale words, <0: API error)\n",
			(unsigned long long)atomic_load(&p_bad_seq),
			atomic_load(&p_bad));
	CHECK_EQ(atomic_load(&p_bad), 0);
	CHECK_EQ(atomic_load(&p_consumed), P_ROUNDS);
	vcpureq_vcpu_stats(v, &st, sizeof(st));
	CHECK_EQ(st.requests_made, P_ROUNDS);
	CHECK_EQ(st.kicks, 0); /* the bit was the only edge */
	h_vm_destroy(&h);
	return 0;
}
