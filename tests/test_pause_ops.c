/* SPDX-License-Identifier: MIT */
/*
 * Pause/resume, run-on-vCPU and deadlines under misuse and races (issue
 * 16): resumers racing for one pause, malformed deadlines, run-on-vCPU
 * cycles, a pause and the VM's death, work items of an exiting vCPU
 * thread, vcpureq_pause_wait(), the pending mask past 64 vCPUs and
 * KVM_KVMCLOCK_CTRL seen by a kvmclock guest.
 *
 * Where the old code hung, a case waits for the call in another thread a
 * bounded time (HANG_MS, far above what the call takes) and then reports
 * the state it found, or lets the target go so that the old behaviour
 * shows as a wrong result: a failing assertion, never only a timeout.
 */
#include <linux/kvm.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define REQ_WALK VCPUREQ_ARCH_REQ(5)
#define REQ_WAIT VCPUREQ_ARCH_REQ_FLAGS(2, VCPUREQ_REQUEST_WAIT)
#define HANG_MS (20000 * h_time_scale())

static bool parked(struct h_vm *h, unsigned int i)
{
	return vcpureq_vcpu_parked(vcpureq_vm_vcpu(h->vm, i));
}

static bool paused(struct h_vm *h, unsigned int i)
{
	return vcpureq_vcpu_paused(vcpureq_vm_vcpu(h->vm, i));
}

/* The guest counter of vCPU @i moves (a hang bound only). */
static bool progresses(struct h_vm *h, unsigned int i)
{
	uint64_t before = h_guest_iters(h, i);
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

	while (h_guest_iters(h, i) == before)
		if (h_now_ns() > end)
			return false;
		else
			h_sleep_us(200);
	return true;
}

/* Wait until *@flag != 0, at most @ms: whether it held. */
static bool wait_flag_ms(_Atomic int *flag, unsigned int ms)
{
	uint64_t end = h_now_ns() + (uint64_t)ms * 1000000u;

	while (!atomic_load(flag))
		if (h_now_ns() > end)
			return false;
		else
			h_sleep_us(100);
	return true;
}

static bool wait_flag(_Atomic int *flag)
{
	return wait_flag_ms(flag, HANG_MS);
}

/*
 * A call that must fail at once (a malformed deadline) is given this long
 * before the target it would wait for is let go: the correct result does
 * not depend on it (nothing waits), the old code's success shows then.
 */
#define RESCUE_MS 1000

/*
 * Holding vCPUs where a pause or a WAIT cannot finish: REQ_A holds the
 * vCPU in its request handler (outside guest mode, not parked: a pause
 * waits for it, a WAIT does not); REQ_WALK holds it inside a lockless
 * walk (a pause and a WAIT both wait).  Released by clearing hold.
 */
static _Atomic int hold, holding;

static int hold_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_WAIT, v) > 0) {
		/* nothing: the acknowledgement is the exit */
	}
	if (vcpureq_check_request(REQ_A, v) > 0) {
		atomic_store(&holding, 1);
		while (atomic_load(&hold))
			h_sleep_us(100);
		atomic_store(&holding, 0);
	}
	if (vcpureq_check_request(REQ_WALK, v) > 0) {
		vcpureq_walk_lockless_begin(v);
		atomic_store(&holding, 1);
		while (atomic_load(&hold))
			h_sleep_us(100);
		vcpureq_walk_lockless_end(v);
		atomic_store(&holding, 0);
	}
	return 0;
}

static int hold_vcpu(struct h_vm *h, unsigned int i, unsigned int req)
{
	atomic_store(&hold, 1);
	atomic_store(&holding, 0);
	if (vcpureq_request(req, vcpureq_vm_vcpu(h->vm, i)) < 0)
		return -1;
	return wait_flag(&holding) ? 0 : -1;
}

/* ---- 1. resumers racing for one pause ---- */

#define RESUMERS 6
#define RACE_ITERS 150

struct race {
	struct h_vm *h;
	pthread_barrier_t start, end;
	/* Per resumer: the mask it resumes (NULL: all). */
	uint64_t masks[RESUMERS];
	bool all[RESUMERS];
	_Atomic int ok[RESUMERS];     /* its result this round: 1 success */
	_Atomic int bad;              /* a result other than 0 / -EINVAL */
};

struct resumer_arg {
	struct race *rc;
	unsigned int me;
};

static void *resumer(void *p)
{
	struct race *rc = ((struct resumer_arg *)p)->rc;
	unsigned int me = ((struct resumer_arg *)p)->me, it;

	for (it = 0; it < RACE_ITERS; it++) {
		int r;

		pthread_barrier_wait(&rc->start);
		r = vcpureq_resume(rc->h->vm, rc->all[me] ? NULL : &rc->masks[me],
				   rc->all[me] ? 0 : 64);
		if (r == 0)
			atomic_store(&rc->ok[me], 1);
		else if (r != -EINVAL)
			atomic_fetch_add(&rc->bad, 1);
		pthread_barrier_wait(&rc->end);
	}
	return NULL;
}

/*
 * One pause of @n vCPUs, then RESUMERS threads resume at once (a barrier
 * start), RACE_ITERS rounds.  Per vCPU, the successful resumes that named
 * it plus its count left must be exactly the one pause: no count ever
 * goes below zero, none is lost.  A count left at 1 (all-or-nothing gave
 * back what a refused mask took) must still hold: the vCPU parks
 * (vcpureq_pause_wait()) and a resume lets it run.  The next round's
 * pause takes hold (returns 0), the vCPUs run again, the VM stays alive.
 */
