/* SPDX-License-Identifier: MIT */
/*
 * Bad input: every misuse gets its documented error code and a non-empty
 * vcpureq_errmsg(), never a crash or a hang, and a refused call has no
 * effect (no request bit set, no kick, no binding changed).
 *
 * vcpureq_errmsg() is "the message for the last error returned to this
 * thread", so a stale message from an earlier failure would satisfy a bare
 * "non-empty" check.  Before each bad call, EXPECT_ERR() therefore provokes
 * an unrelated sentinel error (vcpureq_vm_open() with opts.size 0) and then
 * requires a non-empty message that differs from the sentinel's.
 */
#include "harness.h"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

/* ---- error-message freshness ---- */

static char sentinel_msg[256];

static void errmsg_reset(void)
{
	struct vcpureq_vm_opts o = { .size = 0 };
	struct vcpureq_vm *vm;

	(void)vcpureq_vm_open(&o, -1, &vm); /* "opts.size is 0: ..." */
	if (!sentinel_msg[0])
		snprintf(sentinel_msg, sizeof(sentinel_msg), "%s",
			 vcpureq_errmsg());
}

static int check_fresh_msg(const char *what, const char *file, int line)
{
	const char *m = vcpureq_errmsg();

	if (!m || !m[0] || !strcmp(m, sentinel_msg)) {
		fprintf(stderr, "%s:%d: %s: no error message for this error (errmsg: \"%s\")\n",
			file, line, what, m ? m : "(null)");
		return 1;
	}
	printf("  %-70s -> %s\n", what, m);
	return 0;
}

/* Expect @call to return exactly @expected (a negative errno) with a fresh,
 * non-empty message. */
#define EXPECT_ERR(expected, call)                                          \
	do {                                                                \
		long long r__;                                              \
		errmsg_reset();                                             \
		r__ = (long long)(call);                                    \
		if (r__ != (long long)(expected)) {                         \
			fprintf(stderr, "%s:%d: %s returned %lld, expected %s (%lld) (errmsg: %s)\n", \
				__FILE__, __LINE__, #call, r__, #expected,  \
				(long long)(expected), vcpureq_errmsg());   \
			return 1;                                           \
		}                                                           \
		if (check_fresh_msg(#call, __FILE__, __LINE__))             \
			return 1;                                           \
	} while (0)

/* ---- a thread that owns (is bound to) a vCPU while the test pokes it ---- */

struct owner {
	pthread_t t;
	struct vcpureq_vcpu *v;
	/* Runs on the owner thread after release, while still bound. */
	int (*body)(struct owner *o);
	_Atomic int ready, go;
	int bind_ret, body_ret, unbind_ret;
};

static void *owner_main(void *p)
{
	struct owner *o = p;

	o->bind_ret = vcpureq_vcpu_bind(o->v);
	atomic_store(&o->ready, 1);
	if (o->bind_ret)
		return NULL;
	while (!atomic_load(&o->go))
		h_sleep_us(100);
	o->body_ret = o->body ? o->body(o) : 0;
	o->unbind_ret = vcpureq_vcpu_unbind(o->v);
	return NULL;
}

static int owner_start(struct owner *o, struct vcpureq_vcpu *v,
		       int (*body)(struct owner *))
{
	memset(o, 0, sizeof(*o));
	o->v = v;
	o->body = body;
	if (pthread_create(&o->t, NULL, owner_main, o))
		return -EAGAIN;
	while (!atomic_load(&o->ready))
		h_sleep_us(100);
	return o->bind_ret;
}

/* Release the owner: it runs its body, unbinds and exits. */
static int owner_finish(struct owner *o)
{
	atomic_store(&o->go, 1);
	pthread_join(o->t, NULL);
	if (o->body_ret)
		return o->body_ret;
	return o->unbind_ret;
}

/* ---- helpers ---- */

static uint64_t made(struct h_vm *h, unsigned int id)
{
	struct vcpureq_stats st;

	vcpureq_vcpu_stats(vcpureq_vm_vcpu(h->vm, id), &st, sizeof(st));
	return st.requests_made;
}

static uint64_t kicks(struct h_vm *h, unsigned int id)
{
	struct vcpureq_stats st;

	vcpureq_vcpu_stats(vcpureq_vm_vcpu(h->vm, id), &st, sizeof(st));
	return st.kicks;
}

/* No request was made of, nor kick sent to, any vCPU: by the counters, and
 * by looking at each bitmap from a thread bound to it in turn. */
static int nothing_made(struct h_vm *h)
{
	unsigned int i;

	for (i = 0; i < h->nr; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, i);

		CHECK_EQ(made(h, i), 0);
		CHECK_EQ(kicks(h, i), 0);
		CHECK_EQ(vcpureq_vcpu_bind(v), 0);
		CHECK_EQ(vcpureq_request_pending(v), 0);
		CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	}
	return 0;
}

/* Every call that takes a request number rejects @req with -EINVAL and a
 * message: the per-vCPU calls on vCPU 0 (bound to this thread), the
 * request to vCPU 1, and the three broadcast forms (@ids, @mask). */
static int every_call_rejects(struct h_vm *h, unsigned int req,
			      const unsigned int *ids, size_t nids,
			      const uint64_t *mask)
{
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, 0);

	printf(" request 0x%x:\n", req);
	EXPECT_ERR(-EINVAL, vcpureq_make_request(req, v));
	EXPECT_ERR(-EINVAL, vcpureq_test_request(req, v));
	EXPECT_ERR(-EINVAL, vcpureq_check_request(req, v));
	EXPECT_ERR(-EINVAL, vcpureq_clear_request(req, v));
	EXPECT_ERR(-EINVAL, vcpureq_request(req, v));
	EXPECT_ERR(-EINVAL, vcpureq_request(req, vcpureq_vm_vcpu(h->vm, 1)));
	EXPECT_ERR(-EINVAL, vcpureq_make_all_cpus_request(h->vm, req));
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(h->vm, req, ids, nids));
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request_mask(h->vm, req, mask, 2));
	return 0;
}

