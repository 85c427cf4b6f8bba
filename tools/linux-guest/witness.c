/* SPDX-License-Identifier: MIT */
/*
 * The guest-side witness of make test-linux-guest (runs in the Linux guest
 * that examples/linux-vmm.c boots): one thread pinned to each online CPU
 * reads CLOCK_MONOTONIC and the virtual counter (CNTVCT_EL0) about every
 * millisecond and records every gap of 50 ms or more between two
 * consecutive readings.  A pause of the whole VM shows up as a gap on
 * every CPU, covering the pause.  It talks to the VMM through the witness
 * page (64-bit MMIO registers at WIT_BASE, mapped from /dev/mem; the
 * layout is in examples/linux-vmm.c): "ready" once every thread runs on
 * its CPU, a heartbeat per thread about every 20 ms (so the VMM knows the
 * guest ran after a resume), and, once the VMM's command register reads
 * 1, each gap and each thread's summary, then "done".
 * Static, no libc beyond pthreads; prints its result on stdout too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WIT_BASE 0x0a000000
#define MAX_CPUS 8
#define MAX_GAPS 512
#define GAP_NS 50000000ull
#define BEAT_NS 20000000ull

struct gap { uint64_t a, b, ns; };

struct thr {
	unsigned int cpu;
	pthread_t t;
	uint64_t readings, max_ns;
	unsigned int nr;
	struct gap gaps[MAX_GAPS];
	int err;
};

static volatile uint64_t *wit;
static struct thr thr[MAX_CPUS];
static _Atomic int started, stop;

static uint64_t ns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cntvct(void)
{
	uint64_t v;

	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
	return v;
}

/* One 64-bit store to a witness register: one MMIO exit to the VMM. */
static void wr(unsigned int off, uint64_t v)
{
	wit[off / 8] = v;
}

static void *run(void *arg)
{
	struct thr *t = arg;
	struct timespec ms = { 0, 1000000 };
	uint64_t prev_ns, prev_c, beat;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(t->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) ||
	    sched_getcpu() != (int)t->cpu) {
		t->err = errno ? errno : EINVAL;
		/* Release: main's acquire load of started sees t->err. */
		atomic_fetch_add_explicit(&started, 1, memory_order_release);
		return NULL;
	}
	atomic_fetch_add_explicit(&started, 1, memory_order_release);
	prev_ns = beat = ns_now();
	prev_c = cntvct();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t n = ns_now(), c = cntvct();

		t->readings++;
		if (n - prev_ns > t->max_ns)
			t->max_ns = n - prev_ns;
		if (n - prev_ns >= GAP_NS && t->nr < MAX_GAPS)
			t->gaps[t->nr++] = (struct gap){ prev_c, c, n - prev_ns };
		if (n - beat >= BEAT_NS) {
			wr(0x10, t->cpu);
			beat = n;
		}
		prev_ns = n;
		prev_c = c;
		nanosleep(&ms, NULL);
	}
	return NULL;
}

int main(void)
{
	int fd = open("/dev/mem", O_RDWR | O_SYNC), n = 0;
	struct timespec poll = { 0, 20000000 };

	if (fd < 0) {
		printf("witness: /dev/mem: %s\n", strerror(errno));
		return 1;
	}
	wit = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   WIT_BASE);
	if (wit == MAP_FAILED) {
		printf("witness: mmap /dev/mem at %#x: %s\n", WIT_BASE,
		       strerror(errno));
		return 1;
	}
	for (long i = 0; i < sysconf(_SC_NPROCESSORS_ONLN) && n < MAX_CPUS; i++) {
		thr[n].cpu = (unsigned int)i;
		if (pthread_create(&thr[n].t, NULL, run, &thr[n]) == 0)
			n++;
	}
	while (atomic_load_explicit(&started, memory_order_acquire) < n)
		nanosleep(&poll, NULL);
	for (int i = 0; i < n; i++)
		if (thr[i].err) {
			printf("witness: cannot pin a thread to CPU %u: %s\n",
			       thr[i].cpu, strerror(thr[i].err));
			atomic_store_explicit(&stop, 1, memory_order_relaxed);
		}
	printf("witness: %d threads, one pinned to each CPU\n", n);
	fflush(stdout);
	wr(0x08, (uint64_t)n);
	while (!atomic_load_explicit(&stop, memory_order_relaxed) &&
	       wit[0] != 1)
		nanosleep(&poll, NULL);
	atomic_store_explicit(&stop, 1, memory_order_relaxed);
	for (int i = 0; i < n; i++)
		pthread_join(thr[i].t, NULL);
	for (int i = 0; i < n; i++) {
		struct thr *t = &thr[i];

		for (unsigned int j = 0; j < t->nr; j++) {
			wr(0x18, t->gaps[j].a);
			wr(0x20, t->gaps[j].b);
			wr(0x30, t->gaps[j].ns);
			wr(0x28, 1u << 8 | t->cpu);
		}
		wr(0x18, t->readings);
		wr(0x20, t->max_ns);
		wr(0x30, t->nr);
		wr(0x28, 2u << 8 | t->cpu);
		printf("witness: CPU %u: %llu readings, %u gaps >= 50 ms, largest %llu ms\n",
		       t->cpu, (unsigned long long)t->readings, t->nr,
		       (unsigned long long)(t->max_ns / 1000000));
	}
	wr(0x40, 1);
	return 0;
}