static int resume_race(enum vcpureq_backend be, unsigned int n,
		       const uint64_t *masks)
{
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	struct race rc;
	struct resumer_arg ra[RESUMERS];
	pthread_t t[RESUMERS];
	struct h_vm h;
	unsigned int i, k, it;

	H_VM(&h, be, n, H_SPIN, NULL);
	memset(&rc, 0, sizeof(rc));
	rc.h = &h;
	for (k = 0; k < RESUMERS; k++) {
		rc.all[k] = masks == NULL;
		rc.masks[k] = masks ? masks[k] : 0;
	}
	CHECK_EQ(pthread_barrier_init(&rc.start, NULL, RESUMERS + 1), 0);
	CHECK_EQ(pthread_barrier_init(&rc.end, NULL, RESUMERS + 1), 0);
	CHECK_EQ(h_start(&h), 0);
	for (k = 0; k < RESUMERS; k++) {
		ra[k].rc = &rc;
		ra[k].me = k;
		CHECK_EQ(pthread_create(&t[k], NULL, resumer, &ra[k]), 0);
	}
	for (it = 0; it < RACE_ITERS; it++) {
		unsigned int won[2] = { 0, 0 };

		dl.when = h_in_ms(HANG_MS);
		CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, &dl), 0);
		for (i = 0; i < n; i++)
			CHECK(parked(&h, i));
		for (k = 0; k < RESUMERS; k++)
			atomic_store(&rc.ok[k], 0);
		pthread_barrier_wait(&rc.start);
		pthread_barrier_wait(&rc.end);
		CHECK_EQ(atomic_load(&rc.bad), 0);
		for (k = 0; k < RESUMERS; k++)
			if (atomic_load(&rc.ok[k]))
				for (i = 0; i < n; i++)
					if (rc.all[k] || (rc.masks[k] >> i & 1))
						won[i]++;
		for (i = 0; i < n; i++) {
			unsigned int left = paused(&h, i) ? 1 : 0;

			if (won[i] + left != 1)
				fprintf(stderr, "round %u vCPU %u: %u resumes succeeded, paused %d\n",
					it, i, won[i], (int)left);
			CHECK_EQ(won[i] + left, 1);
			CHECK(!vcpureq_vm_is_dead(h.vm));
		}
		/* A given-back pause still holds: the vCPU parks, then one
		 * resume of it lets it go. */
		for (i = 0; i < n; i++) {
			uint64_t one = UINT64_C(1) << i;

			if (!paused(&h, i))
				continue;
			dl.when = h_in_ms(HANG_MS);
			CHECK_EQ(vcpureq_pause_wait(h.vm, &one, 64, &dl), 0);
			CHECK_EQ(vcpureq_resume(h.vm, &one, 64), 0);
			CHECK(!paused(&h, i));
		}
		for (i = 0; i < n; i++)
			CHECK(progresses(&h, i));
	}
	for (k = 0; k < RESUMERS; k++)
		pthread_join(t[k], NULL);
	for (i = 0; i < n; i++)
		CHECK_EQ(atomic_load(&h.vcpus[i].run_ret), 0); /* no -EIO */
	CHECK(!vcpureq_vm_is_dead(h.vm));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Every resumer resumes every vCPU of a one-vCPU VM: one wins a round. */
TEST_BOTH(resume_race_one_pause)
{
	return resume_race(be, 1, NULL);
}

/* Two vCPUs: resumers of both, of vCPU 0, of vCPU 1 (masks) race for one
 * pause of both: counts are conserved, a refused mask gives back. */
TEST_BOTH(resume_race_mask_two_vcpus)
{
	static const uint64_t masks[RESUMERS] = { 3, 1, 2, 3, 2, 1 };

	return resume_race(be, 2, masks);
}

/* ---- 2. malformed deadlines ---- */

static const struct timespec bad_times[] = {
	{ .tv_sec = -1, .tv_nsec = 0 },
	{ .tv_sec = 0, .tv_nsec = -1 },
	{ .tv_sec = 0, .tv_nsec = 1000000000l },
};

/* A call run in a thread: its result, and whether it returned. */
struct call {
	struct h_vm *h;
	int which; /* 0 pause, 1 WAIT deadline, 2 pause_wait */
	struct vcpureq_deadline dl;
	_Atomic int done;
	int ret;
	char msg[256]; /* the call's message (per thread) */
};

static void *do_call(void *p)
{
	struct call *c = p;

	if (c->which == 0)
		c->ret = vcpureq_pause(c->h->vm, NULL, 0, &c->dl);
	else if (c->which == 1)
		c->ret = vcpureq_make_vcpus_request_deadline(c->h->vm, REQ_WAIT,
							     NULL, 0, &c->dl);
	else
		c->ret = vcpureq_pause_wait(c->h->vm, NULL, 0, &c->dl);
	snprintf(c->msg, sizeof(c->msg), "%s", vcpureq_errmsg());
	atomic_store(&c->done, 1);
	return NULL;
}

/*
 * Each malformed field on pause, the WAIT deadline and pause_wait, with
 * vCPU 1 held inside a lockless walk (neither parks nor acknowledges):
 * -EINVAL, and nothing done.  The old code retried the kernel's EINVAL
 * until the target answered: if the call has not returned after a
 * while, vCPU 1 is let go, and the old code's success fails the check.
 */
