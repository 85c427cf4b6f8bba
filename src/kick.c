/* SPDX-License-Identifier: MIT */
/*
 * Kicking one vCPU (kernel: kvm_vcpu_kick(), kvm_vcpu_exiting_guest_mode()).
 *
 * After the caller's fence [R] (make_request.c draws the Dekker pair it
 * belongs to), a kick reads the target's sleep state and mode: a sleeper
 * is woken (block.c); a vCPU in guest mode is moved IN -> EXITING by a CAS
 * whose winner alone sends the signal (the kernel's IPI reduction); a vCPU
 * outside guest mode needs nothing, it sees the request at its next
 * entry.  The epoch snapshot taken here is what a WAIT requester waits
 * past (make_request.c).
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
		/* A transient EAGAIN is retried, with a back-off. */
		if (e != EAGAIN || delay > KICK_RETRY_LAST_NS)
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
		if (vcpureq__self == vcpu) {
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
	if (!(flags & VCPUREQ_REQUEST_NO_WAKEUP) &&
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
	/* Acquire keeps the mode read below after it: two relaxed loads
	 * may be performed out of order (C11, ARM64, POWER; not x86). */
	*snap = atomic_load_explicit(&vcpu->exit_epoch, memory_order_acquire);
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_AFTER_SNAPSHOT);
	/* Acquire: a target seen OUTSIDE (the release store of
	 * vcpureq__exit_guest_mode()) is not waited for, so what it did in
	 * its instance (a walk's reads) must happen before our return. */
	old = atomic_load_explicit(&vcpu->mode, memory_order_acquire);
	if (old == VCPUREQ_IN_GUEST_MODE)
		sent = kick_in_guest(vcpu, &old, ns);
	if (old == VCPUREQ_EXITING_GUEST_MODE)
		VCPUREQ__STAT_INC(vcpu, rstats, signals_coalesced);
	VCPUREQ__TRACE_AT(vcpu->vm, vcpu, kick, kick_decision(old, sent, self),
			  0, ts);
	if (sent < 0)
		return sent; /* not waited for: it cannot be kicked out */
	if ((flags & VCPUREQ_REQUEST_WAIT) &&
	    old != VCPUREQ_OUTSIDE_GUEST_MODE && !self) {
		*wait = true;
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

/* make + kick of one internal request, no WAIT (run-on-vCPU's WORK). */
int vcpureq__make_and_kick(struct vcpureq_vcpu *vcpu, unsigned int req)
{
	uint32_t snap;
	bool wait;

	vcpureq__set_request(vcpu, req);
	VCPUREQ__MB_R(); /* [R] */
	return vcpureq__kick_after_fence(vcpu, req, &wait, &snap);
}
