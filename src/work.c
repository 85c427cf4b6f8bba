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
#include <stdlib.h>

#include "futex.h"
#include "internal.h"

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

void vcpureq__work_run(struct vcpureq_vcpu *vcpu, bool cancel)
{
	struct vcpureq__work *w, *fifo;

	/* Items queued by the functions we run are taken in the next round,
	 * after the older ones.  Acquire: pairs with the release CAS of
	 * push(): every item's fields are seen whole. */
	while ((w = atomic_exchange_explicit(&vcpu->work, NULL,
					     memory_order_acquire))) {
		for (fifo = NULL; w;) {
			struct vcpureq__work *next = w->next;

			w->next = fifo;
			fifo = w;
			w = next;
		}
		while (fifo) {
			struct vcpureq__work *next = fifo->next;
			/* Read before complete(): the item may be gone. */
			uint64_t id = fifo->trace_id;
			/* The thread of vcpureq_vm_destroy() cancels too:
			 * only the vCPU's own thread traces (its track). */
			bool traced = vcpureq__self == vcpu;
			int r = -ECANCELED;

			if (traced)
				VCPUREQ__TRACE(vcpu->vm, vcpu, work_begin, 0, id);
			if (cancel) {
				complete(fifo, r, WORK_CANCELLED);
			} else {
				r = fifo->fn(vcpu, fifo->arg);
				complete(fifo, r, WORK_RAN);
			}
			if (traced)
				VCPUREQ__TRACE(vcpu->vm, vcpu, work_end,
					       (uint32_t)r, id);
			fifo = next;
		}
	}
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
	uint32_t how;
	int r = check_work(vcpu, fn);

	if (r)
		return r;
	if (vcpureq__self == vcpu) {
		if (atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
		    VCPUREQ_OUTSIDE_GUEST_MODE)
			return vcpureq__err(-EDEADLK,
					    "run_on_vcpu() of its own vCPU from guest mode: it would wait for itself");
		r = fn(vcpu, arg); /* inline, outside guest mode */
		if (result)
			*result = r;
		return 0;
	}
	push(vcpu, &w);
	r = vcpureq__make_and_kick(vcpu, VCPUREQ__REQ_WORK);
	(void)r; /* a kick that could not be sent: the item waits for the
		    vCPU's next exit, and so do we */
	/* Acquire: pairs with complete()'s release store of finished: fn's
	 * effects and w.result are visible once we see it. */
	while ((how = atomic_load_explicit(&w.finished, memory_order_acquire)) ==
	       WORK_QUEUED)
		vcpureq__futex_wait(&w.finished, WORK_QUEUED);
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
	return 0;
}
