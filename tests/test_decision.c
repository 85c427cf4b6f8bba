/* SPDX-License-Identifier: MIT */
/*
 * Every row of the decision table (docs/design.md, section 2), checked through the
 * counters and the vCPU's observed behaviour, on real KVM guests and on the
 * thread backend.  Rows that need a vCPU held in EXITING_GUEST_MODE use the
 * thread backend, whose guest callback can delay its exit at will (on KVM
 * the EXITING window is the ~30 us between the signal and KVM_RUN
 * returning, which a test cannot hold open).
 */
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define REQ_B VCPUREQ_ARCH_REQ(2)
#define REQ_C VCPUREQ_ARCH_REQ(3)
#define HANG_MS (10000 * h_time_scale())

static _Atomic int handled[64];

/* Counts every request but H_REQ_STOP, which the harness loop takes. */
static int count_handler(struct vcpureq_vcpu *v, void *opaque)
{
	unsigned int nr;

	(void)opaque;
	for (nr = 0; nr < 63; nr++)
		if (vcpureq_check_request(nr, v) > 0)
			atomic_fetch_add(&handled[nr], 1);
	return 0;
}

static struct vcpureq_vcpu *V(struct h_vm *h, unsigned int id)
{
	return vcpureq_vm_vcpu(h->vm, id);
}

static bool settled_asleep(struct h_vm *h, unsigned int id)
{
	return h_sleeping(h, id) &&
	       h->vcpus[id].finished == 0;
}

static bool wait_handled(unsigned int nr, int n)
{
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

	while (atomic_load(&handled[nr]) < n)
		if (h_now_ns() > end)
			return false;
	return atomic_load(&handled[nr]) == n;
}

static unsigned int bit(unsigned int req)
{
	return req & VCPUREQ_REQUEST_MASK;
}

/* ---- a VMM loop held outside guest mode, awake, or in a lockless walk --- */

static _Atomic int hold_outside, held, walk_hold, walk_mode, in_walk,
	walk_ending;
static _Atomic unsigned int walk_vcpu; /* the vCPU whose exits walk/hold */

static bool hold_on_exit(struct h_vm *h, unsigned int id, int reason)
{
	struct vcpureq_vcpu *v = V(h, id);

	(void)reason;
	if (id != atomic_load(&walk_vcpu))
		return true;
	if (atomic_load(&walk_mode)) {
		if (vcpureq_walk_lockless_begin(v))
			return false;
		atomic_store(&in_walk, 1);
		while (atomic_load(&walk_hold))
			;
		atomic_store(&walk_ending, 1);
		vcpureq_walk_lockless_end(v);
		atomic_store(&in_walk, 0);
		atomic_store(&walk_mode, 0);
	}
	if (atomic_load(&hold_outside)) {
		atomic_store(&held, 1);
		while (atomic_load(&hold_outside))
			;
		atomic_store(&held, 0);
	}
	return true;
}

/* Row: no NO_WAKEUP, asleep in block -> set, wake, no signal, no wait. */
TEST_BOTH(row_asleep_is_woken)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct h_vm h;

	H_VM(&h, be, 1, H_HALT, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(settled_asleep, &h, 0, HANG_MS));
	s0 = h_stats(&h, 0);
	/* Even with WAIT: a sleeper is outside guest mode, not waited for. */
	CHECK_EQ(vcpureq_request(REQ_A | VCPUREQ_REQUEST_WAIT, V(&h, 0)), 0);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.wakeups - s0.wakeups, 1);
	CHECK_EQ(s1.signals_sent, s0.signals_sent);
	CHECK_EQ(s1.acks_waited, s0.acks_waited);
	CHECK(wait_handled(bit(REQ_A), 1));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Row: any flags, OUTSIDE and awake -> set, nothing else. */