#define REQ_OK VCPUREQ_ARCH_REQ(3)
#define FLAG_UNKNOWN (1u << 11)

/* ---- request numbers above 63 ---- */

TEST_BOTH(bad_request_number)
{
	static const unsigned int bad[] = {
		64, 200, 255, 64 | VCPUREQ_REQUEST_WAIT,
		200 | VCPUREQ_REQUEST_NO_WAKEUP,
	};
	struct h_vm h;
	struct vcpureq_vcpu *v;
	uint64_t mask[1] = { 1 };
	unsigned int ids[1] = { 0 };
	size_t i;

	H_VM(&h, be, 2, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	/* test/check/clear validate the number only for the vCPU thread. */
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned int req = bad[i];

		if (every_call_rejects(&h, req, ids, 1, mask))
			return 1;
	}
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(nothing_made(&h), 0);

	/* The boundary: 63 is a valid request number. */
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_make_request(63, v), 0);
	CHECK_EQ(vcpureq_test_request(63, v), 1);
	CHECK_EQ(vcpureq_check_request(63, v), 1);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- unknown flag bits ---- */

TEST_BOTH(unknown_flag_bits)
{
	static const unsigned int bad[] = {
		REQ_OK | FLAG_UNKNOWN,
		REQ_OK | (1u << 31),
		REQ_OK | VCPUREQ_REQUEST_WAIT | FLAG_UNKNOWN,
		VCPUREQ_REQ_OUTSIDE_GUEST_MODE | FLAG_UNKNOWN,
	};
	struct h_vm h;
	struct vcpureq_vcpu *v;
	uint64_t mask[1] = { 3 };
	unsigned int ids[2] = { 1, 0 };
	size_t i;

	H_VM(&h, be, 2, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned int req = bad[i];

		if (every_call_rejects(&h, req, ids, 2, mask))
			return 1;
	}
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(nothing_made(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- NO_ACTION through make_request ---- */

TEST_BOTH(no_action_make_request)
{
	struct h_vm h;
	struct vcpureq_vcpu *v;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	EXPECT_ERR(-EINVAL, vcpureq_make_request(VCPUREQ_REQUEST_NO_ACTION, v));
	EXPECT_ERR(-EINVAL, vcpureq_make_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, v));
	EXPECT_ERR(-EINVAL,
		   vcpureq_make_request(REQ_OK | VCPUREQ_REQUEST_NO_ACTION, v));
	CHECK_EQ(nothing_made(&h), 0);
	/* The same request through vcpureq_request() is valid and, being
	 * NO_ACTION, sets no bit (the vCPU is unbound: no kick target, no
	 * wait). */
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, v), 0);
	CHECK_EQ(made(&h, 0), 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- vCPU id lists ---- */

TEST_BOTH(bad_vcpu_ids)
{
	static const unsigned int out_of_range[] = { 0, 4 };
	static const unsigned int way_out[] = { 1, 1000 };
	static const unsigned int max_id[] = { UINT_MAX };
	static const unsigned int dup[] = { 1, 2, 1 };
	static const unsigned int dup_adjacent[] = { 3, 3 };
	static const unsigned int good[] = { 2, 0 };
	const unsigned int reqs[] = { REQ_OK, REQ_OK | VCPUREQ_REQUEST_WAIT };
	struct h_vm h;
	size_t i;

	H_VM(&h, be, 4, H_SPIN, NULL);
	for (i = 0; i < 2; i++) {
		unsigned int req = reqs[i];

		printf(" request 0x%x:\n", req);
		EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(h.vm, req, out_of_range, 2));
		EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(h.vm, req, way_out, 2));
		EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(h.vm, req, max_id, 1));
		EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(h.vm, req, dup, 3));
		EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(h.vm, req, dup_adjacent, 2));
		EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(h.vm, req, NULL, 1));
	}
	/* Nothing is made then: no bit on any vCPU, not even the valid ids
	 * listed before the bad one. */
	CHECK_EQ(nothing_made(&h), 0);

	/* Contrast: a good list sets exactly the named bits. */
	CHECK_EQ(vcpureq_make_vcpus_request(h.vm, REQ_OK, good, 2), 0);
	for (i = 0; i < 4; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h.vm, (unsigned int)i);
		int want = i == 0 || i == 2;

		CHECK_EQ(made(&h, (unsigned int)i), want);
		CHECK_EQ(vcpureq_vcpu_bind(v), 0);
		CHECK_EQ(vcpureq_check_request(REQ_OK, v), want);
		CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	}
	h_vm_destroy(&h);
	return 0;
}

