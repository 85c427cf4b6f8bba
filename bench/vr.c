/* SPDX-License-Identifier: MIT */
/*
 * The library side of the benchmark: a VMM loop per vCPU thread built on
 * vcpureq_vcpu_run() / vcpureq_vcpu_block(), and the request handler
 * (opts.handle_requests) that timestamps what the benchmarks measure.
 */
#include <limits.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static _Atomic uint32_t pause_flag;
/* The vCPUs parked in the handler since vr_pause_arm(), and how many make
 * "all" (the requester sleeps on parked_count until it is reached). */
static _Atomic uint32_t parked_count;
static _Atomic uint32_t park_target;

int vr_handler(struct vcpureq_vcpu *v, void *opaque)
{
	struct vr_rec *rec = (struct vr_rec *)opaque + vcpureq_vcpu_index(v);
	uint64_t t = b_now(); /* first thing: the handler is running */

	if (vcpureq_check_request(B_REQ_PING, v) > 0) {
		atomic_store_explicit(&rec->ping_t, t, memory_order_relaxed);
		atomic_fetch_add_explicit(&rec->ping_seen, 1,
					  memory_order_release);
	}
	if (vcpureq_check_request(B_REQ_PAUSE, v) > 0) {
		atomic_store_explicit(&rec->pause_t, t, memory_order_relaxed);
		/* Parked from here: counted (the broadcast part's finish
		 * line, the peers' own: every vCPU parked), the last one
		 * wakes the requester. */
		/* Release: pairs with the acquire load in vr_wait_parked(),
		 * which then sees this vCPU's pause_t.  park_target was
		 * stored before the request was made (the request's release
		 * and this handler's check order it). */
		if (atomic_fetch_add_explicit(&parked_count, 1,
					      memory_order_release) + 1 ==
		    atomic_load_explicit(&park_target, memory_order_relaxed))
			b_futex_wake(&parked_count, 1);
		/* Paused: stay out of the guest until resumed. */
		while (atomic_load(&pause_flag))
			b_futex_wait(&pause_flag, 1);
	}
	if (vcpureq_test_request(B_REQ_STOP, v) > 0)
		return 1; /* the loop consumes it */
	return 0;
}

struct vcpureq_vm_opts vr_opts(struct vr_rec *recs)
{
	struct vcpureq_vm_opts o;

	memset(&o, 0, sizeof(o));
	o.handle_requests = vr_handler;
	o.opaque = recs;
	o.halt_poll_ns = 0;
	return o;
}

void vr_pause_arm(unsigned int n)
{
	/* Before the request is made: its release publishes these. */
	atomic_store_explicit(&parked_count, 0, memory_order_relaxed);
	atomic_store_explicit(&park_target, n, memory_order_relaxed);
	atomic_store(&pause_flag, 1);
}

void vr_wait_parked(void)
{
	uint32_t seen, n = atomic_load_explicit(&park_target,
						memory_order_relaxed);

	/* Acquire: pairs with the handlers' release increments.  The futex
	 * wait returns at once if the count moved past @seen meanwhile. */
	while ((seen = atomic_load_explicit(&parked_count,
					    memory_order_acquire)) < n)
		b_futex_wait(&parked_count, seen);
}

void vr_resume_all(void)
{
	atomic_store(&pause_flag, 0);
	b_futex_wake(&pause_flag, INT_MAX);
}

static void *vr_main(void *arg)
{
	struct vr_rec *rec = arg;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(rec->h->vm, rec->id);
	struct kvm_run *run = vcpureq_vcpu_kvm_run(v);
	int r;

	if (rec->pin)
		b_pin(rec->pin - 1);
	r = vcpureq_vcpu_bind(v);
	if (r) {
		atomic_store(&rec->err, r);
		atomic_store(&rec->finished, 1);
		return NULL;
	}
	atomic_store(&rec->tid, b_gettid());
	atomic_store(&rec->started, 1);
	b_gate_arrive();
	for (;;) {
		r = vcpureq_vcpu_run(v);
		if (r < 0) {
			atomic_store(&rec->err, r);
			break;
		}
		if (r == VCPUREQ_RUN_REQUEST) {
			if (vcpureq_check_request(B_REQ_STOP, v) > 0)
				break;
			continue;
		}
		if (run->exit_reason == KVM_EXIT_HLT) {
			int why = vcpureq_vcpu_block(v);
			uint64_t t = b_now();

			if (why < 0) {
				atomic_store(&rec->err, why);
				break;
			}
			atomic_store_explicit(&rec->wake_t, t,
					      memory_order_relaxed);
			atomic_fetch_add_explicit(&rec->wake_seen, 1,
						  memory_order_release);
		}
		/* KVM_EXIT_IO: nothing to emulate for the bench programs. */
	}
	vcpureq_vcpu_unbind(v);
	atomic_store(&rec->finished, 1);
	return NULL;
}

int vr_start(struct h_vm *h, struct vr_rec *recs, unsigned int first,
	     unsigned int n)
{
	unsigned int i;

	b_gate_close();
	for (i = first; i < first + n; i++) {
		struct vr_rec *rec = &recs[i];
		int r;

		rec->started = rec->finished = rec->err = 0;
		rec->h = h;
		rec->id = i;
		r = b_thread(&rec->thread, vr_main, rec);
		if (r)
			b_die("pthread_create: %s", strerror(-r));
	}
	for (i = first; i < first + n; i++) {
		while (!atomic_load(&recs[i].started) &&
		       !atomic_load(&recs[i].finished))
			b_sleep_us(100);
		if (atomic_load(&recs[i].err))
			b_die("vCPU %u: bind: %d", i, atomic_load(&recs[i].err));
	}
	b_gate_open(n);
	return 0;
}

void vr_stop(struct h_vm *h, struct vr_rec *recs, unsigned int first,
	     unsigned int n, bool paused)
{
	unsigned int *ids = calloc(n, sizeof(*ids));
	unsigned int i;
	int r;

	if (!ids)
		b_die("out of memory");
	for (i = 0; i < n; i++)
		ids[i] = first + i;
	r = vcpureq_make_vcpus_request(h->vm, B_REQ_STOP, ids, n);
	if (r < 0)
		b_die("STOP request: %d", r);
	if (paused)
		vr_resume_all(); /* they leave the PAUSE handler, see STOP */
	for (i = first; i < first + n; i++) {
		pthread_join(recs[i].thread, NULL);
		if (atomic_load(&recs[i].err))
			b_die("vCPU %u: run: %d", i, atomic_load(&recs[i].err));
	}
	free(ids);
}