TEST_BOTH(row_outside_awake_nothing)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct h_vm h;

	atomic_store(&hold_outside, 1);
	H_VM(&h, be, 1, H_OUT, &o);
	h.hooks.on_exit = hold_on_exit;
	CHECK_EQ(h_start(&h), 0);
	while (!atomic_load(&held))
		;
	CHECK_EQ(vcpureq_vcpu_mode(V(&h, 0)), VCPUREQ_OUTSIDE_GUEST_MODE);
	s0 = h_stats(&h, 0);
	CHECK_EQ(vcpureq_request(REQ_A, V(&h, 0)), 0);
	CHECK_EQ(vcpureq_request(REQ_B | VCPUREQ_REQUEST_WAIT, V(&h, 0)), 0);
	CHECK_EQ(vcpureq_request(REQ_C | VCPUREQ_REQUEST_NO_WAKEUP, V(&h, 0)), 0);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.signals_sent, s0.signals_sent);
	CHECK_EQ(s1.wakeups, s0.wakeups);
	CHECK_EQ(s1.acks_waited, s0.acks_waited);
	CHECK_EQ(s1.requests_made - s0.requests_made, 3);
	CHECK_EQ(atomic_load(&handled[bit(REQ_A)]), 0); /* not yet: held */
	atomic_store(&hold_outside, 0);
	CHECK(wait_handled(bit(REQ_A), 1));
	CHECK(wait_handled(bit(REQ_B), 1));
	CHECK(wait_handled(bit(REQ_C), 1));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Row: no WAIT, IN_GUEST -> set, signal (the CAS winner), no wait. */
TEST_BOTH(row_in_guest_signal)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
	s0 = h_stats(&h, 0);
	CHECK_EQ(vcpureq_request(REQ_A, V(&h, 0)), 1);
	CHECK(wait_handled(bit(REQ_A), 1));
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.signals_sent - s0.signals_sent, 1);
	CHECK_EQ(s1.acks_waited, s0.acks_waited);
	CHECK_EQ(s1.wakeups, s0.wakeups);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Row: WAIT, IN_GUEST -> set, signal, wait: the instance has ended when the
 * request returns (the exit epoch moved). */
TEST_BOTH(row_in_guest_wait_acked)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 50; i++) {
		uint32_t e0;

		CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
		s0 = h_stats(&h, 0);
		e0 = vcpureq_vcpu_exit_epoch(V(&h, 0));
		CHECK_EQ(vcpureq_request(REQ_A | VCPUREQ_REQUEST_WAIT, V(&h, 0)), 1);
		CHECK(vcpureq_vcpu_exit_epoch(V(&h, 0)) != e0);
		s1 = h_stats(&h, 0);
		CHECK_EQ(s1.signals_sent - s0.signals_sent, 1);
		CHECK_EQ(s1.acks_waited - s0.acks_waited, 1);
		CHECK(wait_handled(bit(REQ_A), i + 1));
	}
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- thread backend: a guest that holds EXITING_GUEST_MODE ---- */

static _Atomic int exit_hold, saw_kick;

static int holding_guest(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	while (!vcpureq_guest_kicked(v))
		;
	atomic_store(&saw_kick, 1);
	while (atomic_load(&exit_hold))
		;
	return VCPUREQ_GUEST_KICKED;
}

/* A WAIT request made from its own thread: of one vCPU (v), or of all
 * (vm, v NULL). */
struct waiter {
	struct vcpureq_vcpu *v;
	struct vcpureq_vm *vm;
	unsigned int req;
	_Atomic int done;
	int ret;
	int walk_ending_at_return;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = w->v ? vcpureq_request(w->req, w->v) :
			vcpureq_make_all_cpus_request(w->vm, w->req);
	w->walk_ending_at_return = atomic_load(&walk_ending);
	atomic_store(&w->done, 1);
	return NULL;
}

/* A WAIT requester has decided to wait for vCPU @id (acks_waited, counted
 * before it waits, moved past ack_base). */
static uint64_t ack_base;

