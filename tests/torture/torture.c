/* SPDX-License-Identifier: MIT */
/*
 * The torture test: M vCPUs on /dev/kvm running real guest code (spinning,
 * doing I/O exits, halting), R requester threads making random requests,
 * for a time budget, with random delays injected at every race window of
 * the protocol (src/race.h).  It counts, prints, and fails on any non-zero:
 *
 *   stranded        a waking request not handled within BOUND_MS while its
 *                   vCPU is not asleep (it keeps entering the guest or spins)
 *   lost_wakeups    the same while the vCPU sleeps in block
 *   payload_regress a handler saw a payload older than one it saw before
 *   wait_early      a WAIT request returned while a target it saw in guest
 *                   mode (or in a walk) before the call had not left that
 *                   instance (exit epoch unchanged)
 *   wait_hang       a WAIT request took longer than BOUND_MS
 *   poisoned_reads  a lockless walk read a structure that a WAIT requester
 *                   had replaced and poisoned
 *   alive_after_dead  a vCPU in guest mode (or making guest progress) after
 *                   VM_DEAD returned
 *   lost_interrupts a posted interrupt not taken by the guest within BOUND_MS,
 *                   or interrupts injected != interrupts the guest took
 *
 * Dedicated vCPUs get a sequential workload so that a protocol hole cannot
 * be papered over by unrelated kicks (as cloud-hypervisor's 10 ms re-signal
 * would): vCPU 0 (spinning) only receives one request at a time, each
 * awaited; vCPU 1 (spinning) only receives WAIT requests, one at a time;
 * vCPU 2 (halting: every exit blocks in vcpureq_vcpu_block()) only
 * receives one waking request at a time from a single requester; with -i,
 * vCPU 3 (halting, interrupts on) only receives posted interrupts from
 * that many concurrent posters.  The others get random traffic.
 *
 * Time bounds (BOUND_MS) are on the process's own time: a probe thread
 * that sleeps 1 ms at a time measures how late the machine wakes it, and
 * the lateness is taken off every elapsed time (a loaded machine delays
 * everything, a protocol hole delays one request).  vCPU 0's stranded
 * request is also proven without a clock: after the request returned, its
 * instance (same exit epoch) ran guest code, IN_GUEST_MODE, with the
 * request still pending.
 *
 * Usage: torture [-m vcpus] [-r requesters] [-t seconds] [-s seed]
 *                [-b kvm|thread] [-k usr1|usr2|signal number] [-i posters]
 *                [-B bound ms (3000; make test-arm64 gives 30000: TCG)]
 */
#include <getopt.h>
#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "harness.h"
#include "race.h" /* the window names (src/race.h) */

#define MAX_V 32
#define MAX_R 8
/* The time bound (-B; the default is this machine's x86-64 one). */
static unsigned int bound_ms = 3000u;
#define BOUND_MS bound_ms
#define POISON 0xdeaddeaddeaddeadull
#define REQ_DATA(r) VCPUREQ_ARCH_REQ(1 + (r))      /* waking, per requester */
#define REQ_LAZY VCPUREQ_ARCH_REQ_FLAGS(20, VCPUREQ_REQUEST_NO_WAKEUP)
#define REQ_WALK VCPUREQ_ARCH_REQ(21)

static unsigned int M = 6, R = 3, seconds = 10, P = 0;
static enum vcpureq_backend backend = VCPUREQ_BACKEND_KVM;
static int kick_signal;
/* The dedicated vCPUs (see above); random traffic goes to FIRST_RANDOM..M-1. */
#define V_PING 0
#define V_WAIT 1
#define V_HALT 2
#define V_IRQ 3
static unsigned int first_random = 3;
static uint32_t seed0 = 1;
static struct h_vm H;
static _Atomic int stop;

/* ---- race-window injection (called by the library, src/race.h) ---- */

static __thread uint32_t rw_state;
static _Atomic uint64_t windows_hit[VCPUREQ__WIN_NR];

