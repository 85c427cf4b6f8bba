/* SPDX-License-Identifier: MIT */
/*
 * Race-window injection for the torture tier.  In a normal build every hook
 * is empty.  Built with -DVCPUREQ_TORTURE, each hook calls
 * vcpureq__race_window(), which the torture program defines to insert short
 * random delays, so that the interleavings the protocol guards against
 * happen on every run instead of once a month.
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
#else
#define VCPUREQ_RACE_WINDOW(w) ((void)0)
#endif

/*
 * Mutants, for the mutation self-check (tests/torture/mutants.sh): each
 * VCPUREQ_MUTANT_* breaks the protocol in one known way, and the torture
 * test, the Spin model, ThreadSanitizer or a unit-test case must catch
 * every one (which one catches which: tests/torture/mutants.sh and
 * tests/torture/unit_mutants.txt).  Never defined in a normal build.
 * Those of one kick mechanism (SIGNAL_DELIVERABLE: SIGMASK; IE_CLEAR_LATE:
 * IMMEDIATE_EXIT) live in backend_kvm.c and are run with that mechanism
 * (mutants.sh).  Each is one #ifdef at one place:
 *
 *   barriers (here): NO_REQ_FENCE [R], NO_VCPU_FENCE [V], NO_SLEEPER_FENCE
 *     [S], RELAXED_PAYLOAD (release/acquire of the bit)
 *   request.c: CHECK_NO_CLEAR (check_request does not clear),
 *     TEST_WRONG_BIT (test_request tests bit + 1), CLEAR_ALL
 *     (clear_request clears every bit), NO_WAKE_HINT (make sets no wake
 *     hint), NO_FORK_CHECK (a forked child's calls are not refused)
 *   kick.c, make_request.c, targets.c: REQUESTLESS_KICK (kick, then set the bit), SNAPSHOT_AFTER_CAS
 *     (epoch snapshot after the CAS), WAIT_NO_WAIT (WAIT returns without
 *     the ack), NO_WAKEUP_IGNORED (NO_WAKEUP wakes sleepers),
 *     NO_ACTION_SETS_BIT (vcpureq_request() sets bit 0 for NO_ACTION),
 *     ALL_CPUS_32 (the all-vCPUs call reaches 32 at most), MASK_ONE_WORD
 *     (mask words past the first ignored), MASK_EXTRA_BITS_OK (bits past
 *     the last vCPU accepted), KICK_FAIL_KEEPS_EXITING (a signal that
 *     could not be sent leaves the vCPU EXITING), SELF_SIGNAL (a vCPU in
 *     guest mode signals itself), NO_DEADLOCK_CHECK (WAIT from guest mode
 *     or a walk not refused), KICK_NO_RETRY (tgkill's EAGAIN reported at
 *     once, no back-off)
 *   block.c: UNBLOCK_NOT_CONSUMED, HINT_NOT_CONSUMED, BLOCK_IGNORES_RUNNABLE,
 *     HALT_POLL_UNCAPPED (the halt-poll window grows past the option)
 *   run.c: HINT_NOT_SPENT_BY_PROCESSING (entry's processing leaves the
 *     wake hint), HINT_SPENT_AT_EXIT (the exit spends it, too early)
 *   mailbox.c: ON_NOT_CLEARED (sync leaves ON set), TAKE_LOWEST (lowest
 *     vector first), PIR_BEFORE_ON (sync takes PIR, then clears ON)
 *   vcpu_mode.c: NO_FINAL_CHECK, NO_ENTRY_SYNC (PIR not synced after [V]),
 *     WALK_END_NO_EPOCH (walk end bumps no epoch, wakes no waiter),
 *     ABORT_COUNTED_AS_ENTRY (an aborted entry counted as an entry),
 *     ACK_WAKES_ONE (an exit wakes one WAIT requester, not all)
 *   vm.c: BY_ID_OFF_BY_ONE (vcpureq_vm_vcpu_by_id() matches id - 1),
 *     VCPU_INDEX_OFF_BY_ONE (vcpureq_vm_vcpu() answers index == count),
 *     COUNT_BEFORE_SLOT (an add publishes the count before the slot)
 *   signal.c: RELEASE_RESETS_FOREIGN (the last destroy resets the kick
 *     signal over the application's later handler)
 *   trace.c: TRACE_PUBLISH_EARLY (a trace slot's seq published before
 *     its fields: an export reading it keeps a torn event)
 *   run.c (more): LIBRARY_BITS_RETURNED (a PAUSE or WORK bit made while
 *     the library processes its own makes run/enter return RUN_REQUEST)
 *   backend_kvm.c: SIGNAL_DELIVERABLE, IE_CLEAR_LATE,
 *     STALE_KICK_NOT_DRAINED (SIGMASK: the kick signal of an ended
 *     instance is left pending), ADOPT_OTHER_VM (adopt takes another VM's
 *     vCPU fd), MMAP_FAIL_LOSES_FD (a vCPU fd whose kvm_run mmap failed
 *     is closed: its id is lost)
 *   pause.c, targets.c (pause, deadlines): RESUME_NOT_ATOMIC (resume checks the
 *     count, then decrements it: two resumers of one pause both succeed),
 *     DEADLINE_UNCHECKED (a malformed deadline is not refused up front),
 *     PENDING_LAST_WORD (the pending mask's last word is not cleared),
 *     DEAD_PAUSER_WAITS (a waiting pause does not look at VM_DEAD)
 *   run_on_vcpu.c: EXIT_LOSES_WORK (no cleanup handler: items taken by an
 *     exiting vCPU thread are lost), WORK_CYCLE_OK (waits_on not
 *     published: run_on_vcpu cycles not refused)
 *   backend_kvm.c (pause): NO_KVMCLOCK_CTRL (KVM_KVMCLOCK_CTRL not issued
 *     on park)
 */
#if defined(VCPUREQ_MUTANT_NO_REQ_FENCE)
#define VCPUREQ__MB_R() ((void)0)
#else
#define VCPUREQ__MB_R() vcpureq__smp_mb()
#endif
#if defined(VCPUREQ_MUTANT_NO_VCPU_FENCE)
#define VCPUREQ__MB_V() ((void)0)
#else
#define VCPUREQ__MB_V() vcpureq__smp_mb()
#endif
#if defined(VCPUREQ_MUTANT_NO_SLEEPER_FENCE)
#define VCPUREQ__MB_S() ((void)0)
#else
#define VCPUREQ__MB_S() vcpureq__smp_mb()
#endif
/*
 * VCPUREQ_MUTANT_RELAXED_PAYLOAD: the request bit is set, tested and
 * checked with memory_order_relaxed (no release in vcpureq__set_request(),
 * no acquire in vcpureq_test_request() / vcpureq_check_request()), so the
 * payload written before a make no longer happens before the handler's
 * reads.  On x86 the instructions are the same (only the compiler may
 * reorder), so the torture test cannot see it; ThreadSanitizer does: the
 * test_payload checks, built with -fsanitize=thread against this mutant
 * (tests/torture/CMakeLists.txt), report the data race on their plain
 * payload.
 */
/* The real order stays written at each use: VCPUREQ__MO_PAYLOAD(mo) is mo. */
#if defined(VCPUREQ_MUTANT_RELAXED_PAYLOAD)
#define VCPUREQ__MO_PAYLOAD(mo) memory_order_relaxed
#else
#define VCPUREQ__MO_PAYLOAD(mo) (mo)
#endif

#endif /* VCPUREQ_RACE_H */