static bool ack_awaited(struct h_vm *h, unsigned int id)
{
	return h_stats(h, id).acks_waited > ack_base;
}

/* Rows: no WAIT, EXITING -> no signal (coalesced); WAIT, EXITING -> no
 * signal, but wait for the exit. */
TEST(row_exiting_coalesced_thread)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler,
				     .guest = holding_guest };
	struct vcpureq_stats s0, s1;
	struct waiter w = { 0 };
	pthread_t t;
	uint32_t e0;
	struct h_vm h;

	(void)be;
	atomic_store(&exit_hold, 1);
	H_VM(&h, VCPUREQ_BACKEND_THREAD, 1, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
	e0 = vcpureq_vcpu_exit_epoch(V(&h, 0));
	CHECK_EQ(vcpureq_request(REQ_A, V(&h, 0)), 1);
	while (!atomic_load(&saw_kick))
		;
	CHECK_EQ(vcpureq_vcpu_mode(V(&h, 0)), VCPUREQ_EXITING_GUEST_MODE);
	s0 = h_stats(&h, 0);
	CHECK_EQ(vcpureq_request(REQ_B, V(&h, 0)), 0);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.signals_sent, s0.signals_sent);
	CHECK_EQ(s1.signals_coalesced - s0.signals_coalesced, 1);
	w.v = V(&h, 0);
	w.req = REQ_C | VCPUREQ_REQUEST_WAIT;
	ack_base = s1.acks_waited;
	CHECK_EQ(pthread_create(&t, NULL, waiter_main, &w), 0);
	/* Its request is made while the exit is held (however late the
	 * machine runs the thread): it has decided to wait. */
	CHECK(h_wait_until(ack_awaited, &h, 0, HANG_MS));
	CHECK_EQ(atomic_load(&w.done), 0); /* really waiting for the ack */
	CHECK_EQ(vcpureq_vcpu_exit_epoch(V(&h, 0)), e0);
	atomic_store(&exit_hold, 0);
	pthread_join(t, NULL);
	CHECK_EQ(w.ret, 0); /* no signal of its own */
	CHECK(vcpureq_vcpu_exit_epoch(V(&h, 0)) != e0);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.signals_sent, s0.signals_sent);
	CHECK(wait_handled(bit(REQ_A), 1));
	CHECK(wait_handled(bit(REQ_B), 1));
	CHECK(wait_handled(bit(REQ_C), 1));
	atomic_store(&saw_kick, 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/*
 * Several requesters WAIT on one vCPU at once: the exit wakes every one of
 * them, none is left to find the ack at its 20 ms recheck (make_request.c,
 * ACK_RECHECK_NS).  The vCPU holds EXITING_GUEST_MODE (thread backend)
 * until the K waiters have all decided to wait and have slept through at
 * least two rechecks each on average (stat ack_rechecks), so that they
 * are asleep on the epoch when it moves; then the exit.  Counted, not
 * timed: stat acks_at_recheck must stay 0.  A recheck timer may expire
 * between the exit's epoch bump and its wake-up (a late ack through no
 * fault of the wake-up; several, if the vCPU thread is preempted there):
 * such a round is run again, up to 6, and the case passes at the first
 * round with no late ack.  A wake-up of one waiter only leaves the other
 * NWAITERS - 1 to their rechecks in every round (ack_wakes_one).
 */
#define NWAITERS 4

static int all_waiters_woken_round(struct h_vm *h, int round, uint64_t *late)
{
	struct waiter w[NWAITERS];
	pthread_t t[NWAITERS];
	struct vcpureq_stats s0, s1;
	uint32_t e0;
	int i;

	atomic_store(&exit_hold, 1);
	atomic_store(&saw_kick, 0);
	CHECK(h_wait_until(h_in_guest, h, 0, HANG_MS));
	CHECK_EQ(vcpureq_request(REQ_A, V(h, 0)), 1);
	while (!atomic_load(&saw_kick))
		;
	CHECK_EQ(vcpureq_vcpu_mode(V(h, 0)), VCPUREQ_EXITING_GUEST_MODE);
	e0 = vcpureq_vcpu_exit_epoch(V(h, 0));
	s0 = h_stats(h, 0);
	ack_base = s0.acks_waited + NWAITERS - 1;
	memset(w, 0, sizeof(w));
	for (i = 0; i < NWAITERS; i++) {
		w[i].v = V(h, 0);
		w[i].req = REQ_B | VCPUREQ_REQUEST_WAIT;
		CHECK_EQ(pthread_create(&t[i], NULL, waiter_main, &w[i]), 0);
	}
	CHECK(h_wait_until(ack_awaited, h, 0, HANG_MS));
	{
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

		do
			h_sleep_us(1000);
		while (h_stats(h, 0).ack_rechecks <
			       s0.ack_rechecks + 2 * NWAITERS &&
		       h_now_ns() < end);
	}
	for (i = 0; i < NWAITERS; i++)
		CHECK_EQ(atomic_load(&w[i].done), 0); /* all still waiting */
	CHECK_EQ(vcpureq_vcpu_exit_epoch(V(h, 0)), e0);
	atomic_store(&exit_hold, 0);
	for (i = 0; i < NWAITERS; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].ret, 0); /* EXITING: no signal of its own */
	}
	s1 = h_stats(h, 0);
	CHECK_EQ(s1.acks_waited - s0.acks_waited, NWAITERS);
	CHECK(s1.ack_rechecks - s0.ack_rechecks >= 2 * NWAITERS);
	*late = s1.acks_at_recheck - s0.acks_at_recheck;
	printf("round %d: %d waiters, %llu rechecks while held, %llu acks found at a recheck\n",
	       round, NWAITERS,
	       (unsigned long long)(s1.ack_rechecks - s0.ack_rechecks),
	       (unsigned long long)*late);
	return 0;
}

