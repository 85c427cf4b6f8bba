/* SPDX-License-Identifier: MIT */
/*
 * Direct, deterministic checks of the public functions at their edges,
 * with exact counters: request bits 0..63 made, tested, cleared and
 * checked exactly once; block consuming UNBLOCK and the waking hint once;
 * the mailbox taking each vector once, highest first; walks bumping the
 * epoch once; ids and indexes of sparse vCPUs; broadcasts across the mask
 * word edges (32, 33, 64, 65 vCPUs: first and last vCPU, indexes 31/32 and
 * 63/64); and the counters of a kick and of an aborted entry.
 *
 * The single-threaded checks bind the test's own thread to a vCPU that no
 * other thread runs, so every outcome is decided by the calls alone.  Where
 * a block must sleep, a helper thread ends it with UNBLOCK once (and only
 * if) the vCPU is asleep: the reason block returns tells what woke it.
 */
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define REQ_B VCPUREQ_ARCH_REQ(2)
#define REQ_T VCPUREQ_ARCH_REQ(3)
#define HANG_MS (20000 * h_time_scale())

static struct vcpureq_stats stats(struct vcpureq_vcpu *v)
{
	struct vcpureq_stats st;

	vcpureq_vcpu_stats(v, &st, sizeof(st));
	return st;
}

/* A VM of @n vCPUs that no thread runs (the KVM one has no memory: it is
 * never entered).  Returns 0, H_SKIP or -errno. */
static int bare_vm(enum vcpureq_backend be, unsigned int n,
		   struct vcpureq_vm **vm)
{
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct h_vm probe;
	int r;

	if (be == VCPUREQ_BACKEND_KVM) {
		/* The harness's /dev/kvm check, for the SKIP. */
		r = h_vm_create(&probe, be, 1, H_SPIN, NULL);
		if (r)
			return r;
		h_vm_destroy(&probe);
	}
	o.backend = be;
	o.nr_vcpus = n;
	o.kick = be == VCPUREQ_BACKEND_KVM ? h_kick_mechanism() :
					     VCPUREQ_KICK_DEFAULT;
	return vcpureq_vm_create(&o, vm);
}

#define BARE_VM(be, n, vm)                                                   \
	do {                                                                 \
		int r_ = bare_vm((be), (n), (vm));                           \
		if (r_ == H_SKIP)                                            \
			return H_SKIP;                                       \
		if (r_) {                                                    \
			fprintf(stderr, "vm: %d (%s)\n", r_, vcpureq_errmsg()); \
			return 1;                                            \
		}                                                            \
	} while (0)

/* Every valid request number (3-7 are reserved; 1 is VM_DEAD, sticky). */
static bool valid_nr(unsigned int nr)
{
	return nr == 0 || nr == 2 || (nr >= 8 && nr <= 63);
}