TEST_BOTH(bad_deadline_refused)
{
	struct vcpureq_vm_opts o = { .handle_requests = hold_handler };
	uint64_t pending = ~0ull;
	struct h_vm h;
	unsigned int f, which;

	H_VM(&h, be, 2, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	for (f = 0; f < 3; f++) {
		for (which = 0; which < 3; which++) {
			struct call c = { .h = &h, .which = (int)which };
			uint64_t made0 = h_stats(&h, 1).requests_made;
			pthread_t t;
			bool returned;

			CHECK_EQ(hold_vcpu(&h, 1, REQ_WALK), 0);
			c.dl.size = sizeof(c.dl);
			c.dl.when = bad_times[f];
			c.dl.pending = &pending;
			c.dl.pending_bits = 64;
			CHECK_EQ(pthread_create(&t, NULL, do_call, &c), 0);
			returned = wait_flag_ms(&c.done, RESCUE_MS);
			atomic_store(&hold, 0);
			pthread_join(t, NULL);
			if (!returned)
				fprintf(stderr, "field %u call %u: no return while the target was held (a busy retry?); returned %d once let go\n",
					f, which, c.ret);
			CHECK_EQ(c.ret, -EINVAL);
			if (!strstr(c.msg, f ? "dl->when.tv_nsec" : "dl->when.tv_sec"))
				fprintf(stderr, "message: %s\n", c.msg);
			CHECK(strstr(c.msg, f ? "dl->when.tv_nsec" : "dl->when.tv_sec") != NULL);
			/* Nothing done: no pause taken, no request made. */
			CHECK(!paused(&h, 0) && !paused(&h, 1));
			CHECK(h_stats(&h, 1).requests_made - made0 == 1); /* REQ_WALK */
			CHECK(progresses(&h, 1));
		}
	}
	/* A time already past is valid: -ETIMEDOUT at once where a wait is
	 * needed (vCPU 1 walking), naming vCPU 1. */
	CHECK_EQ(hold_vcpu(&h, 1, REQ_WALK), 0);
	{
		struct vcpureq_deadline dl = { .size = sizeof(dl),
					       .pending = &pending,
					       .pending_bits = 64 };

		CHECK_EQ(vcpureq_make_vcpus_request_deadline(h.vm, REQ_WAIT, NULL,
							     0, &dl), -ETIMEDOUT);
		CHECK(pending & 2);
		pending = ~0ull;
		CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, &dl), -ETIMEDOUT);
		CHECK(pending & 2);
		pending = ~0ull;
		CHECK_EQ(vcpureq_pause_wait(h.vm, NULL, 0, &dl), -ETIMEDOUT);
		CHECK(pending & 2);
	}
	atomic_store(&hold, 0);
	CHECK(h_wait_until(parked, &h, 1, HANG_MS));
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* vcpureq_vcpu_block_deadline() with each malformed field: -EINVAL, not
 * blocked.  The old code retried the kernel's EINVAL until a wake
 * condition came: if the call has not returned after a while, UNBLOCK is
 * made, and the old code's wake-up result fails the check. */
struct blocker {
	struct vcpureq_vcpu *v;
	struct timespec when;
	_Atomic int bound, done;
	int ret;
	char msg[256];
};

static void *do_block(void *p)
{
	struct blocker *b = p;

	if (vcpureq_vcpu_bind(b->v)) {
		b->ret = 1;
		atomic_store(&b->done, 1);
		return NULL;
	}
	atomic_store(&b->bound, 1);
	b->ret = vcpureq_vcpu_block_deadline(b->v, &b->when);
	snprintf(b->msg, sizeof(b->msg), "%s", vcpureq_errmsg());
	atomic_store(&b->done, 1);
	vcpureq_vcpu_unbind(b->v);
	return NULL;
}

TEST_BOTH(bad_block_deadline_refused)
{
	struct h_vm h;
	unsigned int f;

	H_VM(&h, be, 1, H_SPIN, NULL);
	for (f = 0; f < 3; f++) {
		struct blocker b = { .v = vcpureq_vm_vcpu(h.vm, 0),
				     .when = bad_times[f] };
		pthread_t t;
		bool returned;

		CHECK_EQ(pthread_create(&t, NULL, do_block, &b), 0);
		CHECK(wait_flag(&b.bound));
		returned = wait_flag_ms(&b.done, RESCUE_MS);
		if (!returned)
			CHECK(vcpureq_make_request(VCPUREQ_REQ_UNBLOCK, b.v) >= 0);
		pthread_join(t, NULL);
		if (!returned)
			fprintf(stderr, "field %u: block did not return until UNBLOCK (a busy retry?): %d\n",
				f, b.ret);
		CHECK_EQ(b.ret, -EINVAL);
		CHECK(strstr(b.msg, f ? "when->tv_nsec" : "when->tv_sec") != NULL);
	}
	/* Past: -ETIMEDOUT at once. */
	{
		struct blocker b = { .v = vcpureq_vm_vcpu(h.vm, 0) };
		pthread_t t;

		CHECK_EQ(pthread_create(&t, NULL, do_block, &b), 0);
		pthread_join(t, NULL);
		CHECK_EQ(b.ret, -ETIMEDOUT);
	}
	h_vm_destroy(&h);
	return 0;
}

