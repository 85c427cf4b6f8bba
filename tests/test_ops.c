/* SPDX-License-Identifier: MIT */
/*
 * The operations VMMs build on requests: pause/resume, run-on-vCPU,
 * deadlines, per-request counters.
 */
#include <linux/kvm.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define REQ_WAIT VCPUREQ_ARCH_REQ_FLAGS(2, VCPUREQ_REQUEST_WAIT)
#define HANG_MS (20000 * h_time_scale())

static bool parked(struct h_vm *h, unsigned int i)
{
	return vcpureq_vcpu_parked(vcpureq_vm_vcpu(h->vm, i));
}

/* Every guest counter moves again (after a resume). */
static bool all_progress(struct h_vm *h, unsigned int n)
{
	uint64_t before[H_CAP], end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;
	unsigned int i;

	for (i = 0; i < n; i++)
		before[i] = h_guest_iters(h, i);
	for (i = 0; i < n; i++)
		while (h_guest_iters(h, i) == before[i])
			if (h_now_ns() > end)
				return false;
			else
				h_sleep_us(200);
	return true;
}

static bool one_progresses(struct h_vm *h, unsigned int i)
{
	uint64_t before = h_guest_iters(h, i);
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

	while (h_guest_iters(h, i) == before)
		if (h_now_ns() > end)
			return false;
		else
			h_sleep_us(200);
	return true;
}

/* After pause returns, no guest counter moves (checked over a window: a
 * moving counter fails it, a slow machine cannot make it pass wrongly). */
static bool none_moves(struct h_vm *h, unsigned int n)
{
	uint64_t before[H_CAP];
	unsigned int i;

	for (i = 0; i < n; i++)
		before[i] = h_guest_iters(h, i);
	h_sleep_us(50000);
	for (i = 0; i < n; i++)
		if (h_guest_iters(h, i) != before[i])
			return false;
	return true;
}

static int pause_prog(enum vcpureq_backend be, enum h_prog prog)
{
	struct vcpureq_stats s0[4], s1;
	struct h_vm h;
	unsigned int i;

	H_VM(&h, be, 4, prog, NULL);
	CHECK_EQ(h_start(&h), 0);
	CHECK(all_progress(&h, 4));
	for (i = 0; i < 4; i++)
		s0[i] = h_stats(&h, i);
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
	for (i = 0; i < 4; i++) {
		CHECK(vcpureq_vcpu_paused(vcpureq_vm_vcpu(h.vm, i)));
		CHECK(parked(&h, i));
		CHECK(vcpureq_vcpu_mode(vcpureq_vm_vcpu(h.vm, i)) ==
		      VCPUREQ_OUTSIDE_GUEST_MODE);
		s1 = h_stats(&h, i);
		/* At most one signal per vCPU, none for one outside. */
		CHECK(s1.signals_sent - s0[i].signals_sent <= 1);
	}
	CHECK(none_moves(&h, 4));
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	CHECK(all_progress(&h, 4));
	for (i = 0; i < 4; i++)
		CHECK(!vcpureq_vcpu_paused(vcpureq_vm_vcpu(h.vm, i)));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* vCPUs spinning in the guest: each gets one signal and parks. */
TEST_BOTH(pause_spinning)
{
	return pause_prog(be, H_SPIN);
}

/* vCPUs in an I/O-exit loop: each completes its exit and parks. */
TEST_BOTH(pause_io_looping)
{
	return pause_prog(be, H_OUT);
}

/* A vCPU asleep in block counts as parked without being woken (no signal,
 * no wake-up); when something else wakes it, it parks instead of entering
 * the guest. */
static int consume_a(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	vcpureq_check_request(REQ_A, v);
	return 0;
}

TEST_BOTH(pause_asleep_not_woken)
{
	struct vcpureq_vm_opts o = { .handle_requests = consume_a };
	struct vcpureq_stats s0, s1;
	struct vcpureq_vcpu *v;
	struct h_vm h;
	uint64_t iters;

	H_VM(&h, be, 1, H_HALT, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_sleeping, &h, 0, HANG_MS));
	s0 = h_stats(&h, 0);
	iters = h_guest_iters(&h, 0);
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.wakeups - s0.wakeups, 0);
	CHECK_EQ(s1.signals_sent - s0.signals_sent, 0);
	CHECK(vcpureq_vcpu_is_blocking(v));
	/* Woken for something else: it parks, the guest does not run. */
	CHECK(vcpureq_request(REQ_A, v) >= 0); /* wakes it */
	CHECK(h_wait_until(parked, &h, 0, HANG_MS));
	CHECK_EQ(h_guest_iters(&h, 0), iters);
	/* Resumed, it enters the guest again (one pass, then hlt). */
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	{
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

		while (h_guest_iters(&h, 0) == iters && h_now_ns() < end)
			h_sleep_us(200);
		CHECK(h_guest_iters(&h, 0) > iters);
	}
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* A vCPU halted inside KVM_RUN (in-kernel irqchip): kicked out (KVM could
 * wake it there without returning to us), parked. */
