/* SPDX-License-Identifier: MIT */
/*
 * Run on a vCPU: functions executed on a vCPU's thread, outside guest mode
 * (QEMU's run_on_cpu()/async_run_on_cpu()), queued with a request so that
 * the vCPU notices them as promptly as any request.
 *
 * The queue is a Treiber stack: callers push with a release CAS on the head
 * (any number, lock-free); the vCPU thread takes the whole stack with an
 * acquire exchange and runs it oldest first, so items run in the order
 * their pushes took effect.  Unlike request bits, items never coalesce.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include "futex.h"
#include "internal.h"
#include "park.h"

enum { WORK_QUEUED = 0, WORK_RAN = 1, WORK_CANCELLED = 2 };

static void push(struct vcpureq_vcpu *vcpu, struct vcpureq__work *w)
{
	if (VCPUREQ__TRACING(vcpu->vm)) {
		/* Acquire: pairs with start's release store of the trace
		 * (trace_on was seen set). */
		struct vcpureq__trace *t = atomic_load_explicit(
			&vcpu->vm->trace, memory_order_acquire);

		w->trace_id = 1 + atomic_fetch_add_explicit(&t->work_ids, 1,
							    memory_order_relaxed);
	}
	VCPUREQ__TRACE(vcpu->vm, vcpu, work_queue, 0, w->trace_id);
	w->next = atomic_load_explicit(&vcpu->work, memory_order_relaxed);
	/* Release: the item's fields before it is reachable; pairs with the
	 * acquire exchange in vcpureq__work_run(). */
	while (!atomic_compare_exchange_weak_explicit(&vcpu->work, &w->next, w,
						      memory_order_release,
						      memory_order_relaxed))
		;
}

static void complete(struct vcpureq__work *w, int result, uint32_t how)
{
	if (w->async) {
		/* The item is ours to free. */
		if (w->done)
			w->done(w->arg, result);
		free(w);
		return;
	}
	w->result = result;
	/* Release: fn's effects and the result before the waiter's acquire
	 * load of finished.  The waiter may return (and its stack item go)
	 * as soon as it sees the store: the wake below may then hit a reused
	 * address, which only makes some futex waiter there re-check. */
	atomic_store_explicit(&w->finished, how, memory_order_release);
	vcpureq__futex_wake(&w->finished, 1);
}

/* What a vCPU thread running a taken list still owes: the item running
 * and the ones after it. */
struct taken {
	struct vcpureq__work *fifo;
};

/*
 * The vCPU thread exits (pthread_exit() or cancellation) inside a work
 * function (or a done callback): the items it took and did not complete
 * are completed with -ECANCELED, so that no synchronous caller waits for
 * ever and every async done() is called.  Run by glibc's unwinding of the
 * exiting thread (pthread_cleanup_push() in vcpureq__work_run()).
 */
static void cancel_taken(void *p)
{
	struct taken *tk = p;

	while (tk->fifo) {
		struct vcpureq__work *w = tk->fifo;

		tk->fifo = w->next;
		complete(w, -ECANCELED, WORK_CANCELLED);
	}
}

/* Run (or with @cancel, cancel) the taken list @tk, oldest first.  A
 * function of its own: pthread_cleanup_push() may be a setjmp(), and only
 * *tk (through a pointer) changes between it and the pop. */
static void run_taken(struct vcpureq_vcpu *vcpu, bool cancel,
		      struct taken *tk)
{
	struct taken *owed = tk;

	pthread_cleanup_push(cancel_taken, owed);
	while (tk->fifo) {
		struct vcpureq__work *cur = tk->fifo;
		/* Read before complete(): the item may be gone. */
		uint64_t id = cur->trace_id;
		/* The thread of vcpureq_vm_destroy() cancels too: only the
		 * vCPU's own thread traces (its track). */
		bool traced = vcpureq__self == vcpu;
		int r = -ECANCELED;

		if (traced)
			VCPUREQ__TRACE(vcpu->vm, vcpu, work_begin, 0, id);
		if (cancel) {
			tk->fifo = cur->next;
			complete(cur, r, WORK_CANCELLED);
		} else {
			/* cur stays owed while fn runs: a thread exit
			 * inside it cancels it too. */
			r = cur->fn(vcpu, cur->arg);
			tk->fifo = cur->next;
			complete(cur, r, WORK_RAN);
		}
		if (traced)
			VCPUREQ__TRACE(vcpu->vm, vcpu, work_end, (uint32_t)r, id);
	}
	pthread_cleanup_pop(0);
}

void vcpureq__work_run(struct vcpureq_vcpu *vcpu, bool cancel)
{
	struct vcpureq__work *w;
	struct taken tk;

	/* Items queued by the functions we run are taken in the next round,
	 * after the older ones.  Acquire: pairs with the release CAS of
	 * push(): every item's fields are seen whole. */
	while ((w = atomic_exchange_explicit(&vcpu->work, NULL,
					     memory_order_acquire))) {
		for (tk.fifo = NULL; w;) {
			struct vcpureq__work *next = w->next;

			w->next = tk.fifo;
			tk.fifo = w;
			w = next;
		}
		run_taken(vcpu, cancel, &tk);
	}
}

/*
 * After VM_DEAD, an item queued to a vCPU with no bound thread would wait
 * for vcpureq_vm_destroy(): cancel it now, on this thread.  Called by the
 * pusher (after its push), by vcpureq_vm_dead() and by an unbind after
 * VM_DEAD.  Each pair of them is a Dekker pair (store; full fence; load):
 *   pusher:  push (CAS on work); [R] of make_and_kick; load dead, tid
 *   killer:  store dead; [R] of the broadcast; load tid; exchange work
 *   unbind:  store tid = 0; [E'] of park_notify; load dead; exchange work
 * so that an item pushed once the VM is dead is taken by one of them (or
 * by the bound vCPU thread's next entry, which fails with -EIO and
 * cancels its queue).
 */
