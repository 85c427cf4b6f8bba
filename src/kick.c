/* SPDX-License-Identifier: MIT */
/*
 * Kicks, broadcasts and acknowledgements (kernel: kvm_vcpu_kick(),
 * kvm_make_vcpus_request_mask(), kvm_make_all_cpus_request(),
 * kvm_vcpu_exiting_guest_mode() and the IPI wait of smp_call_function_many()).
 *
 * The requester's half of the Dekker pattern of vcpu-requests.rst:
 *
 *   requester                          vCPU thread (run.c)
 *   set request bit (release)          mode = IN_GUEST_MODE
 *   smp_mb()              [R]          smp_mb()               [V]
 *   read mode / CAS IN -> EXITING      read requests: abort entry if any
 *
 * Fences R and V forbid the store-buffering outcome in which the vCPU reads
 * "no request" AND the requester reads "not in guest mode": one of the two
 * always sees the other, so a request is never stranded in guest mode.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "futex.h"
#include "internal.h"
#include "targets.h"

/*
 * Send the kick signal.  tgkill() of a real-time signal fails with EAGAIN
 * when the queue is full (RLIMIT_SIGPENDING, shared by every process of
 * the user): retried with a bounded exponential back-off (1 us doubling,
 * about 8 ms in all), then reported.  Returns 0 or -errno (message set).
 * Async-signal-safe (nanosleep is).
 */
#define KICK_RETRY_FIRST_NS 1000u
#define KICK_RETRY_LAST_NS 4000000u

static int send_kick_signal(struct vcpureq_vcpu *vcpu)
{
	pid_t tid = atomic_load_explicit(&vcpu->tid, memory_order_relaxed);
	unsigned long delay = KICK_RETRY_FIRST_NS;
	int e;

	/* The vCPU was IN_GUEST_MODE, so it is bound and tid is set; our
	 * kick_inflight count keeps unbind (and so thread exit) waiting until
	 * this returns, so the tid cannot have been reused. */
	if (tid <= 0)
		return 0;
	/* Counted before it is sent: the vCPU thread that takes the signal
	 * reads a signals_sent that includes it (the kernel's signal
	 * delivery orders our earlier stores before the target's wake-up).
	 * Counted after, a handler could read the counter before the
	 * sender's increment lands.  Taken back if it could not be sent. */
	VCPUREQ__STAT_INC(vcpu, rstats, signals_sent);
	for (;;) {
		if (syscall(SYS_tgkill, vcpu->vm->pid, tid,
			    vcpu->vm->kick_signal) == 0)
			return 0;
		e = errno;
		/* Mutant: a transient EAGAIN reported at once, no retry. */
#ifndef VCPUREQ_MUTANT_KICK_NO_RETRY
		if (e != EAGAIN || delay > KICK_RETRY_LAST_NS)
#else
		if (1)
#endif
			break;
		{
			struct timespec ts = { 0, (long)delay };

			nanosleep(&ts, NULL);
		}
		delay *= 2;
	}
	atomic_fetch_sub_explicit(&vcpu->rstats.signals_sent, 1,
				  memory_order_relaxed);
	if (e == EAGAIN)
		return vcpureq__err(-EAGAIN,
				    "the kick signal could not be queued (the real-time signal queue is full: RLIMIT_SIGPENDING); the request stays made and is seen at the vCPU's next exit or kick; raise the limit, or use SIGUSR1/SIGUSR2 (not queued) as the kick signal");
	if (e == ESRCH)
		return vcpureq__err(-ESRCH,
				    "the vCPU thread has exited without vcpureq_vcpu_unbind()");
	return vcpureq__err(-e, "tgkill() of the kick signal failed");
}

/*
 * kvm_vcpu_exiting_guest_mode() and the one signal of a guest-mode
 * instance: IN -> EXITING; only the winner signals (IPI reduction).
 * @old: the mode read (IN_GUEST_MODE); updated to the mode that beat us if
 * the CAS fails.  Returns 1 if a signal was sent, 0 if not, -errno if it
 * could not be: then EXITING is turned back into IN_GUEST_MODE, so that
 * the next kick (or a waiter, see wait_ack()) tries again instead of
 * taking the lost signal as on its way.
 */
static int kick_in_guest(struct vcpureq_vcpu *vcpu, int *old,
			 struct vcpureq__nr_stats *ns)
{
	int sent = 0;

	/* Counted before the CAS, so that unbind, which runs after the
	 * vCPU left the mode we CAS, waits for our signal to go out.
	 * seq_cst: pairs with the fence in vcpureq_vcpu_unbind()
	 * (vcpu_thread.c) that precedes its load of the count: a CAS of
	 * ours that read IN_GUEST is counted there. */
	atomic_fetch_add_explicit(&vcpu->kick_inflight, 1,
				  memory_order_seq_cst);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_CAS);
	/* seq_cst success: the count above stays before it.  Acquire on
	 * failure: pairs with the release exchange to OUTSIDE in
	 * vcpureq__exit_guest_mode() (a target found gone is not waited
	 * for, so its instance must happen before our return). */
	if (atomic_compare_exchange_strong_explicit(
		    &vcpu->mode, old, VCPUREQ_EXITING_GUEST_MODE,
		    memory_order_seq_cst, memory_order_acquire)) {
		VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_BEFORE_SIGNAL);