/* make / pending / test / check: each number exactly once, no other bit. */
TEST_BOTH(request_bits_exactly_once)
{
	static const unsigned int nrs[] = { 0, 2, 8, 31, 32, 62, 63 };
	struct vcpureq_vm *vm;
	struct vcpureq_vcpu *v;
	struct vcpureq_stats s;
	unsigned int i, nr;

	BARE_VM(be, 1, &vm);
	v = vcpureq_vm_vcpu(vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	for (i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		CHECK_EQ(vcpureq_request_pending(v), 0);
		CHECK_EQ(vcpureq_make_request(nrs[i], v), 0);
		CHECK_EQ(vcpureq_request_pending(v), 1);
		for (nr = 0; nr < 64; nr++)
			if (valid_nr(nr))
				CHECK_EQ(vcpureq_test_request(nr, v),
					 nr == nrs[i]);
		CHECK_EQ(vcpureq_check_request(nrs[i], v), 1);
		CHECK_EQ(vcpureq_check_request(nrs[i], v), 0);
		CHECK_EQ(vcpureq_test_request(nrs[i], v), 0);
		CHECK_EQ(vcpureq_request_pending(v), 0);
	}
	/* 64 is one past the bitmap. */
	CHECK_EQ(vcpureq_make_request(64, v), -EINVAL);
	CHECK_EQ(vcpureq_test_request(64, v), -EINVAL);
	/* Made twice before a check: coalesced, handled once. */
	CHECK_EQ(vcpureq_make_request(REQ_A, v), 0);
	CHECK_EQ(vcpureq_make_request(REQ_A, v), 0);
	CHECK_EQ(vcpureq_check_request(REQ_A, v), 1);
	CHECK_EQ(vcpureq_check_request(REQ_A, v), 0);
	s = stats(v);
	CHECK_EQ(s.requests_made, 7 + 2);
	CHECK_EQ(s.requests_handled, 7 + 1);
	/* make_request kicks nobody. */
	CHECK_EQ(s.kicks, 0);
	CHECK_EQ(s.signals_sent, 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/* clear_request clears its own bit only, and is not a handling. */
TEST_BOTH(clear_request_clears_one)
{
	struct vcpureq_vm *vm;
	struct vcpureq_vcpu *v;

	BARE_VM(be, 1, &vm);
	v = vcpureq_vm_vcpu(vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_make_request(REQ_A, v), 0);
	CHECK_EQ(vcpureq_make_request(REQ_B, v), 0);
	CHECK_EQ(vcpureq_make_request(63, v), 0);
	CHECK_EQ(vcpureq_clear_request(REQ_A, v), 0);
	CHECK_EQ(vcpureq_test_request(REQ_A, v), 0);
	CHECK_EQ(vcpureq_test_request(REQ_B, v), 1);
	CHECK_EQ(vcpureq_test_request(63, v), 1);
	CHECK_EQ(vcpureq_clear_request(REQ_A, v), 0); /* not pending: no-op */
	CHECK_EQ(vcpureq_clear_request(63, v), 0);
	CHECK_EQ(vcpureq_test_request(REQ_B, v), 1);
	CHECK_EQ(vcpureq_check_request(REQ_B, v), 1);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(stats(v).requests_made, 3);
	CHECK_EQ(stats(v).requests_handled, 1);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/* ---- block: what it consumes, exactly once ---- */

struct rescuer {
	struct vcpureq_vcpu *v;
	pid_t tid;        /* the sleeper's thread */
	_Atomic int quit;
	_Atomic int sent; /* UNBLOCKs sent */
};

/* What the rescuer's UNBLOCK returns: UNBLOCK, and the waking hint it
 * set (it is a request without NO_WAKEUP). */
#define UNBLOCKED (VCPUREQ_WAKE_UNBLOCK | VCPUREQ_WAKE_REQUEST)

/* Sends one UNBLOCK to each block call that it finds asleep (a block call
 * is told apart by the blocks count, bumped when it starts).  Asleep: the
 * blocking flag and the sleeper's thread in its futex wait, past its check
 * of the wake conditions; an UNBLOCK made between the flag and the check
 * is seen by the check, with no wake-up to count. */
static void *rescuer_main(void *arg)
{
	struct rescuer *r = arg;
	uint64_t rescued = 0;

	while (!atomic_load(&r->quit)) {
		uint64_t b = stats(r->v).blocks;

		if (b != rescued && vcpureq_vcpu_is_blocking(r->v) &&
		    h_in_futex_wait(r->tid) &&
		    stats(r->v).blocks == b) {
			rescued = b;
			atomic_fetch_add(&r->sent, 1);
			vcpureq_request(VCPUREQ_REQ_UNBLOCK, r->v);
		}
		h_sleep_us(200);
	}
	return NULL;
}

TEST_BOTH(block_consumes_exactly_once)
{
	struct rescuer rs = { 0 };
	struct vcpureq_vm *vm;
	struct vcpureq_vcpu *v;
	struct vcpureq_stats s;
	pthread_t t;

	BARE_VM(be, 1, &vm);
	v = vcpureq_vm_vcpu(vm, 0);
	rs.v = v;
	rs.tid = (pid_t)syscall(SYS_gettid);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(pthread_create(&t, NULL, rescuer_main, &rs), 0);
	/* A waking request made before: block returns at once, for it
	 * alone, and leaves the bit to the handler. */
	CHECK_EQ(vcpureq_make_request(REQ_A, v), 0);
	CHECK_EQ(vcpureq_vcpu_block(v), VCPUREQ_WAKE_REQUEST);
	CHECK_EQ(atomic_load(&rs.sent), 0);
	CHECK_EQ(vcpureq_check_request(REQ_A, v), 1);
	/* The hint was spent: the next block sleeps, and only the
	 * rescuer's UNBLOCK (a waking request itself) ends it; UNBLOCK is
	 * consumed (no bit left). */
	CHECK_EQ(vcpureq_vcpu_block(v), UNBLOCKED);
	CHECK_EQ(atomic_load(&rs.sent), 1);
	CHECK_EQ(vcpureq_test_request(VCPUREQ_REQ_UNBLOCK, v), 0);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	/* NO_WAKEUP: no hint, it sleeps; the bit stays for the handler. */
	CHECK_EQ(vcpureq_make_request(REQ_B | VCPUREQ_REQUEST_NO_WAKEUP, v), 0);
	CHECK_EQ(vcpureq_vcpu_block(v), UNBLOCKED);
	CHECK_EQ(atomic_load(&rs.sent), 2);
	CHECK_EQ(vcpureq_check_request(REQ_B, v), 1);
	/* UNBLOCK made before the block: consumed by that block only, which
	 * does not sleep; the next one does. */
	CHECK_EQ(vcpureq_make_request(VCPUREQ_REQ_UNBLOCK, v), 0);
	CHECK_EQ(vcpureq_vcpu_block(v), UNBLOCKED);
	CHECK_EQ(atomic_load(&rs.sent), 2);
	CHECK_EQ(vcpureq_vcpu_block(v), UNBLOCKED);
	CHECK_EQ(atomic_load(&rs.sent), 3);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	atomic_store(&rs.quit, 1);
	pthread_join(t, NULL);
	s = stats(v);
	CHECK_EQ(s.blocks, 5);
	CHECK_EQ(s.wakeups, 3);   /* the rescuer's, one per sleep */
	CHECK_EQ(s.halt_poll_hits, 0);
	/* REQ_A, REQ_B, and the four UNBLOCKs block consumed. */
	CHECK_EQ(s.requests_made, 2 + 4);
	CHECK_EQ(s.requests_handled, 2 + 4);
	CHECK_EQ(s.signals_sent, 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/* The mailbox: highest vector first, each posted vector taken once (a
 * vector posted twice while pending is one interrupt), ON consumed. */
TEST_BOTH(mailbox_each_vector_once_highest_first)
{
	static const unsigned int post[] = { 32, 0, 255, 63, 64, 127, 128,
					     31, 200, 64 };
	static const int want[] = { 255, 200, 128, 127, 64, 63, 32, 31, 0 };
	struct rescuer rs = { 0 };
	struct vcpureq_vm *vm;
	struct vcpureq_vcpu *v;
	struct vcpureq_stats s;
	pthread_t t;
	unsigned int i;

	BARE_VM(be, 1, &vm);
	v = vcpureq_vm_vcpu(vm, 0);
	rs.v = v;
	rs.tid = (pid_t)syscall(SYS_gettid);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_vcpu_take_interrupt(v), -ENOENT);
	for (i = 0; i < sizeof(post) / sizeof(post[0]); i++)
		CHECK_EQ(vcpureq_post_interrupt(v, post[i]), 0);
	CHECK_EQ(vcpureq_post_interrupt(v, 256), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_block(v), VCPUREQ_WAKE_INTERRUPT);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		CHECK_EQ(vcpureq_vcpu_take_interrupt(v), want[i]);
	CHECK_EQ(vcpureq_vcpu_take_interrupt(v), -ENOENT);
	/* Nothing pending any more: block sleeps (ON was consumed). */
	CHECK_EQ(pthread_create(&t, NULL, rescuer_main, &rs), 0);
	CHECK_EQ(vcpureq_vcpu_block(v), UNBLOCKED);
	CHECK_EQ(atomic_load(&rs.sent), 1);
	/* One more, taken once. */
	CHECK_EQ(vcpureq_post_interrupt(v, 7), 0);
	CHECK_EQ(vcpureq_vcpu_take_interrupt(v), 7);
	CHECK_EQ(vcpureq_vcpu_take_interrupt(v), -ENOENT);
	atomic_store(&rs.quit, 1);
	pthread_join(t, NULL);
	s = stats(v);
	CHECK_EQ(s.interrupts_posted, 10 + 1);
	CHECK_EQ(s.interrupts_injected, 9 + 1);
	CHECK_EQ(s.signals_sent, 0);
	CHECK_EQ(s.kicks, 10 + 1 + 1); /* posts, and the rescuer's UNBLOCK */
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/*
 * The mailbox under a racing post: every posted vector reaches the IRR at
 * the next sync that starts after the post, with no further post.  The
 * vCPU thread syncs in a loop (vcpureq_vcpu_take_interrupt() until the IRR
 * is empty, then a pass counted); the poster posts two vectors back to
 * back (the second lands while the vCPU is syncing the first), then waits
 * until two more passes ended: the second began after the posts (seq_cst:
 * its fence after the count pairs with the poster's fence after the posts,
 * so its first ON read sees the posts' ON), so both vectors must have
 * been taken by then.  ON is cleared before PIR is taken (mailbox.c); the
 * other order strands a vector posted between the two.
 */
struct syncer {
	struct vcpureq_vcpu *v;
	_Atomic uint64_t passes;
	_Atomic uint64_t got[256];
	_Atomic int quit;
	_Atomic int bind_ret;
};

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;
	int r = vcpureq_vcpu_bind(s->v);

	atomic_store(&s->bind_ret, r ? r : 1);
	if (r)
		return NULL;
	while (!atomic_load_explicit(&s->quit, memory_order_relaxed)) {
		while ((r = vcpureq_vcpu_take_interrupt(s->v)) >= 0)
			atomic_fetch_add_explicit(&s->got[r], 1,
						  memory_order_relaxed);
		atomic_fetch_add_explicit(&s->passes, 1, memory_order_seq_cst);
		atomic_thread_fence(memory_order_seq_cst);
	}
	vcpureq_vcpu_unbind(s->v);
	return NULL;
}

#define RACING_POSTS 50000

TEST_BOTH(mailbox_racing_post_not_stranded)
{
	static struct syncer sy;
	static uint64_t want[256];
	struct vcpureq_vm *vm;
	pthread_t t;
	unsigned int i, j;

	BARE_VM(be, 1, &vm);
	memset(&sy, 0, sizeof(sy));
	memset(want, 0, sizeof(want));
	sy.v = vcpureq_vm_vcpu(vm, 0);
	CHECK_EQ(pthread_create(&t, NULL, syncer_main, &sy), 0);
	while (!atomic_load(&sy.bind_ret))
		h_sleep_us(100);
	CHECK_EQ(atomic_load(&sy.bind_ret), 1);
	for (i = 0; i < RACING_POSTS; i++) {
		/* Two vectors of one PIR word, the second as the vCPU
		 * may be taking the first; a varying gap between them. */
		unsigned int a = 2 * (i % 32), b = a + 1;
		uint64_t p, end;

		CHECK_EQ(vcpureq_post_interrupt(sy.v, a), 0);
		for (j = 0; j < i % 8; j++)
			atomic_signal_fence(memory_order_seq_cst);
		CHECK_EQ(vcpureq_post_interrupt(sy.v, b), 0);
		want[a]++;
		want[b]++;
		atomic_thread_fence(memory_order_seq_cst);
		p = atomic_load_explicit(&sy.passes, memory_order_seq_cst);
		end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;
		while (atomic_load(&sy.passes) < p + 2 && h_now_ns() < end)
			;
		CHECK(atomic_load(&sy.passes) >= p + 2); /* vCPU thread alive */
		if (atomic_load(&sy.got[a]) != want[a] ||
		    atomic_load(&sy.got[b]) != want[b]) {
			fprintf(stderr, "post %u: vectors %u and %u posted %llu times each, taken %llu and %llu times after two whole syncs: stranded in PIR with ON clear\n",
				i, a, b, (unsigned long long)want[a],
				(unsigned long long)atomic_load(&sy.got[a]),
				(unsigned long long)atomic_load(&sy.got[b]));
			CHECK(!"a posted vector was stranded");
		}
	}
	atomic_store(&sy.quit, 1);
	pthread_join(t, NULL);
	CHECK_EQ(stats(sy.v).interrupts_posted, 2 * RACING_POSTS);
	CHECK_EQ(stats(sy.v).interrupts_injected, 2 * RACING_POSTS);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/* Each lockless walk is one instance: READING, then OUTSIDE with the
 * epoch bumped once. */
TEST_BOTH(walk_bumps_epoch_once)
{
	struct vcpureq_vm *vm;
	struct vcpureq_vcpu *v;
	uint32_t e0;
	int i;

	BARE_VM(be, 1, &vm);
	v = vcpureq_vm_vcpu(vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	e0 = vcpureq_vcpu_exit_epoch(v);
	for (i = 1; i <= 3; i++) {
		CHECK_EQ(vcpureq_walk_lockless_begin(v), 0);
		CHECK_EQ(vcpureq_vcpu_mode(v), VCPUREQ_READING_SHADOW_PAGE_TABLES);
		CHECK_EQ(vcpureq_vcpu_exit_epoch(v), e0 + (uint32_t)i - 1);
		CHECK_EQ(vcpureq_walk_lockless_end(v), 0);
		CHECK_EQ(vcpureq_vcpu_mode(v), VCPUREQ_OUTSIDE_GUEST_MODE);
		CHECK_EQ(vcpureq_vcpu_exit_epoch(v), e0 + (uint32_t)i);
	}
	CHECK_EQ(vcpureq_walk_lockless_end(v), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_exit_epoch(v), e0 + 3);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/* Ids and indexes of sparse vCPUs, every accessor, both ways. */
TEST_BOTH(accessors_sparse_ids)
{
	static const unsigned long ids[] = { 5, 0, 1, 63, 64, 200 };
	const unsigned int n = sizeof(ids) / sizeof(ids[0]);
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vcpu *out;
	struct vcpureq_vm *vm;
	unsigned int i;
	int r;

	BARE_VM(be, 1, &vm); /* the SKIP check */
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	o.backend = be;
	o.max_vcpus = 8;
	if (be == VCPUREQ_BACKEND_KVM)
		o.kick = h_kick_mechanism();
	CHECK_EQ(vcpureq_vm_open(&o, -1, &vm), 0);
	CHECK_EQ(vcpureq_vm_nr_vcpus(vm), 0);
	CHECK_EQ(vcpureq_vm_max_vcpus(vm), 8);
	CHECK(vcpureq_vm_vcpu(vm, 0) == NULL);
	CHECK(vcpureq_vm_vcpu_by_id(vm, 0) == NULL);
	for (i = 0; i < n; i++) {
		CHECK_EQ(vcpureq_vcpu_create(vm, ids[i], &out), 0);
		CHECK(out == vcpureq_vm_vcpu(vm, i));
		CHECK_EQ(vcpureq_vm_nr_vcpus(vm), i + 1);
		CHECK(vcpureq_vm_vcpu(vm, i + 1) == NULL);
	}
	CHECK_EQ(vcpureq_vcpu_create(vm, 63, &out), -EEXIST);
	for (i = 0; i < n; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(vm, i);

		CHECK(v != NULL);
		CHECK_EQ(vcpureq_vcpu_index(v), i);
		CHECK_EQ(vcpureq_vcpu_id(v), ids[i]);
		CHECK(vcpureq_vcpu_vm(v) == vm);
		CHECK(vcpureq_vm_vcpu_by_id(vm, ids[i]) == v);
	}
	/* Ids next to the used ones are not vCPUs. */
	CHECK(vcpureq_vm_vcpu_by_id(vm, 2) == NULL);
	CHECK(vcpureq_vm_vcpu_by_id(vm, 4) == NULL);
	CHECK(vcpureq_vm_vcpu_by_id(vm, 6) == NULL);
	CHECK(vcpureq_vm_vcpu_by_id(vm, 62) == NULL);
	CHECK(vcpureq_vm_vcpu_by_id(vm, 65) == NULL);
	CHECK(vcpureq_vm_vcpu_by_id(vm, 199) == NULL);
	CHECK(vcpureq_vm_vcpu_by_id(vm, 201) == NULL);
	CHECK(vcpureq_vm_vcpu(vm, n) == NULL);
	CHECK(vcpureq_vm_vcpu(vm, ~0u) == NULL);
	CHECK_EQ(vcpureq_vm_kick_signal(vm), SIGRTMIN + 5);
	CHECK(vcpureq_vm_kick_mechanism(vm) != VCPUREQ_KICK_DEFAULT);
	CHECK_EQ(vcpureq_version(), VCPUREQ_VERSION);
	CHECK(strcmp(vcpureq_version_string(), VCPUREQ_VERSION_STRING) == 0);
	r = vcpureq_vm_free(vm);
	CHECK_EQ(r, 0);
	return 0;
}

/* ---- broadcasts across the mask word edges ---- */

/* Bind each vCPU in turn: check (and consume) @req on exactly the vCPUs of
 * @want (bits), and that each was kicked @kicks times in all. */
static int expect_targets(struct vcpureq_vm *vm, unsigned int req,
			  const uint64_t *want, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(vm, i);
		int in = (want[i / 64] >> (i % 64)) & 1;

		CHECK_EQ(vcpureq_vcpu_bind(v), 0);
		if (vcpureq_check_request(req, v) != in) {
			fprintf(stderr, "vCPU %u of %u: request %s\n", i, n,
				in ? "missing" : "not asked for");
			return 1;
		}
		CHECK_EQ(vcpureq_check_request(req, v), 0);
		CHECK_EQ(vcpureq_request_pending(v), 0);
		CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	}
	return 0;
}

static void set_bit(uint64_t *m, unsigned int i)
{
	m[i / 64] |= UINT64_C(1) << (i % 64);
}

static int word_edges(enum vcpureq_backend be, unsigned int n)
{
	/* Single targets at every edge of the words that exist. */
	const unsigned int edge[] = { 0, 31, 32, 63, 64, n - 1 };
	uint64_t all[2] = { 0, 0 }, m[3], *big;
	uint64_t expected_kicks[65] = { 0 };
	struct vcpureq_vm *vm;
	unsigned int i, k, ids[3];

	BARE_VM(be, n, &vm);
	for (i = 0; i < n; i++)
		set_bit(all, i);
	/* Every vCPU, none in guest mode: no signal, no wait, even with WAIT. */
	CHECK_EQ(vcpureq_make_all_cpus_request(vm, REQ_A), 0);
	CHECK_EQ(expect_targets(vm, REQ_A, all, n), 0);
	CHECK_EQ(vcpureq_make_all_cpus_request(vm, REQ_B | VCPUREQ_REQUEST_WAIT), 0);
	CHECK_EQ(expect_targets(vm, REQ_B, all, n), 0);
	for (i = 0; i < n; i++)
		expected_kicks[i] = 2;
	/* The mask form, one target at a time, with the mask as long as the
	 * VM and as short as the target needs. */
	for (k = 0; k < sizeof(edge) / sizeof(edge[0]); k++) {
		unsigned int t = edge[k];

		if (t >= n)
			continue;
		memset(m, 0, sizeof(m));
		set_bit(m, t);
		CHECK_EQ(vcpureq_make_vcpus_request_mask(vm, REQ_A, m, n), 0);
		CHECK_EQ(expect_targets(vm, REQ_A, m, n), 0);
		CHECK_EQ(vcpureq_make_vcpus_request_mask(vm, REQ_A, m, t + 1), 0);
		CHECK_EQ(expect_targets(vm, REQ_A, m, n), 0);
		/* ... and the id-list form. */
		CHECK_EQ(vcpureq_make_vcpus_request(vm, REQ_A, &t, 1), 0);
		CHECK_EQ(expect_targets(vm, REQ_A, m, n), 0);
		expected_kicks[t] += 3;
	}
	/* First and last together, through both forms. */
	memset(m, 0, sizeof(m));
	set_bit(m, 0);
	set_bit(m, n - 1);
	CHECK_EQ(vcpureq_make_vcpus_request_mask(vm, REQ_A, m, n), 0);
	CHECK_EQ(expect_targets(vm, REQ_A, m, n), 0);
	ids[0] = n - 1;
	ids[1] = 0;
	CHECK_EQ(vcpureq_make_vcpus_request(vm, REQ_A, ids, 2), 0);
	CHECK_EQ(expect_targets(vm, REQ_A, m, n), 0);
	expected_kicks[0] += 2;
	expected_kicks[n - 1] += 2;
	/* One bit past the last vCPU: refused, nothing made. */
	big = calloc(3, sizeof(uint64_t));
	CHECK(big != NULL);
	set_bit(big, 0);
	set_bit(big, n);
	CHECK_EQ(vcpureq_make_vcpus_request_mask(vm, REQ_A, big, n + 1), -EINVAL);
	free(big);
	ids[0] = 0;
	ids[1] = n;
	CHECK_EQ(vcpureq_make_vcpus_request(vm, REQ_A, ids, 2), -EINVAL);
	memset(m, 0, sizeof(m));
	CHECK_EQ(expect_targets(vm, REQ_A, m, n), 0);
	/* Exact counters: kicks as targeted, nothing else. */
	for (i = 0; i < n; i++) {
		struct vcpureq_stats s = stats(vcpureq_vm_vcpu(vm, i));

		CHECK_EQ(s.kicks, expected_kicks[i]);
		CHECK_EQ(s.requests_made, expected_kicks[i]);
		CHECK_EQ(s.requests_handled, expected_kicks[i]);
		CHECK_EQ(s.signals_sent, 0);
		CHECK_EQ(s.wakeups, 0);
		CHECK_EQ(s.acks_waited, 0);
		CHECK_EQ(s.entries, 0);
	}
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

TEST_BOTH(broadcast_edges_32)
{
	return word_edges(be, 32);
}

TEST_BOTH(broadcast_edges_33)
{
	return word_edges(be, 33);
}

TEST_BOTH(broadcast_edges_64)
{
	return word_edges(be, 64);
}

TEST_BOTH(broadcast_edges_65)
{
	return word_edges(be, 65);
}

/* ---- exact counters of guest entries, kicks and aborted entries ---- */

static _Atomic int handled_t, handled_b, handled_a;

/* T makes B of the vCPU itself while the handler runs: the final check
 * sees B and aborts the entry, and the handler gets B on the next pass. */
static int abort_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_B, v) > 0)
		atomic_fetch_add(&handled_b, 1);
	if (vcpureq_check_request(REQ_T, v) > 0) {
		atomic_fetch_add(&handled_t, 1);
		vcpureq_make_request(REQ_B, v);
	}
	if (vcpureq_check_request(REQ_A, v) > 0)
		atomic_fetch_add(&handled_a, 1);
	return 0;
}

/* Wait until the vCPU is back in the guest, @entries entries after @s0,
 * running guest code (its iterations moved since the last look), so the
 * counts are final: a h_spinning guest does not exit by itself. */
static bool settle(struct h_vm *h, const struct vcpureq_stats *s0,
		   uint64_t entries)
{
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, 0);
	uint64_t it = h_guest_iters(h, 0);

	while (h_now_ns() < end) {
		uint64_t it1;

		h_sleep_us(1000);
		it1 = h_guest_iters(h, 0);
		if (stats(v).entries - s0->entries >= entries &&
		    h_in_guest(h, 0) && it1 != it)
			return true;
		it = it1;
	}
	return false;
}

#define DELTA(f) ((long long)(s1.f - s0.f))

TEST_BOTH(kick_and_abort_counted_exactly)
{
	struct vcpureq_vm_opts o = { .handle_requests = abort_handler };
	struct vcpureq_stats s0, s1;
	struct vcpureq_vcpu *v;
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));

	/* A bare kick of a h_spinning vCPU: one signal, one kicked exit with
	 * nothing pending (spurious by definition), one re-entry. */
	s0 = stats(v);
	CHECK_EQ(vcpureq_vcpu_kick(v), 1);
	CHECK(settle(&h, &s0, 1));
	s1 = stats(v);
	CHECK_EQ(DELTA(kicks), 1);
	CHECK_EQ(DELTA(signals_sent), 1);
	CHECK_EQ(DELTA(signals_coalesced), 0);
	CHECK_EQ(DELTA(exits), 1);
	CHECK_EQ(DELTA(kicked_exits), 1);
	CHECK_EQ(DELTA(spurious_exits), 1);
	CHECK_EQ(DELTA(entries), 1);
	CHECK_EQ(DELTA(entry_aborts), 0);
	CHECK_EQ(DELTA(requests_made), 0);
	CHECK_EQ(DELTA(wakeups), 0);
	CHECK_EQ(DELTA(acks_waited), 0);
	CHECK_EQ(DELTA(foreign_exits), 0);

	/* A request: handled once, the exit it caused is not spurious. */
	s0 = s1;
	CHECK_EQ(vcpureq_request(REQ_A, v), 1);
	CHECK(settle(&h, &s0, 1));
	s1 = stats(v);
	CHECK_EQ(atomic_load(&handled_a), 1);
	CHECK_EQ(DELTA(kicks), 1);
	CHECK_EQ(DELTA(signals_sent), 1);
	CHECK_EQ(DELTA(exits), 1);
	CHECK_EQ(DELTA(kicked_exits), 1);
	CHECK_EQ(DELTA(spurious_exits), 0);
	CHECK_EQ(DELTA(entries), 1);
	CHECK_EQ(DELTA(entry_aborts), 0);
	CHECK_EQ(DELTA(requests_made), 1);
	CHECK_EQ(DELTA(requests_handled), 1);

	/* A request whose handler makes another of its own vCPU: the final
	 * check aborts exactly one entry, no signal to itself. */
	s0 = s1;
	CHECK_EQ(vcpureq_request(REQ_T | VCPUREQ_REQUEST_WAIT, v), 1);
	CHECK(settle(&h, &s0, 1));
	s1 = stats(v);
	CHECK_EQ(atomic_load(&handled_t), 1);
	CHECK_EQ(atomic_load(&handled_b), 1);
	CHECK_EQ(DELTA(kicks), 1);
	CHECK_EQ(DELTA(signals_sent), 1);
	CHECK_EQ(DELTA(acks_waited), 1);
	CHECK_EQ(DELTA(exits), 1);
	CHECK_EQ(DELTA(kicked_exits), 1);
	CHECK_EQ(DELTA(spurious_exits), 0);
	CHECK_EQ(DELTA(entry_aborts), 1);
	CHECK_EQ(DELTA(entries), 1);
	CHECK_EQ(DELTA(requests_made), 2);
	CHECK_EQ(DELTA(requests_handled), 2);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- the waking hint: spent where requests are processed ---- */

static _Atomic int hint_handled;

static int hint_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0)
		atomic_fetch_add(&hint_handled, 1);
	return 0;
}

/* One guest entry over the enter/exit pair (the guest exits to the VMM:
 * H_OUT), with @req made between enter and the guest run if not 0 (a
 * request made while the vCPU is in guest mode; make sets no kick). */
static int one_entry(struct h_vm *h, struct vcpureq_vcpu *v, unsigned int req)
{
	int r = vcpureq_vcpu_enter(v);

	if (r != VCPUREQ_RUN_ENTER)
		return r < 0 ? r : -EPROTO;
	if (req && vcpureq_make_request(req, v))
		return -EPROTO;
	if (h->backend == VCPUREQ_BACKEND_KVM)
		r = ioctl(vcpureq_vcpu_kvm_fd(v), KVM_RUN, 0) < 0 ? -errno : 0;
	else
		r = h->guest(v, h->guest_opaque);
	r = vcpureq_vcpu_exit(v, r);
	return r == VCPUREQ_RUN_EXIT ? 0 : r < 0 ? r : -EPROTO;
}

/* block with a deadline 2 ms away: its reasons, or -ETIMEDOUT. */
static int block_briefly(struct vcpureq_vcpu *v)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += 2000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return vcpureq_vcpu_block_deadline(v, &ts);
}