void vcpureq__work_cancel_if_dead(struct vcpureq_vcpu *vcpu)
{
	/* Acquire (tid): pairs with the release store of 0 at the end of
	 * vcpureq_vcpu_unbind(): that thread has done with its queue. */
	if (vcpureq__vm_dead(vcpu->vm) &&
	    atomic_load_explicit(&vcpu->tid, memory_order_acquire) == 0)
		vcpureq__work_run(vcpu, true);
}

/* Longest waits-on chain walked: more vCPU threads than any VMM has. */
#define WAITS_ON_MAX_STEPS (1u << 20)

/*
 * Refuse a run_on_vcpu() cycle (vCPU 0's thread waits on vCPU 1 whose
 * thread waits on vCPU 0: neither would ever run the other's item).  The
 * caller's vCPU @self records @target in waits_on, then walks the chain
 * from @target; reaching @self is a cycle: undo and -EDEADLK.
 *
 * Every store and load of waits_on is seq_cst, so they all fall in one
 * total order S.  Of the vCPUs of a cycle, take the one whose store comes
 * last in S: each load of its walk follows its store in S, so it reads the
 * stores of all the others (or later ones: a thread that stopped waiting,
 * which is then no cycle), walks the whole cycle back to itself and
 * refuses.  For two vCPUs this is the store-buffering pair (store own,
 * load other's): both may refuse, never neither.
 */
static int waits_on_begin(struct vcpureq_vcpu *self, struct vcpureq_vcpu *target)
{
	struct vcpureq_vcpu *v = target;
	unsigned int steps = 0;

	atomic_store_explicit(&self->waits_on, target, memory_order_seq_cst);
	while (v) {
		if (v == self || ++steps > WAITS_ON_MAX_STEPS) {
			atomic_store_explicit(&self->waits_on, NULL,
					      memory_order_seq_cst);
			return vcpureq__err(-EDEADLK,
					    "run_on_vcpu() cycle: the target's thread waits (through its run_on_vcpu() chain) on this vCPU; nothing queued");
		}
		v = atomic_load_explicit(&v->waits_on, memory_order_seq_cst);
	}
	return 0;
}

static int check_work(struct vcpureq_vcpu *vcpu, vcpureq_work_fn fn)
{
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	if (!fn)
		return vcpureq__err(-EINVAL, "fn is NULL");
	if (vcpureq__vm_dead(vcpu->vm))
		return vcpureq__err(-EIO, "the VM is dead (VM_DEAD): nothing queued");
	return 0;
}

int vcpureq_run_on_vcpu(struct vcpureq_vcpu *vcpu, vcpureq_work_fn fn,
			void *arg, int *result)
{
	struct vcpureq__work w = { .fn = fn, .arg = arg };
	struct vcpureq_vcpu *self = vcpureq__self;
	uint32_t how, was = 0;
	int r = check_work(vcpu, fn);

	if (r)
		return r;
	if (self == vcpu) {
		if (atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
		    VCPUREQ_OUTSIDE_GUEST_MODE)
			return vcpureq__err(-EDEADLK,
					    "run_on_vcpu() of its own vCPU from guest mode: it would wait for itself");
		r = fn(vcpu, arg); /* inline, outside guest mode */
		if (result)
			*result = r;
		return 0;
	}
	if (self && (r = waits_on_begin(self, vcpu)))
		return r;
	push(vcpu, &w);
	r = vcpureq__make_and_kick(vcpu, VCPUREQ__REQ_WORK);
	(void)r; /* a kick that could not be sent: the item waits for the
		    vCPU's next exit, and so do we */
	vcpureq__park_work_notify(vcpu); /* a paused vCPU runs it parked */
	vcpureq__work_cancel_if_dead(vcpu);
	/* A vCPU thread waiting here counts as parked for a pause (as one
	 * waiting in vcpureq_pause() does): it is outside guest mode and
	 * parks at its next entry. */
	if (self)
		was = vcpureq__self_park_begin(self);
	/* Acquire: pairs with complete()'s release store of finished: fn's
	 * effects and w.result are visible once we see it. */
	while ((how = atomic_load_explicit(&w.finished, memory_order_acquire)) ==
	       WORK_QUEUED)
		vcpureq__futex_wait(&w.finished, WORK_QUEUED);
	if (self) {
		vcpureq__self_park_end(self, was);
		atomic_store_explicit(&self->waits_on, NULL,
				      memory_order_seq_cst);
	}
	if (result)
		*result = w.result;
	if (how == WORK_CANCELLED)
		return vcpureq__err(-ECANCELED,
				    "the VM died or was destroyed before the vCPU ran the function");
	return 0;
}

int vcpureq_run_on_vcpu_async(struct vcpureq_vcpu *vcpu, vcpureq_work_fn fn,
			      void (*done)(void *arg, int result), void *arg)
{
	struct vcpureq__work *w;
	int r = check_work(vcpu, fn);

	if (r)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w)
		return vcpureq__err(-ENOMEM, "out of memory for a work item");
	w->fn = fn;
	w->arg = arg;
	w->done = done;
	w->async = true;
	push(vcpu, w);
	vcpureq__make_and_kick(vcpu, VCPUREQ__REQ_WORK);
	vcpureq__park_work_notify(vcpu);
	vcpureq__work_cancel_if_dead(vcpu);
	return 0;
}