/* ---- masks ---- */

TEST_BOTH(bad_mask)
{
	/* 70 vCPUs: the mask spans two 64-bit words. */
	const unsigned int nr = 70;
	uint64_t m[4];
	struct h_vm h;
	unsigned int i;

	H_VM(&h, be, nr, H_SPIN, NULL);

	printf(" bit == nr_vcpus (second word):\n");
	memset(m, 0, sizeof(m));
	m[0] = 1;                  /* vCPU 0: valid */
	m[1] = UINT64_C(1) << 6;   /* bit 70 == nr_vcpus */
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, m, 128));
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request_mask(
				    h.vm, REQ_OK | VCPUREQ_REQUEST_WAIT, m, 128));
	printf(" bit far above nr_vcpus:\n");
	memset(m, 0, sizeof(m));
	m[0] = 2;
	m[3] = UINT64_C(1) << 63;  /* bit 255 */
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, m, 256));
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request_mask(
				    h.vm, VCPUREQ_REQ_OUTSIDE_GUEST_MODE, m, 256));
	printf(" NULL mask:\n");
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, NULL, 64));
	CHECK_EQ(nothing_made(&h), 0);

	/* Contrast: the highest valid bit (69) works, and only it is set. */
	memset(m, 0, sizeof(m));
	m[1] = UINT64_C(1) << 5;   /* bit 69 */
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, m, 128), 0);
	for (i = 0; i < nr; i++)
		CHECK_EQ(made(&h, i), i == 69);
	h_vm_destroy(&h);
	return 0;
}

/* ---- vCPU-thread-only calls from another thread ---- */

static int all_eperm(struct vcpureq_vcpu *v)
{
	EXPECT_ERR(-EPERM, vcpureq_request_pending(v));
	EXPECT_ERR(-EPERM, vcpureq_test_request(REQ_OK, v));
	EXPECT_ERR(-EPERM, vcpureq_check_request(REQ_OK, v));
	EXPECT_ERR(-EPERM, vcpureq_clear_request(REQ_OK, v));
	EXPECT_ERR(-EPERM, vcpureq_vcpu_run(v));
	EXPECT_ERR(-EPERM, vcpureq_vcpu_block(v));
	EXPECT_ERR(-EPERM, vcpureq_walk_lockless_begin(v));
	EXPECT_ERR(-EPERM, vcpureq_walk_lockless_end(v));
	EXPECT_ERR(-EPERM, vcpureq_vcpu_unbind(v));
	EXPECT_ERR(-EPERM, vcpureq_vcpu_take_interrupt(v));
	return 0;
}

/* On the owner of vCPU 0, after the other thread's refused calls: still
 * bound (its own calls work), its request still pending (the foreign
 * check/clear did not consume it), the interrupt still queued, no walk
 * begun, mode untouched. */
static int owner_still_intact(struct owner *o)
{
	struct vcpureq_vcpu *v = o->v;

	CHECK_EQ(vcpureq_vcpu_mode(v), VCPUREQ_OUTSIDE_GUEST_MODE);
	CHECK_EQ(vcpureq_test_request(REQ_OK, v), 1);
	CHECK_EQ(vcpureq_check_request(REQ_OK, v), 1);
	CHECK_EQ(vcpureq_vcpu_take_interrupt(v), 0x41);
	CHECK_EQ(vcpureq_walk_lockless_end(v), -EINVAL); /* none begun */
	return 0;
}