TEST(pause_in_kernel_halt)
{
	struct h_vm h;
	struct vcpureq_stats s0, s1;

	H_VM_CFG(&h, be, 2, H_PIC, NULL, H_F_IRQCHIP, NULL);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
	CHECK(h_wait_until(h_in_guest, &h, 1, HANG_MS));
	s0 = h_stats(&h, 0);
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.signals_sent - s0.signals_sent, 1);
	CHECK(parked(&h, 0));
	CHECK(parked(&h, 1));
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Pauses are counted; a resume without a pause is refused (nothing
 * resumed); a subset can be paused. */
TEST_BOTH(pause_counted_and_subset)
{
	uint64_t m = 0x5; /* vCPUs 0 and 2 */
	struct h_vm h;

	H_VM(&h, be, 3, H_SPIN, NULL);
	CHECK_EQ(h_start(&h), 0);
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), -EINVAL);
	CHECK_EQ(vcpureq_pause(h.vm, &m, 3, NULL), 0);
	CHECK_EQ(vcpureq_pause(h.vm, &m, 3, NULL), 0);
	CHECK(parked(&h, 0) && parked(&h, 2));
	CHECK(!vcpureq_vcpu_paused(vcpureq_vm_vcpu(h.vm, 1)));
	CHECK(one_progresses(&h, 1)); /* not paused: runs on */
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), -EINVAL); /* 1 is not paused */
	CHECK_EQ(vcpureq_resume(h.vm, &m, 3), 0);
	/* One pause left: still parked. */
	CHECK(parked(&h, 0) && parked(&h, 2));
	CHECK_EQ(vcpureq_resume(h.vm, &m, 3), 0);
	CHECK_EQ(vcpureq_resume(h.vm, &m, 3), -EINVAL);
	CHECK(all_progress(&h, 3));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* A vCPU thread pauses the others from its request handler (outside guest
 * mode): never waits on itself, even when it names itself, and two vCPU
 * threads pausing each other do not deadlock. */
static struct h_vm *ph;
static _Atomic int pf_ret = 1, pf_ret2 = 1;

#define REQ_PAUSE_OTHERS VCPUREQ_ARCH_REQ(3)
#define REQ_PAUSE_ALL VCPUREQ_ARCH_REQ(4)

static int pause_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_PAUSE_OTHERS, v) > 0) {
		uint64_t others = 0xe; /* 1..3 */

		atomic_store(&pf_ret, vcpureq_pause(ph->vm, &others, 4, NULL));
	}
	if (vcpureq_check_request(REQ_PAUSE_ALL, v) > 0)
		atomic_store(&pf_ret2, vcpureq_pause(ph->vm, NULL, 0, NULL));
	return 0;
}