static uint32_t xs(uint32_t *s)
{
	if (!*s)
		*s = (uint32_t)(uintptr_t)&rw_state ^ 0x9e3779b9u ^ seed0;
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void spin_ns(uint64_t ns)
{
	uint64_t end = h_now_ns() + ns;

	while (h_now_ns() < end)
		;
}

void vcpureq__race_window(enum vcpureq__window w)
{
	uint32_t x = xs(&rw_state);

	/* One window in four gets 0-40 us of busy delay, one in 64 a yield:
	 * long enough to span a signal delivery or a VM exit here. */
	if ((x & 3) == 0) {
		atomic_fetch_add_explicit(&windows_hit[w], 1, memory_order_relaxed);
		spin_ns((x >> 8) % 40000);
	} else if ((x & 63) == 1) {
		sched_yield();
	}
}

/* ---- the machine's lateness: elapsed times are counted without it ---- */

static _Atomic uint64_t stall_ns, stall_max_ns;

static void *probe(void *arg)
{
	(void)arg;
	while (atomic_load(&stop) < 2) {
		uint64_t t = h_now_ns(), late;

		h_sleep_us(1000);
		late = h_now_ns() - t;
		late = late > 1000000u ? late - 1000000u : 0;
		/* Under 1 ms late is ordinary timer slack. */
		if (late > 1000000u) {
			atomic_fetch_add(&stall_ns, late);
			if (late > atomic_load(&stall_max_ns))
				atomic_store(&stall_max_ns, late);
		}
	}
	return NULL;
}

/* A point in time for the bounds: the clock and the lateness so far. */
struct when {
	uint64_t t, stall;
};

static struct when now_when(void)
{
	struct when w = { h_now_ns(), atomic_load(&stall_ns) };

	return w;
}

/* Elapsed since @w without the machine's lateness meanwhile. */
static uint64_t eff_since(struct when w)
{
	uint64_t el = h_now_ns() - w.t, st = atomic_load(&stall_ns) - w.stall;

	return el > st ? el - st : 0;
}

#define BOUND_NS ((uint64_t)BOUND_MS * 1000000u)

/* ---- shared structure for lockless walks ---- */

struct table {
	_Atomic uint64_t value;
	struct table *next_free;
};
static struct table *_Atomic cur_table;
static struct table *retired;
static _Atomic uint64_t poisoned_reads, walks;

static void walk(struct vcpureq_vcpu *v)
{
	struct table *t;
	int i;

	if (vcpureq_walk_lockless_begin(v))
		return;
	t = atomic_load_explicit(&cur_table, memory_order_acquire);
	for (i = 0; i < 4; i++) {
		if (atomic_load_explicit(&t->value, memory_order_relaxed) == POISON)
			atomic_fetch_add(&poisoned_reads, 1);
		if ((xs(&rw_state) & 7) == 0)
			spin_ns(2000);
	}
	vcpureq_walk_lockless_end(v);
	atomic_fetch_add_explicit(&walks, 1, memory_order_relaxed);
}

/* ---- payloads and the stranded-request monitor ---- */

static _Atomic uint64_t payload[MAX_R][MAX_V]; /* written by requester r */
static _Atomic uint64_t seen[MAX_R][MAX_V];    /* written by vCPU v */
static _Atomic uint64_t payload_regress, stranded, lost_wakeups, wait_early,
	wait_hang, alive_after_dead, handled_total, made_total, waits_total,
	lost_interrupts, late_requests, irq_posts, irq_rounds;
static _Atomic uint64_t max_latency_ns;

static void note_latency(uint64_t ns)
{
	if (ns > atomic_load(&max_latency_ns))
		atomic_store(&max_latency_ns, ns);
}

static int handler(struct vcpureq_vcpu *v, void *opaque)
{
	unsigned int id = vcpureq_vcpu_index(v), r;

	(void)opaque;
	for (r = 0; r < R; r++) {
		if (vcpureq_check_request(REQ_DATA(r), v) > 0) {
			uint64_t p = atomic_load_explicit(&payload[r][id],
							  memory_order_relaxed);

			if (p < atomic_load_explicit(&seen[r][id],
						     memory_order_relaxed))
				atomic_fetch_add(&payload_regress, 1);
			atomic_store_explicit(&seen[r][id], p,
					      memory_order_relaxed);
			atomic_fetch_add_explicit(&handled_total, 1,
						  memory_order_relaxed);
		}
	}
	vcpureq_check_request(REQ_LAZY, v);
	vcpureq_check_request(VCPUREQ_REQ_TLB_FLUSH, v);
	if (vcpureq_check_request(REQ_WALK, v) > 0)
		walk(v);
	return 0;
}

static bool on_exit_hook(struct h_vm *h, unsigned int id, int reason)
{
	(void)reason;
	/* Only the random vCPUs walk: replace_table()'s WAIT covers them
	 * alone (V_HALT's halt exits come here too; a walk there could read
	 * a table its WAIT did not wait for). */
	if (id >= first_random && (xs(&rw_state) & 3) == 0)
		walk(vcpureq_vm_vcpu(h->vm, id));
	return true;
}

/* Make a data request with payload; returns the request's return. */
static int make_data(unsigned int r, unsigned int v, unsigned int extra)
{
	uint64_t p = atomic_load_explicit(&payload[r][v], memory_order_relaxed) + 1;

	atomic_store_explicit(&payload[r][v], p, memory_order_relaxed);
	atomic_fetch_add_explicit(&made_total, 1, memory_order_relaxed);
	return vcpureq_request(REQ_DATA(r) | extra, vcpureq_vm_vcpu(H.vm, v));
}

/* Before a WAIT call: which targets are in an instance it must wait for. */
static void snap(const uint64_t *mask, uint32_t *ep, uint8_t *busy)
{
	unsigned int i;

	for (i = 0; i < M; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(H.vm, i);
		int mode;

		busy[i] = 0;
		if (!(mask[0] & (UINT64_C(1) << i)))
			continue;
		ep[i] = vcpureq_vcpu_exit_epoch(v);
		mode = vcpureq_vcpu_mode(v);
		/* The mode read after the epoch: if it is not OUTSIDE, the
		 * instance it belongs to ends with a bump past ep[i]. */
		busy[i] = mode != VCPUREQ_OUTSIDE_GUEST_MODE;
	}
}

static void check_acked(const uint32_t *ep, const uint8_t *busy,
			struct when t0)
{
	unsigned int i;

	if (eff_since(t0) > BOUND_NS) {
		atomic_fetch_add(&wait_hang, 1);
		fprintf(stderr, "torture: a WAIT took %llu ms (%llu ms without the machine's lateness)\n",
			(unsigned long long)((h_now_ns() - t0.t) / 1000000),
			(unsigned long long)(eff_since(t0) / 1000000));
	}
	/* Same epoch and not OUTSIDE: still in the instance seen before the
	 * call (a new instance starts only after the bump).  Same epoch and
	 * OUTSIDE is the vCPU between leaving the mode and bumping: done. */
	for (i = 0; i < M; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(H.vm, i);

		if (busy[i] && vcpureq_vcpu_exit_epoch(v) == ep[i] &&
		    vcpureq_vcpu_mode(v) != VCPUREQ_OUTSIDE_GUEST_MODE &&
		    vcpureq_vcpu_exit_epoch(v) == ep[i]) {
			if (atomic_fetch_add(&wait_early, 1) < 3)
				fprintf(stderr, "torture: WAIT returned while vCPU %u is still in mode %d (epoch %u)\n",
					i, vcpureq_vcpu_mode(v), ep[i]);
		}
	}
	atomic_fetch_add_explicit(&waits_total, 1, memory_order_relaxed);
}

/* Each thread's WAIT call in progress (start time, 0 if none), for the
 * watchdog: a WAIT that never returns cannot report itself. */
#define MAX_WAITERS (MAX_R + 1)
static _Atomic uint64_t wait_since[MAX_WAITERS], wait_stall[MAX_WAITERS];
static __thread int wait_slot = -1;
static _Atomic int wait_slots;

static void wait_begin(struct when t0)
{
	if (wait_slot < 0)
		wait_slot = atomic_fetch_add(&wait_slots, 1);
	atomic_store(&wait_stall[wait_slot], t0.stall);
	atomic_store(&wait_since[wait_slot], t0.t);
}

static void wait_end(void)
{
	atomic_store(&wait_since[wait_slot], 0);
}

/* The vCPUs that get random traffic. */
static uint64_t random_mask(void)
{
	return ((UINT64_C(1) << M) - 1) & ~((UINT64_C(1) << first_random) - 1);
}

/* Replace the walked structure, wait for the walkers, poison the old one. */
static void replace_table(void)
{
	struct table *n = calloc(1, sizeof(*n)), *old;
	/* The dedicated vCPUs never walk, and must get no help from others. */
	uint64_t all = random_mask();
	uint32_t ep[MAX_V];
	uint8_t busy[MAX_V];
	struct when t0 = now_when();

	atomic_store_explicit(&n->value, t0.t, memory_order_relaxed);
	old = atomic_exchange_explicit(&cur_table, n, memory_order_seq_cst);
	snap(&all, ep, busy);
	wait_begin(t0);
	vcpureq_make_vcpus_request_mask(H.vm, VCPUREQ_REQ_TLB_FLUSH, &all, M);
	wait_end();
	check_acked(ep, busy, t0);
	atomic_store_explicit(&old->value, POISON, memory_order_relaxed);
	/* Freed only at the end: poison, not a crash, is the signal.  Only
	 * requester 0 replaces, so the list needs no lock. */
	old->next_free = retired;
	retired = old;
}

static void *requester(void *arg)
{
	unsigned int r = (unsigned int)(uintptr_t)arg;
	uint32_t s = seed0 * 2654435761u + r + 1;

	while (!atomic_load(&stop)) {
		uint32_t x = xs(&s);
		unsigned int v = first_random + (x >> 8) % (M - first_random),
			     op = x % 16;

		if (op < 8) {
			make_data(r, v, 0);
		} else if (op < 10) {
			uint64_t m = UINT64_C(1) << v;
			struct when t0 = now_when();
			uint32_t ep[MAX_V];
			uint8_t busy[MAX_V];

			snap(&m, ep, busy);
			wait_begin(t0);
			make_data(r, v, VCPUREQ_REQUEST_WAIT);
			wait_end();
			check_acked(ep, busy, t0);
		} else if (op == 10) {
			uint64_t all = random_mask();
			uint32_t ep[MAX_V];
			uint8_t busy[MAX_V];
			struct when t0 = now_when();

			snap(&all, ep, busy);
			wait_begin(t0);
			vcpureq_make_vcpus_request_mask(H.vm,
							VCPUREQ_REQ_OUTSIDE_GUEST_MODE,
							&all, M);
			wait_end();
			check_acked(ep, busy, t0);
		} else if (op == 11) {
			vcpureq_request(VCPUREQ_REQ_UNBLOCK,
					vcpureq_vm_vcpu(H.vm, v));
		} else if (op == 12) {
			vcpureq_request(REQ_LAZY, vcpureq_vm_vcpu(H.vm, v));
		} else if (op == 13) {
			vcpureq_request(REQ_WALK, vcpureq_vm_vcpu(H.vm, v));
		} else if (op == 14 && r == 0) {
			replace_table();
		} else {
			spin_ns(x % 20000);
		}
	}
	return NULL;
}

/*
 * A request that @v must handle (seen[r][v] reaches the payload made):
 * wait for it, kicking again after a kick that could not be sent.  Counts
 * it stranded if it is pending past BOUND_MS of the process's own time,
 * or (vCPU 0, spinning: @proof) at once if the vCPU ran guest code, in
 * guest mode, in the instance that followed the request's return (its
 * final check should have seen it): proof needs no clock.
 */
static bool await_handled(unsigned int r, unsigned int v, int ret,
			  bool proof, const char *what)
{
	struct vcpureq_vcpu *vc = vcpureq_vm_vcpu(H.vm, v);
	uint64_t want = atomic_load(&payload[r][v]), it = 0;
	struct when t0 = now_when();
	uint32_t e = vcpureq_vcpu_exit_epoch(vc);
	bool armed = false;
	unsigned int i;

	for (i = 0; atomic_load(&seen[r][v]) != want; i++) {
		if (ret < 0) /* -EAGAIN: the vCPU stays IN_GUEST, kick again */
			ret = vcpureq_vcpu_kick(vc);
		if ((i & 63) != 63) {
			sched_yield();
			continue;
		}
		if (proof) {
			/* The epoch is read first: same epoch after the mode
			 * read means the same instance. */
			uint32_t e1 = vcpureq_vcpu_exit_epoch(vc);
			int mode = vcpureq_vcpu_mode(vc);
			uint64_t it1 = h_guest_iters(&H, v);

			/* Not while a kick could not be sent (-EAGAIN):
			 * then the vCPU stays IN_GUEST until one can. */
			if (ret < 0 || e1 != e || mode != VCPUREQ_IN_GUEST_MODE ||
			    vcpureq_vcpu_exit_epoch(vc) != e1) {
				armed = false;
			} else if (!armed) {
				armed = true;
				it = it1;
			} else if (it1 > it + 1000 &&
				   atomic_load(&seen[r][v]) != want) {
				atomic_fetch_add(&stranded, 1);
				fprintf(stderr, "torture: %s request to vCPU %u stranded: its instance after the request ran %llu guest iterations in guest mode (epoch %u)\n",
					what, v, (unsigned long long)(it1 - it), e);
				return false;
			}
		}
		if (eff_since(t0) > BOUND_NS) {
			atomic_fetch_add(v == V_HALT && h_sleeping(&H, v) ?
					 &lost_wakeups : &stranded, 1);
			fprintf(stderr, "torture: %s request to vCPU %u pending %llu ms (%llu ms without the machine's lateness; mode %d, %s)\n",
				what, v, (unsigned long long)((h_now_ns() - t0.t) / 1000000),
				(unsigned long long)(eff_since(t0) / 1000000),
				vcpureq_vcpu_mode(vc),
				h_sleeping(&H, v) ? "asleep" : "awake");
			return false;
		}
	}
	note_latency(h_now_ns() - t0.t);
	if (h_now_ns() - t0.t > BOUND_NS)
		atomic_fetch_add(&late_requests, 1);
	return true;
}

/* vCPU 0: one request at a time, each awaited (no help from others). */
static void *pinger(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop))
		if (!await_handled(0, V_PING, make_data(0, V_PING, 0), true,
				   "spinning"))
			return NULL;
	return NULL;
}