TEST_BOTH(not_vcpu_thread)
{
	struct h_vm h;
	struct vcpureq_vcpu *v0, *v1;
	struct owner o;

	H_VM(&h, be, 2, H_SPIN, NULL);
	v0 = vcpureq_vm_vcpu(h.vm, 0);
	v1 = vcpureq_vm_vcpu(h.vm, 1);

	printf(" unbound thread, unbound vCPU:\n");
	if (all_eperm(v0))
		return 1;

	printf(" thread bound to vCPU 1, vCPU 0 bound by another thread:\n");
	CHECK_EQ(owner_start(&o, v0, owner_still_intact), 0);
	CHECK_EQ(vcpureq_make_request(REQ_OK, v0), 0);
	CHECK(vcpureq_post_interrupt(v0, 0x41) >= 0);
	CHECK_EQ(vcpureq_vcpu_bind(v1), 0);
	if (all_eperm(v0))
		return 1;
	/* Our own vCPU still answers. */
	CHECK_EQ(vcpureq_request_pending(v1), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v1), 0);
	CHECK_EQ(owner_finish(&o), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- binding ---- */

static int try_bind_busy(struct owner *o)
{
	/* Runs on a thread bound to vCPU 1; vCPU 0 is the main thread's. */
	struct vcpureq_vcpu *v0 = vcpureq_vm_vcpu(vcpureq_vcpu_vm(o->v), 0);

	EXPECT_ERR(-EBUSY, vcpureq_vcpu_bind(v0));
	EXPECT_ERR(-EBUSY, vcpureq_vcpu_bind(o->v));
	CHECK_EQ(vcpureq_request_pending(o->v), 0);
	return 0;
}

static int bind_busy_other(struct h_vm *h, unsigned int id)
{
	/* A fresh, unbound thread tries to take vCPU @id. */
	struct owner o;
	int r = owner_start(&o, vcpureq_vm_vcpu(h->vm, id), NULL);

	if (r == 0) {
		owner_finish(&o);
		return 0; /* it succeeded */
	}
	pthread_join(o.t, NULL);
	return r;
}

TEST_BOTH(bind_busy)
{
	struct h_vm h;
	struct vcpureq_vcpu *v0, *v1;
	struct owner o;

	H_VM(&h, be, 2, H_SPIN, NULL);
	v0 = vcpureq_vm_vcpu(h.vm, 0);
	v1 = vcpureq_vm_vcpu(h.vm, 1);

	CHECK_EQ(vcpureq_vcpu_bind(v0), 0);
	EXPECT_ERR(-EBUSY, vcpureq_vcpu_bind(v0)); /* twice */
	EXPECT_ERR(-EBUSY, vcpureq_vcpu_bind(v1)); /* a second vCPU */
	/* Still bound to v0 only. */
	CHECK_EQ(vcpureq_request_pending(v0), 0);
	CHECK_EQ(vcpureq_request_pending(v1), -EPERM);

	/* Another thread: v0 is taken (-EBUSY), v1 is free. */
	CHECK_EQ(bind_busy_other(&h, 0), -EBUSY);
	CHECK_EQ(owner_start(&o, v1, try_bind_busy), 0);
	CHECK_EQ(owner_finish(&o), 0);
	/* The refused binds changed nothing: v0 is still ours. */
	CHECK_EQ(vcpureq_request_pending(v0), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v0), 0);
	/* Now that it is free, another thread may take it. */
	CHECK_EQ(bind_busy_other(&h, 0), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- lockless walks ---- */

TEST_BOTH(walk_misuse)
{
	struct h_vm h;
	struct vcpureq_vcpu *v0, *v1;
	const unsigned int one[1] = { 1 };
	const uint64_t mask[1] = { 3 };

	H_VM(&h, be, 2, H_SPIN, NULL);
	v0 = vcpureq_vm_vcpu(h.vm, 0);
	v1 = vcpureq_vm_vcpu(h.vm, 1);
	CHECK_EQ(vcpureq_vcpu_bind(v0), 0);

	EXPECT_ERR(-EINVAL, vcpureq_walk_lockless_end(v0)); /* no begin */
	CHECK_EQ(vcpureq_vcpu_mode(v0), VCPUREQ_OUTSIDE_GUEST_MODE);
	CHECK_EQ(vcpureq_walk_lockless_begin(v0), 0);
	CHECK_EQ(vcpureq_vcpu_mode(v0), VCPUREQ_READING_SHADOW_PAGE_TABLES);
	EXPECT_ERR(-EBUSY, vcpureq_walk_lockless_begin(v0)); /* nested */
	CHECK_EQ(vcpureq_vcpu_mode(v0), VCPUREQ_READING_SHADOW_PAGE_TABLES);

	/* A WAIT request from inside a walk, to itself, to another vCPU, or
	 * broadcast, in every form: -EDEADLK, and nothing is made. */
	EXPECT_ERR(-EDEADLK, vcpureq_request(REQ_OK | VCPUREQ_REQUEST_WAIT, v0));
	EXPECT_ERR(-EDEADLK, vcpureq_request(REQ_OK | VCPUREQ_REQUEST_WAIT, v1));
	EXPECT_ERR(-EDEADLK, vcpureq_request(VCPUREQ_REQ_TLB_FLUSH, v1));
	EXPECT_ERR(-EDEADLK, vcpureq_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, v1));
	EXPECT_ERR(-EDEADLK, vcpureq_make_all_cpus_request(
				     h.vm, REQ_OK | VCPUREQ_REQUEST_WAIT));
	EXPECT_ERR(-EDEADLK, vcpureq_make_vcpus_request(
				     h.vm, REQ_OK | VCPUREQ_REQUEST_WAIT, one, 1));
	EXPECT_ERR(-EDEADLK, vcpureq_make_vcpus_request_mask(
				     h.vm, REQ_OK | VCPUREQ_REQUEST_WAIT, mask, 2));
	CHECK_EQ(made(&h, 0), 0);
	CHECK_EQ(made(&h, 1), 0);
	CHECK_EQ(kicks(&h, 0), 0);
	CHECK_EQ(kicks(&h, 1), 0);
	CHECK_EQ(vcpureq_request_pending(v0), 0);

	/* Without WAIT a request from inside a walk is fine. */
	CHECK(vcpureq_request(REQ_OK, v1) >= 0);
	CHECK_EQ(made(&h, 1), 1);

	CHECK_EQ(vcpureq_walk_lockless_end(v0), 0);
	CHECK_EQ(vcpureq_vcpu_mode(v0), VCPUREQ_OUTSIDE_GUEST_MODE);
	EXPECT_ERR(-EINVAL, vcpureq_walk_lockless_end(v0)); /* twice */
	CHECK_EQ(vcpureq_vcpu_mode(v0), VCPUREQ_OUTSIDE_GUEST_MODE);
	/* Out of the walk, WAIT works again (nothing to wait for here). */
	CHECK_EQ(vcpureq_request(REQ_OK | VCPUREQ_REQUEST_WAIT, v1), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v0), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ---- vm_create options ---- */

static int dummy_guest(struct vcpureq_vcpu *v, void *op)
{
	(void)v;
	(void)op;
	return 0;
}

static int create_err(enum vcpureq_backend be, unsigned int nr, int sig,
		      bool with_guest)
{
	struct vcpureq_vm_opts o;
	struct vcpureq_vm *vm = NULL;
	int r;

	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.backend = be;
	o.nr_vcpus = nr;
	o.kick_signal = sig;
	o.guest = with_guest ? dummy_guest : NULL;
	r = vcpureq_vm_create(&o, &vm);
	if (r == 0) {
		vcpureq_vm_free(vm);
		return 0;
	}
	if (vm) {
		fprintf(stderr, "vm_create failed (%d) but returned a VM\n", r);
		return -1000;
	}
	return r;
}

static bool kvm_usable(void)
{
	return access("/dev/kvm", R_OK | W_OK) == 0;
}

TEST_BOTH(vm_create_bad_opts)
{
	struct vcpureq_vm_opts o;
	struct vcpureq_vm *vm = NULL;

	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.backend = be;
	o.nr_vcpus = 1;
	o.guest = dummy_guest;
	EXPECT_ERR(-EINVAL, vcpureq_vm_create(NULL, &vm));
	EXPECT_ERR(-EINVAL, vcpureq_vm_create(&o, NULL));
	o.backend = (enum vcpureq_backend)7;
	EXPECT_ERR(-EINVAL, vcpureq_vm_create(&o, &vm));
	CHECK(vm == NULL);

	printf(" nr_vcpus:\n");
	/* Refused from the options alone, before /dev/kvm is opened: the
	 * same error on a machine without KVM. */
	EXPECT_ERR(-EINVAL, create_err(be, 0, 0, true));
	o.backend = be;
	o.nr_vcpus = 5;
	o.max_vcpus = 4;
	EXPECT_ERR(-EINVAL, vcpureq_vm_create(&o, &vm));
	CHECK(strstr(vcpureq_errmsg(), "opts.max_vcpus") != NULL);
	CHECK(vm == NULL);
	o.max_vcpus = 0;
	/* Above the VM's own limit (KVM_CAP_MAX_VCPUS): known once the VM
	 * exists, so only where it can (without KVM the open fails first,
	 * with the message naming /dev/kvm). */
	if (be == VCPUREQ_BACKEND_THREAD || kvm_usable()) {
		EXPECT_ERR(-EINVAL, create_err(be, be == VCPUREQ_BACKEND_THREAD ?
							   VCPUREQ_THREAD_MAX_VCPUS + 1 :
							   100000, 0, true));
		EXPECT_ERR(-EINVAL, create_err(be, UINT_MAX, 0, true));
	} else {
		CHECK(create_err(be, UINT_MAX, 0, true) < 0);
		CHECK(strstr(vcpureq_errmsg(), "/dev/kvm") != NULL);
	}
	/* A thread-backend VM without a guest callback is valid (a VMM
	 * with its own loop over enter/exit); vcpureq_vcpu_run() refuses
	 * it (test_vmm.run_without_guest_refused). */
	CHECK_EQ(create_err(VCPUREQ_BACKEND_THREAD, 1, 0, false), 0);
	printf(" kick_signal:\n");
	EXPECT_ERR(-EINVAL, create_err(be, 1, -1, true));
	EXPECT_ERR(-EINVAL, create_err(be, 1, INT_MIN, true));
	EXPECT_ERR(-EINVAL, create_err(be, 1, _NSIG, true));
	EXPECT_ERR(-EINVAL, create_err(be, 1, 1000, true));
	EXPECT_ERR(-EINVAL, create_err(be, 1, INT_MAX, true));
	EXPECT_ERR(-EINVAL, create_err(be, 1, SIGKILL, true));
	EXPECT_ERR(-EINVAL, create_err(be, 1, SIGSTOP, true));

	/* The failures left nothing behind: valid options still work (the
	 * thread backend always; KVM where /dev/kvm is usable). */
	if (be == VCPUREQ_BACKEND_THREAD || kvm_usable()) {
		CHECK_EQ(create_err(be, 1, 0, true), 0);
		CHECK_EQ(create_err(be, 4, 0, true), 0);
	}
	return 0;
}

/* ---- a kick signal the application already handles ---- */

static _Atomic int app_hits;

static void app_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&app_hits, 1);
}

