/* SPDX-License-Identifier: MIT */
/*
 * The run loop's contract with the VMM (issue 16's decided outcomes):
 *  - vcpureq_vcpu_run() / vcpureq_vcpu_enter() return VCPUREQ_RUN_REQUEST
 *    only for the caller's requests, never for the library's own PAUSE and
 *    WORK bits, which the handler could not consume;
 *  - vcpureq_vcpu_block() between enter and exit is refused (-EBUSY);
 *  - the per-request counters as a struct, and their reset.
 */
#include "harness.h"

/* Longer than any real wait here: only a hang reaches it. */
#define HANG_MS (20000 * h_time_scale())

/* ---- RUN_REQUEST only for the caller's bits ---- */

#define CHAIN 200

static _Atomic uint64_t chain_runs, user_less_returns;
static _Atomic int chain_err;

/* A work item that queues the next one from the vCPU thread: the WORK bit
 * is made again while the library is running the work it took. */
static int chain_fn(struct vcpureq_vcpu *v, void *arg)
{
	(void)arg;
	if (atomic_fetch_add(&chain_runs, 1) + 1 < CHAIN) {
		int r = vcpureq_run_on_vcpu_async(v, chain_fn, NULL, NULL);

		if (r)
			atomic_store(&chain_err, r);
	}
	return 0;
}

/* The harness's loop calls this for a VCPUREQ_RUN_REQUEST that was not its
 * stop request: the test makes no other request, so every call is a
 * return for the library's bits alone. */
static bool on_request(struct h_vm *h, unsigned int id)
{
	(void)h;
	(void)id;
	atomic_fetch_add(&user_less_returns, 1);
	return true;
}

/* Start @h's one vCPU with on_request() counting, and the chain of work
 * items on it. */
static int start_chain(struct h_vm *h)
{
	h->hooks.on_request = on_request;
	atomic_store(&chain_runs, 0);
	atomic_store(&user_less_returns, 0);
	CHECK_EQ(h_start(h), 0);
	CHECK(h_wait_until(h_in_guest, h, 0, HANG_MS));
	CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h->vm, 0), chain_fn,
					   NULL, NULL), 0);
	return 0;
}

TEST_BOTH(run_request_only_for_caller_bits)
{
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_SPIN, NULL); /* no handler: every user bit returns */
	/* The chain alone first: every item runs in the run loop and makes
	 * the WORK bit again while it runs, so each of the 200 is a chance
	 * for a wrong return, on a quiet machine or a busy one.  (With the
	 * pauses below from the start, a busy machine could run the whole
	 * chain inside the parkings, where no call returns: the
	 * LIBRARY_BITS_RETURNED mutant survived 1 run in 6 that way.) */
	CHECK(start_chain(&h) == 0);
	CHECK(h_wait_ge(&chain_runs, CHAIN, HANG_MS));
	CHECK_EQ(atomic_load(&user_less_returns), 0);
	/* Then again with pauses: their PAUSE bit, taken while work runs. */
	atomic_store(&chain_runs, 0);
	CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, 0), chain_fn,
					   NULL, NULL), 0);
	for (i = 0; i < 20; i++) {
		CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
		CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	}
	CHECK(h_wait_ge(&chain_runs, CHAIN, HANG_MS));
	CHECK_EQ(atomic_load(&chain_err), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	CHECK_EQ(atomic_load(&chain_runs), CHAIN);
	CHECK_EQ(atomic_load(&user_less_returns), 0);
	h_vm_destroy(&h);
	return 0;
}

/* With a handler that consumes the caller's request: the library's bits
 * made while the work runs do not make the call return either. */
static _Atomic uint64_t handled_user;
#define REQ_USER VCPUREQ_ARCH_REQ(3)

static int handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_USER, v) > 0)
		atomic_fetch_add(&handled_user, 1);
	return 0;
}

TEST_BOTH(run_request_not_for_library_bits_with_handler)
{
	struct vcpureq_vm_opts vo = { .handle_requests = handler };
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_SPIN, &vo);
	atomic_store(&handled_user, 0);
	CHECK(start_chain(&h) == 0);
	for (i = 0; i < 20; i++)
		CHECK(vcpureq_request(REQ_USER, vcpureq_vm_vcpu(h.vm, 0)) >= 0);
	CHECK(h_wait_ge(&chain_runs, CHAIN, HANG_MS));
	CHECK_EQ(h_stop_all(&h), 0);
	CHECK(atomic_load(&handled_user) >= 1);
	CHECK_EQ(atomic_load(&user_less_returns), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- block is refused between enter and exit ---- */

TEST_BOTH(block_refused_between_enter_and_exit)
{
	struct vcpureq_vcpu *v;
	struct timespec when;
	struct h_vm h;
	int r;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_vcpu_enter(v), VCPUREQ_RUN_ENTER);
	CHECK_EQ(vcpureq_vcpu_mode(v), VCPUREQ_IN_GUEST_MODE);
	CHECK_EQ(vcpureq_vcpu_block(v), -EBUSY);
	CHECK(strstr(vcpureq_errmsg(), "vcpureq_vcpu_exit") != NULL);
	clock_gettime(CLOCK_MONOTONIC, &when);
	CHECK_EQ(vcpureq_vcpu_block_deadline(v, &when), -EBUSY);
	/* Nothing changed: still in guest mode, not a sleeper. */
	CHECK_EQ(vcpureq_vcpu_mode(v), VCPUREQ_IN_GUEST_MODE);
	CHECK(!vcpureq_vcpu_is_blocking(v));
	/* The entry ended (nothing ran: no KVM_RUN, no callback). */
	r = vcpureq_vcpu_exit(v, be == VCPUREQ_BACKEND_KVM ? -EINTR :
							     VCPUREQ_GUEST_KICKED);
	CHECK(r == VCPUREQ_RUN_AGAIN || r == VCPUREQ_RUN_INTR);
	CHECK_EQ(vcpureq_vcpu_mode(v), VCPUREQ_OUTSIDE_GUEST_MODE);
	/* Outside guest mode block works: a past deadline times out. */
	CHECK_EQ(vcpureq_vcpu_block_deadline(v, &when), -ETIMEDOUT);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- per-request counters ---- */

#define REQ_COUNTED VCPUREQ_ARCH_REQ(5)
static _Atomic uint64_t handled_counted;

static int counting_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_COUNTED, v) > 0)
		atomic_fetch_add(&handled_counted, 1);
	return 0;
}