/* vCPU 2: halts on every exit; one waking request at a time, from this
 * thread only. */
static void *halt_pinger(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		if (!await_handled(2, V_HALT, make_data(2, V_HALT, 0), false,
				   "halting"))
			return NULL;
		spin_ns(xs(&rw_state) % 20000);
	}
	return NULL;
}

/* vCPU 3: posted interrupts from P concurrent posters, all of one vector
 * (the KVM guest's handler).  The mailbox coalesces a vector while it is
 * pending, so each poster checks its own post: the guest's count of taken
 * interrupts must pass the count it read before posting (a take after its
 * post covers it).  At the end: every injection reached the guest once
 * (stats.interrupts_injected == the guest's count), none without a post
 * (injected <= posted), and the posts were all counted. */
static void *poster(void *arg)
{
	struct vcpureq_vcpu *vc = vcpureq_vm_vcpu(H.vm, V_IRQ);
	uint32_t s = seed0 * 7919u + (uint32_t)(uintptr_t)arg;

	while (!atomic_load(&stop)) {
		uint64_t c = h_guest_irqs(&H, V_IRQ);
		struct when t0 = now_when();
		int r = vcpureq_post_interrupt(vc, H_IRQ_VECTOR);

		atomic_fetch_add(&irq_posts, 1);
		while (h_guest_irqs(&H, V_IRQ) <= c) {
			if (r < 0)
				r = vcpureq_vcpu_kick(vc);
			if (eff_since(t0) > BOUND_NS) {
				atomic_fetch_add(&lost_interrupts, 1);
				fprintf(stderr, "torture: interrupt posted to vCPU %u not taken in %llu ms (mode %d, %s)\n",
					V_IRQ, (unsigned long long)(eff_since(t0) / 1000000),
					vcpureq_vcpu_mode(vc),
					h_sleeping(&H, V_IRQ) ? "asleep" : "awake");
				return NULL;
			}
			sched_yield();
		}
		atomic_fetch_add(&irq_rounds, 1);
		note_latency(h_now_ns() - t0.t);
		spin_ns(xs(&s) % 20000);
	}
	return NULL;
}