/* ---- 3. run-on-vCPU cycles, and a waiter counted parked ---- */

static struct h_vm *ch;
static _Atomic int go[3], cycle_ret[3], cycle_done[3], cycle_res[3];
static _Atomic int leaf_ran[3], hop_in[3];

static int leaf(struct vcpureq_vcpu *v, void *arg)
{
	(void)arg;
	atomic_fetch_add(&leaf_ran[vcpureq_vcpu_index(v)], 1);
	return 100 + (int)vcpureq_vcpu_index(v);
}

/* On vCPU i's thread: wait for go[i] (if asked), then run leaf on vCPU
 * (i + 1) % n and record the result. */
struct hop {
	unsigned int i, n;
	bool gated;
};

static int hop(struct vcpureq_vcpu *v, void *arg)
{
	struct hop *hp = arg;
	unsigned int to = (hp->i + 1) % hp->n;
	int res = 0, r;

	(void)v;
	if (hp->gated)
		while (!atomic_load(&go[hp->i]))
			h_sleep_us(100);
	atomic_store(&hop_in[hp->i], 1);
	r = vcpureq_run_on_vcpu(vcpureq_vm_vcpu(ch->vm, to), leaf, NULL, &res);
	atomic_store(&cycle_res[hp->i], res);
	atomic_store(&cycle_ret[hp->i], r);
	atomic_store(&cycle_done[hp->i], 1);
	return 0;
}

/*
 * vCPU 0 -> 1 -> ... -> n-1 -> 0: vCPU n-1's thread holds (gated) while
 * the others queue their hop one after the other, each waiting on the
 * next (counted parked: that is how the case sees it waiting); then n-1
 * closes the cycle: refused -EDEADLK, nothing queued; every other hop
 * completes with its leaf's result.  A cycle that is not refused hangs:
 * the bounded wait then reports it.
 */
static int cycle(enum vcpureq_backend be, unsigned int n)
{
	struct hop hops[3];
	struct h_vm h;
	unsigned int i;

	H_VM(&h, be, n, H_SPIN, NULL);
	ch = &h;
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < n; i++) {
		hops[i] = (struct hop){ i, n, i == n - 1 };
		atomic_store(&go[i], 0);
		atomic_store(&cycle_done[i], 0);
		atomic_store(&leaf_ran[i], 0);
	}
	/* n-1 first (it holds), then n-2 ... 0, each waiting on the next. */
	for (i = n; i-- > 0;) {
		CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, i), hop,
						   NULL, &hops[i]), 0);
		if (i != n - 1)
			CHECK(h_wait_until(parked, &h, i, HANG_MS));
	}
	atomic_store(&go[n - 1], 1);
	for (i = n; i-- > 0;) {
		if (!wait_flag(&cycle_done[i]))
			fprintf(stderr, "hop %u never returned: a run_on_vcpu cycle hangs\n", i);
		CHECK(atomic_load(&cycle_done[i]));
	}
	CHECK_EQ(atomic_load(&cycle_ret[n - 1]), -EDEADLK);
	CHECK_EQ(atomic_load(&leaf_ran[0]), 0); /* nothing queued to 0 */
	for (i = 0; i + 1 < n; i++) {
		CHECK_EQ(atomic_load(&cycle_ret[i]), 0);
		CHECK_EQ(atomic_load(&cycle_res[i]), 100 + (int)(i + 1));
		CHECK_EQ(atomic_load(&leaf_ran[i + 1]), 1);
	}
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

TEST_BOTH(run_on_vcpu_cycle_2_refused)
{
	return cycle(be, 2);
}

TEST_BOTH(run_on_vcpu_cycle_3_refused)
{
	return cycle(be, 3);
}

/* A pause of a vCPU whose thread waits in run_on_vcpu() on a slow vCPU
 * returns 0 (the waiter counts as parked); once the wait is over it parks
 * at its next entry and runs no guest code until resumed. */
static _Atomic int slow_go, slow_in;

static int slow(struct vcpureq_vcpu *v, void *arg)
{
	(void)v, (void)arg;
	atomic_store(&slow_in, 1);
	while (!atomic_load(&slow_go))
		h_sleep_us(100);
	return 0;
}

TEST_BOTH(pause_of_run_on_vcpu_waiter)
{
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	struct hop hp = { 0, 2, false };
	uint64_t zero = 1, iters;
	struct h_vm h;

	H_VM(&h, be, 2, H_SPIN, NULL);
	ch = &h;
	CHECK_EQ(h_start(&h), 0);
	atomic_store(&cycle_done[0], 0);
	CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, 1), slow, NULL,
					   NULL), 0);
	CHECK(wait_flag(&slow_in));
	CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, 0), hop, NULL,
					   &hp), 0);
	/* vCPU 0's thread is in its work function, about to wait (or
	 * waiting) in run_on_vcpu() on vCPU 1 (slow): the old code waited
	 * for it until the deadline. */
	CHECK(wait_flag(&hop_in[0]));
	dl.when = h_in_ms(HANG_MS);
	CHECK_EQ(vcpureq_pause(h.vm, &zero, 64, &dl), 0);
	CHECK(!atomic_load(&cycle_done[0]));
	atomic_store(&slow_go, 1);
	CHECK(wait_flag(&cycle_done[0]));
	CHECK_EQ(atomic_load(&cycle_ret[0]), 0);
	/* Its wait over, vCPU 0 parks at its next entry. */
	CHECK(h_wait_until(parked, &h, 0, HANG_MS));
	iters = h_guest_iters(&h, 0);
	h_sleep_us(20000);
	CHECK_EQ(h_guest_iters(&h, 0), iters);
	CHECK_EQ(vcpureq_resume(h.vm, &zero, 64), 0);
	CHECK(progresses(&h, 0));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- 4a. pause and the VM's death ---- */