TEST_BOTH(pause_from_vcpu_thread)
{
	struct vcpureq_vm_opts o = { .handle_requests = pause_handler };
	struct h_vm h;
	unsigned int i;

	H_VM(&h, be, 4, H_SPIN, &o);
	ph = &h;
	CHECK_EQ(h_start(&h), 0);
	CHECK(vcpureq_request(REQ_PAUSE_OTHERS, vcpureq_vm_vcpu(h.vm, 0)) >= 0);
	while (atomic_load(&pf_ret) == 1)
		h_sleep_us(100);
	CHECK_EQ(atomic_load(&pf_ret), 0);
	for (i = 1; i < 4; i++)
		CHECK(parked(&h, i));
	CHECK(one_progresses(&h, 0));
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), -EINVAL); /* 0 not paused */
	{
		uint64_t others = 0xe;

		CHECK_EQ(vcpureq_resume(h.vm, &others, 4), 0);
	}
	/* Naming itself: counted paused, not waited for; it parks at its
	 * next entry, right after the handler. */
	CHECK(vcpureq_request(REQ_PAUSE_ALL, vcpureq_vm_vcpu(h.vm, 0)) >= 0);
	while (atomic_load(&pf_ret2) == 1)
		h_sleep_us(100);
	CHECK_EQ(atomic_load(&pf_ret2), 0);
	for (i = 0; i < 4; i++)
		CHECK(h_wait_until(parked, &h, i, HANG_MS));
	CHECK(none_moves(&h, 4));
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	CHECK(all_progress(&h, 4));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* VM_DEAD while paused: every parked vCPU leaves its parking with -EIO. */
TEST_BOTH(vm_dead_while_paused)
{
	struct h_vm h;
	unsigned int i;

	H_VM(&h, be, 3, H_SPIN, NULL);
	CHECK_EQ(h_start(&h), 0);
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
	CHECK(vcpureq_vm_dead(h.vm) >= 0);
	h_join_all(&h);
	for (i = 0; i < 3; i++)
		CHECK_EQ(atomic_load(&h.vcpus[i].run_ret), 0); /* ended -EIO */
	h_vm_destroy(&h);
	return 0;
}

/* ---- deadlines ---- */

/* A vCPU held in its request handler (outside guest mode, not parked):
 * pause with a deadline times out naming it alone; the pause stays in
 * force, and it parks once let go. */
static _Atomic int hold, holding;

static int holding_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0) {
		atomic_store(&holding, 1);
		while (atomic_load(&hold))
			h_sleep_us(100);
		atomic_store(&holding, 0);
	}
	return 0;
}

TEST_BOTH(pause_deadline_names_the_late)
{
	struct vcpureq_vm_opts o = { .handle_requests = holding_handler };
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	uint64_t pending[2] = { ~0ull, ~0ull };
	struct h_vm h;

	H_VM(&h, be, 3, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	atomic_store(&hold, 1);
	CHECK(vcpureq_request(REQ_A, vcpureq_vm_vcpu(h.vm, 1)) >= 0);
	while (!atomic_load(&holding))
		h_sleep_us(100);
	dl.when = h_in_ms(100);
	dl.pending = pending;
	dl.pending_bits = 128;
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, &dl), -ETIMEDOUT);
	/* vCPU 1 is named; 0 and 2 may be too if the machine was too slow
	 * to park them within 100 ms, so no more is asserted here. */
	CHECK(pending[0] & 2);
	CHECK_EQ(pending[0] & ~7ull, 0);
	CHECK_EQ(pending[1], 0);
	/* The pause stays in force: 0 and 2 park (a hang bound only). */
	CHECK(h_wait_until(parked, &h, 0, HANG_MS));
	CHECK(h_wait_until(parked, &h, 2, HANG_MS));
	CHECK(vcpureq_vcpu_paused(vcpureq_vm_vcpu(h.vm, 1)));
	/* Called again with 0 and 2 parked already: vCPU 1 alone is late,
	 * whatever the load. */
	pending[0] = pending[1] = ~0ull;
	dl.when = h_in_ms(100);
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, &dl), -ETIMEDOUT);
	CHECK_EQ(pending[0], 2); /* vCPU 1 only */
	CHECK_EQ(pending[1], 0);
	CHECK(!parked(&h, 1));
	atomic_store(&hold, 0);
	CHECK(h_wait_until(parked, &h, 1, HANG_MS));
	/* Paused twice: two resumes. */
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	CHECK(all_progress(&h, 3));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* A WAIT on a vCPU inside a lockless walk: the deadline passes, the target
 * is named, the request stays made and is handled later. */
