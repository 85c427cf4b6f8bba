/* SPDX-License-Identifier: MIT */
/*
 * Coherence of the request protocol under real concurrency: no request is
 * stranded in guest mode, payloads travel with (coalesced) requests, one
 * signal per guest-mode instance however many requesters, no lost wake-up,
 * and a vCPU's requests to itself neither signal nor wait on itself.
 *
 * Timing is never asserted: every wait is bounded by a generous hang
 * detector (HANG_NS) and the assertions are invariants that hold on any
 * machine speed.  Random delays vary where requests land; the seed is
 * printed.
 */
#include "harness.h"

#include <stdalign.h>
#include <sched.h>
#include <stdarg.h>

#define HANG_MS (10000 * h_time_scale()) /* 10 s: a lost request/wake-up, not slowness */
#define HANG_NS (HANG_MS * 1000000ull)

/* ---- helpers ---- */

static uint64_t rnd_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(2685821657736338717);
}

static uint64_t seed(void)
{
	uint64_t s = h_now_ns() | 1;

	printf("seed %llu\n", (unsigned long long)s);
	return s;
}

static void busy_ns(uint64_t ns)
{
	uint64_t end;

	if (!ns)
		return;
	end = h_now_ns() + ns;
	while (h_now_ns() < end)
		;
}

/*
 * Round-based cases run up to their round count, but stop early (never
 * below a minimum) once a time budget is spent, so that a heavily loaded
 * machine (every round waits for the vCPU thread to be scheduled) does
 * not take minutes.  The budget bounds the test's length only: it is
 * never a pass/fail criterion.
 */
#define ROUND_BUDGET_NS 4000000000ull

static bool more_rounds(uint64_t start, int done, int max, int min)
{
	if (done >= max)
		return false;
	if (done < min)
		return true;
	if (h_now_ns() - start < ROUND_BUDGET_NS)
		return true;
	printf("time budget spent: %d of %d rounds (loaded machine?)\n", done,
	       max);
	return false;
}

static void print_stats(const char *what, const struct vcpureq_stats *st)
{
	printf("%s: made %llu handled %llu kicks %llu signals %llu coalesced %llu "
	       "wakeups %llu acks_waited %llu entries %llu aborts %llu exits %llu "
	       "kicked_exits %llu spurious %llu blocks %llu\n",
	       what, (unsigned long long)st->requests_made,
	       (unsigned long long)st->requests_handled,
	       (unsigned long long)st->kicks,
	       (unsigned long long)st->signals_sent,
	       (unsigned long long)st->signals_coalesced,
	       (unsigned long long)st->wakeups,
	       (unsigned long long)st->acks_waited,
	       (unsigned long long)st->entries,
	       (unsigned long long)st->entry_aborts,
	       (unsigned long long)st->exits,
	       (unsigned long long)st->kicked_exits,
	       (unsigned long long)st->spurious_exits,
	       (unsigned long long)st->blocks);
}

/* Failures seen on the vCPU thread (in a handler or guest callback), where
 * CHECK cannot return from the test: the first one is kept and reported. */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int failed;
static char fail_msg[512];

static void hfail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void hfail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fail_lock);
	if (!atomic_load(&failed)) {
		va_start(ap, fmt);
		vsnprintf(fail_msg, sizeof(fail_msg), fmt, ap);
		va_end(ap);
		atomic_store(&failed, 1);
	}
	pthread_mutex_unlock(&fail_lock);
}

#define CHECK_NO_HFAIL()                                                    \
	do {                                                                \
		if (atomic_load(&failed)) {                                 \
			pthread_mutex_lock(&fail_lock);                     \
			fprintf(stderr, "%s:%d: failure on the vCPU thread: %s\n", \
				__FILE__, __LINE__, fail_msg);              \
			pthread_mutex_unlock(&fail_lock);                   \
			return 1;                                           \
		}                                                           \
	} while (0)

/* Stop the VMM loops, counting the stop broadcast's return value (1 if it
 * signalled), so that signal accounting can be exact.  Also checks that no
 * vCPU loop ended with an error. */
static int stop_counted(struct h_vm *h, int *sent)
{
	unsigned int i;
	int r = vcpureq_make_all_cpus_request(h->vm, H_REQ_STOP);

	CHECK(r >= 0);
	h_join_all(h);
	for (i = 0; i < h->nr; i++)
		CHECK_EQ(atomic_load(&h->vcpus[i].run_ret), 0);
	*sent = r;
	return 0;
}

struct start_barrier {
	_Atomic unsigned int arrived;
	unsigned int n;
};

static void barrier_wait(struct start_barrier *b)
{
	atomic_fetch_add(&b->arrived, 1);
	while (atomic_load(&b->arrived) < b->n)
		;
}

/* ====================================================================== */
/* (a) No stranded request: make + kick returns, and the spinning vCPU
 * always comes out of the guest and handles it.  Each round makes two
 * requests: one once the vCPU is back in the guest (it must be signalled
 * out), and one right after that one was handled, racing the vCPU's way
 * back in (handler return, publish IN_GUEST_MODE, final check: the Dekker
 * window, where either the final check sees the bit or the requester sees
 * IN_GUEST_MODE and signals). */

#define REQ_PING VCPUREQ_ARCH_REQ(1)
#define A_ROUNDS 3000
#define A_MIN_ROUNDS 300

