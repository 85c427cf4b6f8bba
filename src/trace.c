/* SPDX-License-Identifier: MIT */
/*
 * Trace recording: lock-free ring buffers of timestamped events, one per
 * vCPU and one for the VM (trace.h lists the events, trace_json.c exports
 * them).
 *
 * A recorder takes a position with one fetch_add on the ring's head (any
 * number of recorders: the vCPU thread and every requester that targets
 * the vCPU), then writes the slot under the slot's own seqlock:
 *
 *   recorder                              reader (the export)
 *   CAS seq: old -> BUSY                  s1 = seq (acquire)
 *   fence(release)        [T1]            read the fields (relaxed)
 *   write the fields (relaxed)            fence(acquire)          [T3]
 *   seq = 1 + position (release) [T2]     s2 = seq (relaxed)
 *                                         keep if s1 == s2, not 0/BUSY
 *
 * [T2] pairs with the reader's acquire load of s1: a reader that sees the
 * published seq sees the fields written before it.  [T1] pairs with [T3]:
 * a reader whose field loads saw any store of a later write of the slot
 * sees, in s2, at least that write's BUSY, and drops the torn event.
 * Without [T1] the field stores could become visible before BUSY, and a
 * reader could keep a mix of two events under an unchanged seq.
 *
 * The claim is a CAS, not a store: a recorder that has been lapped (the
 * ring wrapped a whole turn while it was writing) and a new one never
 * write one slot together; the one that finds it BUSY drops its event and
 * counts it.  A full ring overwrites its oldest slots: a flight recorder.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define RING_EVENTS_DEFAULT 8192u
#define RING_EVENTS_MIN 64u
#define RING_EVENTS_MAX (1u << 24)

/* The recording thread: its tid (cached: gettid() is a system call; reset
 * in a fork()ed child by trace_forked()) and its event count. */
static VCPUREQ__TLS pid_t trace_tid;
/* Atomic: a requester may be a signal handler interrupting a recorder on
 * the same thread; each still gets a number of its own. */
static VCPUREQ__TLS _Atomic uint32_t trace_tseq;

/* The child of a fork() has only the forking thread, under a new tid. */
static void trace_forked(void)
{
	trace_tid = 0;
}

/* Registered once, when the library is loaded (no lazy global state). */
__attribute__((constructor)) static void trace_register_atfork(void)
{
	pthread_atfork(NULL, NULL, trace_forked);
}

uint64_t vcpureq__trace_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vcpureq__trace_at(struct vcpureq_vm *vm, struct vcpureq_vcpu *vcpu,
		       unsigned int type, uint32_t a, uint64_t b, uint64_t ts)
{
	struct vcpureq__trace *t;
	struct vcpureq__trace_ring *r;
	struct vcpureq__trace_ev *ev;
	uint64_t pos, old;

	/*
	 * The caller's relaxed load of trace_on saw 1.  Loaded again with
	 * acquire, which pairs with the release store of
	 * vcpureq_trace_start(): the trace and every ring it allocated
	 * (vcpu->trace_ring included) are seen whole.  Without it the ring
	 * pointers or the ring size could be read stale.  (An acquire fence
	 * would do on its own, but ThreadSanitizer does not model fences.)
	 * 0 now: stopped meanwhile, nothing to record.
	 */
	if (!atomic_load_explicit(&vm->trace_on, memory_order_acquire))
		return;
	t = atomic_load_explicit(&vm->trace, memory_order_relaxed);
	r = vcpu && vcpu->trace_ring ? vcpu->trace_ring : t->vm_ring;
	if (!trace_tid)
		trace_tid = (pid_t)syscall(SYS_gettid);
	pos = atomic_fetch_add_explicit(&r->head, 1, memory_order_relaxed);
	ev = &r->ev[pos & (t->ring_events - 1)];
	old = atomic_load_explicit(&ev->seq, memory_order_relaxed);
	if (old == VCPUREQ__TRACE_SEQ_BUSY ||
	    !atomic_compare_exchange_strong_explicit(&ev->seq, &old,
						     VCPUREQ__TRACE_SEQ_BUSY,
						     memory_order_relaxed,
						     memory_order_relaxed)) {
		atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
		return;
	}
	atomic_thread_fence(memory_order_release); /* [T1], pairs with [T3] */
	atomic_store_explicit(&ev->ts, ts, memory_order_relaxed);
	atomic_store_explicit(&ev->b, b, memory_order_relaxed);
	atomic_store_explicit(&ev->tid, (uint32_t)trace_tid,
			      memory_order_relaxed);
	atomic_store_explicit(&ev->a, a, memory_order_relaxed);
	atomic_store_explicit(&ev->type, (uint16_t)type, memory_order_relaxed);
	atomic_store_explicit(&ev->vcpu,
			      vcpu ? (uint16_t)vcpu->index :
				     (uint16_t)VCPUREQ__TRACE_NO_VCPU,
			      memory_order_relaxed);
	atomic_store_explicit(&ev->tseq,
			      atomic_fetch_add_explicit(&trace_tseq, 1,
							memory_order_relaxed),
			      memory_order_relaxed);
	/* [T2] pairs with the reader's acquire load of seq. */
	atomic_store_explicit(&ev->seq, pos + 1, memory_order_release);
}