#ifndef VCPUREQ_MUTANT_SELF_SIGNAL
		if (vcpureq__self == vcpu) {
#else
		if (0) {
#endif
			/* A request from the vCPU thread while it is in
			 * guest mode (a signal handler, or the thread
			 * backend's guest callback): no signal to ourselves,
			 * just make the entry exit. */
			vcpu->ops->self_kick(vcpu);
		} else {
			sent = send_kick_signal(vcpu);
			if (sent == 0) {
				sent = 1;
				atomic_fetch_add_explicit(&ns->signals, 1,
							  memory_order_relaxed);
				VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_SIGNAL);
			} else {
				int ex = VCPUREQ_EXITING_GUEST_MODE;

#ifdef VCPUREQ_MUTANT_KICK_FAIL_KEEPS_EXITING
				ex = -1; /* the CAS back to IN_GUEST fails */
#endif
				atomic_compare_exchange_strong_explicit(
					&vcpu->mode, &ex, VCPUREQ_IN_GUEST_MODE,
					memory_order_relaxed,
					memory_order_relaxed);
			}
		}
		*old = VCPUREQ_IN_GUEST_MODE;
	}
	/* Release: the signal is out before the count drops; pairs with
	 * the acquire loads of kick_inflight in vcpureq_vcpu_unbind() and
	 * vcpureq__enter_guest_mode(). */
	atomic_fetch_sub_explicit(&vcpu->kick_inflight, 1,
				  memory_order_release);
	return sent;
}

static unsigned int kick_decision(int old, int sent, bool self);

/* A waiter's own kick of a target found back IN_GUEST_MODE (a kick that
 * could not be sent): kick_in_guest(), traced. */
int vcpureq__rekick(struct vcpureq_vcpu *vcpu, int *mode)
{
	uint64_t ts = VCPUREQ__TRACE_TS(vcpu->vm);
	int r = kick_in_guest(vcpu, mode, &vcpu->vm->kick_stats);

	/* *mode: IN_GUEST_MODE if our CAS won, else the mode that beat it. */
	VCPUREQ__TRACE_AT(vcpu->vm, vcpu, kick,
			  r > 0 ? VCPUREQ__KICK_RECHECK :
				  kick_decision(*mode, r, false), 0, ts);
	return r;
}

/*
 * How long a WAIT requester polls the epoch before it sleeps: about one
 * signal-to-exit round trip, as the kernel spins for IPI acks (a sleeping
 * requester adds a futex wake-up to every WAIT).  It polls with
 * sched_yield(), not a pause loop, and only when it waits for a single vCPU
 * on a machine with another CPU: a busy requester holds a CPU that the
 * target may need in order to exit.  Measured on 2 CPUs
 * (docs/performance.md): a pause-loop spin for every wait took broadcast
 * N = 4 from 67 to 117 us; this policy gives N = 1 19 us (sleeping: 33 us)
 * and N = 4 53 us.
 */
#define ACK_SPIN_NS 30000u

/* Wait until the exit epoch moves past @snap, or @deadline (absolute,
 * CLOCK_MONOTONIC; NULL: none) passes.  0, -ETIMEDOUT, or -errno if the
 * target could not be kicked out of its instance. */
static int wait_ack(struct vcpureq_vcpu *vcpu, uint32_t snap, bool spin,
		    const struct timespec *deadline)
{
	struct timespec t0, t;
	unsigned int i;
	bool timed_out = false; /* the last sleep ended at the recheck */
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; spin; i++) {
		/* Acquire: pairs with the release bump in
		 * vcpureq__exit_guest_mode(). */
		if (atomic_load_explicit(&vcpu->exit_epoch,
					 memory_order_acquire) != snap)
			return 0;
		if ((i & 7) == 7) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000u +
				    (uint64_t)t.tv_nsec - (uint64_t)t0.tv_nsec >
			    ACK_SPIN_NS)
				break;
		}
		/* Yield, not pause: if the target shares this CPU, it
		 * needs the CPU to exit; if not, this returns at once. */
		sched_yield();
	}
	atomic_fetch_add_explicit(&vcpu->ack_waiters, 1, memory_order_relaxed);
	vcpureq__smp_mb(); /* [W] pairs with [E] in vcpureq__exit_guest_mode() */
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_ACK_REGISTER);
	while (atomic_load_explicit(&vcpu->exit_epoch, memory_order_acquire) ==
	       snap) {
		struct timespec recheck = vcpureq__ts_after(VCPUREQ__RECHECK_NS);
		const struct timespec *until = vcpureq__ts_min(&recheck, deadline);
		int mode;

		timed_out = false;
		if (vcpureq__futex_wait_until(&vcpu->exit_epoch, snap,
					      until) == 0)
			continue;
		if (errno == EINVAL) { /* a refused deadline: never retried */
			r = vcpureq__err(-EINVAL, "the futex wait refused the deadline (EINVAL)");
			break;
		}
		if (errno != ETIMEDOUT)
			continue;
		timed_out = until != deadline;
		if (timed_out)
			VCPUREQ__STAT_INC(vcpu, rstats, ack_rechecks);
		if (until == deadline) {
			r = atomic_load_explicit(&vcpu->exit_epoch,
						 memory_order_acquire) == snap ?
				    -ETIMEDOUT : 0;
			break;
		}
		/* Still the same instance after a while.  EXITING: the
		 * signal is on its way (the vCPU may just be descheduled);
		 * IN_GUEST: nobody's signal went out: kick it ourselves.
		 * Acquire: the IN_GUEST of a later instance is stored after
		 * the fence [E] of vcpureq__exit_guest_mode(), which follows
		 * the epoch bump; pairing with [E], it makes the epoch load
		 * below see that bump, so "== snap" means this instance. */
		mode = atomic_load_explicit(&vcpu->mode, memory_order_acquire);
		if (mode == VCPUREQ_IN_GUEST_MODE &&
		    atomic_load_explicit(&vcpu->exit_epoch,
					 memory_order_acquire) == snap &&
		    (r = vcpureq__rekick(vcpu, &mode)) < 0)
			break;
		r = 0;
	}
	/* The ack found at a recheck, not by the exit's wake-up: late by up
	 * to VCPUREQ__RECHECK_NS (or the timer expired in the instant between the
	 * exit's epoch bump and its wake-up). */
	if (timed_out && r == 0)
		VCPUREQ__STAT_INC(vcpu, rstats, acks_at_recheck);
	atomic_fetch_sub_explicit(&vcpu->ack_waiters, 1, memory_order_relaxed);
	return r;
}