static struct h_vm *a_h;
static _Atomic uint64_t a_handled;
static _Atomic uint64_t a_entries_at_handle;
static _Atomic uint64_t a_iters_at_handle;
static uint64_t a_rs = 1; /* vCPU thread only */

static int a_handler(struct vcpureq_vcpu *v, void *opaque)
{
	struct vcpureq_stats st;

	(void)opaque;
	if (vcpureq_check_request(REQ_PING, v) > 0) {
		/* Recorded on the vCPU thread, before it can re-enter: the
		 * requester then waits for entries to move past this. */
		vcpureq_vcpu_stats(v, &st, sizeof(st));
		atomic_store(&a_entries_at_handle, st.entries);
		atomic_store(&a_iters_at_handle, h_guest_iters(a_h, 0));
		/* After a round's first request, linger 0-4 us so that the
		 * racing request lands anywhere from here to the guest. */
		if (atomic_fetch_add(&a_handled, 1) % 2 == 0)
			busy_ns(rnd_next(&a_rs) % 4000);
	}
	return 0;
}

TEST_BOTH(no_stranded_request)
{
	struct vcpureq_vm_opts o = { .handle_requests = a_handler };
	struct vcpureq_vcpu *v;
	struct vcpureq_stats st;
	struct h_vm h;
	uint64_t rs = seed(), nsig = 0, zero_delay = 0, end, t0;
	int i, rounds, stop_sent;
	unsigned int n;

	H_VM(&h, be, 1, H_SPIN, &o);
	a_h = &h;
	v = vcpureq_vm_vcpu(h.vm, 0);
	a_rs = rnd_next(&rs) | 1;
	CHECK_EQ(h_start(&h), 0);
	t0 = h_now_ns();
	for (i = 0; more_rounds(t0, i, A_ROUNDS, A_MIN_ROUNDS); i++) {
		uint64_t ent = atomic_load(&a_entries_at_handle);
		uint64_t it = atomic_load(&a_iters_at_handle);
		uint64_t delay;
		int r;

		/* The vCPU re-entered the guest since it handled the last
		 * request (entries counts entries past the final check), and
		 * on odd rounds the guest code is actually running. */
		end = h_now_ns() + HANG_NS;
		for (n = 1;; n++) {
			if (!(n & 255))
				sched_yield(); /* 2 cores: let the vCPU run */
			vcpureq_vcpu_stats(v, &st, sizeof(st));
			if (st.entries > ent &&
			    (!(i & 1) || h_guest_iters(&h, 0) != it))
				break;
			if (h_now_ns() > end) {
				fprintf(stderr, "round %d: vCPU did not re-enter the guest after handling (entries %llu, mode %d)\n",
					i, (unsigned long long)st.entries,
					vcpureq_vcpu_mode(v));
				return 1;
			}
		}
		/* Land at varied points of the instance: right after the
		 * final check (delay 0, before or during KVM_RUN) or later. */
		delay = rnd_next(&rs) % 4 == 0 ? 0 : rnd_next(&rs) % 20000;
		zero_delay += !delay;
		busy_ns(delay);
		r = vcpureq_request(REQ_PING, v);
		CHECK(r == 0 || r == 1);
		nsig += (uint64_t)r;
		if (!h_wait_ge(&a_handled, 2 * (uint64_t)i + 1, HANG_MS)) {
			vcpureq_vcpu_stats(v, &st, sizeof(st));
			fprintf(stderr, "round %d: request (in guest) stranded: not handled after 10 s (mode %d, handled %llu)\n",
				i, vcpureq_vcpu_mode(v),
				(unsigned long long)atomic_load(&a_handled));
			print_stats("stats", &st);
			return 1;
		}
		CHECK_EQ(atomic_load(&a_handled), 2 * i + 1);
		/* The racing one, at once (the handler lingers a random
		 * time before returning). */
		r = vcpureq_request(REQ_PING, v);
		CHECK(r == 0 || r == 1);
		nsig += (uint64_t)r;
		if (!h_wait_ge(&a_handled, 2 * (uint64_t)i + 2, HANG_MS)) {
			vcpureq_vcpu_stats(v, &st, sizeof(st));
			fprintf(stderr, "round %d: request (racing re-entry) stranded: not handled after 10 s (mode %d, handled %llu)\n",
				i, vcpureq_vcpu_mode(v),
				(unsigned long long)atomic_load(&a_handled));
			print_stats("stats", &st);
			return 1;
		}
		CHECK_EQ(atomic_load(&a_handled), 2 * i + 2);
	}
	rounds = i;
	CHECK_EQ(stop_counted(&h, &stop_sent), 0);
	st = h_stats(&h, 0);
	print_stats("stats", &st);
	printf("rounds %d of 2 requests (first one with delay 0: %llu), signals returned %llu\n", rounds,
	       (unsigned long long)zero_delay, (unsigned long long)nsig);
	CHECK_EQ(atomic_load(&a_handled), 2 * rounds);
	/* Every request made (pings + stop) was handled, none coalesced. */
	CHECK_EQ(st.requests_made, 2 * rounds + 1);
	CHECK_EQ(st.requests_handled, 2 * rounds + 1);
	/* The vCPU re-entered between rounds (checked before each round's
	 * first request): at least one entry per round. */
	CHECK(st.entries >= (uint64_t)rounds);
	/* The return value is "a signal was sent", exactly, and never more
	 * than one per request. */
	CHECK_EQ(st.signals_sent, nsig + (uint64_t)stop_sent);
	CHECK(st.signals_sent <= 2 * (uint64_t)rounds + 1);
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* (b) Payloads travel with coalesced requests. */

#define B_NREQ 3
#define B_N 2000
#define REQ_FIN VCPUREQ_ARCH_REQ(5)

static const unsigned int b_req[B_NREQ] = {
	VCPUREQ_ARCH_REQ(2), VCPUREQ_ARCH_REQ(3), VCPUREQ_ARCH_REQ(4),
};

struct b_slot {
	alignas(64) _Atomic uint64_t payload; /* written by its requester */
	uint64_t last;                        /* vCPU thread only */
	_Atomic uint64_t handled;             /* vCPU thread writes */
};

static struct b_slot b_slots[B_NREQ];
static _Atomic uint64_t b_fin;
static struct vcpureq_vcpu *b_vcpu;
static struct start_barrier b_bar;

static void b_consume(struct vcpureq_vcpu *v, int j)
{
	struct b_slot *s = &b_slots[j];
	uint64_t p;

	if (vcpureq_check_request(b_req[j], v) <= 0)
		return;
	/* check_request() returned 1: the payload written before the make
	 * that set the bit (and before every earlier make) is visible. */
	p = atomic_load_explicit(&s->payload, memory_order_relaxed);
	if (p < 1 || p > B_N)
		hfail("slot %d: bit set but payload %llu is not one its requester published (1..%d)",
		      j, (unsigned long long)p, B_N);
	if (p < s->last)
		hfail("slot %d: payload went back from %llu to %llu",
		      j, (unsigned long long)s->last, (unsigned long long)p);
	s->last = p;
	atomic_fetch_add(&s->handled, 1);
}

static int b_handler(struct vcpureq_vcpu *v, void *opaque)
{
	int j;

	(void)opaque;
	for (j = 0; j < B_NREQ; j++)
		b_consume(v, j);
	if (vcpureq_check_request(REQ_FIN, v) > 0) {
		/*
		 * FIN was made after every requester finished (joined), so its
		 * acquire makes every last make (seq N) happen before this
		 * point: each slot's bit is either still set (consume it now,
		 * its payload must be N) or was consumed by an earlier check
		 * that came after that last make and so already read N.
		 */
		for (j = 0; j < B_NREQ; j++)
			b_consume(v, j);
		for (j = 0; j < B_NREQ; j++)
			if (b_slots[j].last != B_N)
				hfail("slot %d: after FIN the last payload seen is %llu, not %d: the final request or its payload was lost",
				      j, (unsigned long long)b_slots[j].last, B_N);
		atomic_fetch_add(&b_fin, 1);
	}
	return 0;
}

struct b_arg {
	int j;
	uint64_t rs;
	int err;
};

static void *b_requester(void *p)
{
	struct b_arg *a = p;
	struct b_slot *s = &b_slots[a->j];
	uint64_t seq;

	barrier_wait(&b_bar);
	for (seq = 1; seq <= B_N; seq++) {
		int r;

		atomic_store_explicit(&s->payload, seq, memory_order_relaxed);
		r = vcpureq_request(b_req[a->j], b_vcpu);
		if (r < 0 && !a->err)
			a->err = r;
		/* Vary the interleaving: bursts and gaps up to 10 us. */
		if (rnd_next(&a->rs) % 2 == 0)
			busy_ns(rnd_next(&a->rs) % 10000);
	}
	return NULL;
}

TEST_BOTH(payload_coalescing)
{
	struct vcpureq_vm_opts o = { .handle_requests = b_handler };
	struct b_arg args[B_NREQ];
	pthread_t t[B_NREQ];
	struct vcpureq_stats st;
	struct h_vm h;
	uint64_t rs = seed(), handled = 0;
	int j, r, stop_sent;

	H_VM(&h, be, 1, H_SPIN, &o);
	b_vcpu = vcpureq_vm_vcpu(h.vm, 0);
	b_bar.n = B_NREQ;
	CHECK_EQ(h_start(&h), 0);
	for (j = 0; j < B_NREQ; j++) {
		args[j] = (struct b_arg){ .j = j, .rs = rnd_next(&rs) | 1 };
		CHECK_EQ(pthread_create(&t[j], NULL, b_requester, &args[j]), 0);
	}
	for (j = 0; j < B_NREQ; j++) {
		pthread_join(t[j], NULL);
		CHECK_EQ(args[j].err, 0);
	}
	/* The final WAIT broadcast, after every requester is done. */
	r = vcpureq_make_all_cpus_request(h.vm, REQ_FIN | VCPUREQ_REQUEST_WAIT);
	CHECK(r == 0 || r == 1);
	if (!h_wait_ge(&b_fin, 1, HANG_MS)) {
		fprintf(stderr, "FIN not handled within 10 s (mode %d)\n",
			vcpureq_vcpu_mode(b_vcpu));
		return 1;
	}
	CHECK_NO_HFAIL();
	CHECK_EQ(stop_counted(&h, &stop_sent), 0);
	CHECK_NO_HFAIL();
	CHECK_EQ(atomic_load(&b_fin), 1);
	for (j = 0; j < B_NREQ; j++) {
		uint64_t n = atomic_load(&b_slots[j].handled);

		printf("slot %d: made %d handled %llu (coalesced %llu) last payload %llu\n",
		       j, B_N, (unsigned long long)n,
		       (unsigned long long)(B_N - n),
		       (unsigned long long)b_slots[j].last);
		CHECK(n >= 1 && n <= B_N);
		CHECK_EQ(b_slots[j].last, B_N);
		handled += n;
	}
	st = h_stats(&h, 0);
	print_stats("stats", &st);
	printf("coalescing: %d requests made, %llu handled\n", B_NREQ * B_N,
	       (unsigned long long)handled);
	/* Counters agree: payload requests + FIN + stop. */
	CHECK_EQ(st.requests_made, B_NREQ * B_N + 2);
	CHECK_EQ(st.requests_handled, handled + 2);
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* (c) IPI reduction: K requesters, one spinning vCPU, no WAIT. */

#define C_K 4
#define C_M 5000
#define REQ_HAMMER VCPUREQ_ARCH_REQ(6)

static _Atomic uint64_t c_handled;
static struct vcpureq_vcpu *c_vcpu;
static struct start_barrier c_bar;

static int c_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_HAMMER, v) > 0)
		atomic_fetch_add(&c_handled, 1);
	return 0;
}