TEST(several_waiters_all_woken_thread)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler,
				     .guest = holding_guest };
	uint64_t late = 0;
	struct h_vm h;
	int round;

	(void)be;
	H_VM(&h, VCPUREQ_BACKEND_THREAD, 1, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	for (round = 1; round <= 6; round++) {
		CHECK_EQ(all_waiters_woken_round(&h, round, &late), 0);
		if (!late)
			break;
	}
	CHECK_EQ(late, 0);
	atomic_store(&saw_kick, 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Row: WAIT, READING (a lockless walk) -> no signal, wait for its end; a
 * walk in progress delays the WAIT request until it ends. */
TEST_BOTH(row_reading_waited)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct waiter w = { 0 };
	pthread_t t;
	struct h_vm h;

	atomic_store(&walk_mode, 1);
	atomic_store(&walk_hold, 1);
	H_VM(&h, be, 1, H_OUT, &o);
	h.hooks.on_exit = hold_on_exit;
	CHECK_EQ(h_start(&h), 0);
	while (!atomic_load(&in_walk))
		;
	CHECK_EQ(vcpureq_vcpu_mode(V(&h, 0)),
		 VCPUREQ_READING_SHADOW_PAGE_TABLES);
	s0 = h_stats(&h, 0);
	/* Without WAIT nothing waits and nothing is signalled. */
	CHECK_EQ(vcpureq_request(REQ_A, V(&h, 0)), 0);
	w.v = V(&h, 0);
	w.req = VCPUREQ_REQ_TLB_FLUSH;
	ack_base = s0.acks_waited;
	CHECK_EQ(pthread_create(&t, NULL, waiter_main, &w), 0);
	CHECK(h_wait_until(ack_awaited, &h, 0, HANG_MS));
	CHECK_EQ(atomic_load(&w.done), 0);
	atomic_store(&walk_hold, 0);
	pthread_join(t, NULL);
	CHECK_EQ(w.ret, 0);
	CHECK_EQ(w.walk_ending_at_return, 1);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.signals_sent, s0.signals_sent);
	CHECK_EQ(s1.acks_waited - s0.acks_waited, 1);
	CHECK(wait_handled(bit(VCPUREQ_REQ_TLB_FLUSH), 1));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Row: NO_WAKEUP, asleep -> set, no wake, no signal, no wait; the bit is
 * handled at the next wake-up (here UNBLOCK). */
TEST_BOTH(row_no_wakeup_stays_asleep)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct h_vm h;

	H_VM(&h, be, 1, H_HALT, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(settled_asleep, &h, 0, HANG_MS));
	s0 = h_stats(&h, 0);
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_TLB_FLUSH, V(&h, 0)), 0);
	CHECK_EQ(vcpureq_request(REQ_A | VCPUREQ_REQUEST_NO_WAKEUP, V(&h, 0)), 0);
	h_sleep_us(50000);
	s1 = h_stats(&h, 0);
	CHECK(h_sleeping(&h, 0));
	CHECK_EQ(s1.wakeups, s0.wakeups);
	CHECK_EQ(s1.signals_sent, s0.signals_sent);
	CHECK_EQ(s1.acks_waited, s0.acks_waited);
	CHECK_EQ(atomic_load(&handled[bit(VCPUREQ_REQ_TLB_FLUSH)]), 0);
	CHECK_EQ(atomic_load(&handled[bit(REQ_A)]), 0);
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_UNBLOCK, V(&h, 0)), 0);
	CHECK(wait_handled(bit(VCPUREQ_REQ_TLB_FLUSH), 1));
	CHECK(wait_handled(bit(REQ_A), 1));
	CHECK_EQ(h_stats(&h, 0).wakeups - s0.wakeups, 1);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Row: NO_ACTION -> no bit; kick and wait per the other rows. */