static uint64_t sum_signals(struct h_vm *h)
{
	uint64_t s = 0;
	unsigned int i;

	for (i = 0; i < h->nr; i++)
		s += h_stats(h, i).signals_sent;
	return s;
}

TEST_BOTH(request_stats_struct_and_reset)
{
	struct vcpureq_vm_opts vo = { .handle_requests = counting_handler };
	struct vcpureq_request_stats rs, none;
	struct vcpureq_stats vs;
	unsigned char big[sizeof(rs) + 16];
	struct h_vm h;
	int i, k;

	H_VM(&h, be, 2, H_SPIN, &vo);
	atomic_store(&handled_counted, 0);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 2; i++)
		CHECK(h_wait_until(h_in_guest, &h, (unsigned int)i, HANG_MS));
	for (k = 0; k < 40; k++)
		CHECK(vcpureq_request(REQ_COUNTED | VCPUREQ_REQUEST_WAIT,
				      vcpureq_vm_vcpu(h.vm, (unsigned int)k % 2)) >= 0);
	for (k = 0; k < 5; k++)
		CHECK(vcpureq_vcpu_kick(vcpureq_vm_vcpu(h.vm, 0)) >= 0);
	/* Every make is counted, coalesced or not. */
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, REQ_COUNTED, &rs, sizeof(rs)), 0);
	CHECK_EQ(rs.made, 40);
	/* Handled: what the handler's check_request() returned 1 for, once
	 * the vCPUs have processed everything (a WAIT for each). */
	CHECK(vcpureq_make_all_cpus_request(h.vm, VCPUREQ_REQ_OUTSIDE_GUEST_MODE) >= 0);
	for (k = 0; k < HANG_MS && rs.handled != atomic_load(&handled_counted); k++) {
		h_sleep_us(1000);
		CHECK_EQ(vcpureq_vm_request_stats(h.vm, REQ_COUNTED, &rs, sizeof(rs)), 0);
	}
	CHECK_EQ(rs.handled, atomic_load(&handled_counted));
	CHECK(rs.handled >= 1 && rs.handled <= 40);
	CHECK(rs.waits <= 40);
	/* The signals of every number and of the request-less kicks add up to
	 * the vCPUs' own count (nothing else ran). */
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, VCPUREQ_REQUEST_NO_ACTION, &none,
					  sizeof(none)), 0);
	CHECK_EQ(none.made, 0);
	CHECK_EQ(rs.signals + none.signals, sum_signals(&h));
	/* Bad arguments. */
	CHECK_EQ(vcpureq_vm_request_stats(NULL, REQ_COUNTED, &rs, sizeof(rs)), -EINVAL);
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, 64, &rs, sizeof(rs)), -EINVAL);
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, REQ_COUNTED, NULL, sizeof(rs)), -EINVAL);
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, REQ_COUNTED, &rs, 8), -EINVAL);
	/* A newer caller's larger struct: the tail it knows and we do not is
	 * zero. */
	memset(big, 0xa5, sizeof(big));
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, REQ_COUNTED,
					  (struct vcpureq_request_stats *)big,
					  sizeof(big)), 0);
	CHECK_EQ(big[sizeof(rs) + 15], 0);
	/* Reset: every counter to 0 (the vCPUs spin: nothing in flight). */
	CHECK_EQ(vcpureq_vm_reset_stats(h.vm), 0);
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, REQ_COUNTED, &rs, sizeof(rs)), 0);
	CHECK_EQ(rs.made + rs.handled + rs.signals + rs.waits, 0);
	vs = h_stats(&h, 0);
	CHECK_EQ(vs.requests_made + vs.requests_handled + vs.signals_sent +
		 vs.kicks + vs.acks_waited + vs.entries + vs.exits +
		 vs.kicked_exits + vs.ack_rechecks + vs.acks_at_recheck, 0);
	/* Counting goes on from 0. */
	CHECK(vcpureq_request(REQ_COUNTED, vcpureq_vm_vcpu(h.vm, 1)) >= 0);
	CHECK_EQ(vcpureq_vm_request_stats(h.vm, REQ_COUNTED, &rs, sizeof(rs)), 0);
	CHECK_EQ(rs.made, 1);
	CHECK_EQ(h_stats(&h, 1).requests_made, 1);
	CHECK_EQ(vcpureq_vm_reset_stats(NULL), -EINVAL);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}