/* A pause (and pause_wait) of a dead VM whose vCPU threads are still
 * bound: -EIO at once, nothing paused. */
TEST_BOTH(pause_of_dead_vm_eio)
{
	struct vcpureq_vm_opts o = { .handle_requests = hold_handler };
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	struct h_vm h;

	H_VM(&h, be, 2, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	/* vCPU 1 stays bound (held in its handler) through the death. */
	CHECK_EQ(hold_vcpu(&h, 1, REQ_A), 0);
	CHECK(vcpureq_vm_dead(h.vm) >= 0);
	dl.when = h_in_ms(HANG_MS);
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, &dl), -EIO);
	CHECK(!paused(&h, 0) && !paused(&h, 1));
	CHECK_EQ(vcpureq_pause_wait(h.vm, NULL, 0, &dl), -EIO);
	atomic_store(&hold, 0);
	h_join_all(&h);
	h_vm_destroy(&h);
	return 0;
}

/* A pause waiting for a vCPU (held in its handler, bound) when the VM
 * dies returns -EIO promptly: the old code waited for the thread to
 * unbind, which the case lets happen only after a bounded wait. */
static struct call dead_call;

TEST_BOTH(pause_waiting_when_vm_dies)
{
	struct vcpureq_vm_opts o = { .handle_requests = hold_handler };
	struct h_vm h;
	pthread_t t;
	bool returned;

	H_VM(&h, be, 2, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK_EQ(hold_vcpu(&h, 1, REQ_A), 0);
	dead_call = (struct call){ .h = &h, .which = 0 };
	dead_call.dl.size = sizeof(dead_call.dl);
	dead_call.dl.when = h_in_ms(600000); /* far: only the death ends it */
	CHECK_EQ(pthread_create(&t, NULL, do_call, &dead_call), 0);
	/* The pause is in force (counted) before it waits. */
	CHECK(h_wait_until(paused, &h, 1, HANG_MS));
	CHECK(vcpureq_vm_dead(h.vm) >= 0);
	returned = wait_flag(&dead_call.done);
	if (!returned)
		fprintf(stderr, "the pause still waits after VM_DEAD (vCPU 1 bound, held)\n");
	atomic_store(&hold, 0);
	pthread_join(t, NULL);
	CHECK(returned);
	CHECK_EQ(dead_call.ret, -EIO);
	h_join_all(&h);
	h_vm_destroy(&h);
	return 0;
}

/* ---- 4b. work items of an exiting vCPU thread; VM_DEAD and unbound
 * vCPUs ---- */

static _Atomic int cancelled_done, sync_ret = 1, exit_ran;
static struct h_vm *xh;

static void count_cancel(void *arg, int result)
{
	(void)arg;
	if (result == -ECANCELED)
		atomic_fetch_add(&cancelled_done, 1);
}

static int nop(struct vcpureq_vcpu *v, void *arg)
{
	(void)v, (void)arg;
	return 0;
}

static int exit_thread(struct vcpureq_vcpu *v, void *arg)
{
	(void)v, (void)arg;
	atomic_store(&exit_ran, 1);
	pthread_exit(NULL);
}

static void *sync_caller(void *p)
{
	int result = 0;

	(void)p;
	atomic_store(&sync_ret, vcpureq_run_on_vcpu(vcpureq_vm_vcpu(xh->vm, 0),
						    nop, NULL, &result));
	return NULL;
}

/* Queue behind a first item: async ones and a synchronous caller (its
 * kick seen: it has queued). */
static int queue_sync_and_async(struct h_vm *h, pthread_t *t, int nr_async)
{
	uint64_t kicks0;
	int i;

	for (i = 0; i < nr_async; i++)
		if (vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h->vm, 0), nop,
					      count_cancel, NULL))
			return -1;
	kicks0 = h_stats(h, 0).kicks;
	if (pthread_create(t, NULL, sync_caller, NULL))
		return -1;
	{
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

		while (h_stats(h, 0).kicks == kicks0 && h_now_ns() < end)
			h_sleep_us(100);
	}
	return h_stats(h, 0).kicks > kicks0 ? 0 : -1;
}

/* The vCPU thread exits (pthread_exit) inside a work function: the items
 * it took with it are completed with -ECANCELED (async done called, the
 * synchronous caller returns), not lost. */
TEST_BOTH(work_thread_exit_cancels_taken)
{
	struct h_vm h;
	pthread_t t;

	H_VM(&h, be, 1, H_SPIN, NULL);
	xh = &h;
	atomic_store(&cancelled_done, 0);
	atomic_store(&sync_ret, 1);
	CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, 0),
					   exit_thread, NULL, NULL), 0);
	CHECK_EQ(queue_sync_and_async(&h, &t, 5), 0);
	/* One batch: the thread takes all 7 at its first entry. */
	CHECK_EQ(h_start(&h), 0);
	CHECK(wait_flag(&exit_ran));
	{
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

		while ((atomic_load(&sync_ret) == 1 ||
			atomic_load(&cancelled_done) < 5) && h_now_ns() < end)
			h_sleep_us(100);
	}
	if (atomic_load(&sync_ret) == 1)
		fprintf(stderr, "the synchronous caller is still blocked after the vCPU thread exited; %d of 5 done called\n",
			atomic_load(&cancelled_done));
	CHECK_EQ(atomic_load(&cancelled_done), 5);
	CHECK_EQ(atomic_load(&sync_ret), -ECANCELED);
	pthread_join(t, NULL);
	pthread_join(h.vcpus[0].thread, NULL);
	/* The thread left without unbinding: the destroy sees it gone. */
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);
	h_vm_destroy(&h);
	return 0;
}