struct c_arg {
	uint64_t sent;
	uint64_t rs;
	int err;
};

static void *c_requester(void *p)
{
	struct c_arg *a = p;
	int i;

	barrier_wait(&c_bar);
	for (i = 0; i < C_M; i++) {
		int r = vcpureq_request(REQ_HAMMER, c_vcpu);

		if (r < 0 || r > 1) {
			a->err = r < 0 ? r : -1000;
			return NULL;
		}
		a->sent += (uint64_t)r;
		/* Spread the hammering over many guest-mode instances (and
		 * let the vCPU thread run on 2 cores): gaps of 0-5 us. */
		busy_ns(rnd_next(&a->rs) % 5000);
	}
	return NULL;
}

TEST_BOTH(ipi_reduction)
{
	struct vcpureq_vm_opts o = { .handle_requests = c_handler };
	struct c_arg args[C_K];
	pthread_t t[C_K];
	struct vcpureq_stats st;
	struct h_vm h;
	uint64_t rs = seed(), sent = 0, instances, outside;
	int k, stop_sent;

	H_VM(&h, be, 1, H_SPIN, &o);
	c_vcpu = vcpureq_vm_vcpu(h.vm, 0);
	c_bar.n = C_K;
	CHECK_EQ(h_start(&h), 0);
	memset(args, 0, sizeof(args));
	for (k = 0; k < C_K; k++)
		args[k].rs = rnd_next(&rs) | 1;
	for (k = 0; k < C_K; k++)
		CHECK_EQ(pthread_create(&t[k], NULL, c_requester, &args[k]), 0);
	for (k = 0; k < C_K; k++) {
		pthread_join(t[k], NULL);
		CHECK_EQ(args[k].err, 0);
		sent += args[k].sent;
	}
	CHECK_EQ(stop_counted(&h, &stop_sent), 0);
	sent += (uint64_t)stop_sent;
	st = h_stats(&h, 0);
	print_stats("stats", &st);
	/* A guest-mode instance is every publish of IN_GUEST_MODE: entries
	 * past the final check plus entries it aborted (a requester may win
	 * the IN -> EXITING CAS, and signal, before the abort). */
	instances = st.entries + st.entry_aborts;
	outside = st.kicks - st.signals_sent - st.signals_coalesced;
	printf("requests %d, handled %llu, signals %llu (returned %llu), coalesced %llu, "
	       "kicks finding it outside %llu, instances %llu (entries %llu + aborts %llu)%s\n",
	       C_K * C_M + 1, (unsigned long long)atomic_load(&c_handled),
	       (unsigned long long)st.signals_sent, (unsigned long long)sent,
	       (unsigned long long)st.signals_coalesced,
	       (unsigned long long)outside, (unsigned long long)instances,
	       (unsigned long long)st.entries,
	       (unsigned long long)st.entry_aborts,
	       st.signals_sent > st.entries ?
		       " [signals > entries: some went to aborted entries]" : "");
	/* Exact accounting. */
	CHECK_EQ(st.requests_made, C_K * C_M + 1);
	CHECK_EQ(st.kicks, C_K * C_M + 1);
	CHECK_EQ(st.signals_sent, sent);
	/* Every kick either signalled, coalesced with the signal on its way,
	 * or found the vCPU outside guest mode: never more than one of them. */
	CHECK(st.signals_sent + st.signals_coalesced <= st.kicks);
	/* At most one signal per guest-mode instance. */
	CHECK(st.signals_sent <= instances);
	CHECK(atomic_load(&c_handled) >= 1);
	CHECK(atomic_load(&c_handled) <= C_K * C_M);
	/* With contention (a kick found the signal already on its way), the
	 * requests outnumber the signals. */
	if (st.signals_coalesced > 0)
		CHECK(st.signals_sent < st.requests_made);
	else
		printf("no contention on this run: signals < requests not asserted\n");
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* (d) No lost wake-up: a halting vCPU sleeps in vcpureq_vcpu_block(); a
 * waking request lands at random points around the halt. */

#define REQ_WAKE VCPUREQ_ARCH_REQ(7)
#define D_ROUNDS 3000
#define D_MIN_ROUNDS 300

static _Atomic uint64_t d_handled;

static int d_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_WAKE, v) > 0)
		atomic_fetch_add(&d_handled, 1);
	return 0;
}