TEST_BOTH(row_no_action_sets_no_bit)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct h_vm h;
	unsigned int nr;
	uint32_t e0;

	H_VM(&h, be, 2, H_SPIN, &o);
	CHECK_EQ(h_set_prog(&h, 1, H_HALT), 0);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
	CHECK(h_wait_until(settled_asleep, &h, 1, HANG_MS));
	/* In guest: OUTSIDE_GUEST_MODE signals and waits for the exit. */
	s0 = h_stats(&h, 0);
	e0 = vcpureq_vcpu_exit_epoch(V(&h, 0));
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, V(&h, 0)), 1);
	CHECK(vcpureq_vcpu_exit_epoch(V(&h, 0)) != e0);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.requests_made, s0.requests_made);
	CHECK_EQ(s1.signals_sent - s0.signals_sent, 1);
	/* Asleep: NO_WAKEUP leaves it; NO_ACTION alone wakes it, but with no
	 * bit the sleeper finds nothing to do and sleeps again. */
	s0 = h_stats(&h, 1);
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, V(&h, 1)), 0);
	CHECK_EQ(h_stats(&h, 1).wakeups, s0.wakeups);
	CHECK_EQ(vcpureq_request(VCPUREQ_REQUEST_NO_ACTION, V(&h, 1)), 0);
	s1 = h_stats(&h, 1);
	CHECK_EQ(s1.wakeups - s0.wakeups, 1);
	CHECK_EQ(s1.requests_made, s0.requests_made);
	h_sleep_us(20000);
	CHECK(h_sleeping(&h, 1));
	for (nr = 0; nr < 63; nr++)
		CHECK_EQ(atomic_load(&handled[nr]), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- UNBLOCK, broadcast WAIT, VM_DEAD ---- */

static _Atomic int wake_why;

static bool record_wake(struct h_vm *h, unsigned int id, int why)
{
	(void)h;
	(void)id;
	atomic_fetch_or(&wake_why, why);
	return true;
}

/* UNBLOCK wakes the sleeper and is consumed by block: no handler sees it,
 * made to a running vCPU it is dropped at entry. */
TEST_BOTH(unblock_wakes_and_is_consumed)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct h_vm h;

	H_VM(&h, be, 2, H_HALT, &o);
	CHECK_EQ(h_set_prog(&h, 1, H_SPIN), 0);
	h.hooks.on_wake = record_wake;
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(settled_asleep, &h, 0, HANG_MS));
	CHECK(h_wait_until(h_spinning, &h, 1, HANG_MS));
	uint32_t e = vcpureq_vcpu_exit_epoch(V(&h, 1));
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_UNBLOCK, V(&h, 0)), 0);
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_UNBLOCK, V(&h, 1)), 1);
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;
	while (!(atomic_load(&wake_why) & VCPUREQ_WAKE_UNBLOCK) && h_now_ns() < end)
		;
	CHECK(atomic_load(&wake_why) & VCPUREQ_WAKE_UNBLOCK);
	CHECK(h_wait_until(settled_asleep, &h, 0, HANG_MS));
	/* vCPU 1 left the guest for the kick, dropped UNBLOCK at entry and
	 * went back into the guest. */
	while (vcpureq_vcpu_exit_epoch(V(&h, 1)) == e && h_now_ns() < end)
		;
	CHECK(vcpureq_vcpu_exit_epoch(V(&h, 1)) != e);
	CHECK(h_wait_until(h_spinning, &h, 1, HANG_MS));
	CHECK_EQ(atomic_load(&handled[bit(VCPUREQ_REQ_UNBLOCK)]), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* A broadcast WAIT request: every target that was IN_GUEST or READING has
 * left that instance when it returns; a sleeping target (NO_WAKEUP) is
 * neither woken nor waited for; all signals first, then the waits. */
static uint32_t bw_e0[4];

/* vCPU @id has left the instance it was in at bw_e0[id]. */
static bool left_instance(struct h_vm *h, unsigned int id)
{
	return vcpureq_vcpu_exit_epoch(V(h, id)) != bw_e0[id];
}

/* The broadcast has reached vCPU @id and counted a wait for it (its
 * acks_waited moved past bw_acks0). */
static uint64_t bw_acks0;

static bool wait_counted(struct h_vm *h, unsigned int id)
{
	return h_stats(h, id).acks_waited != bw_acks0;
}

TEST_BOTH(broadcast_wait_acks)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct waiter b = { 0 };
	uint32_t e0[4];
	pthread_t t;
	struct h_vm h;
	unsigned int i;

	atomic_store(&walk_mode, 0);
	atomic_store(&walk_hold, 1);
	atomic_store(&walk_ending, 0);
	H_VM(&h, be, 4, H_SPIN, &o);
	CHECK_EQ(h_set_prog(&h, 2, H_HALT), 0);
	CHECK_EQ(h_set_prog(&h, 3, H_OUT), 0);
	h.hooks.on_exit = hold_on_exit;
	atomic_store(&walk_vcpu, 3);
	atomic_store(&walk_mode, 1);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
	CHECK(h_wait_until(h_spinning, &h, 1, HANG_MS));
	CHECK(h_wait_until(settled_asleep, &h, 2, HANG_MS));
	while (!atomic_load(&in_walk))
		;
	for (i = 0; i < 4; i++)
		bw_e0[i] = e0[i] = vcpureq_vcpu_exit_epoch(V(&h, i));
	bw_acks0 = h_stats(&h, 3).acks_waited;
	b.vm = h.vm;
	b.req = VCPUREQ_REQ_TLB_FLUSH;
	CHECK_EQ(pthread_create(&t, NULL, waiter_main, &b), 0);
	/* Signals go out before the wait: 0 and 1 leave the guest while the
	 * walk still holds the broadcast (however long the machine takes to
	 * schedule them: no time limit but the hang bound).  The walk is
	 * released only once the broadcast has met vCPU 3 in it (a wait
	 * counted): released earlier, vCPU 3 could be back in the guest
	 * when a preempted broadcaster reaches it, and be signalled. */
	CHECK(h_wait_until(left_instance, &h, 0, HANG_MS));
	CHECK(h_wait_until(left_instance, &h, 1, HANG_MS));
	CHECK(h_wait_until(wait_counted, &h, 3, HANG_MS));
	CHECK_EQ(atomic_load(&b.done), 0); /* held by the walk */
	atomic_store(&walk_hold, 0);
	pthread_join(t, NULL);
	CHECK_EQ(b.ret, 1);
	CHECK_EQ(b.walk_ending_at_return, 1);
	CHECK(vcpureq_vcpu_exit_epoch(V(&h, 3)) != e0[3]);
	CHECK_EQ(vcpureq_vcpu_exit_epoch(V(&h, 2)), e0[2]);
	CHECK(h_sleeping(&h, 2));
	CHECK_EQ(h_stats(&h, 2).acks_waited, 0);
	CHECK_EQ(h_stats(&h, 2).wakeups, 0);
	CHECK_EQ(h_stats(&h, 2).signals_sent, 0);
	CHECK_EQ(h_stats(&h, 0).signals_sent, 1);
	CHECK_EQ(h_stats(&h, 1).signals_sent, 1);
	CHECK_EQ(h_stats(&h, 3).signals_sent, 0);
	CHECK(wait_handled(bit(VCPUREQ_REQ_TLB_FLUSH), 3));
	CHECK_EQ(h_stop_all(&h), 0);
	CHECK_EQ(atomic_load(&handled[bit(VCPUREQ_REQ_TLB_FLUSH)]), 4);
	h_vm_destroy(&h);
	return 0;
}

