/* SPDX-License-Identifier: MIT */
/*
 * Torture of the operations built on requests: pause/resume cycles of
 * random vCPU subsets, run-on-vCPU items (synchronous and asynchronous,
 * from several threads) and plain requests, all at once, on vCPUs that
 * spin, loop on I/O exits and halt, with race windows injected into the
 * library (src/race.h).  It fails on any non-zero of:
 *
 *   lost_requests   a vCPU's handler never saw the last request number a
 *                   requester made of it (checked after a final WAIT)
 *   lost_work       an item queued and never run, or run twice
 *   work_disorder   a producer's items ran out of order on a vCPU
 *   ran_paused      a guest counter of a vCPU moved between the return of
 *                   a pause and its resume
 *   pause_errors    a pause or resume returned an error
 *
 * Usage: torture-ops [-c cycles] [-m vcpus] [-s seed] [-b thread]
 */
#include <getopt.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "race.h"

#define MAX_V 16
#define PRODUCERS 2
#define REQ_SEQ VCPUREQ_ARCH_REQ(5)

static unsigned int M = 6, cycles = 10000;
static uint32_t seed0 = 7;
static struct h_vm H;
static _Atomic int stop;

static _Atomic uint64_t lost_requests, lost_work, work_disorder, ran_paused,
	pause_errors, windows;

/* ---- race windows (called by the library) ---- */
static __thread uint32_t rw_state;

static uint32_t xs(uint32_t *s)
{
	if (!*s)
		*s = (uint32_t)(uintptr_t)&rw_state ^ 0x9e3779b9u ^ seed0;
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

void vcpureq__race_window(enum vcpureq__window w)
{
	uint32_t x = xs(&rw_state);

	(void)w;
	if ((x & 7) == 0) {
		uint64_t end = h_now_ns() + (x >> 8) % 20000;

		atomic_fetch_add_explicit(&windows, 1, memory_order_relaxed);
		while (h_now_ns() < end)
			;
	}
}

/* ---- requests: a sequence number per vCPU, seen by the handler ---- */
static _Atomic uint64_t made_seq[MAX_V], seen_seq[MAX_V];

static int handler(struct vcpureq_vcpu *v, void *opaque)
{
	unsigned int i = vcpureq_vcpu_index(v);

	(void)opaque;
	if (vcpureq_check_request(REQ_SEQ, v) > 0) {
		/* The check's acquire makes every number made before the
		 * bit visible: the latest one is what counts. */
		uint64_t s = atomic_load_explicit(&made_seq[i],
						  memory_order_relaxed);

		if (s > atomic_load_explicit(&seen_seq[i], memory_order_relaxed))
			atomic_store_explicit(&seen_seq[i], s,
					      memory_order_relaxed);
	}
	return 0;
}

/* ---- work items: per producer and vCPU, a sequence ---- */
struct item {
	unsigned int producer, vcpu;
	uint64_t seq;
	_Atomic int runs;
};

static _Atomic uint64_t next_run[PRODUCERS][MAX_V];
static _Atomic uint64_t queued, completed;

static int item_fn(struct vcpureq_vcpu *v, void *arg)
{
	struct item *it = arg;
	uint64_t want = atomic_load(&next_run[it->producer][it->vcpu]);

	(void)v;
	if (want != it->seq)
		atomic_fetch_add(&work_disorder, 1);
	atomic_store(&next_run[it->producer][it->vcpu], it->seq + 1);
	if (atomic_fetch_add(&it->runs, 1))
		atomic_fetch_add(&lost_work, 1); /* ran twice */
	return 0;
}

static int drain_fn(struct vcpureq_vcpu *v, void *arg)
{
	(void)v, (void)arg;
	return 0;
}

static void item_done(void *arg, int result)
{
	struct item *it = arg;

	if (result == -ECANCELED)
		atomic_fetch_add(&lost_work, 1);
	atomic_fetch_add(&completed, 1);
	free(it);
}

static void *producer(void *arg)
{
	unsigned int p = (unsigned int)(uintptr_t)arg;
	uint64_t seq[MAX_V] = { 0 };
	uint32_t s = seed0 * 31u + p;

	while (!atomic_load(&stop)) {
		unsigned int i = xs(&s) % M;
		struct item *it = calloc(1, sizeof(*it));

		if (!it)
			break;
		*it = (struct item){ p, i, seq[i]++, 0 };
		atomic_fetch_add(&queued, 1);
		if ((xs(&s) & 7) == 0) {
			int result;

			/* Synchronous: it has run when this returns. */
			if (vcpureq_run_on_vcpu(vcpureq_vm_vcpu(H.vm, i), item_fn,
						it, &result) ||
			    atomic_load(&it->runs) != 1)
				atomic_fetch_add(&lost_work, 1);
			atomic_fetch_add(&completed, 1);
			free(it);
		} else if (vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(H.vm, i),
						     item_fn, item_done, it)) {
			atomic_fetch_add(&lost_work, 1);
			free(it);
		}
		if ((xs(&s) & 15) == 0)
			h_sleep_us(50);
	}
	return NULL;
}

