/* SPDX-License-Identifier: MIT */
/*
 * Internal definitions.  Non-static internal symbols carry the vcpureq__
 * prefix (two underscores); only vcpureq_ (one) is public.
 */
#ifndef VCPUREQ_INTERNAL_H
#define VCPUREQ_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "vcpureq/vcpureq.h"
#include "race.h"
#include "trace.h"

#define VCPUREQ__CACHELINE 64

#define VCPUREQ__TLS __thread __attribute__((tls_model("initial-exec")))

/* The vCPU this thread is bound to, or NULL.  Read by the kick signal
 * handler, hence initial-exec TLS (no lazy allocation on first access). */
extern VCPUREQ__TLS struct vcpureq_vcpu *vcpureq__self;

/* sleep_state values (futex word). */
enum {
	VCPUREQ__AWAKE = 0,
	VCPUREQ__SLEEPING = 1, /* registered in block, may be in futex_wait */
	VCPUREQ__WOKEN = 2,    /* a waker won SLEEPING -> WOKEN and wakes it */
};

enum vcpureq__vm_state {
	VCPUREQ__VM_LIVE = 0,
	VCPUREQ__VM_DESTROYED = 1,
};

/* Counters written by requesters (any thread): one line. */
struct vcpureq__req_stats {
	_Atomic uint64_t requests_made;
	_Atomic uint64_t kicks;
	_Atomic uint64_t signals_sent;
	_Atomic uint64_t signals_coalesced;
	_Atomic uint64_t wakeups;
	_Atomic uint64_t acks_waited;
	_Atomic uint64_t interrupts_posted;
	_Atomic uint64_t ack_rechecks;
	_Atomic uint64_t acks_at_recheck;
};

/* Counters written by the vCPU thread only: another line. */
struct vcpureq__vcpu_stats {
	_Atomic uint64_t requests_handled;
	_Atomic uint64_t entries;
	_Atomic uint64_t entry_aborts;
	_Atomic uint64_t exits;
	_Atomic uint64_t kicked_exits;
	_Atomic uint64_t spurious_exits;
	_Atomic uint64_t blocks;
	_Atomic uint64_t halt_poll_hits;
	_Atomic uint64_t interrupts_injected;
	_Atomic uint64_t foreign_exits;
};

/* pause_word: VM_DEAD, "work queued" (a wake-up for a parked vCPU thread:
 * park.h), and the number of pauses in force. */
#define VCPUREQ__PAUSE_DEAD (1u << 31)
#define VCPUREQ__PAUSE_WORK (1u << 30)
#define VCPUREQ__PAUSE_COUNT (VCPUREQ__PAUSE_WORK - 1)

/* Generic request numbers the library uses itself (users' 3..7 are
 * refused: reserved, as below the kernel's KVM_REQUEST_ARCH_BASE). */
#define VCPUREQ__REQ_PAUSE (3u | VCPUREQ_REQUEST_NO_WAKEUP)
#define VCPUREQ__REQ_WORK 4u
/* Their bits: processed by the library before the handler, never handed
 * to the caller (no VCPUREQ_RUN_REQUEST for them alone). */
#define VCPUREQ__LIBRARY_BITS                                                 \
	((UINT64_C(1) << (VCPUREQ__REQ_PAUSE & VCPUREQ_REQUEST_MASK)) |       \
	 (UINT64_C(1) << (VCPUREQ__REQ_WORK & VCPUREQ_REQUEST_MASK)))

/* A run-on-vCPU item (run_on_vcpu.c). */
struct vcpureq__work {
	struct vcpureq__work *next;
	vcpureq_work_fn fn;
	void (*done)(void *arg, int result); /* async, may be NULL */
	void *arg;
	bool async;        /* heap item: freed once completed */
	int result;
	_Atomic uint32_t finished; /* sync: futex word of the caller */
	uint64_t trace_id;  /* the trace's flow id, 0 if not traced */
};

/* Per request number, VM-wide (vcpureq_vm_dump_stats()). */
struct vcpureq__nr_stats {
	_Atomic uint64_t made, handled, signals, waits;
};