static bool finished(struct h_vm *h, unsigned int id)
{
	return atomic_load(&h->vcpus[id].finished);
}

/* VM_DEAD stops every vCPU and is final: h_spinning vCPUs leave with -EIO, a
 * sleeper is not woken (NO_WAKEUP) but gets -EIO once something wakes it,
 * and no vCPU ever enters the guest again. */
TEST_BOTH(vm_dead_is_final)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s;
	uint64_t it[3];
	struct h_vm h;
	unsigned int i;

	H_VM(&h, be, 3, H_SPIN, &o);
	CHECK_EQ(h_set_prog(&h, 2, H_HALT), 0);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
	CHECK(h_wait_until(h_spinning, &h, 1, HANG_MS));
	CHECK(h_wait_until(settled_asleep, &h, 2, HANG_MS));
	CHECK(!vcpureq_vm_is_dead(h.vm));
	CHECK_EQ(vcpureq_vm_dead(h.vm), 1);
	CHECK(vcpureq_vm_is_dead(h.vm));
	/* WAIT: both spinners have left the guest when it returns. */
	CHECK(vcpureq_vcpu_mode(V(&h, 0)) == VCPUREQ_OUTSIDE_GUEST_MODE);
	CHECK(vcpureq_vcpu_mode(V(&h, 1)) == VCPUREQ_OUTSIDE_GUEST_MODE);
	CHECK(h_wait_until(finished, &h, 0, HANG_MS));
	CHECK(h_wait_until(finished, &h, 1, HANG_MS));
	h_sleep_us(20000);
	CHECK(h_sleeping(&h, 2));
	CHECK_EQ(h_stats(&h, 2).wakeups, 0);
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_UNBLOCK, V(&h, 2)), 0);
	CHECK(h_wait_until(finished, &h, 2, HANG_MS));
	for (i = 0; i < 3; i++)
		it[i] = h_guest_iters(&h, i);
	h_join_all(&h);
	/* A new thread on a dead VM never enters the guest. */
	s = h_stats(&h, 0);
	CHECK_EQ(h_start_one(&h, 0), 0);
	CHECK(h_wait_until(finished, &h, 0, HANG_MS));
	h_join_all(&h);
	CHECK_EQ(h_stats(&h, 0).entries, s.entries);
	h_sleep_us(20000);
	for (i = 0; i < 3; i++) {
		CHECK_EQ(h_guest_iters(&h, i), it[i]);
		CHECK_EQ(vcpureq_vcpu_mode(V(&h, i)), VCPUREQ_OUTSIDE_GUEST_MODE);
		CHECK_EQ(h.vcpus[i].run_ret, 0); /* ended with -EIO, no error */
	}
	/* Handlers never saw VM_DEAD: the library took it. */
	CHECK_EQ(atomic_load(&handled[bit(VCPUREQ_REQ_VM_DEAD)]), 0);
	h_vm_destroy(&h);
	return 0;
}