/* What a kick did (the trace's kick event): @old is the mode it met, or
 * IN_GUEST_MODE once its CAS won. */
static unsigned int kick_decision(int old, int sent, bool self)
{
	if (sent < 0)
		return VCPUREQ__KICK_FAILED;
	if (sent > 0)
		return VCPUREQ__KICK_SIGNAL;
	switch (old) {
	case VCPUREQ_IN_GUEST_MODE:
		return self ? VCPUREQ__KICK_SELF : VCPUREQ__KICK_SIGNAL;
	case VCPUREQ_EXITING_GUEST_MODE:
		return VCPUREQ__KICK_COALESCED;
	case VCPUREQ_READING_SHADOW_PAGE_TABLES:
		return VCPUREQ__KICK_READING;
	default:
		return VCPUREQ__KICK_OUTSIDE;
	}
}

/*
 * The per-target half of a kick, after the caller's fence [R].  Returns 1 if
 * a signal was sent.  Sets *wait (and *snap) when a WAIT request must wait
 * for this target's acknowledgement.
 */
int vcpureq__kick_after_fence(struct vcpureq_vcpu *vcpu, unsigned int req,
			      bool *wait, uint32_t *snap)
{
	unsigned int flags = req & ~VCPUREQ_REQUEST_MASK;
	struct vcpureq__nr_stats *ns = vcpureq__nr_stats_of(vcpu->vm, req);
	bool self = vcpureq__self == vcpu;
	/* Stamped before the mode is read and CASed (trace.h): an exit that
	 * a signal from here caused comes later. */
	uint64_t ts = VCPUREQ__TRACE_TS(vcpu->vm);
	int sent = 0;
	int old;

	*wait = false;
	VCPUREQ__STAT_INC(vcpu, rstats, kicks);
	/* kvm_vcpu_wake_up(): a sleeper is woken, not signalled or waited
	 * for (it is outside guest mode). */
#ifndef VCPUREQ_MUTANT_NO_WAKEUP_IGNORED
	if (!(flags & VCPUREQ_REQUEST_NO_WAKEUP) &&
#else
	if (
#endif
	    vcpureq__wake_if_sleeping(vcpu)) {
		VCPUREQ__TRACE_AT(vcpu->vm, vcpu, kick, VCPUREQ__KICK_WOKE, 0, ts);
		return 0;
	}
	/*
	 * Snapshot the exit epoch after [R] and before reading the mode.
	 * Any instance that ends after the snapshot bumps it; an instance
	 * that began after the snapshot began after [R] too (else the
	 * snapshot would have seen the bump that preceded it), so its final
	 * check sees our bit.  A snapshot taken after the CAS could miss the
	 * bump of the very instance we waited for: a hang.
	 */
#ifndef VCPUREQ_MUTANT_SNAPSHOT_AFTER_CAS
	/* Acquire keeps the mode read below after it: two relaxed loads
	 * may be performed out of order (C11, ARM64, POWER; not x86). */
	*snap = atomic_load_explicit(&vcpu->exit_epoch, memory_order_acquire);
#endif
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_SNAPSHOT);
	/* Acquire: a target seen OUTSIDE (the release store of
	 * vcpureq__exit_guest_mode()) is not waited for, so what it did in
	 * its instance (a walk's reads) must happen before our return. */
	old = atomic_load_explicit(&vcpu->mode, memory_order_acquire);
	if (old == VCPUREQ_IN_GUEST_MODE)
		sent = kick_in_guest(vcpu, &old, ns);
#ifdef VCPUREQ_MUTANT_SNAPSHOT_AFTER_CAS
	/* Mutant: the snapshot may see the bump of the instance we kicked,
	 * and then we wait for the next one. */
	*snap = atomic_load_explicit(&vcpu->exit_epoch, memory_order_relaxed);
#endif
	if (old == VCPUREQ_EXITING_GUEST_MODE)
		VCPUREQ__STAT_INC(vcpu, rstats, signals_coalesced);
	VCPUREQ__TRACE_AT(vcpu->vm, vcpu, kick, kick_decision(old, sent, self),
			  0, ts);
	if (sent < 0)
		return sent; /* not waited for: it cannot be kicked out */
	if ((flags & VCPUREQ_REQUEST_WAIT) &&
	    old != VCPUREQ_OUTSIDE_GUEST_MODE && !self) {
#ifndef VCPUREQ_MUTANT_WAIT_NO_WAIT
		*wait = true;
#endif
		VCPUREQ__STAT_INC(vcpu, rstats, acks_waited);
		atomic_fetch_add_explicit(&ns->waits, 1, memory_order_relaxed);
	}
	return sent;
}