/* VM_DEAD with a vCPU no thread is bound to: its queued items are
 * cancelled by vcpureq_vm_dead()'s caller, not left for the destroy. */
TEST_BOTH(vm_dead_cancels_unbound_work)
{
	struct h_vm h;
	pthread_t t;
	bool returned;

	H_VM(&h, be, 1, H_SPIN, NULL);
	xh = &h;
	atomic_store(&cancelled_done, 0);
	atomic_store(&sync_ret, 1);
	CHECK_EQ(queue_sync_and_async(&h, &t, 4), 0);
	CHECK(vcpureq_vm_dead(h.vm) >= 0);
	CHECK_EQ(atomic_load(&cancelled_done), 4); /* on our thread */
	{
		uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

		while (atomic_load(&sync_ret) == 1 && h_now_ns() < end)
			h_sleep_us(100);
		returned = atomic_load(&sync_ret) != 1;
	}
	if (!returned) {
		fprintf(stderr, "the synchronous caller is still blocked after VM_DEAD\n");
		vcpureq_vm_destroy(h.vm); /* let it go */
	}
	pthread_join(t, NULL);
	CHECK(returned);
	CHECK_EQ(atomic_load(&sync_ret), -ECANCELED);
	h_vm_destroy(&h);
	return 0;
}

/* ---- 4c. vcpureq_pause_wait() ---- */

/* After a timed-out pause, pause_wait() waits again adding no pause: one
 * resume lets the vCPU run.  A target not paused: -EINVAL. */
