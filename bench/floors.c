/* SPDX-License-Identifier: MIT */
/*
 * The floors.  Each is measured in the same run as the figure it bounds,
 * and where it can be, interleaved with it sample by sample on the same
 * vCPU, thread and CPU, so that a change of load on the machine moves both
 * (micro.c):
 *  - signal -> KVM_RUN returns -EINTR for a spinning guest (raw KVM_RUN,
 *    KVM_SET_SIGNAL_MASK, sigtimedwait drain): part_kick();
 *  - raw I/O-exit round trip: part_entry();
 *  - futex wake -> woken thread running: part_wake();
 *  - cache-line round trip between the two cores: here.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

struct figure g_fig[FIG_NR] = {
	[FIG_SIG] = { "floor-signal", "raw signal -> KVM_RUN -EINTR", { 0 }, { 0 }, 0 },
	[FIG_SIG_DRAIN] = { "floor-signal-drained", "raw signal -> -EINTR + sigtimedwait drain", { 0 }, { 0 }, 0 },
	[FIG_IO] = { "floor-io-exit", "raw KVM_RUN I/O-exit round trip", { 0 }, { 0 }, 0 },
	[FIG_FUTEX] = { "floor-futex", "raw futex wake -> woken thread running", { 0 }, { 0 }, 0 },
	[FIG_CACHE] = { "floor-cacheline", "cache-line round trip between the two cores", { 0 }, { 0 }, 0 },
	[FIG_KICK] = { "kick", "request + kick -> handler running (vCPU spinning in the guest)", { 0 }, { 0 }, 0 },
	[FIG_OUT_BUSY] = { "outside-polling", "request to an awake vCPU outside guest mode (vCPU polling its requests)", { 0 }, { 0 }, 0 },
	[FIG_OUT_IDLE] = { "outside-busy", "request to an awake vCPU outside guest mode (vCPU busy elsewhere)", { 0 }, { 0 }, 0 },
	[FIG_OUT_REQ1] = { "outside-busy-vcpureq_request", "the same with one vcpureq_request() call per request (vCPU busy elsewhere)", { 0 }, { 0 }, 0 },
	[FIG_ENTRY] = { "entry-io-exit", "I/O-exit round trip through vcpureq_vcpu_run()", { 0 }, { 0 }, 0 },
	[FIG_ENTRY_RATIO] = { "entry-ratio", "per batch pair: vcpureq loop / raw loop (ratio)", { 0 }, { 0 }, 0 },
	[FIG_WAKE] = { "wake", "request -> vcpureq_vcpu_block() returns", { 0 }, { 0 }, 0 },
};

/* ---- cache-line round trip ---- */
struct pingpong {
	alignas(64) _Atomic int flag;
	alignas(64) _Atomic int ready;
};
static struct pingpong pp;

static void *pong(void *arg)
{
	(void)arg;
	b_pin(1);
	atomic_store(&pp.ready, 1);
	for (;;) {
		int v;

		while ((v = atomic_load_explicit(&pp.flag,
						 memory_order_acquire)) == 0)
			;
		if (v == 2)
			break;
		atomic_store_explicit(&pp.flag, 0, memory_order_release);
	}
	return NULL;
}

static void cacheline(void)
{
	enum { RT = 1000 };
	size_t batches = b_count(300, 40), b;
	struct samples s = { 0 };
	cpu_set_t old;
	pthread_t t;

	b_phase("floor: cache-line round trip");
	sched_getaffinity(0, sizeof(old), &old);
	b_pin(0);
	atomic_store(&pp.flag, 0);
	atomic_store(&pp.ready, 0);
	if (b_thread(&t, pong, NULL))
		b_die("pthread_create");
	while (!atomic_load(&pp.ready))
		;
	for (b = 0; b < batches + 5; b++) {
		uint64_t t0 = b_now();
		int k;

		for (k = 0; k < RT; k++) {
			atomic_store_explicit(&pp.flag, 1, memory_order_release);
			while (atomic_load_explicit(&pp.flag,
						    memory_order_acquire) != 0)
				;
		}
		if (b >= 5) /* warm-up batches dropped */
			samples_add(&s, (double)(b_now() - t0) / RT);
	}
	atomic_store(&pp.flag, 2);
	pthread_join(t, NULL);
	sched_setaffinity(0, sizeof(old), &old);
	figure_add_rep(&g_fig[FIG_CACHE], &s);
	samples_free(&s);
}

/*
 * Wait until vCPU @id runs guest code: @flag (if any) set and its guest
 * counter moving; then a short random delay so that kicks land at random
 * points of the guest loop.
 */
void wait_in_guest(struct h_vm *h, unsigned int id, _Atomic int *flag,
		   uint32_t *rnd)
{
	uint64_t end = b_now() + 10000000000ull;
	uint32_t c0;
	int moved = 0;

	for (;;) {
		if (b_now() > end)
			b_die("vCPU %u never ran guest code", id);
		if (flag && !atomic_load(flag))
			continue;
		c0 = (uint32_t)h_guest_iters(h, id);
		b_spin_ns(2000);
		if (flag && !atomic_load(flag))
			continue;
		if ((uint32_t)h_guest_iters(h, id) != c0 && ++moved >= 2)
			break;
	}
	b_spin_ns(10000 + b_rand(rnd) % 40000);
}

int part_floors(int rep)
{
	(void)rep;
	cacheline();
	return 0;
}