static void app_siginfo(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	atomic_fetch_add(&app_hits, 1);
}

TEST_BOTH(kick_signal_in_use)
{
	struct sigaction sa, cur;
	int s1 = SIGRTMIN + 7, s2 = SIGRTMIN + 8, s3 = SIGRTMIN + 9;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = app_handler;
	CHECK_EQ(sigaction(s1, &sa, NULL), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = app_siginfo;
	sa.sa_flags = SA_SIGINFO;
	CHECK_EQ(sigaction(s2, &sa, NULL), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	CHECK_EQ(sigaction(s3, &sa, NULL), 0);

	EXPECT_ERR(-EBUSY, create_err(be, 1, s1, true));
	EXPECT_ERR(-EBUSY, create_err(be, 1, s2, true));
	EXPECT_ERR(-EBUSY, create_err(be, 1, s3, true));
	/* Twice: a refusal does not leave the signal half-acquired. */
	EXPECT_ERR(-EBUSY, create_err(be, 1, s1, true));

	/* The application keeps its handlers... */
	CHECK_EQ(sigaction(s1, NULL, &cur), 0);
	CHECK(!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == app_handler);
	CHECK_EQ(sigaction(s2, NULL, &cur), 0);
	CHECK((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == app_siginfo);
	CHECK_EQ(sigaction(s3, NULL, &cur), 0);
	CHECK(!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_IGN);
	/* ...and they still run. */
	CHECK_EQ(raise(s1), 0);
	CHECK_EQ(raise(s2), 0);
	CHECK_EQ(atomic_load(&app_hits), 2);

	/* Another signal is fine. */
	if (be == VCPUREQ_BACKEND_THREAD || kvm_usable())
		CHECK_EQ(create_err(be, 1, SIGRTMIN + 10, true), 0);

	/* A VM whose KVM side fails after its kick signal was taken (here
	 * a vm_fd that is not open) gives the signal back: the default
	 * disposition again, not vcpureq's handler left behind. */
	if (be == VCPUREQ_BACKEND_KVM) {
		struct vcpureq_vm_opts vo = VCPUREQ_VM_OPTS_INIT;
		struct vcpureq_vm *vm = NULL;

		vo.kick_signal = SIGRTMIN + 10;
		CHECK(vcpureq_vm_open(&vo, 1000, &vm) < 0);
		CHECK(vm == NULL);
		CHECK_EQ(sigaction(SIGRTMIN + 10, NULL, &cur), 0);
		CHECK(!(cur.sa_flags & SA_SIGINFO) &&
		      cur.sa_handler == SIG_DFL);
		if (!kvm_usable()) {
			CHECK(create_err(be, 1, SIGRTMIN + 10, true) < 0);
			CHECK_EQ(sigaction(SIGRTMIN + 10, NULL, &cur), 0);
			CHECK(cur.sa_handler == SIG_DFL);
		}
	}

	/* The default (kick_signal 0: SIGRTMIN + 5) is checked the same way. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = app_handler;
	CHECK_EQ(sigaction(SIGRTMIN + 5, &sa, NULL), 0);
	EXPECT_ERR(-EBUSY, create_err(be, 1, 0, true));
	CHECK_EQ(sigaction(SIGRTMIN + 5, NULL, &cur), 0);
	CHECK(cur.sa_handler == app_handler);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	CHECK_EQ(sigaction(SIGRTMIN + 5, &sa, NULL), 0);
	if (be == VCPUREQ_BACKEND_THREAD || kvm_usable())
		CHECK_EQ(create_err(be, 1, 0, true), 0);
	return 0;
}

/* ---- destroy while bound ---- */

static int destroy_own_vm(struct owner *o)
{
	struct vcpureq_vm *vm = vcpureq_vcpu_vm(o->v);

	EXPECT_ERR(-EBUSY, vcpureq_vm_destroy(vm));
	EXPECT_ERR(-EBUSY, vcpureq_vm_free(vm));
	/* Still alive for its own vCPU thread. */
	CHECK_EQ(vcpureq_make_request(REQ_OK, o->v), 0);
	CHECK_EQ(vcpureq_check_request(REQ_OK, o->v), 1);
	return 0;
}

TEST_BOTH(destroy_while_bound)
{
	struct h_vm h;
	struct vcpureq_vcpu *v0, *v1;
	struct owner o;
	unsigned int id0 = 0;

	H_VM(&h, be, 2, H_SPIN, NULL);
	v0 = vcpureq_vm_vcpu(h.vm, 0);
	v1 = vcpureq_vm_vcpu(h.vm, 1);
	CHECK_EQ(owner_start(&o, v1, destroy_own_vm), 0);
	EXPECT_ERR(-EBUSY, vcpureq_vm_destroy(h.vm));
	EXPECT_ERR(-EBUSY, vcpureq_vm_free(h.vm));
	/* Refused: the VM is still fully alive. */
	CHECK_EQ(vcpureq_make_request(REQ_OK, v0), 0);
	CHECK(vcpureq_vcpu_kick(v0) >= 0);
	CHECK_EQ(vcpureq_make_vcpus_request(h.vm, REQ_OK, &id0, 1), 0);
	CHECK_EQ(owner_finish(&o), 0);
	/* The owner's own destroy attempt was refused too; unbound now. */
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);
	CHECK_EQ(vcpureq_vcpu_bind(v0), -ESHUTDOWN);
	h_vm_destroy(&h);
	return 0;
}

/* ---- every call after destroy ---- */

TEST_BOTH(use_after_destroy)
{
	struct h_vm h;
	struct vcpureq_vcpu *v0, *v1;
	struct owner o;
	const unsigned int ids[1] = { 1 };
	const uint64_t mask[1] = { 3 };

	H_VM(&h, be, 2, H_SPIN, NULL);
	v0 = vcpureq_vm_vcpu(h.vm, 0);
	v1 = vcpureq_vm_vcpu(h.vm, 1);
	/* Both vCPUs have been bound (and unbound) before. */
	CHECK_EQ(vcpureq_vcpu_bind(v0), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v0), 0);
	CHECK_EQ(owner_start(&o, v1, NULL), 0);
	CHECK_EQ(owner_finish(&o), 0);
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);

	EXPECT_ERR(-ESHUTDOWN, vcpureq_make_request(REQ_OK, v0));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_request(REQ_OK, v0));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_request(REQ_OK | VCPUREQ_REQUEST_WAIT, v1));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_request(VCPUREQ_REQ_OUTSIDE_GUEST_MODE, v1));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_make_all_cpus_request(h.vm, REQ_OK));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_make_all_cpus_request(h.vm, VCPUREQ_REQ_TLB_FLUSH));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_make_vcpus_request(h.vm, REQ_OK, ids, 1));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, mask, 2));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_vm_dead(h.vm));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_vcpu_kick(v0));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_vcpu_wake_up(v0));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_post_interrupt(v0, 0x20));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_vcpu_bind(v0));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_vcpu_bind(v1));
	EXPECT_ERR(-ESHUTDOWN, vcpureq_vm_destroy(h.vm));
	/* From another thread too (a fresh one, as a new vCPU thread would
	 * be). */
	CHECK_EQ(bind_busy_other(&h, 1), -ESHUTDOWN);
	/* The counters are refused too (every call says -ESHUTDOWN); the
	 * refused calls stopped at that check, before any effect: the VM
	 * was not even marked dead by the refused vcpureq_vm_dead(). */
	{
		struct vcpureq_stats st;

		EXPECT_ERR(-ESHUTDOWN, vcpureq_vcpu_stats(v0, &st, sizeof(st)));
	}
	CHECK(!vcpureq_vm_is_dead(h.vm));
	/* Memory stays valid until free, which now succeeds. */
	CHECK_EQ(vcpureq_vm_free(h.vm), 0);
	h.vm = NULL;
	h_vm_destroy(&h);
	return 0;
}