TEST_BOTH(no_lost_wakeup)
{
	struct vcpureq_vm_opts o = { .handle_requests = d_handler };
	struct vcpureq_vcpu *v;
	struct vcpureq_stats st;
	struct h_vm h;
	uint64_t rs = seed(), forced = 0, zero_delay = 0, t0;
	int i, rounds, stop_sent;

	H_VM(&h, be, 1, H_HALT, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(h_start(&h), 0);
	t0 = h_now_ns();
	for (i = 0; more_rounds(t0, i, D_ROUNDS, D_MIN_ROUNDS); i++) {
		uint64_t delay;
		int r = 0;

		if (i % 100 == 50) {
			/* Now and then, certainly asleep: the futex path. */
			if (!h_wait_until(h_sleeping, &h, 0, 10000)) {
				fprintf(stderr, "round %d: vCPU never went to sleep (mode %d)\n",
					i, vcpureq_vcpu_mode(v));
				return 1;
			}
			forced++;
			delay = 0;
		} else {
			delay = rnd_next(&rs) % 8 == 0 ? 0 :
				rnd_next(&rs) % 200000;
		}
		zero_delay += !delay;
		busy_ns(delay);
		switch (i % 3) {
		case 0:
			r = vcpureq_request(REQ_WAKE, v);
			break;
		case 1:
			CHECK_EQ(vcpureq_make_request(REQ_WAKE, v), 0);
			r = vcpureq_vcpu_kick(v);
			break;
		case 2:
			r = vcpureq_make_all_cpus_request(h.vm, REQ_WAKE);
			break;
		}
		CHECK(r == 0 || r == 1);
		if (!h_wait_ge(&d_handled, (uint64_t)i + 1, HANG_MS)) {
			st = h_stats(&h, 0);
			fprintf(stderr, "round %d (delay %llu ns, api %d): lost wake-up: not handled after 10 s (mode %d, blocking %d)\n",
				i, (unsigned long long)delay, i % 3,
				vcpureq_vcpu_mode(v), vcpureq_vcpu_is_blocking(v));
			print_stats("stats", &st);
			return 1;
		}
		CHECK_EQ(atomic_load(&d_handled), i + 1);
	}
	rounds = i;
	CHECK_EQ(stop_counted(&h, &stop_sent), 0);
	st = h_stats(&h, 0);
	print_stats("stats", &st);
	printf("rounds %d (delay 0: %llu, certainly asleep: %llu)\n", rounds,
	       (unsigned long long)zero_delay, (unsigned long long)forced);
	CHECK_EQ(atomic_load(&d_handled), rounds);
	CHECK_EQ(st.requests_made, rounds + 1);
	CHECK_EQ(st.requests_handled, rounds + 1);
	/* The sleeping path was exercised: each certainly-asleep round was
	 * a futex wake-up by its requester. */
	CHECK(st.blocks >= forced);
	CHECK(st.wakeups >= forced);
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* (e) A vCPU's requests to itself, from its request handler. */

#define REQ_TRIG VCPUREQ_ARCH_REQ(10)
#define E_ROUNDS 50
#define E_MIN_ROUNDS 10
#define E_NSELF 4

static const unsigned int e_req[E_NSELF] = {
	VCPUREQ_ARCH_REQ(11), VCPUREQ_ARCH_REQ(12), VCPUREQ_ARCH_REQ(13),
	VCPUREQ_ARCH_REQ(14),
};
static struct vcpureq_vm *e_vm;
static uint64_t e_calls;          /* vCPU 0 handler calls (vCPU 0 only) */
static uint64_t e_made_call, e_made_entries;
static unsigned int e_pending;    /* self-made requests not yet handled */
static _Atomic uint64_t e_handled[E_NSELF];
static _Atomic uint64_t e_rounds_done;
static _Atomic uint64_t e_d_on_v1;
static _Atomic uint64_t e_bcast_round;  /* rounds whose broadcast was made */
static _Atomic uint64_t e_v1_round_seen; /* vCPU 1: round at its last D */
static _Atomic int e_stage;       /* where vCPU 0 is, for hang reports */
static _Atomic uint64_t e_bcast_signals;
/* Triggers whose vcpureq_request() has returned (main thread): a kick
 * counts its signal after its CAS, so a trigger's signal to an instance
 * that then aborted at its final check (and ran this handler) may be
 * counted while the handler runs; the handler waits for the trigger's
 * return before it reads its counters. */
static _Atomic uint64_t e_trig_returned;

static void e_self_requests(struct vcpureq_vcpu *v, uint64_t entries)
{
	struct vcpureq_vcpu *v1 = vcpureq_vm_vcpu(e_vm, 1);
	struct vcpureq_stats s0, s1, t0, t1;
	const unsigned int zero = 0;
	int r[5], k;

	if (e_pending)
		hfail("trigger while self-made requests are still pending");
	if (vcpureq_vcpu_mode(v) != VCPUREQ_OUTSIDE_GUEST_MODE)
		hfail("handler runs in mode %d", vcpureq_vcpu_mode(v));
	while (atomic_load(&e_trig_returned) <= atomic_load(&e_rounds_done))
		sched_yield();
	vcpureq_vcpu_stats(v, &s0, sizeof(s0));
	vcpureq_vcpu_stats(v1, &t0, sizeof(t0));
	atomic_store(&e_stage, 1);
	r[0] = vcpureq_request(e_req[0], v);
	atomic_store(&e_stage, 2);
	r[1] = vcpureq_request(e_req[1] | VCPUREQ_REQUEST_WAIT, v);
	atomic_store(&e_stage, 3);
	r[2] = vcpureq_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, v);
	atomic_store(&e_stage, 4);
	/* Published by the broadcast's release: vCPU 1 reads it after
	 * consuming D. */
	atomic_fetch_add_explicit(&e_bcast_round, 1, memory_order_relaxed);
	/* Both vCPUs: waits for vCPU 1 if it was in guest mode, never for
	 * itself. */
	r[3] = vcpureq_make_all_cpus_request(e_vm,
					     e_req[2] | VCPUREQ_REQUEST_WAIT);
	atomic_store(&e_stage, 5);
	r[4] = vcpureq_make_vcpus_request(e_vm, e_req[3] | VCPUREQ_REQUEST_WAIT,
					  &zero, 1);
	atomic_store(&e_stage, 6);
	vcpureq_vcpu_stats(v, &s1, sizeof(s1));
	vcpureq_vcpu_stats(v1, &t1, sizeof(t1));

	for (k = 0; k < 5; k++)
		if (r[k] != 0 && !(k == 3 && r[k] == 1))
			hfail("self request %d returned %d (want 0: no signal to itself)",
			      k, r[k]);
	if (s1.signals_sent != s0.signals_sent)
		hfail("a request to itself sent %llu signal(s) to itself",
		      (unsigned long long)(s1.signals_sent - s0.signals_sent));
	if (s1.acks_waited != s0.acks_waited)
		hfail("a WAIT request to itself waited on itself");
	/* The broadcast's return value is whether it signalled vCPU 1
	 * (nobody else targets vCPU 1 meanwhile). */
	if (t1.signals_sent - t0.signals_sent != (uint64_t)r[3])
		hfail("broadcast returned %d but sent %llu signals to vCPU 1",
		      r[3], (unsigned long long)(t1.signals_sent - t0.signals_sent));
	atomic_fetch_add(&e_bcast_signals, (uint64_t)r[3]);
	/* NO_ACTION (REQ_OUTSIDE_GUEST_MODE) set no bit: exactly 4 made. */
	if (s1.requests_made != s0.requests_made + E_NSELF)
		hfail("requests_made moved by %llu, want %d",
		      (unsigned long long)(s1.requests_made - s0.requests_made),
		      E_NSELF);
	for (k = 0; k < E_NSELF; k++)
		if (vcpureq_test_request(e_req[k], v) != 1)
			hfail("self request %d not pending after it was made", k);
	e_pending = (1u << E_NSELF) - 1;
	e_made_call = e_calls;
	e_made_entries = entries;
}

static int e_handler(struct vcpureq_vcpu *v, void *opaque)
{
	struct vcpureq_stats st;
	int k;

	(void)opaque;
	if (vcpureq_vcpu_index(v) == 1) {
		if (vcpureq_check_request(e_req[2], v) > 0) {
			uint64_t rd = atomic_load_explicit(&e_bcast_round,
							   memory_order_relaxed);

			if (rd < atomic_load(&e_v1_round_seen) || rd == 0)
				hfail("vCPU 1: D handled with broadcast round %llu (last seen %llu)",
				      (unsigned long long)rd,
				      (unsigned long long)atomic_load(&e_v1_round_seen));
			atomic_store(&e_v1_round_seen, rd);
			atomic_fetch_add(&e_d_on_v1, 1);
		}
		return 0;
	}
	e_calls++;
	vcpureq_vcpu_stats(v, &st, sizeof(st));
	/* First the requests this vCPU made of itself in an earlier call:
	 * they must be handled in the very next call, before any guest
	 * entry (a pending request aborts entry). */
	for (k = 0; k < E_NSELF; k++) {
		if (vcpureq_check_request(e_req[k], v) <= 0)
			continue;
		if (!(e_pending & (1u << k)))
			hfail("self request %d handled but not made", k);
		if (e_calls != e_made_call + 1)
			hfail("self request %d made in call %llu handled in call %llu, not the next",
			      k, (unsigned long long)e_made_call,
			      (unsigned long long)e_calls);
		if (st.entries != e_made_entries)
			hfail("the guest was entered (%llu -> %llu) with self request %d pending",
			      (unsigned long long)e_made_entries,
			      (unsigned long long)st.entries, k);
		e_pending &= ~(1u << k);
		atomic_fetch_add(&e_handled[k], 1);
		if (!e_pending)
			atomic_fetch_add(&e_rounds_done, 1);
	}
	if (e_pending && e_calls > e_made_call)
		hfail("self requests 0x%x not handled in the next call", e_pending);
	if (vcpureq_check_request(REQ_TRIG, v) > 0)
		e_self_requests(v, st.entries);
	return 0;
}

static bool e_progressing(struct h_vm *h, unsigned int id)
{
	return h_in_guest(h, id) && h_guest_iters(h, id) > 0;
}

TEST_BOTH(self_request_no_signal)
{
	struct vcpureq_vm_opts o = { .handle_requests = e_handler };
	struct vcpureq_vcpu *v0;
	struct vcpureq_stats st0, st1;
	struct h_vm h;
	uint64_t t0;
	int i, k, rounds, stop_sent;

	H_VM(&h, be, 2, H_SPIN, &o);
	e_vm = h.vm;
	v0 = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(e_progressing, &h, 1, 10000));
	t0 = h_now_ns();
	for (i = 0; more_rounds(t0, i, E_ROUNDS, E_MIN_ROUNDS); i++) {
		int r = vcpureq_request(REQ_TRIG, v0);

		atomic_fetch_add(&e_trig_returned, 1);
		CHECK(r == 0 || r == 1);
		if (!h_wait_ge(&e_rounds_done, (uint64_t)i + 1, HANG_MS)) {
			fprintf(stderr, "round %d: vCPU 0 stuck at stage %d of its self requests (1-5: inside request %d) for 10 s: a request to itself waited on itself?\n",
				i, atomic_load(&e_stage), atomic_load(&e_stage));
			CHECK_NO_HFAIL();
			return 1;
		}
		CHECK_NO_HFAIL();
	}
	rounds = i;
	/* vCPU 1 handles its copy of the last broadcast: its D is not
	 * stranded (earlier ones may have coalesced while it was outside). */
	if (!h_wait_ge(&e_v1_round_seen, (uint64_t)rounds, HANG_MS)) {
		fprintf(stderr, "vCPU 1 did not handle the last broadcast within 10 s (saw round %llu, mode %d)\n",
			(unsigned long long)atomic_load(&e_v1_round_seen),
			vcpureq_vcpu_mode(vcpureq_vm_vcpu(h.vm, 1)));
		return 1;
	}
	CHECK_NO_HFAIL();
	CHECK_EQ(stop_counted(&h, &stop_sent), 0);
	CHECK_NO_HFAIL();
	st0 = h_stats(&h, 0);
	st1 = h_stats(&h, 1);
	print_stats("vcpu0", &st0);
	print_stats("vcpu1", &st1);
	printf("broadcasts that signalled vCPU 1: %llu of %d; vCPU 1 handled %llu\n",
	       (unsigned long long)atomic_load(&e_bcast_signals), rounds,
	       (unsigned long long)atomic_load(&e_d_on_v1));
	CHECK_EQ(atomic_load(&e_rounds_done), rounds);
	for (k = 0; k < E_NSELF; k++)
		CHECK_EQ(atomic_load(&e_handled[k]), rounds);
	CHECK(atomic_load(&e_d_on_v1) >= 1 &&
	      atomic_load(&e_d_on_v1) <= (uint64_t)rounds);
	/* vCPU 0 was signalled only by the main thread's triggers and the
	 * stop: never by itself. */
	CHECK(st0.signals_sent <= (uint64_t)rounds + 1);
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* (f) Thread backend: a request to itself from inside the guest callback
 * (guest mode) ends the instance at once, without a signal. */

#define REQ_X VCPUREQ_ARCH_REQ(20)
#define REQ_X2 VCPUREQ_ARCH_REQ(21)
#define REQ_Y VCPUREQ_ARCH_REQ(22)
#define REQ_Z VCPUREQ_ARCH_REQ(23)
#define REQ_W VCPUREQ_ARCH_REQ(24)
#define F_VECTOR 0x30
#define F_EXIT_VALUE 42

static const unsigned int f_req[5] = { REQ_X, REQ_X2, REQ_Y, REQ_Z, REQ_W };
static _Atomic unsigned int f_handled_mask;
static _Atomic int f_handled_count[5];
static int f_phase;
static struct vcpureq_vm *f_vm;
static _Atomic int f_done;
static _Atomic int f_run_ret;

static int f_handler(struct vcpureq_vcpu *v, void *opaque)
{
	int k;

	(void)opaque;
	for (k = 0; k < 5; k++)
		if (vcpureq_check_request(f_req[k], v) > 0) {
			atomic_fetch_or(&f_handled_mask, 1u << k);
			atomic_fetch_add(&f_handled_count[k], 1);
		}
	return 0;
}

/* After a request to itself: kicked at once, mode EXITING, no signal. */
static int f_kicked_now(struct vcpureq_vcpu *v, const struct vcpureq_stats *s0,
			int phase)
{
	struct vcpureq_stats s1;

	vcpureq_vcpu_stats(v, &s1, sizeof(s1));
	if (!vcpureq_guest_kicked(v))
		hfail("phase %d: vcpureq_guest_kicked() false right after a request to itself",
		      phase);
	if (vcpureq_vcpu_mode(v) != VCPUREQ_EXITING_GUEST_MODE)
		hfail("phase %d: mode %d after a request to itself, want EXITING",
		      phase, vcpureq_vcpu_mode(v));
	if (s1.signals_sent != s0->signals_sent)
		hfail("phase %d: a request to itself sent a signal", phase);
	if (s1.acks_waited != s0->acks_waited)
		hfail("phase %d: a WAIT request to itself waited on itself", phase);
	return VCPUREQ_GUEST_KICKED;
}

static void f_expect(int phase, int got, int want, const char *what)
{
	if (got != want)
		hfail("phase %d: %s returned %d, want %d", phase, what, got, want);
}

static int f_guest(struct vcpureq_vcpu *v, void *opaque)
{
	struct vcpureq_vm *vm = f_vm;
	struct vcpureq_stats s0;
	int phase = f_phase++;
	unsigned int done = atomic_load(&f_handled_mask);

	(void)opaque;
	if (vcpureq_vcpu_mode(v) != VCPUREQ_IN_GUEST_MODE)
		hfail("phase %d: guest callback in mode %d", phase,
		      vcpureq_vcpu_mode(v));
	if (vcpureq_guest_kicked(v))
		hfail("phase %d: instance starts already kicked", phase);
	vcpureq_vcpu_stats(v, &s0, sizeof(s0));
	switch (phase) {
	case 0:
		f_expect(phase, vcpureq_request(REQ_X, v), 0, "request");
		f_kicked_now(v, &s0, phase);
		/* A second one finds EXITING: coalesced, still no signal. */
		f_expect(phase, vcpureq_request(REQ_X2, v), 0, "second request");
		return f_kicked_now(v, &s0, phase);
	case 1:
		if ((done & 3u) != 3u)
			hfail("phase 1: X/X2 not handled before re-entry (0x%x)", done);
		f_expect(phase, vcpureq_request(REQ_Y | VCPUREQ_REQUEST_WAIT, v),
			 0, "WAIT request");
		return f_kicked_now(v, &s0, phase);
	case 2:
		if (!(done & 4u))
			hfail("phase 2: Y not handled before re-entry (0x%x)", done);
		f_expect(phase, vcpureq_make_request(REQ_Z, v), 0, "make_request");
		if (vcpureq_guest_kicked(v))
			hfail("phase 2: make_request alone (no kick) kicked");
		f_expect(phase, vcpureq_vcpu_kick(v), 0, "kick");
		return f_kicked_now(v, &s0, phase);
	case 3:
		if (!(done & 8u))
			hfail("phase 3: Z not handled before re-entry (0x%x)", done);
		f_expect(phase, vcpureq_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, v),
			 0, "REQ_OUTSIDE_GUEST_MODE");
		f_expect(phase, vcpureq_request_pending(v), 0,
			 "request_pending after NO_ACTION");
		return f_kicked_now(v, &s0, phase);
	case 4:
		f_expect(phase, vcpureq_make_all_cpus_request(
					vm, REQ_W | VCPUREQ_REQUEST_WAIT),
			 0, "WAIT broadcast");
		return f_kicked_now(v, &s0, phase);
	case 5:
		if (!(done & 16u))
			hfail("phase 5: W not handled before re-entry (0x%x)", done);
		f_expect(phase, vcpureq_post_interrupt(v, F_VECTOR), 0,
			 "post_interrupt");
		return f_kicked_now(v, &s0, phase);
	case 6:
		f_expect(phase, vcpureq_vcpu_take_interrupt(v), F_VECTOR,
			 "take_interrupt");
		return F_EXIT_VALUE;
	default:
		hfail("guest callback called again (phase %d) after the exit",
		      phase);
		return F_EXIT_VALUE;
	}
}

