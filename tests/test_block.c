/* SPDX-License-Identifier: MIT */
/* vcpureq_vcpu_block(): the runnable hook with vcpureq_vcpu_wake_up(), and
 * adaptive halt polling. */
#include <sched.h>
#include <time.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define HANG_MS (10000 * h_time_scale())

static _Atomic int handled, runnable_flag, why_seen;

static int handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0)
		atomic_fetch_add(&handled, 1);
	return 0;
}

static bool runnable(struct vcpureq_vcpu *v, void *opaque)
{
	(void)v;
	(void)opaque;
	/* Consumed, like an event the VMM turns into guest state. */
	return atomic_exchange(&runnable_flag, 0) != 0;
}

static bool on_wake(struct h_vm *h, unsigned int id, int why)
{
	(void)h;
	(void)id;
	atomic_fetch_or(&why_seen, why);
	return true;
}

static bool asleep(struct h_vm *h, unsigned int id)
{
	return h_sleeping(h, id);
}

/* The runnable hook plus vcpureq_vcpu_wake_up(): a request-less wake-up
 * whose condition is the VMM's own state (kernel: kvm_arch_vcpu_runnable()
 * + kvm_vcpu_wake_up()).  No request bit, no signal. */
TEST_BOTH(runnable_hook_wakes)
{
	struct vcpureq_vm_opts o = { .handle_requests = handler,
				     .runnable = runnable };
	struct vcpureq_stats s;
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_HALT, &o);
	h.hooks.on_wake = on_wake;
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 100; i++) {
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;
		uint64_t it;

		CHECK(h_wait_until(asleep, &h, 0, HANG_MS));
		it = h_guest_iters(&h, 0);
		atomic_store(&why_seen, 0);
		atomic_store(&runnable_flag, 1);
		CHECK(vcpureq_vcpu_wake_up(vcpureq_vm_vcpu(h.vm, 0)) >= 0);
		while (!(atomic_load(&why_seen) & VCPUREQ_WAKE_RUNNABLE) &&
		       h_now_ns() < end)
			;
		CHECK(atomic_load(&why_seen) & VCPUREQ_WAKE_RUNNABLE);
		/* It ran the guest again (halted once more). */
		while (h_guest_iters(&h, 0) == it && h_now_ns() < end)
			;
		CHECK(h_guest_iters(&h, 0) > it);
	}
	vcpureq_vcpu_stats(vcpureq_vm_vcpu(h.vm, 0), &s, sizeof(s));
	CHECK_EQ(s.requests_made, 0);
	CHECK_EQ(s.signals_sent, 0);
	CHECK(s.wakeups >= 1);
	CHECK_EQ(atomic_load(&handled), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Halt polling: requests that come soon after the halt are caught while
 * polling (no futex sleep, no wake-up system call), and none is lost. */
TEST_BOTH(halt_poll_catches_quick_wakes)
{
	struct vcpureq_vm_opts o = { .handle_requests = handler,
				     /* Generous, so that the adaptive window
				      * covers the request's delay however
				      * loaded the machine (it grows from 10 us
				      * by doubling on each short block). */
				     .halt_poll_ns = VCPUREQ_HALT_POLL_NS_MAX };
	struct vcpureq_stats s = { 0 };
	struct h_vm h;
	uint64_t budget;
	int i;

	H_VM(&h, be, 1, H_HALT, &o);
	CHECK_EQ(h_start(&h), 0);
	/* 300 rounds; then, if no request came while polling yet (on a
	 * loaded machine every block may outlast the 10 ms window, which
	 * then shrinks to 0), more rounds until one does, within 30 s. */
	budget = h_now_ns() + 30000000000ull;
	for (i = 1; i <= 300 || (s.halt_poll_hits == 0 && h_now_ns() < budget);
	     i++) {
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

		/* Let it halt again and enter block (polling or asleep): it
		 * blocks once per round. */
		do
			vcpureq_vcpu_stats(vcpureq_vm_vcpu(h.vm, 0), &s, sizeof(s));
		while (s.blocks < (uint64_t)i && h_now_ns() < end);
		CHECK(s.blocks >= (uint64_t)i);
		h_sleep_us(20);
		/* Usually 0 (it is in block); 1 only if the thread backend's
		 * guest happened to be running the "hlt" instant. */
		CHECK(vcpureq_request(REQ_A, vcpureq_vm_vcpu(h.vm, 0)) >= 0);
		while (atomic_load(&handled) < i && h_now_ns() < end)
			;
		CHECK_EQ(atomic_load(&handled), i);
		vcpureq_vcpu_stats(vcpureq_vm_vcpu(h.vm, 0), &s, sizeof(s));
	}
	printf("%d rounds: blocks %llu, caught while polling %llu, futex wake-ups %llu\n",
	       i - 1, (unsigned long long)s.blocks, (unsigned long long)s.halt_poll_hits,
	       (unsigned long long)s.wakeups);
	CHECK(s.halt_poll_hits > 0);
	/* A poll hit never sleeps, so no wake-up is issued for it.  But a
	 * waker delayed between its read of SLEEPING and its CAS can wake
	 * the next block instead (a spurious wake-up, harmless: block.c), so
	 * wake-ups are bounded by the requests, not by the blocks the poll
	 * missed. */
	CHECK(s.halt_poll_hits <= s.blocks);
	CHECK(s.wakeups <= s.requests_made);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/*
 * The adaptive halt-poll window (stat halt_poll_ns) never exceeds
 * opts.halt_poll_ns, and moves as kvm_vcpu_halt()'s: a block the poll did
 * not catch, no longer than the option, doubles it from 10 us up to the
 * option; a longer one shrinks it to 0.  On the test's own thread, bound
 * to the vCPU: each block has a deadline 1 us away and nothing wakes it,
 * so it polls its whole window and lasts just past it.  The option is the
 * largest allowed, 10 ms: the window goes 10 us, 20 us, ... 5.12 ms, then
 * 10 ms (capped: doubled it would be 10.24 ms), and the next block, longer
 * than 10 ms, shrinks it to 0.  A block that runs more than 4.88 ms past a
 * 5.12 ms window (a loaded machine) shrinks it early: the growth restarts,
 * until the cap has been reached 3 times.  The thread runs SCHED_FIFO where
 * it may, so that a CPU hog does not stretch the blocks past the option
 * (measured under two hogs without it: up to 1706 blocks for 3 caps).
 */
TEST_BOTH(halt_poll_window_capped)
{
	const uint64_t max = VCPUREQ_HALT_POLL_NS_MAX;
	struct vcpureq_vm_opts o = { .halt_poll_ns = max };
	struct vcpureq_stats s;
	struct vcpureq_vcpu *v;
	uint64_t prev = 0;
	unsigned int capped = 0, blocks = 0, shrunk = 0;
	struct h_vm h;

	struct sched_param fifo = { .sched_priority = 1 }, old_sp;
	int old_policy;

	H_VM(&h, be, 1, H_HALT, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_vcpu_stats(v, &s, sizeof(s)), 0);
	CHECK_EQ(s.halt_poll_ns, 0);
	CHECK_EQ(pthread_getschedparam(pthread_self(), &old_policy, &old_sp), 0);
	(void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &fifo);
	while (capped < 3 && blocks < 2000) {
		struct timespec ts;
		uint64_t grown = prev ? 2 * prev : 10000;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		CHECK_EQ(vcpureq_vcpu_block_deadline(v, &ts), -ETIMEDOUT);
		blocks++;
		CHECK_EQ(vcpureq_vcpu_stats(v, &s, sizeof(s)), 0);
		if (s.halt_poll_ns > max) {
			fprintf(stderr, "block %u: window %llu ns past the option %llu ns (was %llu)\n",
				blocks, (unsigned long long)s.halt_poll_ns,
				(unsigned long long)max, (unsigned long long)prev);
			CHECK(s.halt_poll_ns <= max);
		}
		/* Grown (capped) or shrunk; never caught by the poll here. */
		if (s.halt_poll_ns != 0)
			CHECK_EQ(s.halt_poll_ns, grown < max ? grown : max);
		else
			shrunk++;
		if (s.halt_poll_ns == max)
			capped++;
		prev = s.halt_poll_ns;
	}
	pthread_setschedparam(pthread_self(), old_policy, &old_sp);
	printf("%u blocks, %u shrinks, the cap reached %u times\n", blocks,
	       shrunk, capped);
	CHECK_EQ(capped, 3);
	CHECK_EQ(s.halt_poll_hits, 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}