static struct vcpureq__trace_ring *ring_alloc(unsigned int n)
{
	/* calloc: seq 0 (never written) everywhere; a large ring comes from
	 * fresh zero pages that cost memory only once written. */
	return calloc(1, sizeof(struct vcpureq__trace_ring) +
				 (size_t)n * sizeof(struct vcpureq__trace_ev));
}

/* A ring's positions from here on are this start's. */
static void ring_rebase(struct vcpureq__trace_ring *r)
{
	atomic_store_explicit(&r->base, atomic_load_explicit(&r->head,
							     memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&r->dropped_base,
			      atomic_load_explicit(&r->dropped,
						   memory_order_relaxed),
			      memory_order_relaxed);
}

void vcpureq__trace_vcpu_added(struct vcpureq_vm *vm,
			       struct vcpureq_vcpu *vcpu)
{
	struct vcpureq__trace *t = atomic_load_explicit(&vm->trace,
							memory_order_relaxed);

	/* add_lock held: start (which allocates under it too) is not
	 * running.  Without memory, the vCPU's events go to the VM's ring. */
	if (t)
		vcpu->trace_ring = ring_alloc(t->ring_events);
}

static int check_opts(const struct vcpureq_trace_opts *o,
		      struct vcpureq_trace_opts *out)
{
	const unsigned char *p;
	size_t i;

	*out = (struct vcpureq_trace_opts)VCPUREQ_TRACE_OPTS_INIT;
	if (!o)
		return 0;
	if (o->size < sizeof(struct vcpureq_trace_opts)) {
		if (o->size < offsetof(struct vcpureq_trace_opts, ring_events) +
				      sizeof(o->ring_events))
			return vcpureq__err(-EINVAL, "opts->size: set it to sizeof(struct vcpureq_trace_opts)");
	}
	/* A newer caller's larger struct: its extra fields must be zero
	 * (the kernel's copy_struct_from_user()). */
	for (p = (const unsigned char *)o, i = sizeof(*out); i < o->size; i++)
		if (p[i])
			return vcpureq__err(-E2BIG, "opts has fields this version of the library does not know (set to non-zero)");
	out->ring_events = o->ring_events;
	return 0;
}

int vcpureq_trace_start(struct vcpureq_vm *vm,
			const struct vcpureq_trace_opts *opts)
{
	struct vcpureq_trace_opts o;
	struct vcpureq__trace *t;
	unsigned int n, i, events;
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	r = check_opts(opts, &o);
	if (r)
		return r;
	events = o.ring_events ? o.ring_events : RING_EVENTS_DEFAULT;
	if (events < RING_EVENTS_MIN || events > RING_EVENTS_MAX ||
	    (events & (events - 1)))
		return vcpureq__errf(-EINVAL, "ring_events %u: a power of two from %u to %u",
				     events, RING_EVENTS_MIN, RING_EVENTS_MAX);
	pthread_mutex_lock(&vm->trace_lock);
	if (atomic_load_explicit(&vm->trace_on, memory_order_relaxed)) {
		r = vcpureq__err(-EBUSY, "the trace is already recording");
		goto out;
	}
	pthread_mutex_lock(&vm->add_lock);
	t = atomic_load_explicit(&vm->trace, memory_order_relaxed);
	if (t && o.ring_events && o.ring_events != t->ring_events) {
		r = vcpureq__errf(-EINVAL, "ring_events %u: the VM's rings have %u events (fixed by the first start)",
				  o.ring_events, t->ring_events);
		goto out_add;
	}
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t || !(t->vm_ring = ring_alloc(events))) {
			free(t);
			r = vcpureq__err(-ENOMEM, "out of memory for the trace");
			goto out_add;
		}
		t->ring_events = events;
		/* Release: pairs with the acquire of
		 * vcpureq_trace_counts(), which takes no lock.  Recorders
		 * read it after trace_on's release (below), the export
		 * under trace_lock. */
		atomic_store_explicit(&vm->trace, t, memory_order_release);
	}
	n = atomic_load_explicit(&vm->nr_vcpus, memory_order_relaxed);
	for (i = 0; i < n; i++) {
		struct vcpureq_vcpu *v = vm->vcpus[i];

		if (!v->trace_ring && !(v->trace_ring = ring_alloc(t->ring_events))) {
			r = vcpureq__errf(-ENOMEM, "out of memory for the trace ring of vCPU %lu",
					  v->id);
			goto out_add;
		}
		ring_rebase(v->trace_ring);
	}
	ring_rebase(t->vm_ring);
	t->start_ns = vcpureq__trace_now();
	/* Release: pairs with the acquire load of every recorder that sees
	 * 1 (vcpureq__trace_at()): the rings above are whole for it. */
	atomic_store_explicit(&vm->trace_on, 1, memory_order_release);