static void check_interrupts(void)
{
	struct vcpureq_stats st;
	uint64_t taken;

	if (!P)
		return;
	vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, V_IRQ), &st, sizeof(st));
	taken = h_guest_irqs(&H, V_IRQ);
	printf("torture: interrupts posted %llu (counted %llu), injected %llu, taken by the guest %llu, poster rounds %llu\n",
	       (unsigned long long)irq_posts, (unsigned long long)st.interrupts_posted,
	       (unsigned long long)st.interrupts_injected,
	       (unsigned long long)taken, (unsigned long long)irq_rounds);
	if (st.interrupts_injected != taken ||
	    st.interrupts_injected > st.interrupts_posted ||
	    st.interrupts_posted != irq_posts) {
		fprintf(stderr, "torture: interrupt counts disagree\n");
		atomic_fetch_add(&lost_interrupts, 1);
	}
}

/* vCPU 1: one WAIT request at a time. */
static void *waiter(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		uint64_t m = UINT64_C(1) << V_WAIT;
		struct when t0 = now_when();
		uint32_t ep[MAX_V];
		uint8_t busy[MAX_V];

		snap(&m, ep, busy);
		wait_begin(t0);
		make_data(1, V_WAIT, VCPUREQ_REQUEST_WAIT);
		wait_end();
		check_acked(ep, busy, t0);
		spin_ns(xs(&rw_state) % 50000);
	}
	return NULL;
}

