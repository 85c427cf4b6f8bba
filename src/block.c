/* SPDX-License-Identifier: MIT */
/*
 * Sleeping vCPUs (kernel: kvm_vcpu_block(), kvm_vcpu_halt() with halt
 * polling, kvm_vcpu_wake_up() on an rcuwait).
 *
 *   sleeper                            waker
 *   sleep_state = SLEEPING             write (bit + hint, ON, or state)
 *   smp_mb()                [S]        smp_mb()                     [R]
 *   check wake conditions              read sleep_state: SLEEPING ->
 *   futex_wait(SLEEPING)                 CAS to WOKEN, futex_wake
 *
 * [S] and [R] forbid the outcome where the sleeper misses the condition and
 * the waker misses the sleeper: no lost wake-up.  futex_wait() compares the
 * word in the kernel, so a WOKEN written between our check and the sleep
 * makes it return at once.  Only the waker that wins SLEEPING -> WOKEN makes
 * the futex_wake() system call.
 */
#include <errno.h>
#include <time.h>

#include "futex.h"
#include "internal.h"
#include "park.h"

#define HALT_POLL_GROW_START_NS 10000u

bool vcpureq__wake_if_sleeping(struct vcpureq_vcpu *vcpu)
{
	uint32_t s = atomic_load_explicit(&vcpu->sleep_state,
					  memory_order_relaxed);

	if (s == VCPUREQ__WOKEN)
		return true; /* another waker is on it */
	if (s != VCPUREQ__SLEEPING)
		return false;
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_WAKE_CAS);
	if (!atomic_compare_exchange_strong_explicit(
		    &vcpu->sleep_state, &s, VCPUREQ__WOKEN,
		    memory_order_relaxed, memory_order_relaxed))
		return s == VCPUREQ__WOKEN;
	/* Counted before the wake, as signals_sent before the signal. */
	VCPUREQ__STAT_INC(vcpu, rstats, wakeups);
	vcpureq__futex_wake(&vcpu->sleep_state, 1);
	return true;
}

int vcpureq_vcpu_wake_up(struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	vcpureq__smp_mb(); /* [R]: the caller's state write before the read */
	return vcpureq__wake_if_sleeping(vcpu);
}

/* Cheap look, no side effects: for the poll loop. */
static bool peek(struct vcpureq_vcpu *vcpu)
{
	const struct vcpureq_vm_opts *o = &vcpu->vm->opts;

	return vcpureq__vm_dead(vcpu->vm) ||
	       atomic_load_explicit(&vcpu->wake_hint, memory_order_relaxed) ||
	       atomic_load_explicit(&vcpu->pir_on, memory_order_relaxed) ||
	       vcpureq__irr_pending(vcpu) ||
	       (atomic_load_explicit(&vcpu->requests, memory_order_relaxed) &
		(UINT64_C(1) << VCPUREQ_REQ_UNBLOCK)) ||
	       (o->runnable && o->runnable(vcpu, o->opaque));
}

/* kvm_vcpu_check_block(): the reasons to stop blocking; consumes UNBLOCK
 * and the waking-request hint. */