int vcpureq_vcpu_kick(struct vcpureq_vcpu *vcpu)
{
	uint32_t snap;
	bool wait;
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	VCPUREQ__MB_R(); /* [R]: orders the caller's request before the
			    reads of sleep state and mode */
	return vcpureq__kick_after_fence(vcpu, VCPUREQ_REQUEST_NO_ACTION, &wait, &snap);
}

/* Used by the mailbox: ON was set by the caller. */
int vcpureq__kick_fenced(struct vcpureq_vcpu *vcpu)
{
	uint32_t snap;
	bool wait;

	VCPUREQ__MB_R(); /* [R], with ON in place of the request bit */
	return vcpureq__kick_after_fence(vcpu, VCPUREQ_REQUEST_NO_ACTION, &wait, &snap);
}

/* Word @w of the target set (w * 64 < t->n). */
uint64_t vcpureq__tword(const struct targets *t, unsigned int w)
{
	size_t base = (size_t)w * 64;
	uint64_t m = ~UINT64_C(0);

	if (t->mask) {
#ifndef VCPUREQ_MUTANT_MASK_ONE_WORD
		if (base >= t->mask_bits)
#else
		if (base >= t->mask_bits || w > 0)
#endif
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

/*
 * A WAIT request from a vCPU thread that is itself not OUTSIDE (inside a
 * lockless walk, or in guest mode: the thread backend's guest callback)
 * could wait for a vCPU that waits for it, of this VM or of another: both
 * would wait forever (the Spin model's GUEST_WAIT variant finds the
 * cycle).  Refused, except that
 * from guest mode a WAIT naming only the caller's own vCPU is fine: it
 * never waits on itself.  @t NULL: the single target @one.
 */
static int check_wait_deadlock(const struct vcpureq_vm *vm, unsigned int req,
			       const struct targets *t,
			       const struct vcpureq_vcpu *one)
{
	const struct vcpureq_vcpu *self = vcpureq__self;
	unsigned int w;

	/* Any VM: two vCPU threads of different VMs waiting for each
	 * other's vCPU deadlock just the same. */
#ifndef VCPUREQ_MUTANT_NO_DEADLOCK_CHECK
	if (!(req & VCPUREQ_REQUEST_WAIT) || !self)
#else
	if (1 || !(req & VCPUREQ_REQUEST_WAIT) || !self)
#endif
		return 0;
	if (self->in_walk)
		return vcpureq__err(-EDEADLK,
				    "a WAIT request from inside a lockless walk could wait forever on another walker");
	if (atomic_load_explicit(&self->mode, memory_order_relaxed) ==
	    VCPUREQ_OUTSIDE_GUEST_MODE)
		return 0;
	if (!t)
		return one == self ? 0 :
			vcpureq__err(-EDEADLK,
				     "a WAIT request of another vCPU from guest mode could wait forever on a vCPU waiting for this one");
	for_each_word(t, w) {
		uint64_t others = vcpureq__tword(t, w);

		if (self->vm == vm && w == self->index / 64)
			others &= ~(UINT64_C(1) << (self->index % 64));
		if (others)
			return vcpureq__err(-EDEADLK,
					    "a WAIT request of another vCPU from guest mode could wait forever on a vCPU waiting for this one");
	}
	return 0;
}

static int acks_alloc(struct acks *a, unsigned int n)
{
	size_t words = ((size_t)n + 63) / 64;

	a->waits = calloc(1, words * sizeof(uint64_t) + n * sizeof(uint32_t));
	if (!a->waits)
		return vcpureq__err(-ENOMEM, "out of memory for a WAIT broadcast's acknowledgements (nothing was made)");
	a->snaps = (uint32_t *)(a->waits + words);
	return 0;
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
#ifndef VCPUREQ_MUTANT_DEADLINE_UNCHECKED
	return vcpureq__check_time(&dl->when,
				   "dl->when.tv_sec is negative (nothing was done)",
				   "dl->when.tv_nsec is outside [0, 999999999] (nothing was done)");
#else
	return 0;
#endif
}

/* A deadline's report: clear @dl->pending, the bits it can hold. */
void vcpureq__pending_clear(const struct vcpureq_deadline *dl)
{
	if (dl && dl->pending && dl->pending_bits)
		memset(dl->pending, 0,
#ifndef VCPUREQ_MUTANT_PENDING_LAST_WORD
		       (dl->pending_bits / 64 + (dl->pending_bits % 64 != 0)) *
#else
		       /* Mutant: the last word (partial or not) is left. */
		       ((dl->pending_bits - 1) / 64) *
#endif
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

/*
 * make + kick of every target (validated by the caller): set every bit,
 * one fence [R] for all, kick each (signals go out as we go), then wait
 * for every acknowledgement, until @dl if given.  No lock is held at any
 * point.
 */
static int request_targets(struct vcpureq_vm *vm, unsigned int req,
			   const struct targets *t,
			   const struct vcpureq_deadline *dl)
{
	unsigned int flags = req & ~VCPUREQ_REQUEST_MASK;
	unsigned int w, i, nr_waits = 0;
	struct acks a = { NULL, NULL };
	int sent, err = 0, r = check_wait_deadlock(vm, req, t, NULL);

	if (r)
		return r;
	if ((flags & VCPUREQ_REQUEST_WAIT) && (r = acks_alloc(&a, t->n)))
		return r;
	VCPUREQ__TRACE(vm, NULL, call_begin, req, VCPUREQ__CALL_BROADCAST);
	vcpureq__pending_clear(dl);
#ifndef VCPUREQ_MUTANT_REQUESTLESS_KICK
	vcpureq__mark_dead(vm, req);
	vcpureq__set_bits(vm, req, t);
	VCPUREQ__MB_R(); /* [R] for every target at once */
	sent = vcpureq__kick_all(vm, req, t, a.waits ? &a : NULL, &err);
#else
	/* Mutant: a request-less kick, then a flag that the Dekker pattern
	 * does not cover (what kvmtool and cloud-hypervisor do). */
	VCPUREQ__MB_R();
	sent = vcpureq__kick_all(vm, req, t, a.waits ? &a : NULL, &err);
	vcpureq__mark_dead(vm, req);
	vcpureq__set_bits(vm, req, t);
#endif
	if (!a.waits) {
		r = err ? err : sent;
		VCPUREQ__TRACE(vm, NULL, call_end, r, VCPUREQ__CALL_BROADCAST);
		return r;
	}
	for_each_word(t, w)
		nr_waits += (unsigned int)__builtin_popcountll(a.waits[w]);
	VCPUREQ__TRACE(vm, NULL, wait_begin, nr_waits, 0);
	for_each_word(t, w) {
		uint64_t m = a.waits[w];

		for_each_bit(m, i, w) {
			r = wait_ack(vm->vcpus[i], a.snaps[i],
				     nr_waits == 1 && vm->nr_cpus > 1,
				     dl ? &dl->when : NULL);
			if (!r)
				VCPUREQ__TRACE(vm, vm->vcpus[i], ack, 0, 0);
			vcpureq__note_wait(dl, i, r, &err);
		}
	}
	free(a.waits);
	VCPUREQ__TRACE(vm, NULL, wait_end, err, 0);
	if (err == -ETIMEDOUT)
		vcpureq__err(err, "not every WAIT target acknowledged by the deadline (see the pending mask); the requests stay made");
	r = err ? err : sent;
	VCPUREQ__TRACE(vm, NULL, call_end, r, VCPUREQ__CALL_BROADCAST);
	return r;
}

static int check_vm_req(const struct vcpureq_vm *vm, unsigned int req)
{
	int r = vcpureq__check_vm(vm);

	return r ? r : vcpureq__check_req(req, true);
}

int vcpureq_make_all_cpus_request(struct vcpureq_vm *vm, unsigned int req)
{
	struct targets t = { NULL, 0, 0 };
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	t.n = vcpureq__nr_vcpus(vm);
#ifdef VCPUREQ_MUTANT_ALL_CPUS_32
	t.n = t.n > 32 ? 32 : t.n; /* a 32-bit "all" mask */
#endif
	return request_targets(vm, req, &t, NULL);
}

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
#ifndef VCPUREQ_MUTANT_MASK_EXTRA_BITS_OK
		if (bits)
#else
		if (0)
#endif
			return vcpureq__err(-EINVAL,
					    "mask names a vCPU index >= the VM's vCPU count");
	}
	return 0;
}

static const uint64_t no_target;

int vcpureq_make_vcpus_request_mask(struct vcpureq_vm *vm, unsigned int req,
				    const uint64_t *mask, size_t mask_bits)
{
	struct targets t;
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	if (!mask && mask_bits)
		return vcpureq__err(-EINVAL, "mask is NULL");
	if (!mask)
		mask = &no_target; /* zero bits: no target */
	r = vcpureq__targets_of(vm, mask, mask_bits, &t);
	return r ? r : request_targets(vm, req, &t, NULL);
}

int vcpureq_make_vcpus_request_deadline(struct vcpureq_vm *vm, unsigned int req,
					const uint64_t *mask, size_t mask_bits,
					const struct vcpureq_deadline *dl)
{
	struct targets t;
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	if ((r = vcpureq__check_deadline(dl)))
		return r;
	r = vcpureq__targets_of(vm, mask, mask_bits, &t);
	return r ? r : request_targets(vm, req, &t, dl);
}

/*
 * The pause target will not run guest code until resumed and has done
 * with its current exit: parked, asleep in block, unbound, or itself
 * waiting in vcpureq_pause() (a vCPU thread pausing others).
 */
static bool parked(const struct vcpureq_vcpu *v)
{
	/* Acquire: pairs with the release store of parked (and the release
	 * of the sleeper's and the unbinder's state): the target's last
	 * guest run happens before our return. */
	return atomic_load_explicit(&v->parked, memory_order_acquire) ||
	       atomic_load_explicit(&v->sleep_state, memory_order_acquire) ==
		       VCPUREQ__SLEEPING ||
	       atomic_load_explicit(&v->tid, memory_order_acquire) == 0;
}

/* Wait until @v is parked or @deadline passes; re-kick it every
 * VCPUREQ__RECHECK_NS if it is back IN_GUEST (a kick that could not be sent).
 * 0, -ETIMEDOUT, -EIO (the VM died meanwhile), -EINVAL (the kernel
 * refused the deadline: never retried) or the kick's error. */
static int wait_parked(struct vcpureq_vcpu *v, const struct timespec *deadline)
{
	int r = 0;

	atomic_fetch_add_explicit(&v->park_waiters, 1, memory_order_relaxed);
	vcpureq__smp_mb(); /* [W'] pairs with [E'] in vcpureq__park_notify() */
	for (;;) {
		/* Acquire: pairs with the release bump in
		 * vcpureq__park_notify(). */
		uint32_t e = atomic_load_explicit(&v->park_epoch,
						  memory_order_acquire);
		struct timespec recheck = vcpureq__ts_after(VCPUREQ__RECHECK_NS);
		const struct timespec *until = vcpureq__ts_min(&recheck, deadline);
		int mode;

		if (parked(v))
			break;
		/* VM_DEAD: vcpureq__pause_kill() stores the dead flag and
		 * then bumps every park_epoch ([E']): read after our epoch
		 * load, either we see the flag here or the bump makes the
		 * futex wait below return (or wakes it: [W']). */
#ifndef VCPUREQ_MUTANT_DEAD_PAUSER_WAITS
		if (vcpureq__vm_dead(v->vm)) {
#else
		if (0) {
#endif
			r = -EIO;
			break;
		}
		if (!vcpureq__futex_wait_until(&v->park_epoch, e, until))
			continue;
		if (errno == EINVAL) {
			r = vcpureq__err(-EINVAL, "the futex wait refused the deadline (EINVAL)");
			break;
		}
		if (errno != ETIMEDOUT)
			continue;
		if (parked(v))
			break;
		if (until == deadline) {
			r = -ETIMEDOUT;
			break;
		}
		/* Acquire: pairs with the release exchange to OUTSIDE in
		 * vcpureq__exit_guest_mode() (a target seen gone is not
		 * kicked); vcpureq__rekick()'s CAS reads the mode again anyway. */
		mode = atomic_load_explicit(&v->mode, memory_order_acquire);
		if (mode == VCPUREQ_IN_GUEST_MODE && (r = vcpureq__rekick(v, &mode)) < 0)
			break;
		r = 0;
	}
	atomic_fetch_sub_explicit(&v->park_waiters, 1, memory_order_relaxed);
	return r;
}

/* The checks shared by vcpureq_pause() and vcpureq_pause_wait(). */
static int pause_checks(struct vcpureq_vm *vm, const uint64_t *mask,
			size_t mask_bits, const struct vcpureq_deadline *dl,
			struct targets *t)
{
	struct vcpureq_vcpu *self = vcpureq__self;
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if ((r = vcpureq__check_deadline(dl)))
		return r;
	if (self && (self->in_walk ||
		     atomic_load_explicit(&self->mode, memory_order_relaxed) !=
			     VCPUREQ_OUTSIDE_GUEST_MODE))
		return vcpureq__err(-EDEADLK,
				    "pause from guest mode or a lockless walk could wait on a vCPU that waits for this one");
	if (!mask && mask_bits)
		return vcpureq__err(-EINVAL, "mask is NULL");
	r = vcpureq__targets_of(vm, mask, mask_bits, t);
	if (r)
		return r;
	if (vcpureq__vm_dead(vm))
		return vcpureq__err(-EIO, "the VM is dead (VM_DEAD): nothing paused");
	return 0;
}

/* Wait until every target of @t other than the caller's own vCPU is
 * parked, or @dl passes; the caller's vCPU counts as parked meanwhile. */
static int wait_targets(struct vcpureq_vm *vm, const struct targets *t,
			const struct vcpureq_deadline *dl)
{
	struct vcpureq_vcpu *self = vcpureq__self;
	uint32_t was = 0;
	unsigned int w, i;
	int r, err = 0;

	/* A vCPU thread pausing others counts as parked while it waits: it
	 * is outside guest mode and parks at its next entry if paused, so
	 * two vCPU threads pausing each other do not wait forever. */
	if (self)
		was = vcpureq__self_park_begin(self);
	for_each_word(t, w) {
		uint64_t m = vcpureq__tword(t, w);

		for_each_bit(m, i, w) {
			if (vm->vcpus[i] == self)
				continue;
			r = wait_parked(vm->vcpus[i], dl ? &dl->when : NULL);
			if (!r)
				VCPUREQ__TRACE(vm, vm->vcpus[i], parked_seen, 0, 0);
			vcpureq__note_wait(dl, i, r, &err);
			if (r == -EIO || r == -EINVAL)
				goto out; /* the others are not waited for */
		}
	}
out:
	if (self)
		vcpureq__self_park_end(self, was);
	/* The VM died while we waited (every target may have parked or
	 * unbound on its way out): the pause did not take hold. */
	if (vcpureq__vm_dead(vm))
		err = -EIO;
	if (err == -ETIMEDOUT)
		vcpureq__err(err, "not every vCPU had parked by the deadline (see the pending mask); the pause stays in force: vcpureq_pause_wait() waits again");
	else if (err == -EIO)
		vcpureq__err(err, "the VM died (VM_DEAD) while the pause waited");
	return err;
}

int vcpureq_pause(struct vcpureq_vm *vm, const uint64_t *mask, size_t mask_bits,
		  const struct vcpureq_deadline *dl)
{
	unsigned int w, i;
	struct targets t;
	int err = 0, r = pause_checks(vm, mask, mask_bits, dl, &t);

	if (r)
		return r;
	VCPUREQ__TRACE(vm, NULL, pause_begin, 0, 0);
	vcpureq__pending_clear(dl);
	/* The count before the bit: the bit's release (vcpureq__set_bits())
	 * carries the count to a vCPU whose acquire RMW takes the bit
	 * (take_bit() in request.c), so a vCPU that sees the bit sees the
	 * pause.  seq_cst (more than that needs) also keeps it before [R]
	 * below, which pairs with [S] of a vCPU going to sleep in block.c:
	 * either it reads the count and counts itself parked, or we read
	 * its SLEEPING in parked(). */
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w)
			atomic_fetch_add_explicit(&vm->vcpus[i]->pause_word, 1,
						  memory_order_seq_cst);
	}
	vcpureq__set_bits(vm, VCPUREQ__REQ_PAUSE, &t);
	VCPUREQ__MB_R(); /* [R]: the bit before every mode read */
	/* NO_WAKEUP: a sleeper stays asleep (it parks when it enters). */
	vcpureq__kick_all(vm, VCPUREQ__REQ_PAUSE, &t, NULL, &err);
	r = wait_targets(vm, &t, dl);
	if (r && (!err || r != -ETIMEDOUT))
		err = r;
	VCPUREQ__TRACE(vm, NULL, pause_end, err, 0);
	return err;
}

int vcpureq_pause_wait(struct vcpureq_vm *vm, const uint64_t *mask,
		       size_t mask_bits, const struct vcpureq_deadline *dl)
{
	unsigned int w, i;
	struct targets t;
	int r = pause_checks(vm, mask, mask_bits, dl, &t);

	if (r)
		return r;
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w)
			if (!(atomic_load_explicit(&vm->vcpus[i]->pause_word,
						   memory_order_relaxed) &
			      VCPUREQ__PAUSE_COUNT))
				return vcpureq__errf(-EINVAL,
						     "vCPU %lu is not paused (nothing waited for): vcpureq_pause() it first",
						     vm->vcpus[i]->id);
	}
	VCPUREQ__TRACE(vm, NULL, pause_begin, 0, 0);
	vcpureq__pending_clear(dl);
	r = wait_targets(vm, &t, dl);
	VCPUREQ__TRACE(vm, NULL, pause_end, r, 0);
	return r;
}