TEST_BOTH(pause_wait_adds_no_pause)
{
	struct vcpureq_vm_opts o = { .handle_requests = hold_handler };
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	uint64_t one = 2, pending = 0;
	struct h_vm h;

	H_VM(&h, be, 2, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK_EQ(vcpureq_pause_wait(h.vm, &one, 64, NULL), -EINVAL);
	CHECK_EQ(hold_vcpu(&h, 1, REQ_A), 0);
	dl.when = h_in_ms(50);
	dl.pending = &pending;
	dl.pending_bits = 64;
	CHECK_EQ(vcpureq_pause(h.vm, &one, 64, &dl), -ETIMEDOUT);
	CHECK_EQ(pending, 2);
	dl.when = h_in_ms(50);
	CHECK_EQ(vcpureq_pause_wait(h.vm, &one, 64, &dl), -ETIMEDOUT);
	CHECK_EQ(pending, 2);
	atomic_store(&hold, 0);
	dl.when = h_in_ms(HANG_MS);
	CHECK_EQ(vcpureq_pause_wait(h.vm, &one, 64, &dl), 0);
	CHECK_EQ(pending, 0);
	CHECK(parked(&h, 1));
	/* A deadline already past is valid: no wait needed, success. */
	dl.when.tv_sec = 0;
	dl.when.tv_nsec = 0;
	CHECK_EQ(vcpureq_pause_wait(h.vm, &one, 64, &dl), 0);
	/* vCPU 0 not paused: refused, nothing waited for. */
	CHECK_EQ(vcpureq_pause_wait(h.vm, NULL, 0, NULL), -EINVAL);
	/* One pause in force: one resume. */
	CHECK_EQ(vcpureq_resume(h.vm, &one, 64), 0);
	CHECK(!paused(&h, 1));
	CHECK(progresses(&h, 1));
	CHECK_EQ(vcpureq_resume(h.vm, &one, 64), -EINVAL);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- 5. the pending mask past 64 vCPUs; KVM_KVMCLOCK_CTRL ---- */

#define MANY 70
/* Stubborn vCPUs stay in guest mode and ignore kicks until released:
 * across both words, the last of the VM included. */
static const unsigned int stubborn_ids[] = { 3, 63, 64, 69 };
static _Atomic int stubborn_go;

static bool is_stubborn(unsigned int i)
{
	unsigned int k;

	for (k = 0; k < sizeof(stubborn_ids) / sizeof(stubborn_ids[0]); k++)
		if (stubborn_ids[k] == i)
			return true;
	return false;
}

/* Thread backend guest: the stubborn ones wait for release (in guest
 * mode), then leave on a kick; the others halt at once (asleep in block:
 * outside guest mode, never waited for). */
static int stubborn_guest(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (!is_stubborn(vcpureq_vcpu_index(v)))
		return KVM_EXIT_HLT;
	for (;;) {
		if (atomic_load(&stubborn_go) && vcpureq_guest_kicked(v))
			return VCPUREQ_GUEST_KICKED;
		h_sleep_us(500);
	}
}

/*
 * 70 vCPUs (thread backend): a WAIT with a deadline names exactly the
 * stubborn ones in a 128-bit pending mask filled with ones before the
 * call; every other bit is cleared, bits 70..127 (past the vCPU count)
 * included.  Then with a 100-bit mask: bits 0..99 reported the same, and
 * the word after the mask's last one untouched.
 */
TEST(pending_mask_70_vcpus)
{
	struct vcpureq_vm_opts o = { .guest = stubborn_guest };
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	uint64_t pending[3], want[2] = { 0, 0 };
	struct h_vm h;
	unsigned int i;

	if (be == VCPUREQ_BACKEND_KVM)
		be = VCPUREQ_BACKEND_THREAD; /* a thread-backend case */
	H_VM(&h, be, MANY, H_HALT, &o);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < MANY; i++) {
		if (is_stubborn(i)) {
			want[i / 64] |= UINT64_C(1) << (i % 64);
			CHECK(h_wait_until(h_in_guest, &h, i, HANG_MS));
		} else {
			CHECK(h_wait_until(h_sleeping, &h, i, HANG_MS));
		}
	}
	/* NO_WAKEUP: the sleepers stay asleep; only the stubborn ones are
	 * waited for, and they never acknowledge. */
	pending[0] = pending[1] = pending[2] = ~0ull;
	dl.when = h_in_ms(30);
	dl.pending = pending;
	dl.pending_bits = 128;
	CHECK_EQ(vcpureq_make_vcpus_request_deadline(
			 h.vm, REQ_WAIT | VCPUREQ_REQUEST_NO_WAKEUP, NULL, 0, &dl),
		 -ETIMEDOUT);
	if (pending[0] != want[0] || pending[1] != want[1])
		fprintf(stderr, "pending %016llx %016llx, want %016llx %016llx\n",
			(unsigned long long)pending[1], (unsigned long long)pending[0],
			(unsigned long long)want[1], (unsigned long long)want[0]);
	CHECK_EQ(pending[0], want[0]);
	CHECK_EQ(pending[1], want[1]);
	CHECK_EQ(pending[2], ~0ull);
	pending[0] = pending[1] = pending[2] = ~0ull;
	dl.when = h_in_ms(30);
	dl.pending_bits = 100;
	CHECK_EQ(vcpureq_make_vcpus_request_deadline(
			 h.vm, REQ_WAIT | VCPUREQ_REQUEST_NO_WAKEUP, NULL, 0, &dl),
		 -ETIMEDOUT);
	CHECK_EQ(pending[0], want[0]);
	CHECK_EQ(pending[1] & ((UINT64_C(1) << 36) - 1), want[1]);
	CHECK_EQ(pending[2], ~0ull);
	atomic_store(&stubborn_go, 1);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

#if defined(__x86_64__)
/*
 * KVM_KVMCLOCK_CTRL on pause: the guest enables kvmclock (wrmsr
 * MSR_KVM_SYSTEM_TIME_NEW with the structure's address | 1) and spins.
 * After a pause, a resume and the next entry, KVM has set
 * PVCLOCK_GUEST_STOPPED (bit 1 of the flags byte, offset 29 of struct
 * pvclock_vcpu_time_info) in guest memory; before the pause it is clear.
 * The guest counts its loops (dword 0 of its DS, as the harness's
 * programs do): guest code seen running after the resume means that
 * entry happened, so the flag is checked then, without waiting for it.
 */
#define KVMCLOCK_CODE_GPA 0x9000u
#define PVCLOCK_GPA 0xa000u
#define PVCLOCK_FLAGS_OFF 29
#define PVCLOCK_GUEST_STOPPED 2u

static const uint8_t kvmclock_code[] = {
	0x66, 0xb9, 0x01, 0x4d, 0x56, 0x4b,            /* mov ecx, 0x4b564d01 */
	0x66, 0xb8, (PVCLOCK_GPA | 1) & 0xff, (PVCLOCK_GPA >> 8) & 0xff,
	0x00, 0x00,                                     /* mov eax, gpa | 1 */
	0x66, 0x31, 0xd2,                               /* xor edx, edx */
	0x0f, 0x30,                                     /* wrmsr */
	0x66, 0x83, 0x06, 0x00, 0x00, 0x01,             /* 1: addl $1, %ds:0 */
	0xeb, 0xf8,                                     /* jmp 1b */
};

static uint8_t pvclock_flags(struct h_vm *h)
{
	return __atomic_load_n(h->mem + PVCLOCK_GPA + PVCLOCK_FLAGS_OFF,
			       __ATOMIC_ACQUIRE);
}

static uint32_t pvclock_version(struct h_vm *h)
{
	return __atomic_load_n((uint32_t *)(h->mem + PVCLOCK_GPA),
			       __ATOMIC_ACQUIRE);
}

static bool guest_stopped(struct h_vm *h, unsigned int id)
{
	(void)id;
	return pvclock_flags(h) & PVCLOCK_GUEST_STOPPED;
}

static bool kvmclock_on(struct h_vm *h, unsigned int id)
{
	(void)id;
	return pvclock_version(h) != 0;
}

#endif

TEST(pause_kvmclock_guest_stopped)
{
#if defined(__x86_64__)
	struct kvm_regs regs;
	struct h_vm h;
	int fd;

	if (be != VCPUREQ_BACKEND_KVM)
		be = VCPUREQ_BACKEND_KVM;
	H_VM(&h, be, 1, H_SPIN, NULL);
	memcpy(h.mem + KVMCLOCK_CODE_GPA, kvmclock_code, sizeof(kvmclock_code));
	fd = vcpureq_vcpu_kvm_fd(vcpureq_vm_vcpu(h.vm, 0));
	CHECK(ioctl(fd, KVM_GET_REGS, &regs) == 0);
	regs.rip = KVMCLOCK_CODE_GPA;
	CHECK(ioctl(fd, KVM_SET_REGS, &regs) == 0);
	CHECK_EQ(h_start(&h), 0);
	/* kvmclock on: KVM wrote the structure (a version) at an entry. */
	CHECK(h_wait_until(kvmclock_on, &h, 0, HANG_MS));
	CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS) ||
	      vcpureq_vcpu_mode(vcpureq_vm_vcpu(h.vm, 0)) ==
		      VCPUREQ_IN_GUEST_MODE);
	CHECK(!guest_stopped(&h, 0));
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	/* Guest code ran after the resume: KVM entered the guest, and it
	 * writes the flag before that entry (KVM_REQ_CLOCK_UPDATE). */
	CHECK(progresses(&h, 0));
	if (!guest_stopped(&h, 0))
		fprintf(stderr, "flags %#x version %u: PVCLOCK_GUEST_STOPPED not set\n",
			pvclock_flags(&h), pvclock_version(&h));
	CHECK(guest_stopped(&h, 0));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
#else
	(void)be;
	printf("SKIP: x86-only: kvmclock (KVM_KVMCLOCK_CTRL) is x86's paravirtual clock; arm64 guests use the arch timer\n");
	return H_SKIP;
#endif
}