static void *f_vcpu_main(void *p)
{
	struct vcpureq_vcpu *v = p;
	int r = vcpureq_vcpu_bind(v);

	if (!r) {
		r = vcpureq_vcpu_run(v);
		vcpureq_vcpu_unbind(v);
	}
	atomic_store(&f_run_ret, r);
	atomic_store(&f_done, 1);
	return NULL;
}

TEST(thread_backend_guest_self_request)
{
	struct vcpureq_vm_opts o;
	struct vcpureq_vm *vm;
	struct vcpureq_vcpu *v;
	struct vcpureq_stats st;
	pthread_t t;
	uint64_t end;
	int k;

	(void)be; /* thread backend only: the guest callback is guest mode */
	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.backend = VCPUREQ_BACKEND_THREAD;
	o.nr_vcpus = 1;
	o.guest = f_guest;
	o.handle_requests = f_handler;
	CHECK_EQ(vcpureq_vm_create(&o, &vm), 0);
	f_vm = vm;
	v = vcpureq_vm_vcpu(vm, 0);
	CHECK_EQ(pthread_create(&t, NULL, f_vcpu_main, v), 0);
	end = h_now_ns() + HANG_NS;
	while (!atomic_load(&f_done) && h_now_ns() < end)
		h_sleep_us(200);
	if (!atomic_load(&f_done)) {
		fprintf(stderr, "vCPU thread stuck in phase %d for 10 s: a request to itself waited on itself?\n",
			f_phase);
		CHECK_NO_HFAIL();
		return 1;
	}
	pthread_join(t, NULL);
	CHECK_NO_HFAIL();
	CHECK_EQ(atomic_load(&f_run_ret), VCPUREQ_RUN_EXIT);
	CHECK_EQ(vcpureq_vcpu_guest_ret(v), F_EXIT_VALUE);
	CHECK_EQ(f_phase, 7);
	for (k = 0; k < 5; k++)
		CHECK_EQ(atomic_load(&f_handled_count[k]), 1);
	vcpureq_vcpu_stats(v, &st, sizeof(st));
	print_stats("stats", &st);
	CHECK_EQ(st.signals_sent, 0);
	CHECK_EQ(st.entries, 7);
	CHECK_EQ(st.kicked_exits, 6);
	/* Only phase 3 (NO_ACTION) left nothing pending. */
	CHECK_EQ(st.spurious_exits, 1);
	/* Phase 0's second request found the instance EXITING. */
	CHECK_EQ(st.signals_coalesced, 1);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}