/* The interrupt mailbox wakes a halted vCPU, and the guest's handler runs
 * once per posted interrupt (KVM: injected with KVM_INTERRUPT through the
 * interrupt window). */
TEST_BOTH(mailbox_interrupt_delivered)
{
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_IRQ, NULL);
	CHECK_EQ(h_start(&h), 0);
	for (i = 1; i <= 50; i++) {
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

		CHECK(h_wait_until(settled_asleep, &h, 0, HANG_MS));
		CHECK(vcpureq_post_interrupt(V(&h, 0), H_IRQ_VECTOR) >= 0);
		while (h_guest_irqs(&h, 0) < (uint64_t)i && h_now_ns() < end)
			;
		CHECK_EQ(h_guest_irqs(&h, 0), i);
	}
	CHECK_EQ(h_stats(&h, 0).interrupts_posted, 50);
	CHECK_EQ(h_stats(&h, 0).interrupts_injected, 50);
	CHECK(h_stats(&h, 0).wakeups >= 1);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- KVM only: a pending I/O exit is completed before run() returns
 * for a request, so the VMM reads consistent registers ---- */

#define REQ_STOPIO VCPUREQ_ARCH_REQ(4)
static _Atomic int io_checked;
static uint64_t io_value, io_pc;
static uint8_t io_byte_before;