out_add:
	pthread_mutex_unlock(&vm->add_lock);
out:
	pthread_mutex_unlock(&vm->trace_lock);
	return r;
}

int vcpureq_trace_stop(struct vcpureq_vm *vm)
{
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	pthread_mutex_lock(&vm->trace_lock);
	if (!atomic_load_explicit(&vm->trace_on, memory_order_relaxed))
		r = vcpureq__err(-EINVAL, "the trace is not recording");
	else
		atomic_store_explicit(&vm->trace_on, 0, memory_order_relaxed);
	pthread_mutex_unlock(&vm->trace_lock);
	return r;
}

static void ring_counts(const struct vcpureq__trace_ring *r, unsigned int n,
			uint64_t *recorded, uint64_t *lost)
{
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed) -
		     atomic_load_explicit(&r->base, memory_order_relaxed);

	*recorded += h;
	if (h > n)
		*lost += h - n;
	*lost += atomic_load_explicit(&r->dropped, memory_order_relaxed) -
		 atomic_load_explicit(&r->dropped_base, memory_order_relaxed);
}

int vcpureq_trace_counts(const struct vcpureq_vm *vm,
			 struct vcpureq_trace_counts *out, size_t size)
{
	struct vcpureq_trace_counts c = { 0, 0, 0, false };
	const struct vcpureq__trace *t;
	unsigned int i, n;

	if (!vm || !out)
		return vcpureq__err(-EINVAL, "vm or out is NULL");
	if (size < offsetof(struct vcpureq_trace_counts, lost) + sizeof(c.lost))
		return vcpureq__err(-EINVAL, "size: pass sizeof(struct vcpureq_trace_counts)");
	/* Acquire: pairs with the release store of start, the trace whole. */
	t = atomic_load_explicit(&vm->trace, memory_order_acquire);
	if (!t)
		return vcpureq__err(-EINVAL, "no trace was started on this VM");
	c.ring_events = t->ring_events;
	c.recording = atomic_load_explicit(&vm->trace_on, memory_order_relaxed);
	ring_counts(t->vm_ring, t->ring_events, &c.recorded, &c.lost);
	n = vcpureq__nr_vcpus(vm);
	for (i = 0; i < n; i++)
		if (vm->vcpus[i]->trace_ring)
			ring_counts(vm->vcpus[i]->trace_ring, t->ring_events,
				    &c.recorded, &c.lost);
	memcpy(out, &c, size < sizeof(c) ? size : sizeof(c));
	return 0;
}

void vcpureq__trace_free(struct vcpureq_vm *vm)
{
	struct vcpureq__trace *t = atomic_load_explicit(&vm->trace,
							memory_order_relaxed);
	unsigned int i, n = atomic_load_explicit(&vm->nr_vcpus,
						 memory_order_relaxed);

	for (i = 0; i < n; i++)
		free(vm->vcpus[i]->trace_ring);
	if (t)
		free(t->vm_ring);
	free(t);
}