/*
 * A request made without NO_WAKEUP ends the next block "since the vCPU last
 * processed requests" (vcpureq.h): the hint is spent by the processing at
 * guest entry, and not before.  On the test's own thread, bound to the
 * vCPU: every outcome is decided by the calls alone.
 *   made, then processed at entry: the block after the exit sleeps;
 *   made in guest mode, after the entry's processing: the block after the
 *     exit returns WAKE_REQUEST (it is not processed yet), once.
 */
TEST_BOTH(wake_hint_spent_when_processed)
{
	struct vcpureq_vm_opts o = { .handle_requests = hint_handler };
	struct vcpureq_vcpu *v;
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_OUT, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	for (i = 0; i < 3; i++) {
		CHECK_EQ(vcpureq_make_request(REQ_A, v), 0);
		CHECK_EQ(one_entry(&h, v, 0), 0);
		CHECK_EQ(atomic_load(&hint_handled), 2 * i + 1);
		CHECK_EQ(block_briefly(v), -ETIMEDOUT);

		CHECK_EQ(one_entry(&h, v, REQ_A), 0);
		CHECK_EQ(atomic_load(&hint_handled), 2 * i + 1);
		CHECK_EQ(block_briefly(v), VCPUREQ_WAKE_REQUEST);
		CHECK_EQ(block_briefly(v), -ETIMEDOUT); /* consumed */
		CHECK_EQ(one_entry(&h, v, 0), 0);
		CHECK_EQ(atomic_load(&hint_handled), 2 * i + 2);
		CHECK_EQ(block_briefly(v), -ETIMEDOUT);
	}
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- SIGMASK: the kick signal of an ended instance is drained ---- */

/* Like settle(), but gives up at once when the vCPU has exited more often
 * than @exits since @s0 (a stale signal that nobody drains makes every
 * KVM_RUN return -EINTR at once, and the guest never runs again). */
static bool settle_or_storm(struct h_vm *h, const struct vcpureq_stats *s0,
			    uint64_t exits)
{
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, 0);
	uint64_t it = h_guest_iters(h, 0);

	while (h_now_ns() < end) {
		uint64_t it1;
		struct vcpureq_stats s1;

		h_sleep_us(1000);
		s1 = stats(v);
		if (s1.exits - s0->exits > exits)
			return true; /* the exact checks report it */
		it1 = h_guest_iters(h, 0);
		if (s1.entries - s0->entries >= exits && h_in_guest(h, 0) &&
		    it1 != it)
			return true;
		it = it1;
	}
	return false;
}