static bool io_on_exit(struct h_vm *h, unsigned int id, int reason)
{
	struct vcpureq_vcpu *v = V(h, id);

	if (h_exit_port(h, id, reason) == H_PORT_IN &&
	    !atomic_load(&io_checked)) {
		/* (the harness's loop answers the read with in_value) */
		vcpureq_make_request(REQ_STOPIO, v);
	}
	return true;
}

static bool io_on_request(struct h_vm *h, unsigned int id)
{
	struct vcpureq_vcpu *v = V(h, id);

	if (vcpureq_check_request(REQ_STOPIO, v) > 0) {
		h_in_regs(h, id, &io_value, &io_pc);
		io_byte_before = h_guest_in_byte(h, id);
		atomic_store(&io_checked, 1);
	}
	return true;
}

TEST(io_exit_completed_before_request_return)
{
	struct h_vm h;

	(void)be;
	H_VM(&h, VCPUREQ_BACKEND_KVM, 1, H_IN, NULL);
	h.hooks.on_exit = io_on_exit;
	h.hooks.on_request = io_on_request;
	h.vcpus[0].in_value = 0x5a;
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(settled_asleep, &h, 0, HANG_MS));
	CHECK_EQ(atomic_load(&io_checked), 1);
	/* The IN completed: its register (x86 AL, arm64 w10) holds the byte,
	 * the PC is past the read ("in al, 0x12", 2 bytes; arm64's ldr, 4),
	 * and the guest had not run further (byte 8 of its data unwritten). */
	CHECK_EQ(io_value & 0xff, 0x5a);
	CHECK_EQ(io_pc, h_prog_gpa(H_IN) + h_in_insn_len);
	CHECK_EQ(io_byte_before, 0);
	/* Then the guest went on with the value. */
	CHECK_EQ(h_guest_in_byte(&h, 0), 0x5a);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}