static void *requester(void *arg)
{
	uint32_t s = seed0 * 17u;

	(void)arg;
	while (!atomic_load(&stop)) {
		unsigned int i = xs(&s) % M;

		atomic_fetch_add_explicit(&made_seq[i], 1, memory_order_relaxed);
		vcpureq_request(REQ_SEQ, vcpureq_vm_vcpu(H.vm, i));
		if ((xs(&s) & 31) == 0)
			h_sleep_us(20);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	enum vcpureq_backend be = VCPUREQ_BACKEND_KVM;
	struct vcpureq_vm_opts o = { .handle_requests = handler };
	pthread_t prod[PRODUCERS], req;
	uint64_t c, t0;
	unsigned int i;
	uint32_t s;
	int opt, r;

	while ((opt = getopt(argc, argv, "c:m:s:b:")) != -1) {
		switch (opt) {
		case 'c': cycles = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'm': M = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 's': seed0 = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'b':
			be = strcmp(optarg, "thread") ? VCPUREQ_BACKEND_KVM :
							VCPUREQ_BACKEND_THREAD;
			break;
		default:
			fprintf(stderr, "usage: torture-ops [-c cycles] [-m vcpus] [-s seed] [-b kvm|thread]\n");
			return 2;
		}
	}
	if (M < 2 || M > MAX_V) {
		fprintf(stderr, "torture-ops: -m must be 2..%d\n", MAX_V);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	r = h_vm_create(&H, be, M, H_SPIN, &o);
	if (r == H_SKIP)
		return 77;
	if (r) {
		fprintf(stderr, "torture-ops: VM: %d (%s)\n", r, vcpureq_errmsg());
		return 1;
	}
	for (i = 0; i < M; i++)
		h_set_prog(&H, i, i % 3 == 0 ? H_SPIN : i % 3 == 1 ? H_OUT : H_HALT);
	if (h_start(&H)) {
		fprintf(stderr, "torture-ops: start failed\n");
		return 1;
	}
	for (i = 0; i < PRODUCERS; i++)
		pthread_create(&prod[i], NULL, producer, (void *)(uintptr_t)i);
	pthread_create(&req, NULL, requester, NULL);
	s = seed0;
	t0 = h_now_ns();
	for (c = 0; c < cycles; c++) {
		uint64_t mask = xs(&s) & ((UINT64_C(1) << M) - 1);
		uint64_t before[MAX_V];

		if (!mask)
			mask = 1;
		if (vcpureq_pause(H.vm, &mask, M, NULL)) {
			atomic_fetch_add(&pause_errors, 1);
			break;
		}
		for (i = 0; i < M; i++)
			before[i] = h_guest_iters(&H, i);
		if ((xs(&s) & 3) == 0)
			h_sleep_us(100);
		for (i = 0; i < M; i++)
			if ((mask >> i & 1) && h_guest_iters(&H, i) != before[i])
				atomic_fetch_add(&ran_paused, 1);
		if (vcpureq_resume(H.vm, &mask, M)) {
			atomic_fetch_add(&pause_errors, 1);
			break;
		}
		if (c % 2000 == 1999)
			printf("torture-ops: %llu cycles\n", (unsigned long long)c + 1);
	}
	atomic_store(&stop, 1);
	for (i = 0; i < PRODUCERS; i++)
		pthread_join(prod[i], NULL);
	pthread_join(req, NULL);
	/* Every request made is seen: one more WAIT round reaches every vCPU
	 * (halted ones are woken by it, it has no NO_WAKEUP). */
	for (i = 0; i < M; i++)
		vcpureq_request(REQ_SEQ | VCPUREQ_REQUEST_WAIT,
				vcpureq_vm_vcpu(H.vm, i));
	/* Every queued item completes: a synchronous item per vCPU runs
	 * after all the earlier ones (FIFO). */
	for (i = 0; i < M; i++)
		if (vcpureq_run_on_vcpu(vcpureq_vm_vcpu(H.vm, i), drain_fn, NULL,
					NULL))
			atomic_fetch_add(&lost_work, 1);
	for (i = 0; i < M; i++)
		if (atomic_load(&seen_seq[i]) != atomic_load(&made_seq[i]))
			atomic_fetch_add(&lost_requests, 1);
	if (atomic_load(&completed) != atomic_load(&queued))
		atomic_fetch_add(&lost_work, atomic_load(&queued) -
						 atomic_load(&completed));
	printf("torture-ops: %s, %u vCPUs, %llu pause/resume cycles in %.1f s, %llu work items, windows %llu\n",
	       be == VCPUREQ_BACKEND_KVM ? "kvm" : "thread", M,
	       (unsigned long long)c, (double)(h_now_ns() - t0) / 1e9,
	       (unsigned long long)atomic_load(&queued),
	       (unsigned long long)atomic_load(&windows));
	printf("lost_requests %llu lost_work %llu work_disorder %llu ran_paused %llu pause_errors %llu\n",
	       (unsigned long long)lost_requests, (unsigned long long)lost_work,
	       (unsigned long long)work_disorder, (unsigned long long)ran_paused,
	       (unsigned long long)pause_errors);
	r = lost_requests || lost_work || work_disorder || ran_paused ||
	    pause_errors;
	h_stop_all(&H);
	h_vm_destroy(&H);
	printf("%s\n", r ? "FAIL" : "PASS");
	return r ? 1 : 0;
}
