/* SPDX-License-Identifier: MIT */
/*
 * The trace (trace.c records, trace_json.c exports).
 *
 * Every step worth seeing goes through one macro, VCPUREQ__TRACE(), or, where
 * the timestamp must be taken before the step it stamps (see below),
 * vcpureq__trace_now() plus vcpureq__trace_at().  Off, each costs one
 * relaxed load of vm->trace_on and a branch marked unlikely: no call, no
 * clock read.  With -DVCPUREQ_USDT=ON each is also a USDT probe
 * (provider "vcpureq", the event's name), a nop until a tracer attaches,
 * whether or not the ring trace is on.
 *
 * Where each timestamp is taken, so that the export's order is causal
 * (the checks of tests/trace-check.py rely on it):
 *   make        before the request bit is set      (a handle is later)
 *   handle      after the bit is cleared            (the make is earlier)
 *   kick        before the mode is read / CASed     (the exit is later)
 *   guest end   after OUTSIDE is stored and before  (later than the CAS
 *   abort,        the exit epoch is bumped           that sent a signal;
 *   walk end                                         earlier than the
 *                                                    WAIT that sees it)
 *   ack         after the WAIT saw the epoch move
 */
#ifndef VCPUREQ_TRACE_H
#define VCPUREQ_TRACE_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#ifdef VCPUREQ_USDT
#include <sys/sdt.h>
#endif

struct vcpureq_vm;
struct vcpureq_vcpu;

/*
 * Event types.  vCPU track (recorded by the vCPU thread, vcpu = itself):
 *   enter        a guest-mode instance begins (the final check passed)
 *   leave        it ends: a = the mode it left, b = why (VCPUREQ__LEAVE_*)
 *   walk_begin   READING_SHADOW_PAGE_TABLES published
 *   block        going to sleep in block (after any halt poll)
 *   wake         back from it: a = what block returns (VCPUREQ_WAKE_*
 *                  reasons, or -errno)
 *   handle       request a handled (check/take), after the clear
 *   clear        request a cleared while set (vcpureq_clear_request())
 *   park, unpark parked for a pause, and back
 *   work_begin,  a run-on-vCPU item: b = its id; work_end a = result
 *   work_end       (or -ECANCELED)
 * Requester track (the caller's thread; vcpu = the target, or none):
 *   call_begin   a request call: a = req, b = VCPUREQ__CALL_*; call_end
 *   call_end       a = its result
 *   make         request a's bit set on vcpu (stamped before the set):
 *                  b = 1 if it was set already (coalesced)
 *   kick         the decision for vcpu: a = VCPUREQ__KICK_*
 *   wait_begin   a WAIT: a = the targets waited for; ack: one of them
 *   ack            acknowledged; wait_end: a = 0 or -ETIMEDOUT / -errno
 *   wait_end
 *   pause_begin, pause_end (a = result), parked_seen (vcpu counted parked)
 *   resume_begin, resume_end, unpause (vcpu's pause count dropped to 0)
 *   work_queue   a run-on-vCPU item queued for vcpu: b = its id
 */
#define VCPUREQ__TRACE_EVENTS(X)                                              \
	X(enter) X(leave) X(walk_begin) X(block) X(wake) X(handle) X(clear)   \
	X(park) X(unpark) X(work_begin) X(work_end) X(call_begin)             \
	X(call_end) X(make) X(kick) X(wait_begin) X(ack) X(wait_end)          \
	X(pause_begin) X(pause_end) X(parked_seen) X(resume_begin)            \
	X(resume_end) X(unpause) X(work_queue)

enum vcpureq__tev {
#define VCPUREQ__TEV_ENUM(n) VCPUREQ__TEV_##n,
	VCPUREQ__TRACE_EVENTS(VCPUREQ__TEV_ENUM)
#undef VCPUREQ__TEV_ENUM
	VCPUREQ__TEV_NR
};

/* leave's b */
enum { VCPUREQ__LEAVE_EXIT = 0, VCPUREQ__LEAVE_ABORT = 1, VCPUREQ__LEAVE_WALK = 2 };

/* call_begin's b */
enum {
	VCPUREQ__CALL_REQUEST = 0,   /* vcpureq_request() */
	VCPUREQ__CALL_BROADCAST = 1, /* make_all / mask / vcpus / deadline */
	VCPUREQ__CALL_KICK = 2,      /* vcpureq_vcpu_kick() */
	VCPUREQ__CALL_POST = 3,      /* vcpureq_post_interrupt() */
	VCPUREQ__CALL_MAKE = 4,      /* vcpureq_make_request(): no kick */
};