static _Atomic int walk_hold, in_walk;
static _Atomic uint64_t handled_wait;

static int walk_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_WAIT, v) > 0)
		atomic_fetch_add(&handled_wait, 1);
	if (vcpureq_check_request(REQ_A, v) > 0) {
		vcpureq_walk_lockless_begin(v);
		atomic_store(&in_walk, 1);
		while (atomic_load(&walk_hold))
			h_sleep_us(100);
		vcpureq_walk_lockless_end(v);
	}
	return 0;
}

TEST_BOTH(wait_deadline_names_the_late)
{
	struct vcpureq_vm_opts o = { .handle_requests = walk_handler };
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	uint64_t pending = ~0ull, calls = 0;
	struct h_vm h;
	long ms;

	H_VM(&h, be, 2, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	atomic_store(&walk_hold, 1);
	CHECK(vcpureq_request(REQ_A, vcpureq_vm_vcpu(h.vm, 1)) >= 0);
	while (!atomic_load(&in_walk))
		h_sleep_us(100);
	dl.pending = &pending;
	dl.pending_bits = 64;
	/* vCPU 1 (walking) is always late; vCPU 0 acknowledges unless the
	 * machine is too loaded for it to do so in time: then again, with
	 * the deadline doubled, until it does (past HANG_MS: a hang). */
	for (ms = 100;; ms *= 2) {
		CHECK(ms <= HANG_MS);
		dl.when = h_in_ms(ms);
		CHECK_EQ(vcpureq_make_vcpus_request_deadline(h.vm, REQ_WAIT,
							     NULL, 0, &dl),
			 -ETIMEDOUT);
		calls++;
		CHECK(pending & 2);
		CHECK_EQ(pending & ~3ull, 0);
		if (pending == 2)
			break;
	}
	atomic_store(&walk_hold, 0);
	/* Each vCPU handles the WAIT bit at least once: vCPU 1 when its walk
	 * ends, vCPU 0 after the exit it acknowledged.  Not once per call:
	 * on a loaded machine a call's bit may still be pending at the next
	 * call, which then coalesces with it (waiting for calls + 1 handles
	 * hung then, in a 4-thread CPU hog run). */
	CHECK(h_wait_ge(&handled_wait, 2, HANG_MS));
	CHECK(atomic_load(&handled_wait) <= calls + 1);
	/* Without a deadline problem: 0. */
	dl.when = h_in_ms(HANG_MS);
	CHECK(vcpureq_make_vcpus_request_deadline(h.vm, REQ_WAIT, NULL, 0, &dl) >= 0);
	CHECK_EQ(pending, 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* block with a deadline: -ETIMEDOUT, nothing consumed. */
TEST_BOTH(block_deadline)
{
	struct vcpureq_vcpu *v;
	struct timespec when;
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_make_request(REQ_A | VCPUREQ_REQUEST_NO_WAKEUP, v), 0);
	when = h_in_ms(30);
	CHECK_EQ(vcpureq_vcpu_block_deadline(v, &when), -ETIMEDOUT);
	CHECK_EQ(vcpureq_test_request(REQ_A, v), 1); /* still pending */
	CHECK_EQ(vcpureq_make_request(VCPUREQ_REQ_UNBLOCK, v), 0);
	when = h_in_ms(HANG_MS);
	CHECK_EQ(vcpureq_vcpu_block_deadline(v, &when), VCPUREQ_WAKE_UNBLOCK |
							    VCPUREQ_WAKE_REQUEST);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- run on a vCPU ---- */

#define PRODUCERS 3
#define ITEMS 500

struct seq_arg {
	unsigned int producer, seq;
};

static _Atomic unsigned int next_seq[PRODUCERS];
static _Atomic unsigned int order_errors, ran, done_calls, on_wrong_thread;
static _Atomic pid_t vcpu_tid;

static int seq_fn(struct vcpureq_vcpu *v, void *arg)
{
	struct seq_arg *a = arg;

	if (vcpureq_vcpu_mode(v) != VCPUREQ_OUTSIDE_GUEST_MODE ||
	    gettid() != atomic_load(&vcpu_tid))
		atomic_fetch_add(&on_wrong_thread, 1);
	if (atomic_load(&next_seq[a->producer]) != a->seq)
		atomic_fetch_add(&order_errors, 1);
	atomic_store(&next_seq[a->producer], a->seq + 1);
	atomic_fetch_add(&ran, 1);
	return (int)a->seq;
}

static void seq_done(void *arg, int result)
{
	struct seq_arg *a = arg;

	if (result != (int)a->seq)
		atomic_fetch_add(&order_errors, 1);
	atomic_fetch_add(&done_calls, 1);
}

static struct seq_arg args[PRODUCERS][ITEMS];
static struct h_vm *wh;

static void *producer(void *p)
{
	unsigned int id = (unsigned int)(uintptr_t)p, i;

	for (i = 0; i < ITEMS; i++) {
		args[id][i] = (struct seq_arg){ id, i };
		if (vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(wh->vm, 0), seq_fn,
					      seq_done, &args[id][i]))
			atomic_fetch_add(&order_errors, 1);
	}
	return NULL;
}

static bool on_request_tid(struct h_vm *h, unsigned int id)
{
	(void)h, (void)id;
	return true;
}

static int tid_fn(struct vcpureq_vcpu *v, void *arg)
{
	(void)v, (void)arg;
	atomic_store(&vcpu_tid, gettid());
	return 42;
}

TEST_BOTH(run_on_vcpu_fifo_never_coalesced)
{
	pthread_t t[PRODUCERS];
	struct h_vm h;
	unsigned int i;
	int result = 0;

	H_VM(&h, be, 1, H_SPIN, NULL);
	h.hooks.on_request = on_request_tid;
	wh = &h;
	CHECK_EQ(h_start(&h), 0);
	CHECK_EQ(vcpureq_run_on_vcpu(vcpureq_vm_vcpu(h.vm, 0), tid_fn, NULL,
				     &result), 0);
	CHECK_EQ(result, 42);
	CHECK(atomic_load(&vcpu_tid) != gettid());
	for (i = 0; i < PRODUCERS; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, producer,
					(void *)(uintptr_t)i), 0);
	for (i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	/* A synchronous call queued after them runs after them. */
	CHECK_EQ(vcpureq_run_on_vcpu(vcpureq_vm_vcpu(h.vm, 0), tid_fn, NULL,
				     &result), 0);
	CHECK_EQ(atomic_load(&ran), PRODUCERS * ITEMS);
	CHECK_EQ(atomic_load(&done_calls), PRODUCERS * ITEMS);
	CHECK_EQ(atomic_load(&order_errors), 0);
	CHECK_EQ(atomic_load(&on_wrong_thread), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* From the vCPU's own thread: inline; a function may queue more work. */
static _Atomic int nested_ran, inline_ran;

static int nested_fn(struct vcpureq_vcpu *v, void *arg)
{
	(void)v, (void)arg;
	atomic_fetch_add(&nested_ran, 1);
	return 0;
}

static int outer_fn(struct vcpureq_vcpu *v, void *arg)
{
	int r = 0;

	(void)arg;
	/* Inline from its own thread (we are on it). */
	if (vcpureq_run_on_vcpu(v, nested_fn, NULL, &r) == 0)
		atomic_fetch_add(&inline_ran, 1);
	/* Queued for later: runs after this one. */
	vcpureq_run_on_vcpu_async(v, nested_fn, NULL, NULL);
	return 7;
}

TEST_BOTH(run_on_vcpu_inline_and_nested)
{
	struct h_vm h;
	int result = 0;

	H_VM(&h, be, 1, H_SPIN, NULL);
	CHECK_EQ(h_start(&h), 0);
	CHECK_EQ(vcpureq_run_on_vcpu(vcpureq_vm_vcpu(h.vm, 0), outer_fn, NULL,
				     &result), 0);
	CHECK_EQ(result, 7);
	CHECK_EQ(atomic_load(&inline_ran), 1);
	/* The nested async one: run by the time a later sync call returns. */
	CHECK_EQ(vcpureq_run_on_vcpu(vcpureq_vm_vcpu(h.vm, 0), nested_fn, NULL,
				     NULL), 0);
	CHECK_EQ(atomic_load(&nested_ran), 3);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Cancellation: items queued to a vCPU that no thread runs are completed
 * as cancelled at destroy (done called, the synchronous caller returns
 * -ECANCELED); at VM_DEAD the vCPU thread cancels its queue. */
static _Atomic int cancelled, sync_ret = 1;
static struct h_vm *ch;

static void cancel_done(void *arg, int result)
{
	(void)arg;
	if (result == -ECANCELED)
		atomic_fetch_add(&cancelled, 1);
}

static void *sync_caller(void *p)
{
	int result = 0;

	(void)p;
	atomic_store(&sync_ret, vcpureq_run_on_vcpu(vcpureq_vm_vcpu(ch->vm, 0),
						    nested_fn, NULL, &result));
	return NULL;
}

TEST_BOTH(run_on_vcpu_cancelled)
{
	uint64_t kicks0, end;
	struct h_vm h;
	pthread_t t;
	int i;

	H_VM(&h, be, 1, H_SPIN, NULL);
	ch = &h;
	for (i = 0; i < 10; i++)
		CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, 0),
						   nested_fn, cancel_done, NULL), 0);
	/* The synchronous caller must have queued its item before the
	 * destroy (after it, its call would be refused, not cancelled): its
	 * kick comes right after the queueing, so wait for that (a hang
	 * bound only). */
	kicks0 = h_stats(&h, 0).kicks;
	CHECK_EQ(pthread_create(&t, NULL, sync_caller, NULL), 0);
	end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;
	while (h_stats(&h, 0).kicks == kicks0 && h_now_ns() < end)
		h_sleep_us(100);
	CHECK(h_stats(&h, 0).kicks > kicks0);
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);
	pthread_join(t, NULL);
	CHECK_EQ(atomic_load(&cancelled), 10);
	CHECK_EQ(atomic_load(&sync_ret), -ECANCELED);
	CHECK_EQ(atomic_load(&nested_ran), 0);
	h_vm_destroy(&h);

	/* At VM_DEAD, by the vCPU thread. */
	atomic_store(&cancelled, 0);
	H_VM(&h, be, 1, H_SPIN, NULL);
	CHECK_EQ(vcpureq_vm_dead(h.vm), 0);
	CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, 0), nested_fn,
					   cancel_done, NULL), -EIO);
	CHECK_EQ(h_start(&h), 0); /* its run returns -EIO at once */
	h_join_all(&h);
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);
	CHECK_EQ(atomic_load(&nested_ran), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Per-request counters and the dump. */
TEST_BOTH(per_request_counters_dump)
{
	char buf[16384];
	FILE *f;
	struct h_vm h;
	int i;

	H_VM(&h, be, 2, H_SPIN, NULL);
	for (i = 0; i < 5; i++)
		CHECK_EQ(vcpureq_make_request(REQ_A, vcpureq_vm_vcpu(h.vm, 1)), 0);
	f = fmemopen(buf, sizeof(buf), "w");
	CHECK(f != NULL);
	CHECK_EQ(vcpureq_vm_dump_stats(h.vm, f, VCPUREQ_DUMP_JSON), 0);
	fclose(f);
	CHECK(strstr(buf, "\"name\":\"ARCH(1)\",\"made\":5,\"handled\":0") != NULL);
	CHECK(strstr(buf, "\"index\":1,\"id\":1,\"requests_made\":5") != NULL);
	f = fmemopen(buf, sizeof(buf), "w");
	CHECK_EQ(vcpureq_vm_dump_stats(h.vm, f, VCPUREQ_DUMP_TEXT), 0);
	fclose(f);
	CHECK(strstr(buf, "ARCH(1)") != NULL);
	CHECK_EQ(vcpureq_vm_dump_stats(h.vm, stdout, (enum vcpureq_dump_format)9),
		 -EINVAL);
	h_vm_destroy(&h);
	return 0;
}
