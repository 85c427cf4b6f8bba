/* SPDX-License-Identifier: MIT */
/*
 * Race-window injection for the torture tier.  In a normal build every hook
 * is empty.  Built with -DVCPUREQ_TORTURE, each hook calls
 * vcpureq__race_window(), which the torture program defines to insert short
 * random delays, so that the interleavings the protocol guards against
 * happen on every run instead of once a month.  Built with
 * -DVCPUREQ_RACE_SLEEPS (CMake option of that name), each hook calls
 * vcpureq__race_sleep() (race_sleep.c), and the unit tier runs against it
 * (make test-race-sleeps).
 */
#ifndef VCPUREQ_RACE_H
#define VCPUREQ_RACE_H

enum vcpureq__window {
	/* vCPU: requests processed (none left), before publishing
	 * IN_GUEST_MODE: a request made here finds the vCPU outside guest
	 * mode, is not kicked, and only the final check sees it. */
	VCPUREQ__WIN_BEFORE_PUBLISH,
	/* vCPU: between publishing IN_GUEST_MODE and the final check. */
	VCPUREQ__WIN_AFTER_PUBLISH,
	/* vCPU: between the final request check and KVM_RUN / callback. */
	VCPUREQ__WIN_BEFORE_ENTER,
	/* requester: between setting the request bit and the mode CAS. */
	VCPUREQ__WIN_BEFORE_CAS,
	/* requester: between winning the CAS and sending the signal. */
	VCPUREQ__WIN_BEFORE_SIGNAL,
	/* sleeper: between registering and checking the wake conditions. */
	VCPUREQ__WIN_SLEEP_REGISTER,
	/* vCPU: between leaving guest mode and bumping the exit epoch. */
	VCPUREQ__WIN_BEFORE_EPOCH,
	/* requester: after sending the signal (before waiting). */
	VCPUREQ__WIN_AFTER_SIGNAL,
	/* requester: between setting the request bit and the wake hint. */
	VCPUREQ__WIN_AFTER_BIT,
	/* requester: bit and hint published, before the fence [R]. */
	VCPUREQ__WIN_AFTER_HINT,
	/* requester: between the exit-epoch snapshot and the mode read. */
	VCPUREQ__WIN_AFTER_SNAPSHOT,
	/* vCPU: the guest-mode instance ended, before publishing OUTSIDE. */
	VCPUREQ__WIN_BEFORE_EXIT,
	/* vCPU: between bumping the exit epoch and waking ack waiters. */
	VCPUREQ__WIN_AFTER_EPOCH,
	/* WAIT requester: registered as an ack waiter, before re-reading
	 * the epoch and sleeping. */
	VCPUREQ__WIN_ACK_REGISTER,
	/* poster: between the PIR bit and ON. */
	VCPUREQ__WIN_AFTER_PIR,
	/* poster: ON set, before the fence [R] and the kick. */
	VCPUREQ__WIN_AFTER_ON,
	/* vCPU: between clearing ON and taking PIR into IRR. */
	VCPUREQ__WIN_SYNC_ON,
	/* waker: between reading SLEEPING and the SLEEPING -> WOKEN CAS. */
	VCPUREQ__WIN_WAKE_CAS,
	/* sleeper: between its last check and futex_wait(). */
	VCPUREQ__WIN_BEFORE_SLEEP,
	/* walker: between publishing READING and its fence. */
	VCPUREQ__WIN_WALK_PUBLISH,
	VCPUREQ__WIN_NR
};

#ifdef VCPUREQ_TORTURE
void vcpureq__race_window(enum vcpureq__window w);
#define VCPUREQ_RACE_WINDOW(w) vcpureq__race_window(w)
#elif defined(VCPUREQ_RACE_SLEEPS)
/* Random sleeps at every hook, for make test-race-sleeps (race_sleep.c). */
void vcpureq__race_sleep(enum vcpureq__window w);
#define VCPUREQ_RACE_WINDOW(w) vcpureq__race_sleep(w)
#else
#define VCPUREQ_RACE_WINDOW(w) ((void)0)
#endif

/*
 * The protocol's named fences (docs/protocol.md): [R] the requester's,
 * between its request bit (or ON, or state) and its reads of the target's
 * sleep state and mode; [V] the vCPU's, between publishing IN_GUEST_MODE
 * and its final check; [S] the sleeper's, between publishing SLEEPING and
 * its check of the wake conditions.  Each use names its pair.
 */
#define VCPUREQ__MB_R() vcpureq__smp_mb()
#define VCPUREQ__MB_V() vcpureq__smp_mb()
#define VCPUREQ__MB_S() vcpureq__smp_mb()
/*
 * The orders of the request bit that carry the payload written before a
 * make to the handler's reads: release in vcpureq__set_request(), acquire
 * in vcpureq_test_request(), seq_cst in vcpureq_check_request().  Named,
 * so that one mutant (tests/mutants/relaxed_payload.diff) weakens all
 * three at once; the real order stays written at each use.
 */
#define VCPUREQ__MO_PAYLOAD(mo) (mo)

#endif /* VCPUREQ_RACE_H */