/*
 * Take one pause of @v: a CAS loop that never takes the count below zero
 * (two resumers of one pause cannot both take it: the loser sees 0).
 * Returns the count it took (>= 1), or 0 if @v was not paused.  Release:
 * pairs with the parked vCPU's acquire load of the word
 * (vcpureq__park_if_paused()): what the resumer wrote before is visible
 * to the vCPU that leaves its parking on this count.
 */
static uint32_t take_pause(struct vcpureq_vcpu *v)
{
	uint32_t w = atomic_load_explicit(&v->pause_word, memory_order_relaxed);
	/* "unpause" is stamped before the CAS that may take the count to 0:
	 * the vCPU can leave its parking (and enter the guest) as soon as it
	 * reads 0, before any wake; a stamp after the CAS could follow its
	 * next guest entry (trace.h: causal order). */
	uint64_t ts = VCPUREQ__TRACE_TS(v->vm);

	do {
		if (!(w & VCPUREQ__PAUSE_COUNT))
			return 0;
#ifdef VCPUREQ_MUTANT_RESUME_NOT_ATOMIC
		/* Mutant: the check above, then a decrement that does not
		 * re-check (two resumers of one pause both take it). */
		sched_yield();
		atomic_fetch_sub_explicit(&v->pause_word, 1,
					  memory_order_release);
		return w & VCPUREQ__PAUSE_COUNT;
#endif
	} while (!atomic_compare_exchange_weak_explicit(
			 &v->pause_word, &w, w - 1, memory_order_release,
			 memory_order_relaxed));
	if ((w & VCPUREQ__PAUSE_COUNT) == 1)
		VCPUREQ__TRACE_AT(v->vm, v, unpause, 0, 0, ts);
	return w & VCPUREQ__PAUSE_COUNT;
}