/* ---- interrupt vectors ---- */

TEST_BOTH(post_interrupt_bad_vector)
{
	struct h_vm h;
	struct vcpureq_vcpu *v;
	struct vcpureq_stats st;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	EXPECT_ERR(-EINVAL, vcpureq_post_interrupt(v, 256));
	EXPECT_ERR(-EINVAL, vcpureq_post_interrupt(v, 1000));
	EXPECT_ERR(-EINVAL, vcpureq_post_interrupt(v, UINT_MAX));
	vcpureq_vcpu_stats(v, &st, sizeof(st));
	CHECK_EQ(st.interrupts_posted, 0);
	CHECK_EQ(st.kicks, 0);
	/* Nothing queued... */
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	EXPECT_ERR(-ENOENT, vcpureq_vcpu_take_interrupt(v));
	/* ...and the boundary, 255, is valid. */
	CHECK_EQ(vcpureq_post_interrupt(v, 255), 0); /* from itself: no signal */
	CHECK_EQ(vcpureq_vcpu_take_interrupt(v), 255);
	EXPECT_ERR(-ENOENT, vcpureq_vcpu_take_interrupt(v));
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	vcpureq_vcpu_stats(v, &st, sizeof(st));
	CHECK_EQ(st.interrupts_posted, 1);
	h_vm_destroy(&h);
	return 0;
}