struct vcpureq_vcpu {
	/*
	 * Line 1, the protocol words every requester touches.
	 * requests: the request bitmap; set by anyone (atomic OR), cleared
	 *   only by the vCPU thread.
	 * mode: enum vcpureq_mode.
	 * exit_epoch: bumped each time the vCPU leaves IN_GUEST, EXITING or
	 *   READING; futex word for WAIT requesters (the acknowledgement).
	 * ack_waiters: WAIT requesters sleeping on exit_epoch.
	 * kick_inflight: kickers between their mode CAS and their tgkill, so
	 *   that unbind never lets the thread go while a signal is on its way.
	 * tid: the bound thread, 0 when unbound.
	 */
	alignas(VCPUREQ__CACHELINE) _Atomic uint64_t requests;
	_Atomic int mode;
	_Atomic uint32_t exit_epoch;
	_Atomic uint32_t ack_waiters;
	_Atomic uint32_t kick_inflight;
	_Atomic pid_t tid;

	/* Line 2, the sleeper: futex word and the "waking request" hint. */
	alignas(VCPUREQ__CACHELINE) _Atomic uint32_t sleep_state;
	_Atomic uint32_t wake_hint;

	/*
	 * Pause and run-on-vCPU (pause.c, run_on_vcpu.c).
	 * pause_word: pauses in force (low bits), VCPUREQ__PAUSE_WORK and
	 *   VCPUREQ__PAUSE_DEAD; the futex a parked vCPU sleeps on.
	 * park_epoch: bumped whenever the vCPU becomes parked (in enter, or
	 *   asleep in block, or unbound) with a pause in force; futex word
	 *   of pausers, who register in park_waiters.
	 * parked: 1 while the vCPU thread waits in park().
	 * work: pushed items, newest first (a Treiber stack; the vCPU takes
	 *   it whole and runs it oldest first).
	 */
	alignas(VCPUREQ__CACHELINE) _Atomic uint32_t pause_word;
	_Atomic uint32_t park_epoch;
	_Atomic uint32_t park_waiters;
	_Atomic uint32_t parked;
	_Atomic(struct vcpureq__work *) work;
	/* The vCPU whose run_on_vcpu() this vCPU's thread waits in, or NULL:
	 * the waits-on chain walked to refuse cycles (run_on_vcpu.c). */
	_Atomic(struct vcpureq_vcpu *) waits_on;

	/* Line 3, the interrupt mailbox (PIR + ON). */
	alignas(VCPUREQ__CACHELINE) _Atomic uint64_t pir[4];
	_Atomic uint32_t pir_on;

	/* Line 4, vCPU-thread private state (and the handler's flag). */
	alignas(VCPUREQ__CACHELINE) uint64_t irr[4]; /* synced, not injected */
	/* Set by the kick signal handler or a self-kick while in guest mode;
	 * cleared before IN_GUEST_MODE is published (immediate_exit). */
	_Atomic int kicked;
	bool in_walk;
	bool in_handler;   /* inside opts.handle_requests */
	bool in_run;       /* inside vcpureq_vcpu_run() */
	bool entered;      /* between vcpureq_vcpu_enter() and _exit() */
	bool io_pending;   /* last KVM exit needs a KVM_RUN to complete */
	bool window_requested; /* vcpureq set request_interrupt_window */
	bool irq_line;     /* arm64: vcpureq raised the vCPU's IRQ line */
	bool drain_pending; /* SIGMASK: a kick signal may be pending: take it
			       before the next IN_GUEST_MODE publish */
	int guest_ret;
	/* Adaptive halt-poll window: written by the vCPU thread only, read
	 * by vcpureq_vcpu_stats() from any thread (relaxed: a gauge). */
	_Atomic uint64_t poll_ns;
	sigset_t saved_mask; /* thread's mask before bind */

	alignas(VCPUREQ__CACHELINE) struct vcpureq__req_stats rstats;
	alignas(VCPUREQ__CACHELINE) struct vcpureq__vcpu_stats vstats;