/*
 * Give back a pause taken by a refused call.  If the count had gone to 0,
 * the vCPU may have seen it (a vCPU between its load of the word and its
 * futex wait, or one about to park): the PAUSE request is made again and
 * the vCPU kicked, so that it parks at its next entry as after any pause.
 */
static void untake_pause(struct vcpureq_vcpu *v)
{
	uint32_t snap;
	bool wait;

	/* Relaxed: the request bit's release and [R] below order it. */
	if (atomic_fetch_add_explicit(&v->pause_word, 1,
				      memory_order_relaxed) &
	    VCPUREQ__PAUSE_COUNT)
		return;
	vcpureq__set_request(v, VCPUREQ__REQ_PAUSE);
	VCPUREQ__MB_R(); /* [R]: the bit before the mode read */
	vcpureq__kick_after_fence(v, VCPUREQ__REQ_PAUSE, &wait, &snap);
}

int vcpureq_resume(struct vcpureq_vm *vm, const uint64_t *mask, size_t mask_bits)
{
	unsigned int w, i, j;
	struct targets t;
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if (!mask && mask_bits)
		return vcpureq__err(-EINVAL, "mask is NULL");
	r = vcpureq__targets_of(vm, mask, mask_bits, &t);
	if (r)
		return r;
	VCPUREQ__TRACE(vm, NULL, resume_begin, 0, 0);
	/*
	 * All or nothing, without a lock: take one pause of each target in
	 * index order; at the first target found not paused (never paused,
	 * or a racing resume took its last pause), give back what this call
	 * took and refuse.  Nobody is woken before every target was taken.
	 */
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w) {
			if (take_pause(vm->vcpus[i]))
				continue;
			for (j = 0; j < i; j++)
				if (vcpureq__tword(&t, j / 64) & (UINT64_C(1) << (j % 64)))
					untake_pause(vm->vcpus[j]);
			VCPUREQ__TRACE(vm, NULL, resume_end, (uint32_t)-EINVAL, 0);
			return vcpureq__errf(-EINVAL,
					     "vCPU %lu is not paused (nothing resumed)",
					     vm->vcpus[i]->id);
		}
	}
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w) {
			struct vcpureq_vcpu *v = vm->vcpus[i];

			/* A count at 0 now (ours was its last pause, or a
			 * racing resume took a later one): wake it; a vCPU
			 * paused again meanwhile re-checks and sleeps on. */
			if (!(atomic_load_explicit(&v->pause_word,
						   memory_order_relaxed) &
			      VCPUREQ__PAUSE_COUNT))
				vcpureq__futex_wake(&v->pause_word, 1);
		}
	}
	VCPUREQ__TRACE(vm, NULL, resume_end, 0, 0);
	return 0;
}