/* ---- NULL objects: -EINVAL, never a crash ---- */

TEST(null_objects)
{
	struct vcpureq_stats st;
	const unsigned int ids[1] = { 0 };
	const uint64_t mask[1] = { 1 };

	(void)be;
	EXPECT_ERR(-EINVAL, vcpureq_make_request(REQ_OK, NULL));
	EXPECT_ERR(-EINVAL, vcpureq_vcpu_kick(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_request(REQ_OK, NULL));
	EXPECT_ERR(-EINVAL, vcpureq_request(REQ_OK | VCPUREQ_REQUEST_WAIT, NULL));
	EXPECT_ERR(-EINVAL, vcpureq_make_all_cpus_request(NULL, REQ_OK));
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request(NULL, REQ_OK, ids, 1));
	EXPECT_ERR(-EINVAL, vcpureq_make_vcpus_request_mask(NULL, REQ_OK, mask, 1));
	EXPECT_ERR(-EINVAL, vcpureq_vm_dead(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_request_pending(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_test_request(REQ_OK, NULL));
	EXPECT_ERR(-EINVAL, vcpureq_check_request(REQ_OK, NULL));
	EXPECT_ERR(-EINVAL, vcpureq_clear_request(REQ_OK, NULL));
	EXPECT_ERR(-EINVAL, vcpureq_vcpu_bind(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_vcpu_unbind(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_vcpu_run(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_vcpu_block(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_vcpu_wake_up(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_walk_lockless_begin(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_walk_lockless_end(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_post_interrupt(NULL, 0x20));
	EXPECT_ERR(-EINVAL, vcpureq_vcpu_take_interrupt(NULL));
	EXPECT_ERR(-EINVAL, vcpureq_vm_destroy(NULL));
	/* stats(NULL) is the sentinel itself: check its code only. */
	CHECK_EQ(vcpureq_vcpu_stats(NULL, &st, sizeof(st)), -EINVAL);
	CHECK(vcpureq_vm_vcpu(NULL, 0) == NULL);
	CHECK_EQ(vcpureq_vm_nr_vcpus(NULL), 0);
	return 0;
}

/* A mask longer than any VM (4096 bits): only its set bits matter, and
 * a set bit beyond the VM is refused (the mask is read word by word, never
 * copied past the library's own bitmap). */
TEST_BOTH(mask_longer_than_max)
{
	static uint64_t m[64]; /* 4096 bits */
	struct vcpureq_stats st;
	struct h_vm h;

	H_VM(&h, be, 2, H_SPIN, NULL);
	memset(m, 0, sizeof(m));
	m[0] = 2; /* vCPU 1 */
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, m, 4096), 0);
	vcpureq_vcpu_stats(vcpureq_vm_vcpu(h.vm, 1), &st, sizeof(st));
	CHECK_EQ(st.requests_made, 1);
	m[40] = 1; /* bit 2560 */
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, m, 4096), -EINVAL);
	CHECK(vcpureq_errmsg()[0] != '\0');
	/* A length that cuts the stray bit off is fine. */
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_OK, m, 2560), 0);
	vcpureq_vcpu_stats(vcpureq_vm_vcpu(h.vm, 1), &st, sizeof(st));
	CHECK_EQ(st.requests_made, 2);
	h_vm_destroy(&h);
	return 0;
}

/* From guest mode (the thread backend's guest callback), a WAIT request of
 * another vCPU is refused: two callbacks waiting for each other would never
 * return (the model's GUEST_WAIT counterexample).  Of its own vCPU it is
 * fine, and a request without WAIT is fine. */
static _Atomic int gw_wait_other, gw_wait_self, gw_plain, gw_done;

static int guest_waits(struct vcpureq_vcpu *v, void *opaque)
{
	struct h_vm *h = opaque;

	if (vcpureq_vcpu_index(v) == 0 && !atomic_load(&gw_done)) {
		struct vcpureq_vcpu *other = vcpureq_vm_vcpu(h->vm, 1);
		unsigned int ids[2] = { 0, 1 };

		atomic_store(&gw_wait_other,
			     vcpureq_request(REQ_OK | VCPUREQ_REQUEST_WAIT, other));
		if (vcpureq_make_vcpus_request(h->vm, VCPUREQ_REQ_TLB_FLUSH, ids, 2) != -EDEADLK)
			atomic_store(&gw_wait_other, 1);
		atomic_store(&gw_wait_self,
			     vcpureq_request(REQ_OK | VCPUREQ_REQUEST_WAIT, v));
		atomic_store(&gw_plain, vcpureq_request(REQ_OK, other));
		atomic_store(&gw_done, 1);
	}
	while (!vcpureq_guest_kicked(v))
		;
	return VCPUREQ_GUEST_KICKED;
}

TEST(wait_from_guest_mode_refused)
{
	struct vcpureq_vm_opts o = { .guest = guest_waits };
	struct h_vm h;
	uint64_t end;

	(void)be;
	H_VM(&h, VCPUREQ_BACKEND_THREAD, 2, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	end = h_now_ns() + 10000000000ull;
	while (!atomic_load(&gw_done) && h_now_ns() < end)
		;
	CHECK_EQ(atomic_load(&gw_done), 1);
	CHECK_EQ(atomic_load(&gw_wait_other), -EDEADLK);
	CHECK_EQ(atomic_load(&gw_wait_self), 0);
	CHECK(atomic_load(&gw_plain) >= 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}