	/* Immutable once the vCPU is published. */
	alignas(VCPUREQ__CACHELINE) struct vcpureq_vm *vm;
	const struct vcpureq__backend *ops; /* == vm->ops */
	unsigned long id;       /* the VMM's vcpu id (KVM_CREATE_VCPU) */
	unsigned int index;     /* order of addition: the bit in masks */
	int fd;                 /* KVM vCPU fd, -1 on the thread backend */
	struct kvm_run *run;    /* kvm_run, NULL on the thread backend */
	size_t run_size;
	bool own_fd;            /* vcpureq created fd: closes it */
	bool own_run;           /* vcpureq mapped run: unmaps it */
	bool lapic_in_kernel;
	/* vcpureq_vcpu_set_user_data(): the VMM's pointer (release store,
	 * acquire load). */
	_Atomic(void *) user_data;
	/* The trace's ring of this vCPU (trace.c): set before the vCPU is
	 * published, or before the trace is enabled; never changes after. */
	struct vcpureq__trace_ring *trace_ring;
};

struct vcpureq_vm {
	struct vcpureq_vm_opts opts;
	const struct vcpureq__backend *ops;
	_Atomic int state;      /* enum vcpureq__vm_state */
	_Atomic int dead;       /* VM_DEAD made: sticky */
	pid_t pid;              /* tgkill's tgid, read once at create */
	unsigned int nr_cpus;   /* online CPUs at create (WAIT spin policy) */
	int kick_signal;
	int kvm_fd, vm_fd;      /* kvm_fd: -1 unless vcpureq opened it */
	bool own_vm_fd;
	bool can_run;           /* vcpureq_vcpu_run() has a guest to run */
	unsigned int fork_gen;  /* vcpureq__fork_gen at open */
	size_t run_size;        /* KVM_GET_VCPU_MMAP_SIZE, 0 if unknown */
	unsigned int max_vcpus;
	/*
	 * vCPUs added so far.  The adder stores vcpus[n] and then nr_vcpus =
	 * n + 1 with release; every reader loads nr_vcpus with acquire and
	 * reads only slots below it, so it sees each vCPU whole (the
	 * kernel's online_vcpus / xarray publish).  Slots never change once
	 * written; the array (max_vcpus pointers) never moves.
	 */
	_Atomic unsigned int nr_vcpus;
	struct vcpureq_vcpu **vcpus;
	/* KVM: vCPU fds vcpureq created whose kvm_run mmap then failed, kept
	 * (KVM cannot create the id again) for a retry of
	 * vcpureq_vcpu_create() with the same id; closed at destroy.  Under
	 * add_lock. */
	struct vcpureq__stray_fd {
		unsigned long id;
		int fd;
	} *stray;
	unsigned int nr_stray;
	struct vcpureq__nr_stats nr_stats[VCPUREQ_REQUEST_NR_MAX + 1];
	struct vcpureq__nr_stats kick_stats; /* kicks without a request */
	pthread_mutex_t add_lock; /* serialises adds (not readers) */
	/*
	 * The trace (trace.c).  trace_on: recording; the only word the off
	 * path reads.  trace: allocated by the first start under add_lock,
	 * published by trace_on's release store, freed with the VM.
	 * trace_lock: start, stop and the export (never a recorder).
	 */
	_Atomic int trace_on;
	_Atomic(struct vcpureq__trace *) trace;
	pthread_mutex_t trace_lock;
};

/* The online vCPU count; acquire pairs with the adder's release. */
static inline unsigned int vcpureq__nr_vcpus(const struct vcpureq_vm *vm)
{
	return atomic_load_explicit(&vm->nr_vcpus, memory_order_acquire);
}

/* The per-number counters a request (or a request-less kick) counts in. */
static inline struct vcpureq__nr_stats *
vcpureq__nr_stats_of(struct vcpureq_vm *vm, unsigned int req)
{
	if (req & VCPUREQ_REQUEST_NO_ACTION)
		return &vm->kick_stats;
	return &vm->nr_stats[req & VCPUREQ_REQUEST_NR_MAX];
}