/* Requests still pending after BOUND_MS: stranded, or a lost wake-up. */
static void *monitor(void *arg)
{
	static struct when since[MAX_R][MAX_V];
	uint64_t pend[MAX_R][MAX_V] = { { 0 } };
	unsigned int r, v;

	(void)arg;
	while (!atomic_load(&stop)) {
		struct when now = now_when();

		for (r = 0; r < R; r++)
			for (v = first_random; v < M; v++) {
				uint64_t p = atomic_load(&payload[r][v]);
				uint64_t sn = atomic_load(&seen[r][v]);

				if (sn >= pend[r][v]) {
					pend[r][v] = p;
					since[r][v] = now;
				} else if (eff_since(since[r][v]) > BOUND_NS) {
					bool sleeping = h_sleeping(&H, v);

					fprintf(stderr, "torture: request %u->%u pending %llu ms (%llu ms without the machine's lateness; %s, mode %d)\n",
						r, v, (unsigned long long)((now.t - since[r][v].t) / 1000000),
						(unsigned long long)(eff_since(since[r][v]) / 1000000),
						sleeping ? "asleep" : "awake",
						vcpureq_vcpu_mode(vcpureq_vm_vcpu(H.vm, v)));
					atomic_fetch_add(sleeping ? &lost_wakeups : &stranded, 1);
					pend[r][v] = p;
					since[r][v] = now;
				}
			}
		h_sleep_us(50000);
	}
	return NULL;
}