/* ---- 7. run-on-vCPU while paused ---- */

/* What a work function saw of its vCPU, on which thread. */
struct parked_work {
	struct h_vm *h;
	unsigned int id;
	_Atomic int ran, done, on_vcpu_thread, parked, paused, outside;
	_Atomic uint64_t iters; /* the guest counter when it ran */
};

static int parked_fn(struct vcpureq_vcpu *v, void *arg)
{
	struct parked_work *pw = arg;

	atomic_store(&pw->on_vcpu_thread,
		     pthread_equal(pthread_self(), pw->h->vcpus[pw->id].thread));
	atomic_store(&pw->parked, vcpureq_vcpu_parked(v));
	atomic_store(&pw->paused, vcpureq_vcpu_paused(v));
	atomic_store(&pw->outside, vcpureq_vcpu_mode(v) ==
					   VCPUREQ_OUTSIDE_GUEST_MODE);
	atomic_store(&pw->iters, h_guest_iters(pw->h, pw->id));
	atomic_store(&pw->ran, 1);
	return 42;
}

static void parked_done(void *arg, int result)
{
	struct parked_work *pw = arg;

	atomic_store(&pw->done, result == 42 ? 1 : -1);
}

/*
 * A paused vCPU runs the run-on-vCPU items queued to it in its parking:
 * on its own thread, still paused and parked, without running guest code,
 * for the async and the synchronous call alike; the pause holds after.
 * (Before, an item waited for the resume: a VMM could not read a paused
 * vCPU's registers on the vCPU's thread.)  The async item is waited for a
 * bounded time, so that a parking that ignores work fails here, not by a
 * hang.
 */
TEST_BOTH(run_on_vcpu_while_paused)
{
	struct parked_work a = { 0 }, s = { 0 };
	uint64_t iters[2];
	struct h_vm h;
	int result = 0;
	unsigned int i;

	H_VM(&h, be, 2, H_SPIN, NULL);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 2; i++)
		CHECK(progresses(&h, i));
	CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
	for (i = 0; i < 2; i++) {
		CHECK(h_wait_until(parked, &h, i, HANG_MS));
		iters[i] = h_guest_iters(&h, i);
	}
	a.h = s.h = &h;
	a.id = 0;
	s.id = 1;
	CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, 0), parked_fn,
					   parked_done, &a), 0);
	/* 10 s: the item takes microseconds; a parking that ignores work
	 * leaves it for the resume, which never comes. */
	if (!wait_flag_ms(&a.done, 10000))
		fprintf(stderr, "the async item did not run in 10 s: ran %d, vCPU 0 parked %d\n",
			atomic_load(&a.ran), parked(&h, 0));
	CHECK_EQ(atomic_load(&a.done), 1);
	CHECK_EQ(vcpureq_run_on_vcpu(vcpureq_vm_vcpu(h.vm, 1), parked_fn, &s,
				     &result), 0);
	CHECK_EQ(result, 42);
	CHECK_EQ(atomic_load(&s.ran), 1);
	for (i = 0; i < 2; i++) {
		struct parked_work *pw = i ? &s : &a;

		CHECK_EQ(atomic_load(&pw->on_vcpu_thread), 1);
		CHECK_EQ(atomic_load(&pw->parked), 1);
		CHECK_EQ(atomic_load(&pw->paused), 1);
		CHECK_EQ(atomic_load(&pw->outside), 1);
		CHECK_EQ(atomic_load(&pw->iters), iters[i]);
		/* Still parked, no guest code since the pause. */
		CHECK(parked(&h, i) && paused(&h, i));
		CHECK_EQ(h_guest_iters(&h, i), iters[i]);
	}
	h_sleep_us(20000);
	for (i = 0; i < 2; i++)
		CHECK_EQ(h_guest_iters(&h, i), iters[i]);
	CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	for (i = 0; i < 2; i++)
		CHECK(progresses(&h, i));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}