/*
 * With KVM_SET_SIGNAL_MASK the kick signal is blocked outside KVM_RUN, so
 * the -EINTR it causes leaves it pending; the next entry takes it with
 * sigtimedwait() (backend_kvm.c, sigmask_prepare_entry()).  Undrained, it
 * would end every later KVM_RUN at once: a spurious exit per entry.  Each
 * kick and each request here costs exactly one exit, and only the bare
 * kick's is spurious; with the queued real-time default and with SIGUSR1
 * (not queued), the configuration CI's torture runs did not cover.
 */
TEST(sigmask_kick_drained)
{
	static const int sigs[] = { 0, SIGUSR1 };
	unsigned int k, i;

	for (k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++) {
		struct vcpureq_vm_opts o = {
			.handle_requests = abort_handler,
			.kick = VCPUREQ_KICK_SIGMASK,
			.kick_signal = sigs[k],
		};
		struct vcpureq_stats s0, s1;
		struct vcpureq_vcpu *v;
		struct h_vm h;

		(void)be;
		H_VM(&h, VCPUREQ_BACKEND_KVM, 1, H_SPIN, &o);
		v = vcpureq_vm_vcpu(h.vm, 0);
		atomic_store(&handled_a, 0);
		CHECK_EQ(h_start(&h), 0);
		CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
		s1 = stats(v);
		for (i = 0; i < 5; i++) {
			s0 = s1;
			CHECK_EQ(vcpureq_vcpu_kick(v), 1);
			CHECK(settle_or_storm(&h, &s0, 1));
			s1 = stats(v);
			CHECK_EQ(DELTA(signals_sent), 1);
			CHECK_EQ(DELTA(exits), 1);
			CHECK_EQ(DELTA(kicked_exits), 1);
			CHECK_EQ(DELTA(spurious_exits), 1);
			CHECK_EQ(DELTA(entries), 1);

			s0 = s1;
			CHECK_EQ(vcpureq_request(REQ_A, v), 1);
			CHECK(settle_or_storm(&h, &s0, 1));
			s1 = stats(v);
			CHECK_EQ(atomic_load(&handled_a), i + 1);
			CHECK_EQ(DELTA(signals_sent), 1);
			CHECK_EQ(DELTA(exits), 1);
			CHECK_EQ(DELTA(kicked_exits), 1);
			CHECK_EQ(DELTA(spurious_exits), 0);
			CHECK_EQ(DELTA(entries), 1);
		}
		CHECK_EQ(h_stop_all(&h), 0);
		h_vm_destroy(&h);
	}
	return 0;
}