/* A WAIT that never returns cannot report itself: the watchdog does. */
static void *watchdog(void *arg)
{
	(void)arg;
	while (atomic_load(&stop) < 2) {
		uint64_t now = h_now_ns();
		int i, n = atomic_load(&wait_slots);

		for (i = 0; i < n && i < MAX_WAITERS; i++) {
			struct when w = { atomic_load(&wait_since[i]),
					  atomic_load(&wait_stall[i]) };

			if (w.t && now > w.t && eff_since(w) > 2 * BOUND_NS) {
				fprintf(stderr, "torture: a WAIT request has not returned for %u ms: hang\n",
					2 * BOUND_MS);
				printf("torture: wait_hang 1\ntorture: FAIL\n");
				fflush(stdout);
				_exit(1);
			}
		}
		h_sleep_us(100000);
	}
	return NULL;
}

static uint64_t failures(void)
{
	return stranded + lost_wakeups + payload_regress + wait_early +
	       wait_hang + poisoned_reads + alive_after_dead + lost_interrupts;
}

/* After VM_DEAD: any guest progress over 20 ms counts as alive. */
static void count_guest_progress(void)
{
	uint64_t it[MAX_V];
	unsigned int i;

	for (i = 0; i < M; i++)
		it[i] = h_guest_iters(&H, i);
	h_sleep_us(20000);
	for (i = 0; i < M; i++)
		if (h_guest_iters(&H, i) != it[i])
			atomic_fetch_add(&alive_after_dead, 1);
}