/* make + kick of one internal request, no WAIT (run-on-vCPU's WORK). */
int vcpureq__make_and_kick(struct vcpureq_vcpu *vcpu, unsigned int req)
{
	uint32_t snap;
	bool wait;

	vcpureq__set_request(vcpu, req);
	VCPUREQ__MB_R(); /* [R] */
	return vcpureq__kick_after_fence(vcpu, req, &wait, &snap);
}

int vcpureq_make_vcpus_request(struct vcpureq_vm *vm, unsigned int req,
			       const unsigned int *ids, size_t nr_ids)
{
	struct targets t = { NULL, 0, 0 };
	uint64_t *m;
	size_t i;
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	if (!ids && nr_ids)
		return vcpureq__err(-EINVAL, "ids is NULL");
	t.n = vcpureq__nr_vcpus(vm);
	m = calloc(((size_t)t.n + 63) / 64 + 1, sizeof(uint64_t));
	if (!m)
		return vcpureq__err(-ENOMEM, "out of memory (nothing was made)");
	for (i = 0; i < nr_ids; i++) {
		unsigned int id = ids[i];

		if (id >= t.n) {
			free(m);
			return vcpureq__err(-EINVAL, "vCPU index out of range");
		}
		if (m[id / 64] & (UINT64_C(1) << (id % 64))) {
			free(m);
			return vcpureq__err(-EINVAL, "vCPU index named twice");
		}
		m[id / 64] |= UINT64_C(1) << (id % 64);
	}
	t.mask = m;
	t.mask_bits = t.n;
	r = request_targets(vm, req, &t, NULL);
	free(m);
	return r;
}