static int check_block(struct vcpureq_vcpu *vcpu)
{
	const struct vcpureq_vm_opts *o = &vcpu->vm->opts;
	int why = 0;

	if (vcpureq__vm_dead(vcpu->vm))
		why |= VCPUREQ_WAKE_DEAD;
	if (o->runnable && o->runnable(vcpu, o->opaque))
		why |= VCPUREQ_WAKE_RUNNABLE;
	if (atomic_load_explicit(&vcpu->pir_on, memory_order_relaxed) ||
	    vcpureq__irr_pending(vcpu))
		why |= VCPUREQ_WAKE_INTERRUPT;
	if (vcpureq_check_request(VCPUREQ_REQ_UNBLOCK, vcpu) > 0)
		why |= VCPUREQ_WAKE_UNBLOCK;
	/* Acquire: pairs with the waker's release store of the hint, which
	 * follows its bit, so the bit is visible to the caller's checks. */
	if (atomic_load_explicit(&vcpu->wake_hint, memory_order_relaxed) &&
	    atomic_exchange_explicit(&vcpu->wake_hint, 0, memory_order_acquire))
		why |= VCPUREQ_WAKE_REQUEST;
	return why;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Grow/shrink the poll window as kvm_vcpu_halt() does: a block that the
 * poll did not catch but that was no longer than opts.halt_poll_ns doubles
 * the window (from 10 us), capped at opts.halt_poll_ns; a longer one
 * shrinks it to 0; one the poll caught leaves it.  The window is the stat
 * halt_poll_ns (relaxed stores: only this thread writes it).
 */
static void adjust_poll(struct vcpureq_vcpu *vcpu, uint64_t blocked_ns)
{
	uint64_t max = vcpu->vm->opts.halt_poll_ns;
	uint64_t poll = atomic_load_explicit(&vcpu->poll_ns,
					     memory_order_relaxed);

	if (blocked_ns <= poll)
		return; /* the poll caught it */
	if (blocked_ns > max)
		poll = 0;
	else if (poll < max)
		poll = poll ? poll * 2 : HALT_POLL_GROW_START_NS;
	/* Capped: the window never grows past the option. */
	if (poll > max)
		poll = max;
	atomic_store_explicit(&vcpu->poll_ns, poll, memory_order_relaxed);
}

static int block_until(struct vcpureq_vcpu *vcpu, const struct timespec *when)
{
	uint64_t start = 0;
	int e, why = vcpureq__check_self(vcpu);

	if (why)
		return why;
	if (vcpu->in_walk)
		return vcpureq__err(-EINVAL, "cannot block inside a lockless walk");
	/* Between enter and exit the vCPU is IN_GUEST_MODE: asleep there, it
	 * would hold every WAIT requester and pauser until woken, and a kick
	 * would signal a thread that is not in KVM_RUN. */
	if (vcpu->entered)
		return vcpureq__err(-EBUSY, "cannot block between vcpureq_vcpu_enter() and vcpureq_vcpu_exit() (the vCPU is in guest mode): call vcpureq_vcpu_exit() first");
	VCPUREQ__STAT_INC(vcpu, vstats, blocks);
	why = check_block(vcpu);
	if (why)
		return why;
	if (vcpu->vm->opts.halt_poll_ns) {
		uint64_t poll = atomic_load_explicit(&vcpu->poll_ns,
						     memory_order_relaxed);

		start = now_ns();
		if (poll) {
			uint64_t stop = start + poll;

			do {
				if (peek(vcpu) && (why = check_block(vcpu))) {
					VCPUREQ__STAT_INC(vcpu, vstats,
							  halt_poll_hits);
					return why;
				}
				vcpureq__cpu_relax();
			} while (now_ns() < stop);
		}
	}
	VCPUREQ__TRACE(vcpu->vm, vcpu, block, 0, 0);
	for (;;) {
		/* Release: a pauser that reads SLEEPING with acquire (it
		 * counts us parked) sees our last guest instance done. */
		atomic_store_explicit(&vcpu->sleep_state, VCPUREQ__SLEEPING,
				      memory_order_release);
		VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_SLEEP_REGISTER);
		VCPUREQ__MB_S(); /* [S] pairs with the waker's [R] */
		why = check_block(vcpu);
		if (why)
			break;
		/* Asleep counts as parked for a pauser, who may be waiting
		 * for this (the fence above orders SLEEPING before the read
		 * of the pause count, pairing with the pauser's seq_cst
		 * count increment and [R]). */
		if (atomic_load_explicit(&vcpu->pause_word,
					 memory_order_relaxed) &
		    VCPUREQ__PAUSE_COUNT)
			vcpureq__park_notify(vcpu);
		VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_SLEEP);
		e = vcpureq__futex_wait_until(&vcpu->sleep_state,
					      VCPUREQ__SLEEPING, when) ? errno : 0;
		if (e == ETIMEDOUT && !(why = check_block(vcpu))) {
			why = vcpureq__err(-ETIMEDOUT,
					   "no wake condition before the deadline");
			break;
		}
		/* The kernel refused the time: an error, never a retry (a
		 * busy loop); vcpureq_vcpu_block_deadline() checks it up
		 * front, so this is a last resort. */
		if (e == EINVAL) {
			why = vcpureq__err(-EINVAL, "the futex wait refused the deadline (EINVAL)");
			break;
		}
	}
	/* A waker may still CAS SLEEPING -> WOKEN before this store and then
	 * futex_wake() nobody: harmless. */
	atomic_store_explicit(&vcpu->sleep_state, VCPUREQ__AWAKE,
			      memory_order_relaxed);
	VCPUREQ__TRACE(vcpu->vm, vcpu, wake, (uint32_t)why, 0);
	if (vcpu->vm->opts.halt_poll_ns)
		adjust_poll(vcpu, now_ns() - start);
	return why;
}

int vcpureq_vcpu_block(struct vcpureq_vcpu *vcpu)
{
	return block_until(vcpu, NULL);
}

int vcpureq_vcpu_block_deadline(struct vcpureq_vcpu *vcpu,
				const struct timespec *when)
{
	int r = when ? vcpureq__check_time(when,
					   "when->tv_sec is negative (not blocked)",
					   "when->tv_nsec is outside [0, 999999999] (not blocked)") : 0;

	if (r)
		return r;
	return block_until(vcpu, when);
}

bool vcpureq_vcpu_is_blocking(const struct vcpureq_vcpu *vcpu)
{
	return vcpu && atomic_load_explicit(&vcpu->sleep_state, memory_order_relaxed) !=
	       VCPUREQ__AWAKE;
}