/* ---- errors (errmsg.c) ---- */
/* Record a static message; async-signal-safe.  Returns err. */
int vcpureq__err(int err, const char *msg);
/* Record a formatted message; not async-signal-safe (setup paths only). */
int vcpureq__errf(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- validation (handle.c, request.c, targets.c) ---- */
/* An absolute time a call takes (a deadline): tv_sec >= 0 and tv_nsec in
 * [0, 10^9), else -EINVAL with @sec_msg / @nsec_msg (static messages that
 * name the field), before anything is done: the kernel answers EINVAL to
 * such a time in every futex wait, which a wait loop must never retry.  A
 * time already past is valid (the wait, if needed, times out at once).
 * Async-signal-safe. */
static inline int vcpureq__check_time(const struct timespec *t,
				      const char *sec_msg, const char *nsec_msg)
{
	if (t->tv_sec < 0)
		return vcpureq__err(-EINVAL, sec_msg);
	if (t->tv_nsec < 0 || t->tv_nsec >= 1000000000l)
		return vcpureq__err(-EINVAL, nsec_msg);
	return 0;
}
/* A struct vcpureq_deadline (NULL: none): its size and its time. */
int vcpureq__check_deadline(const struct vcpureq_deadline *dl);

int vcpureq__check_req(unsigned int req, bool allow_no_action);
int vcpureq__check_vm(const struct vcpureq_vm *vm);
int vcpureq__check_vcpu(const struct vcpureq_vcpu *vcpu);

/* Bumped in the child of every fork() (pthread_atfork, handle.c): a VM
 * created before the fork belongs to the parent, whose vCPU threads the
 * child does not have and must not signal. */
extern _Atomic unsigned int vcpureq__fork_gen;
/* vcpureq__check_self(): the caller is @vcpu's bound thread, @vcpu's VM
 * is live and of this process; else -EINVAL, -ESHUTDOWN, -ECHILD or -EPERM
 * with its message (the _slow part, out of line).  Inline for the guest
 * entry path: a thread bound to @vcpu (vcpureq__self == @vcpu, so @vcpu is
 * not NULL) was bound in this process, since a fork()ed child's
 * vcpureq__self is NULL and binding refuses a parent's VM; what is left to
 * look at is the VM's state. */
int vcpureq__check_self_slow(const struct vcpureq_vcpu *vcpu);
static inline int vcpureq__check_self(const struct vcpureq_vcpu *vcpu)
{
	if (__builtin_expect(vcpu && vcpu == vcpureq__self &&
				     atomic_load_explicit(&vcpu->vm->state,
							  memory_order_relaxed) ==
					     VCPUREQ__VM_LIVE,
			     1))
		return 0;
	return vcpureq__check_self_slow(vcpu);
}
/* VM_DEAD: mark the VM dead (before its bits are set). */
void vcpureq__mark_dead(struct vcpureq_vm *vm, unsigned int req);
/* Whether VM_DEAD was made.  Acquire: pairs with the release store of the
 * flag in vcpureq__mark_dead(). */
/*
 * Copy a counters struct @s (@ssize bytes, this library's version) to the
 * caller's @out of @size bytes, already checked to be at least the first
 * version's: a caller built against an older, shorter struct gets the
 * fields it knows; a newer, larger one gets zeros past ours.
 */
static inline void vcpureq__copy_out(void *out, size_t size, const void *s,
				     size_t ssize)
{
	if (size > ssize) {
		memset((char *)out + ssize, 0, size - ssize);
		size = ssize;
	}
	memcpy(out, s, size);
}

static inline bool vcpureq__vm_dead(const struct vcpureq_vm *vm)
{
	return atomic_load_explicit(&vm->dead, memory_order_acquire) != 0;
}
/* Set the request bit (release), the waking hint, the counter. */
void vcpureq__set_request(struct vcpureq_vcpu *vcpu, unsigned int req);

/* ---- vCPU-side mode transitions (vcpu_mode.c) ---- */
/* Publish IN_GUEST_MODE, fence [V], sync the mailbox, final check.  true:
 * go on into the guest; false: aborted (back OUTSIDE, epoch bumped). */
bool vcpureq__enter_guest_mode(struct vcpureq_vcpu *vcpu);
/* Leave IN_GUEST/EXITING/READING: OUTSIDE (release), bump the exit epoch
 * (release), wake WAIT requesters.  Returns the mode it left.  @why: what
 * ended (VCPUREQ__LEAVE_*: a guest instance, an aborted entry, a walk),
 * for the trace.  vCPU thread. */
int vcpureq__exit_guest_mode(struct vcpureq_vcpu *vcpu, unsigned int why);

/* Test and clear a library-internal request (check_request's ordering,
 * without the user-facing checks).  vCPU thread. */
bool vcpureq__take_request(struct vcpureq_vcpu *vcpu, unsigned int req);

/* ---- pause and work (pause.c, run_on_vcpu.c) ---- */
/* vCPU thread, before each entry: park while a pause is in force.
 * Returns 0, or -EIO (VM dead), or complete_io's error. */
int vcpureq__park_if_paused(struct vcpureq_vcpu *vcpu);
/* VM_DEAD: wake every parked vCPU for good, and every pauser waiting. */
void vcpureq__pause_kill(struct vcpureq_vm *vm);
/* vcpureq__self_park_begin()/_end(): park.h. */
/* vCPU thread: run the queued work items; with @cancel complete them with
 * -ECANCELED instead (VM_DEAD).  destroy: cancel what is left (any thread,
 * no vCPU thread bound). */
void vcpureq__work_run(struct vcpureq_vcpu *vcpu, bool cancel);
/* After VM_DEAD: cancel the queue of a vCPU with no bound thread. */
void vcpureq__work_cancel_if_dead(struct vcpureq_vcpu *vcpu);

/* ---- kick (kick.c) ---- */
/* The per-target half of a kick, after the caller's fence [R].  Returns 1
 * if a signal was sent, 0 if not, -errno if it could not be.  Sets *wait
 * (and *snap, the exit epoch to wait past) when a WAIT request must wait
 * for this target's acknowledgement. */
int vcpureq__kick_after_fence(struct vcpureq_vcpu *vcpu, unsigned int req,
			      bool *wait, uint32_t *snap);
/* A waiter's own kick of a target found back IN_GUEST_MODE in the instance
 * it waits on (a kick that could not be sent); traced.  *mode: the mode
 * read; on return IN_GUEST_MODE if our CAS won, else the mode that beat
 * it.  Returns as vcpureq__kick_after_fence(). */
int vcpureq__rekick(struct vcpureq_vcpu *vcpu, int *mode);
/* make + kick of one library-internal request, without WAIT. */
int vcpureq__make_and_kick(struct vcpureq_vcpu *vcpu, unsigned int req);
/* Full fence, then the per-target kick (the mailbox, after setting ON). */
int vcpureq__kick_fenced(struct vcpureq_vcpu *vcpu);

/* ---- signal (signal.c) ---- */
int vcpureq__signal_acquire(int sig);
void vcpureq__signal_release(int sig);
/* Take a pending kick signal of this thread (it is blocked there): one, or
 * all with @all.  Returns how many. */
int vcpureq__signal_drain(int sig, bool all);
/* Whether the kick handler is still @sig's (the application may have
 * replaced it after create). */
bool vcpureq__signal_is_ours(int sig);
/* Whether @sig is pending for this thread (one rt_sigpending). */
bool vcpureq__signal_pending(int sig);
/* The handler's per-thread pointer to kvm_run->immediate_exit (NULL: none). */
extern VCPUREQ__TLS uint8_t *vcpureq__immediate_exit;

/* ---- block (block.c) ---- */
/* Wake the vCPU if it sleeps.  The caller has issued the full fence that
 * orders its write (request bit, hint, ON, runnable state) before this. */
bool vcpureq__wake_if_sleeping(struct vcpureq_vcpu *vcpu);

/* ---- mailbox (mailbox.c) ---- */
/* vCPU thread, after publishing IN_GUEST_MODE and its fence. */
void vcpureq__mailbox_sync(struct vcpureq_vcpu *vcpu);
/* Whether an interrupt is taken into IRR and not yet taken by the vCPU.
 * vCPU thread (IRR is its own). */
static inline bool vcpureq__irr_pending(const struct vcpureq_vcpu *vcpu)
{
	return (vcpu->irr[0] | vcpu->irr[1] | vcpu->irr[2] | vcpu->irr[3]) != 0;
}
int vcpureq__irr_take_highest(struct vcpureq_vcpu *vcpu);

#include "backend.h"

#define VCPUREQ__STAT_INC(vcpu, grp, field) \
	atomic_fetch_add_explicit(&(vcpu)->grp.field, 1, memory_order_relaxed)

/* The kernel's smp_mb(): a full fence.  Every use names its pair. */
#define vcpureq__smp_mb() atomic_thread_fence(memory_order_seq_cst)

static inline void vcpureq__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif /* VCPUREQ_INTERNAL_H */