int vcpureq_request(unsigned int req, struct vcpureq_vcpu *vcpu)
{
#ifndef VCPUREQ_MUTANT_NO_ACTION_SETS_BIT
	bool act = !(req & VCPUREQ_REQUEST_NO_ACTION);
#else
	bool act = true;
#endif
	uint32_t snap;
	bool wait;
	int r = vcpureq__check_vcpu(vcpu);

	if (!r)
		r = vcpureq__check_req(req, true);
	if (!r)
		r = check_wait_deadlock(vcpu->vm, req, NULL, vcpu);
	if (r)
		return r;
	VCPUREQ__TRACE(vcpu->vm, vcpu, call_begin, req, VCPUREQ__CALL_REQUEST);
	/* request_mask() for one target, without walking masks. */
#ifndef VCPUREQ_MUTANT_REQUESTLESS_KICK
	if (act) {
		vcpureq__mark_dead(vcpu->vm, req);
		vcpureq__set_request(vcpu, req);
	}
	VCPUREQ__MB_R(); /* [R] */
	r = vcpureq__kick_after_fence(vcpu, req, &wait, &snap);
#else
	VCPUREQ__MB_R();
	r = vcpureq__kick_after_fence(vcpu, req, &wait, &snap);
	if (act) {
		vcpureq__mark_dead(vcpu->vm, req);
		vcpureq__set_request(vcpu, req);
	}
#endif
	if (wait) {
		int e;

		VCPUREQ__TRACE(vcpu->vm, vcpu, wait_begin, 1, 0);
		e = wait_ack(vcpu, snap, vcpu->vm->nr_cpus > 1, NULL);
		if (!e)
			VCPUREQ__TRACE(vcpu->vm, vcpu, ack, 0, 0);
		VCPUREQ__TRACE(vcpu->vm, vcpu, wait_end, e, 0);
		if (e < 0)
			r = e;
	}
	VCPUREQ__TRACE(vcpu->vm, vcpu, call_end, r, VCPUREQ__CALL_REQUEST);
	return r;
}

int vcpureq_vm_dead(struct vcpureq_vm *vm)
{
	int r = vcpureq_make_all_cpus_request(vm, VCPUREQ_REQ_VM_DEAD);
	unsigned int i, n;

	if (r < 0)
		return r;
	/* Work queued to a vCPU with no bound thread would wait for the
	 * destroy: cancelled here (work.c, after the [R] of the broadcast
	 * above, which follows the dead flag's store). */
	n = vcpureq__nr_vcpus(vm);
	for (i = 0; i < n; i++)
		vcpureq__work_cancel_if_dead(vm->vcpus[i]);
	return r;
}

bool vcpureq_vm_is_dead(const struct vcpureq_vm *vm)
{
	return vm && vcpureq__vm_dead(vm);
}