/* -T: stop the trace and write it (its structure is checked by
 * tools/trace-check.py --structure-only in CTest). */
static const char *trace_path;

static int write_trace(void)
{
	struct vcpureq_trace_counts tc;
	FILE *f = fopen(trace_path, "w");
	long n;

	vcpureq_trace_stop(H.vm);
	if (!f)
		return -1;
	n = vcpureq_trace_write_json(H.vm, f);
	if (fclose(f) || n <= 0) {
		fprintf(stderr, "torture: trace export: %ld (%s)\n", n,
			vcpureq_errmsg());
		return -1;
	}
	vcpureq_trace_counts(H.vm, &tc, sizeof(tc));
	printf("torture: trace: %ld events in %s (%llu recorded, %llu overwritten or dropped)\n",
	       n, trace_path, (unsigned long long)tc.recorded,
	       (unsigned long long)tc.lost);
	return 0;
}

static bool finished(struct h_vm *h, unsigned int id)
{
	return atomic_load(&h->vcpus[id].finished);
}

int main(int argc, char **argv)
{
	struct vcpureq_vm_opts o = { .handle_requests = handler };
	pthread_t req[MAX_R], post[MAX_R], ping, hping, wt, mon, wd, prb;
	uint64_t fails;
	unsigned int i;
	int c, r, w;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "m:r:t:s:b:k:i:T:B:")) != -1) {
		switch (c) {
		case 'm': M = (unsigned int)atoi(optarg); break;
		case 'r': R = (unsigned int)atoi(optarg); break;
		case 't': seconds = (unsigned int)atoi(optarg); break;
		case 's': seed0 = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'b':
			backend = strcmp(optarg, "thread") ? VCPUREQ_BACKEND_KVM :
							     VCPUREQ_BACKEND_THREAD;
			break;
		case 'k':
			kick_signal = !strcmp(optarg, "usr1") ? SIGUSR1 :
				      !strcmp(optarg, "usr2") ? SIGUSR2 :
				      atoi(optarg);
			break;
		case 'i': P = (unsigned int)atoi(optarg); break;
		case 'T': trace_path = optarg; break;
		case 'B': bound_ms = (unsigned int)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-m vcpus 4..%d] [-r requesters 2..%d] [-t seconds] [-s seed] [-b kvm|thread] [-k usr1|usr2|signal] [-i posters 0..%d] [-T trace.json] [-B bound_ms]\n",
				argv[0], MAX_V, MAX_R, MAX_R);
			return 2;
		}
	}
	first_random = P ? V_IRQ + 1 : V_IRQ;
	if (M < first_random + 1 || M > MAX_V || R < 2 || R > MAX_R || P > MAX_R) {
		fprintf(stderr, "torture: need %u <= m <= %d, 2 <= r <= %d, 0 <= i <= %d\n",
			first_random + 1, MAX_V, MAX_R, MAX_R);
		return 2;
	}
	o.kick_signal = kick_signal;
	cur_table = calloc(1, sizeof(struct table));
	r = h_vm_create(&H, backend, M, H_SPIN, &o);
	if (r == H_SKIP)
		return 77;
	if (r) {
		fprintf(stderr, "torture: %s (%d)\n", vcpureq_errmsg(), r);
		return 1;
	}
	if (trace_path) {
		/* The whole run with the trace recording (a flight recorder:
		 * the rings keep the last 16384 events each). */
		struct vcpureq_trace_opts to = VCPUREQ_TRACE_OPTS_INIT;

		to.ring_events = 1u << 14;
		if ((r = vcpureq_trace_start(H.vm, &to))) {
			fprintf(stderr, "torture: trace: %s (%d)\n",
				vcpureq_errmsg(), r);
			return 1;
		}
	}
	h_set_prog(&H, V_HALT, H_HALT);
	if (P)
		h_set_prog(&H, V_IRQ, H_IRQ);
	for (i = first_random; i < M; i++)
		h_set_prog(&H, i, (enum h_prog)(i % 3 == 0 ? H_HALT :
						 i % 3 == 1 ? H_OUT : H_SPIN));
	H.hooks.on_exit = on_exit_hook;
	if (h_start(&H)) {
		fprintf(stderr, "torture: start: %s\n", vcpureq_errmsg());
		return 1;
	}
	printf("torture: %u vCPUs, %u requesters, %u posters, %u s, seed %u, %s backend, kick signal %d\n",
	       M, R, P, seconds, seed0,
	       backend == VCPUREQ_BACKEND_KVM ? "kvm" : "thread",
	       vcpureq_vm_kick_signal(H.vm));
	pthread_create(&prb, NULL, probe, NULL);
	pthread_create(&ping, NULL, pinger, NULL);
	pthread_create(&hping, NULL, halt_pinger, NULL);
	for (i = 0; i < P; i++)
		pthread_create(&post[i], NULL, poster, (void *)(uintptr_t)i);
	pthread_create(&wt, NULL, waiter, NULL);
	pthread_create(&mon, NULL, monitor, NULL);
	pthread_create(&wd, NULL, watchdog, NULL);
	for (i = 0; i < R; i++)
		pthread_create(&req[i], NULL, requester, (void *)(uintptr_t)i);
	/* Stop at the budget, or at the first failure (the mutants). */
	for (i = 0; i < seconds * 10 && !failures(); i++)
		h_sleep_us(100000);
	atomic_store(&stop, 1);
	for (i = 0; i < R; i++)
		pthread_join(req[i], NULL);
	pthread_join(ping, NULL);
	pthread_join(hping, NULL);
	for (i = 0; i < P; i++)
		pthread_join(post[i], NULL);
	pthread_join(wt, NULL);
	pthread_join(mon, NULL);
	check_interrupts();

	/* VM_DEAD: once it returns no vCPU runs guest code again.  (A vCPU
	 * may still publish IN_GUEST_MODE for an instant before its final
	 * check aborts the entry, so progress, not the mode, is checked.) */
	vcpureq_vm_dead(H.vm);
	count_guest_progress();
	for (i = 0; i < M; i++)
		vcpureq_request(VCPUREQ_REQ_UNBLOCK, vcpureq_vm_vcpu(H.vm, i));
	for (i = 0; i < M; i++)
		if (!h_wait_until(finished, &H, i, BOUND_MS)) {
			fprintf(stderr, "torture: vCPU %u did not stop after VM_DEAD\n", i);
			atomic_fetch_add(&alive_after_dead, 1);
		}
	count_guest_progress();
	if (trace_path && write_trace())
		atomic_fetch_add(&alive_after_dead, 1); /* counted as a failure */
	atomic_store(&stop, 2);
	pthread_join(wd, NULL);
	pthread_join(prb, NULL);

	printf("torture: made %llu, handled %llu (coalesced %llu), WAIT calls %llu, walks %llu\n",
	       (unsigned long long)made_total, (unsigned long long)handled_total,
	       (unsigned long long)(made_total - handled_total),
	       (unsigned long long)waits_total, (unsigned long long)walks);
	printf("torture: late requests (handled past %u ms of wall time) %llu, max latency %llu ms; machine lateness %llu ms in all, %llu ms at most\n",
	       BOUND_MS, (unsigned long long)late_requests,
	       (unsigned long long)(max_latency_ns / 1000000),
	       (unsigned long long)(stall_ns / 1000000),
	       (unsigned long long)(stall_max_ns / 1000000));
	printf("torture: race windows hit:");
	for (w = 0; w < VCPUREQ__WIN_NR; w++)
		printf(" %llu", (unsigned long long)windows_hit[w]);
	printf("\n");
	fails = failures();
	printf("torture: stranded %llu lost_wakeups %llu payload_regress %llu wait_early %llu wait_hang %llu poisoned_reads %llu alive_after_dead %llu lost_interrupts %llu\n",
	       (unsigned long long)stranded, (unsigned long long)lost_wakeups,
	       (unsigned long long)payload_regress, (unsigned long long)wait_early,
	       (unsigned long long)wait_hang, (unsigned long long)poisoned_reads,
	       (unsigned long long)alive_after_dead,
	       (unsigned long long)lost_interrupts);
	printf("torture: %s\n", fails ? "FAIL" : "PASS");
	h_join_all(&H);
	h_vm_destroy(&H);
	while (retired) {
		struct table *t = retired;

		retired = t->next_free;
		free(t);
	}
	free(cur_table);
	return fails ? 1 : 0;
}
