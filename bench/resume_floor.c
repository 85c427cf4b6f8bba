/* SPDX-License-Identifier: MIT */
/*
 * The scheduler floor of a resume, measured in the pause/resume part's own
 * samples (issue 19: "resume and cycle within 1.1x of the scheduler floor").
 *
 * A resume is over when every vCPU thread that ran before the pause has
 * run again.  Whatever the VMM does, the kernel must then give each of the
 * N threads a CPU once; with N runnable threads on C CPUs and nothing else
 * waking up, a CPU passes from one thread to the next only at the tick
 * (docs/performance.md, "What bounds resume").  This implementation is
 * that cost and nothing else: N plain threads stand in for the vCPUs (no
 * KVM_RUN: each increments its vCPU's guest counter in user space, the
 * word the finish line reads), a pause is a flag they poll (no signal, no
 * VM exit), and a resume is one store and one FUTEX_WAKE of all of them:
 * the fewest system calls that make N sleeping threads runnable at once.
 * No VMM can resume faster, so its resume and cycle are the floor that
 * vcpureq's are compared with.  Its pause is no floor of anything a VMM
 * can do (a guest does not poll the VMM's flag) and is not a target.
 *
 * Halted vCPUs of the mixed configuration sleep on a futex and are not
 * woken by the resume, as a halted vCPU is not by any implementation.
 *
 * The pause flag is a generation (even: running, odd: paused), written by
 * the requester alone: a thread parked at generation g waits while it
 * reads g, so a thread that has not yet run after one resume when the
 * next pause comes counts itself parked for that pause too (a plain flag
 * would leave it waiting in the old pause, and the new one would hang).
 * Ordering: the pauser's release store of the generation pairs with the
 * acquire load in a thread's loop; a thread's release fetch_add on parked
 * pairs with the pauser's acquire load, so once the pauser has counted
 * every thread none of them moves its counter again (the part checks that
 * no counter moves after a pause, as for every implementation).  The
 * resume's release store pairs with the woken thread's acquire load.
 */
#include <limits.h>
#include <stdlib.h>

#include "peers/peers.h"

struct fl_thread {
	struct fl_state *st;
	struct peer_vcpu *pv;
	uint32_t *counter;      /* the guest counter of this vCPU */
	bool halted;
	pthread_t t;
};

struct fl_state {
	_Atomic uint32_t gen;     /* even running, odd paused (futex word) */
	_Atomic uint32_t parked;  /* threads parked by this pause (futex word) */
	_Atomic uint32_t stop;    /* 1: leave (futex word of the halted) */
	unsigned int n, spinning;
	struct fl_thread *th;
};

static void *fl_main(void *arg)
{
	struct fl_thread *t = arg;
	struct fl_state *st = t->st;

	atomic_store(&t->pv->tid, b_gettid());
	b_gate_arrive();
	if (t->halted) {
		while (!atomic_load_explicit(&st->stop, memory_order_acquire))
			b_futex_wait(&st->stop, 0);
		return NULL;
	}
	while (!atomic_load_explicit(&st->stop, memory_order_acquire)) {
		uint32_t g = atomic_load_explicit(&st->gen, memory_order_acquire);

		if (!(g & 1)) {
			/* The guest loop's work: its counter moves. */
			__atomic_store_n(t->counter,
					 __atomic_load_n(t->counter, __ATOMIC_RELAXED) + 1,
					 __ATOMIC_RELAXED);
			continue;
		}
		if (atomic_fetch_add_explicit(&st->parked, 1,
					      memory_order_release) + 1 == st->spinning)
			b_futex_wake(&st->parked, 1);
		while (atomic_load_explicit(&st->gen, memory_order_acquire) == g &&
		       !atomic_load_explicit(&st->stop, memory_order_acquire))
			b_futex_wait(&st->gen, g);
	}
	return NULL;
}

static void fl_start(struct bc_ctx *c)
{
	struct fl_state *st = calloc(1, sizeof(*st));
	unsigned int i;

	if (!st || !(st->th = calloc(c->n, sizeof(*st->th))))
		b_die("out of memory");
	st->n = c->n;
	c->priv = st;
	b_gate_close();
	for (i = 0; i < c->n; i++) {
		struct fl_thread *t = &st->th[i];

		t->st = st;
		t->pv = &c->pv[i];
		t->counter = h_guest_counter(c->h, i);
		t->halted = atomic_load(&c->h->vcpus[i].prog) == H_HALT;
		if (!t->counter)
			b_die("resume floor: no guest memory");
		st->spinning += !t->halted;
		if (b_thread(&t->t, fl_main, t))
			b_die("pthread_create");
	}
	b_gate_open(c->n);
}

static void fl_pause(struct bc_ctx *c)
{
	struct fl_state *st = c->priv;
	uint32_t p;

	atomic_store_explicit(&st->parked, 0, memory_order_relaxed);
	atomic_store_explicit(&st->gen,
			      atomic_load_explicit(&st->gen, memory_order_relaxed) + 1,
			      memory_order_release);
	while ((p = atomic_load_explicit(&st->parked, memory_order_acquire)) <
	       st->spinning)
		b_futex_wait(&st->parked, p);
}

static void fl_resume(struct bc_ctx *c)
{
	struct fl_state *st = c->priv;

	atomic_store_explicit(&st->gen,
			      atomic_load_explicit(&st->gen, memory_order_relaxed) + 1,
			      memory_order_release);
	b_futex_wake(&st->gen, INT_MAX);
	atomic_store(&c->wakes_done, b_now()); /* the benchmark's, see peers.h */
}

/* From the paused state: every thread leaves and is joined. */
static void fl_stop(struct bc_ctx *c)
{
	struct fl_state *st = c->priv;
	unsigned int i;

	atomic_store_explicit(&st->stop, 1, memory_order_release);
	b_futex_wake(&st->stop, INT_MAX);
	b_futex_wake(&st->gen, INT_MAX);
	for (i = 0; i < st->n; i++)
		pthread_join(st->th[i].t, NULL);
	free(st->th);
	free(st);
	c->priv = NULL;
}

static uint64_t fl_signals(struct bc_ctx *c)
{
	(void)c;
	return 0;
}

const struct bc_impl bc_resume_floor = {
	.name = "floor",
	.source = "N plain threads, no KVM_RUN: a polled flag, one FUTEX_WAKE of all (bench/resume_floor.c)",
	.start = fl_start,
	.pause = fl_pause,
	.resume = fl_resume,
	.stop = fl_stop,
	.signals = fl_signals,
};