/* kick's a: what the kick did for that target */
enum {
	VCPUREQ__KICK_WOKE = 0,      /* it slept in block: futex wake */
	VCPUREQ__KICK_SIGNAL = 1,    /* IN -> EXITING won: one signal */
	VCPUREQ__KICK_SELF = 2,      /* IN -> EXITING won by its own thread */
	VCPUREQ__KICK_COALESCED = 3, /* EXITING: a signal is on its way */
	VCPUREQ__KICK_OUTSIDE = 4,   /* outside guest mode: nothing to do */
	VCPUREQ__KICK_READING = 5,   /* in a lockless walk: nothing to send */
	VCPUREQ__KICK_FAILED = 6,    /* the signal could not be sent */
	VCPUREQ__KICK_RECHECK = 7,   /* a waiter's re-kick (IN again) */
};

#define VCPUREQ__TRACE_NO_VCPU 0xffffu

/*
 * One slot.  seq is the slot's seqlock: 0 never written, SEQ_BUSY a
 * recorder is writing it, else 1 + the position it was written at.  Every
 * field is an atomic accessed relaxed, ordered by seq (see trace.c).
 */
#define VCPUREQ__TRACE_SEQ_BUSY UINT64_MAX
struct vcpureq__trace_ev {
	_Atomic uint64_t seq;
	_Atomic uint64_t ts;    /* CLOCK_MONOTONIC, ns */
	_Atomic uint64_t b;
	_Atomic uint32_t tid;
	_Atomic uint32_t a;
	_Atomic uint16_t type;
	_Atomic uint16_t vcpu;  /* index, or VCPUREQ__TRACE_NO_VCPU */
	_Atomic uint32_t tseq;  /* the recording thread's event number */
};

struct vcpureq__trace_ring {
	_Atomic uint64_t head;    /* positions handed out */
	_Atomic uint64_t dropped; /* recorders that met a busy slot */
	/* head and dropped at the last start (written under trace_lock
	 * while not recording): the export shows positions from base on. */
	_Atomic uint64_t base, dropped_base;
	struct vcpureq__trace_ev ev[];
};

struct vcpureq__trace {
	unsigned int ring_events; /* power of two */
	uint64_t start_ns;        /* the last start (export shows from it) */
	struct vcpureq__trace_ring *vm_ring;
	_Atomic uint64_t work_ids; /* run-on-vCPU item ids */
};

uint64_t vcpureq__trace_now(void);
/* Record @type at @ts.  @vcpu NULL: the VM's ring.  Lock-free,
 * async-signal-safe. */
void vcpureq__trace_at(struct vcpureq_vm *vm, struct vcpureq_vcpu *vcpu,
		       unsigned int type, uint32_t a, uint64_t b, uint64_t ts);
/* vCPU added while a trace exists: give it a ring (add_lock held). */
void vcpureq__trace_vcpu_added(struct vcpureq_vm *vm,
			       struct vcpureq_vcpu *vcpu);
/* vcpureq_vm_free(): free the rings. */
void vcpureq__trace_free(struct vcpureq_vm *vm);

/* Whether the trace records (relaxed: the one load of the off path). */
#define VCPUREQ__TRACING(vm)                                                  \
	__builtin_expect(atomic_load_explicit(&(vm)->trace_on,                \
					      memory_order_relaxed), 0)

#ifdef VCPUREQ_USDT
#define VCPUREQ__USDT(name, vm, vcpu, a, b)                                   \
	STAP_PROBE4(vcpureq, name, (vm), (vcpu), (uint64_t)(a), (uint64_t)(b))
#else
#define VCPUREQ__USDT(name, vm, vcpu, a, b) ((void)0)
#endif

/* Record event @name now (and fire its USDT probe). */
#define VCPUREQ__TRACE(vm, vcpu, name, a, b)                                  \
	do {                                                                  \
		VCPUREQ__USDT(name, vm, vcpu, a, b);                          \
		if (VCPUREQ__TRACING(vm))                                     \
			vcpureq__trace_at((vm), (vcpu), VCPUREQ__TEV_##name,  \
					  (uint32_t)(a), (uint64_t)(b),       \
					  vcpureq__trace_now());              \
	} while (0)

/* The timestamp for a step recorded after it (0: not tracing). */
#define VCPUREQ__TRACE_TS(vm) (VCPUREQ__TRACING(vm) ? vcpureq__trace_now() : 0)

/* Record event @name at @ts from VCPUREQ__TRACE_TS() (skipped if 0). */
#define VCPUREQ__TRACE_AT(vm, vcpu, name, a, b, ts)                           \
	do {                                                                  \
		VCPUREQ__USDT(name, vm, vcpu, a, b);                          \
		if (__builtin_expect((ts) != 0, 0))                           \
			vcpureq__trace_at((vm), (vcpu), VCPUREQ__TEV_##name,  \
					  (uint32_t)(a), (uint64_t)(b), (ts));\
	} while (0)

#endif /* VCPUREQ_TRACE_H */
