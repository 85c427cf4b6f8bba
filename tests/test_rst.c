/* SPDX-License-Identifier: MIT */
/*
 * Statements of vcpu-requests.rst that had no direct test of their own
 * (docs/protocol.md, the statement map, cites each case by name):
 * the request-bitmap API (request_pending, clear_request), the numbering
 * (ARCH_BASE, the reserved generic numbers), the posted-interrupt exception
 * to "request-less kicks are almost never correct", requests checked from
 * the runnable hook, VM_DEAD made of one vCPU, and the IN_GUEST ->
 * EXITING_GUEST transition of a kick on real KVM.
 *
 * No timing is asserted: waits are bounded only by a hang detector.
 */
#include "harness.h"

#include <linux/kvm.h>
#include <sched.h>

#define HANG_MS (10000 * h_time_scale())
#define HANG_NS (HANG_MS * 1000000ull)

static struct vcpureq_vcpu *V(struct h_vm *h, unsigned int id)
{
	return vcpureq_vm_vcpu(h->vm, id);
}

/* Spin (yielding: 2 CPUs are shared) until *p >= want; false on a hang. */
static bool asleep(struct h_vm *h, unsigned int id)
{
	return h_sleeping(h, id) && !atomic_load(&h->vcpus[id].finished);
}

static bool finished(struct h_vm *h, unsigned int id)
{
	return atomic_load(&h->vcpus[id].finished);
}

/* ====================================================================== */
/* The bitmap API, on a vCPU bound to the test thread (no VMM loop). */

/* rst: kvm_request_pending() "Check if any requests are pending": 1 with a
 * bit set, whichever it is, and 0 again only once every bit was checked. */
TEST_BOTH(request_pending_true_when_pending)
{
	const unsigned int a = VCPUREQ_ARCH_REQ(0), b = VCPUREQ_ARCH_REQ(55);
	struct vcpureq_vcpu *v;
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = V(&h, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(vcpureq_make_request(a, v), 0);
	CHECK_EQ(vcpureq_request_pending(v), 1);
	CHECK_EQ(vcpureq_make_request(b, v), 0);
	CHECK_EQ(vcpureq_request_pending(v), 1);
	CHECK_EQ(vcpureq_check_request(a, v), 1);
	CHECK_EQ(vcpureq_request_pending(v), 1); /* b still pending */
	CHECK_EQ(vcpureq_check_request(b, v), 1);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	/* A generic request counts too (bit 0). */
	CHECK_EQ(vcpureq_make_request(VCPUREQ_REQ_TLB_FLUSH, v), 0);
	CHECK_EQ(vcpureq_request_pending(v), 1);
	CHECK_EQ(vcpureq_check_request(VCPUREQ_REQ_TLB_FLUSH, v), 1);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Every number a user may make: the generic TLB_FLUSH and UNBLOCK (VM_DEAD
 * would kill the VM) and the 56 architecture-specific ones. */
static unsigned int settable(unsigned int i)
{
	return i == 0 ? VCPUREQ_REQ_TLB_FLUSH :
	       i == 1 ? VCPUREQ_REQ_UNBLOCK : VCPUREQ_ARCH_REQ(i - 2);
}
#define NR_SETTABLE 58u

/* rst: kvm_clear_request() "Clear request @req": exactly that bit, every
 * other pending one stays; it is not "handled" (no counter moves). */
TEST_BOTH(clear_request_clears_one_bit)
{
	struct vcpureq_stats s0, s1;
	struct vcpureq_vcpu *v;
	struct h_vm h;
	unsigned int i, j;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = V(&h, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	for (i = 0; i < NR_SETTABLE; i++) {
		for (j = 0; j < NR_SETTABLE; j++)
			CHECK_EQ(vcpureq_make_request(settable(j), v), 0);
		vcpureq_vcpu_stats(v, &s0, sizeof(s0));
		CHECK_EQ(vcpureq_clear_request(settable(i), v), 0);
		vcpureq_vcpu_stats(v, &s1, sizeof(s1));
		CHECK_EQ(s1.requests_handled, s0.requests_handled);
		for (j = 0; j < NR_SETTABLE; j++)
			CHECK_EQ(vcpureq_test_request(settable(j), v), j != i);
		/* Clearing a bit that is not pending changes nothing. */
		CHECK_EQ(vcpureq_clear_request(settable(i), v), 0);
		CHECK_EQ(vcpureq_check_request(settable(i), v), 0);
		for (j = 0; j < NR_SETTABLE; j++)
			CHECK_EQ(vcpureq_check_request(settable(j), v), j != i);
		CHECK_EQ(vcpureq_request_pending(v), 0);
	}
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* rst: "The first 8 bits are reserved for architecture independent
 * requests; all additional bits are available for architecture dependent
 * requests" (kernel: KVM_ARCH_REQ(nr) == nr + KVM_REQUEST_ARCH_BASE). */
_Static_assert(VCPUREQ_REQUEST_ARCH_BASE == 8, "ARCH_BASE is the kernel's 8");
_Static_assert(VCPUREQ_ARCH_REQ(0) == 8 && VCPUREQ_ARCH_REQ(55) == 63,
	       "VCPUREQ_ARCH_REQ(n) == n + 8");
_Static_assert((VCPUREQ_ARCH_REQ_FLAGS(3, VCPUREQ_REQUEST_WAIT) &
		VCPUREQ_REQUEST_MASK) == 11,
	       "flags live above VCPUREQ_REQUEST_MASK");

TEST_BOTH(arch_req_is_n_plus_8)
{
	struct vcpureq_vcpu *v;
	struct h_vm h;
	unsigned int n, m;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = V(&h, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	for (n = 0; n <= VCPUREQ_REQUEST_NR_MAX - VCPUREQ_REQUEST_ARCH_BASE; n++) {
		unsigned int w = VCPUREQ_ARCH_REQ_FLAGS(n, VCPUREQ_REQUEST_WAIT |
						       VCPUREQ_REQUEST_NO_WAKEUP);

		CHECK_EQ(VCPUREQ_ARCH_REQ(n), n + 8);
		CHECK_EQ(w & VCPUREQ_REQUEST_MASK, n + 8);
		CHECK_EQ(w & ~VCPUREQ_REQUEST_MASK,
			 VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_WAKEUP);
		/* It sets its own bit: no generic request, no other one. */
		CHECK_EQ(vcpureq_make_request(VCPUREQ_ARCH_REQ(n), v), 0);
		CHECK_EQ(vcpureq_test_request(VCPUREQ_REQ_TLB_FLUSH, v), 0);
		CHECK_EQ(vcpureq_test_request(VCPUREQ_REQ_VM_DEAD, v), 0);
		CHECK_EQ(vcpureq_test_request(VCPUREQ_REQ_UNBLOCK, v), 0);
		for (m = 0; m <= 55; m++)
			CHECK_EQ(vcpureq_test_request(VCPUREQ_ARCH_REQ(m), v),
				 m == n);
		/* The flags select nothing else: the same bit. */
		CHECK_EQ(vcpureq_check_request(w, v), 1);
		CHECK_EQ(vcpureq_request_pending(v), 0);
	}
	/* Above 55 the sum leaves the 64-bit bitmap: a constant does not
	 * compile; a run-time number is refused. */
	{
		volatile int nr = 56;

		CHECK_EQ(vcpureq_make_request(VCPUREQ_ARCH_REQ(nr), v), -EINVAL);
	}
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Numbers 3-7: reserved generic numbers the library does not define.  Every
 * call that takes a request refuses them (-EINVAL, a message naming the
 * reservation) and nothing is made; 0-2 (TLB_FLUSH, VM_DEAD, UNBLOCK) are
 * the defined ones. */
TEST_BOTH(reserved_generic_numbers_refused)
{
	static const unsigned int flags[] = {
		0, VCPUREQ_REQUEST_WAIT, VCPUREQ_REQUEST_NO_WAKEUP,
		VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_WAKEUP,
	};
	const unsigned int ids[2] = { 0, 1 };
	const uint64_t mask = 3;
	struct vcpureq_vcpu *v;
	struct h_vm h;
	unsigned int nr, f, c;

	H_VM(&h, be, 2, H_SPIN, NULL);
	v = V(&h, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	for (nr = 3; nr < VCPUREQ_REQUEST_ARCH_BASE; nr++) {
		for (f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
			unsigned int req = nr | flags[f];

			for (c = 0; c < 9; c++) {
				int r;

				switch (c) {
				case 0: r = vcpureq_make_request(req, v); break;
				case 1: r = vcpureq_test_request(req, v); break;
				case 2: r = vcpureq_check_request(req, v); break;
				case 3: r = vcpureq_clear_request(req, v); break;
				case 4: r = vcpureq_request(req, v); break;
				case 5: r = vcpureq_request(req, V(&h, 1)); break;
				case 6: r = vcpureq_make_all_cpus_request(h.vm, req); break;
				case 7: r = vcpureq_make_vcpus_request(h.vm, req, ids, 2); break;
				default: r = vcpureq_make_vcpus_request_mask(h.vm, req, &mask, 2); break;
				}
				if (r != -EINVAL || !strstr(vcpureq_errmsg(), "reserved")) {
					fprintf(stderr, "request 0x%x, call %u: returned %d (errmsg: %s), want -EINVAL naming the reservation\n",
						req, c, r, vcpureq_errmsg());
					return 1;
				}
			}
		}
	}
	CHECK_EQ(h_stats(&h, 0).requests_made, 0);
	CHECK_EQ(h_stats(&h, 1).requests_made, 0);
	CHECK_EQ(h_stats(&h, 0).kicks, 0);
	CHECK_EQ(h_stats(&h, 1).kicks, 0);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	/* The defined generic numbers are accepted: 0 and 2 set bits 0 and 2
	 * (1, VM_DEAD, is the subject of vm_dead_of_one_vcpu_kills_vm). */
	CHECK_EQ(vcpureq_make_request(0, v), 0);
	CHECK_EQ(vcpureq_make_request(2, v), 0);
	CHECK_EQ(vcpureq_test_request(VCPUREQ_REQ_TLB_FLUSH, v), 1);
	CHECK_EQ(vcpureq_test_request(VCPUREQ_REQ_UNBLOCK, v), 1);
	CHECK_EQ(vcpureq_test_request(VCPUREQ_REQ_VM_DEAD, v), 0);
	CHECK_EQ(vcpureq_check_request(0, v), 1);
	CHECK_EQ(vcpureq_check_request(2, v), 1);
	CHECK_EQ(vcpureq_request_pending(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* The posted-interrupt exception: posters set PIR and ON, fence, read the
 * mode (request-less: no request bit); the vCPU reads PIR only after it
 * published IN_GUEST_MODE and fenced.  Several posters race a vCPU that
 * keeps entering and leaving guest mode (and sleeping); a post the vCPU
 * missed would leave it h_spinning in the guest with the vector pending, and
 * its poster waiting forever.  Every post is taken, exactly once. */

#define PI_POSTERS 3
#define PI_ROUNDS 2000
/* On a loaded machine each round waits for the vCPU to be scheduled: at
 * least PI_MIN_ROUNDS per poster, then as many as fit in the budget. */
#define PI_MIN_ROUNDS 200
#define PI_BUDGET_NS 20000000000ull
static uint64_t pi_deadline;
#define PI_VECTOR(p) (0x40u + (p))

static struct h_vm *pi_h;
static _Atomic uint64_t pi_taken[PI_POSTERS];
static _Atomic uint64_t pi_taken_total;
static _Atomic int pi_bad_mode, pi_bad_vector;
static _Atomic int pi_token; /* KVM: one vector, one post in flight */
static unsigned int pi_instance; /* vCPU thread only */

/* Thread backend guest: take what is pending (the PIR read, in guest
 * mode), then one of: exit to the VMM at once, halt (the VMM blocks), or
 * spin until kicked.  It never looks at PIR again while it spins: only the
 * kick can bring it back for a vector posted meanwhile. */
static int pi_guest(struct vcpureq_vcpu *v, void *opaque)
{
	int vec;

	(void)opaque;
	if (vcpureq_vcpu_mode(v) != VCPUREQ_IN_GUEST_MODE &&
	    vcpureq_vcpu_mode(v) != VCPUREQ_EXITING_GUEST_MODE)
		atomic_store(&pi_bad_mode, vcpureq_vcpu_mode(v) + 1);
	while ((vec = vcpureq_vcpu_take_interrupt(v)) >= 0) {
		unsigned int p = (unsigned int)vec - PI_VECTOR(0);

		if (p >= PI_POSTERS) {
			atomic_store(&pi_bad_vector, vec);
			continue;
		}
		atomic_fetch_add(&pi_taken[p], 1);
		atomic_fetch_add(&pi_taken_total, 1);
	}
	switch (pi_instance++ % 3) {
	case 0:
		return KVM_EXIT_IO;
	case 1:
		return KVM_EXIT_HLT;
	default:
		while (!vcpureq_guest_kicked(v))
			;
		return VCPUREQ_GUEST_KICKED;
	}
}

struct pi_poster {
	pthread_t t;
	unsigned int p;
	enum vcpureq_backend be;
	int err;
	unsigned int rounds; /* posts made and taken */
};

static uint64_t pi_count(enum vcpureq_backend be, unsigned int p)
{
	return be == VCPUREQ_BACKEND_KVM ? h_guest_irqs(pi_h, 0) :
					   atomic_load(&pi_taken[p]);
}

static void *pi_post_main(void *arg)
{
	struct pi_poster *ps = arg;
	struct vcpureq_vcpu *v = V(pi_h, 0);
	unsigned int i;

	for (i = 0; i < PI_ROUNDS && !ps->err &&
		    (i < PI_MIN_ROUNDS || h_now_ns() < pi_deadline); i++) {
		uint64_t want, end;
		int zero = 0, r;

		/* KVM: the guest has one vector, so posts of the several
		 * posters would merge in PIR: one in flight at a time, but
		 * from any poster, at any point of the vCPU's loop. */
		if (ps->be == VCPUREQ_BACKEND_KVM)
			while (!atomic_compare_exchange_weak(&pi_token, &zero, 1)) {
				zero = 0;
				sched_yield();
			}
		/* The post's deadline starts now, not before the token: on a
		 * loaded machine one poster can win the token for seconds. */
		end = h_now_ns() + HANG_NS;
		want = pi_count(ps->be, ps->p) + 1;
		r = vcpureq_post_interrupt(v, ps->be == VCPUREQ_BACKEND_KVM ?
						      H_IRQ_VECTOR :
						      PI_VECTOR(ps->p));
		if (r < 0 || r > 1)
			ps->err = r < 0 ? r : -1000;
		while (!ps->err && pi_count(ps->be, ps->p) < want) {
			if (h_now_ns() > end) {
				fprintf(stderr, "poster %u, post %u: not taken after 10 s (mode %d): a posted interrupt was lost\n",
					ps->p, i, vcpureq_vcpu_mode(v));
				ps->err = -ETIMEDOUT;
			}
			sched_yield();
		}
		if (ps->be == VCPUREQ_BACKEND_KVM)
			atomic_store(&pi_token, 0);
	}
	ps->rounds = i;
	return NULL;
}

TEST_BOTH(posted_interrupt_exception)
{
	struct vcpureq_vm_opts o = { .guest = pi_guest };
	struct pi_poster ps[PI_POSTERS];
	struct vcpureq_stats st;
	struct h_vm h;
	unsigned int p;
	uint64_t total = 0;

	H_VM(&h, be, 1, H_IRQ, be == VCPUREQ_BACKEND_THREAD ? &o : NULL);
	pi_h = &h;
	CHECK_EQ(h_start(&h), 0);
	pi_deadline = h_now_ns() + PI_BUDGET_NS;
	for (p = 0; p < PI_POSTERS; p++) {
		ps[p] = (struct pi_poster){ .p = p, .be = be };
		CHECK_EQ(pthread_create(&ps[p].t, NULL, pi_post_main, &ps[p]), 0);
	}
	for (p = 0; p < PI_POSTERS; p++) {
		pthread_join(ps[p].t, NULL);
		CHECK_EQ(ps[p].err, 0);
		total += ps[p].rounds;
	}
	CHECK_EQ(h_stop_all(&h), 0);
	st = h_stats(&h, 0);
	printf("posted %llu, injected %llu, entries %llu, kicked exits %llu, signals %llu, wake-ups %llu, blocks %llu\n",
	       (unsigned long long)st.interrupts_posted,
	       (unsigned long long)st.interrupts_injected,
	       (unsigned long long)st.entries,
	       (unsigned long long)st.kicked_exits,
	       (unsigned long long)st.signals_sent,
	       (unsigned long long)st.wakeups, (unsigned long long)st.blocks);
	CHECK_EQ(atomic_load(&pi_bad_mode), 0); /* PIR read in guest mode */
	CHECK_EQ(atomic_load(&pi_bad_vector), 0);
	CHECK_EQ(st.interrupts_posted, total);
	CHECK_EQ(st.interrupts_injected, total);
	if (be == VCPUREQ_BACKEND_KVM) {
		CHECK_EQ(h_guest_irqs(&h, 0), total);
	} else {
		for (p = 0; p < PI_POSTERS; p++)
			CHECK_EQ(atomic_load(&pi_taken[p]), ps[p].rounds);
		CHECK_EQ(atomic_load(&pi_taken_total), total);
	}
	/* Request-less: no request bit was ever set (only the stop). */
	CHECK_EQ(st.requests_made, 1);
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* rst, "Sleeping VCPUs": kvm_vcpu_block() calls kvm_arch_vcpu_runnable(),
 * "a function where requests may be checked".  The runnable hook consumes
 * a request; the request handler never sees it. */

#define REQ_RUNNABLE VCPUREQ_ARCH_REQ(30)
#define RH_ROUNDS 100

static _Atomic uint64_t rh_in_hook, rh_in_handler, rh_wakes_runnable;
static _Atomic int rh_hook_err;
static _Atomic int rh_why;

static bool rh_runnable(struct vcpureq_vcpu *v, void *opaque)
{
	int r = vcpureq_check_request(REQ_RUNNABLE, v);

	(void)opaque;
	if (r < 0)
		atomic_store(&rh_hook_err, r); /* e.g. -EPERM: wrong thread */
	if (r > 0)
		atomic_fetch_add(&rh_in_hook, 1);
	return r > 0;
}

static int rh_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_RUNNABLE, v) > 0)
		atomic_fetch_add(&rh_in_handler, 1);
	return 0;
}

static bool rh_on_wake(struct h_vm *h, unsigned int id, int why)
{
	(void)h;
	(void)id;
	atomic_store(&rh_why, why);
	if (why & VCPUREQ_WAKE_RUNNABLE)
		atomic_fetch_add(&rh_wakes_runnable, 1);
	return true;
}

TEST_BOTH(runnable_hook_checks_requests)
{
	struct vcpureq_vm_opts o = { .handle_requests = rh_handler,
				     .runnable = rh_runnable };
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_HALT, &o);
	h.hooks.on_wake = rh_on_wake;
	CHECK_EQ(h_start(&h), 0);
	for (i = 1; i <= RH_ROUNDS; i++) {
		CHECK(h_wait_until(asleep, &h, 0, HANG_MS));
		/* NO_WAKEUP sets no hint, so only the hook's check can make
		 * block return; the maker then wakes it (as the header asks
		 * of whoever makes the hook true).  (A waking request would
		 * race the hook: block may return for the hint before the
		 * hook saw the bit, and the handler take it.) */
		if (i % 2)
			CHECK_EQ(vcpureq_make_request(REQ_RUNNABLE |
						      VCPUREQ_REQUEST_NO_WAKEUP,
						      V(&h, 0)), 0);
		else
			CHECK_EQ(vcpureq_request(REQ_RUNNABLE |
						 VCPUREQ_REQUEST_NO_WAKEUP,
						 V(&h, 0)), 0);
		CHECK(vcpureq_vcpu_wake_up(V(&h, 0)) >= 0);
		if (!h_wait_ge(&rh_in_hook, (uint64_t)i, HANG_MS) ||
		    !h_wait_ge(&rh_wakes_runnable, (uint64_t)i, HANG_MS)) {
			fprintf(stderr, "round %d: taken by the hook %llu, by the handler %llu, runnable wake-ups %llu, hook error %d, sleeping %d\n",
				i, (unsigned long long)atomic_load(&rh_in_hook),
				(unsigned long long)atomic_load(&rh_in_handler),
				(unsigned long long)atomic_load(&rh_wakes_runnable),
				atomic_load(&rh_hook_err), h_sleeping(&h, 0));
			return 1;
		}
		CHECK_EQ(atomic_load(&rh_why) & VCPUREQ_WAKE_REQUEST, 0);
	}
	CHECK_EQ(h_stop_all(&h), 0);
	CHECK_EQ(atomic_load(&rh_hook_err), 0);
	CHECK_EQ(atomic_load(&rh_in_hook), RH_ROUNDS);
	CHECK_EQ(atomic_load(&rh_in_handler), 0);
	CHECK_EQ(h_stats(&h, 0).requests_handled, RH_ROUNDS + 1); /* + stop */
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* VCPUREQ_REQ_VM_DEAD made of ONE vCPU kills the whole VM: the dead flag is
 * VM-wide, so vCPUs that never got the bit stop too, once anything brings
 * them out (a request-less kick, a wake-up), and every later run of every
 * vCPU returns -EIO. */

static _Atomic int vd_why;

static bool vd_on_wake(struct h_vm *h, unsigned int id, int why)
{
	(void)h;
	if (id == 2)
		atomic_fetch_or(&vd_why, why);
	return true;
}

static _Atomic uint64_t vd_dead_seen;

static int vd_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_test_request(VCPUREQ_REQ_VM_DEAD, v) > 0)
		atomic_fetch_add(&vd_dead_seen, 1);
	return 0;
}

TEST_BOTH(vm_dead_of_one_vcpu_kills_vm)
{
	struct vcpureq_vm_opts o = { .handle_requests = vd_handler };
	struct h_vm h;
	unsigned int i;

	H_VM(&h, be, 3, H_SPIN, &o);
	CHECK_EQ(h_set_prog(&h, 2, H_HALT), 0);
	h.hooks.on_wake = vd_on_wake;
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
	CHECK(h_wait_until(h_spinning, &h, 1, HANG_MS));
	CHECK(h_wait_until(asleep, &h, 2, HANG_MS));
	CHECK(!vcpureq_vm_is_dead(h.vm));
	/* Of vCPU 1 only (WAIT | NO_WAKEUP: it was in guest mode). */
	CHECK_EQ(vcpureq_request(VCPUREQ_REQ_VM_DEAD, V(&h, 1)), 1);
	CHECK(vcpureq_vm_is_dead(h.vm));
	CHECK(h_wait_until(finished, &h, 1, HANG_MS));
	/* vCPU 0 got no bit and no kick: still in its guest instance. */
	CHECK_EQ(h_stats(&h, 0).requests_made, 0);
	CHECK_EQ(h_stats(&h, 2).requests_made, 0);
	CHECK(!finished(&h, 0));
	/* A request-less kick brings it out; it does not enter again. */
	CHECK_EQ(vcpureq_vcpu_kick(V(&h, 0)), 1);
	CHECK(h_wait_until(finished, &h, 0, HANG_MS));
	/* The sleeper, woken without a request, finds the VM dead. */
	CHECK(h_sleeping(&h, 2));
	CHECK(vcpureq_vcpu_wake_up(V(&h, 2)) >= 0);
	CHECK(h_wait_until(finished, &h, 2, HANG_MS));
	CHECK(atomic_load(&vd_why) & VCPUREQ_WAKE_DEAD);
	h_join_all(&h);
	for (i = 0; i < 3; i++) {
		/* The loop left only through run()'s -EIO (no other error,
		 * no stop request); run() says so again, to any thread. */
		CHECK_EQ(atomic_load(&h.vcpus[i].run_ret), 0);
		CHECK_EQ(vcpureq_vcpu_bind(V(&h, i)), 0);
		CHECK_EQ(vcpureq_vcpu_run(V(&h, i)), -EIO);
		CHECK_EQ(vcpureq_vcpu_unbind(V(&h, i)), 0);
	}
	CHECK_EQ(atomic_load(&vd_dead_seen), 0); /* the library took it */
	h_vm_destroy(&h);
	return 0;
}

/* ====================================================================== */
/* IPI reduction on the KVM backend: a kick of a vCPU running a h_spinning
 * KVM guest wins IN_GUEST -> EXITING_GUEST (returns 1: the one signal of
 * that instance) and the signal makes KVM_RUN return (a kicked exit, with
 * no request: spurious).  A second kick right after finds EXITING
 * (coalesced, no signal), OUTSIDE (nothing) or a new instance (signal):
 * the counters account for every kick exactly. */

#define KE_ROUNDS 200
/* A loaded machine makes each round slow (the vCPU must be scheduled to
 * exit and re-enter): at least KE_MIN_ROUNDS, then as many as fit. */
#define KE_MIN_ROUNDS 20
#define KE_BUDGET_NS 20000000000ull

TEST(kick_in_to_exiting_kvm)
{
	struct vcpureq_stats s0, s1;
	uint64_t seen_exiting = 0, coalesced = 0, second_signals = 0;
	struct vcpureq_vcpu *v;
	struct h_vm h;
	uint64_t t_start;
	int i;

	(void)be;
	H_VM(&h, VCPUREQ_BACKEND_KVM, 1, H_SPIN, NULL);
	v = V(&h, 0);
	CHECK_EQ(h_start(&h), 0);
	t_start = h_now_ns();
	for (i = 0; i < KE_ROUNDS && (i < KE_MIN_ROUNDS ||
				      h_now_ns() - t_start < KE_BUDGET_NS); i++) {
		uint64_t end = h_now_ns() + HANG_NS;
		uint32_t e0, e_m;
		int r1, r2, m;

		/* In a guest instance that is running guest code: its
		 * iterations moved between two looks in the same instance
		 * (across a yield: on a loaded machine the vCPU is seldom
		 * running at any one instant). */
		uint64_t it = h_guest_iters(&h, 0);
		uint32_t e_prev = vcpureq_vcpu_exit_epoch(v);

		do {
			uint64_t it1;

			sched_yield();
			s0 = h_stats(&h, 0);
			e0 = vcpureq_vcpu_exit_epoch(v);
			it1 = h_guest_iters(&h, 0);
			if (vcpureq_vcpu_mode(v) == VCPUREQ_IN_GUEST_MODE &&
			    e0 == e_prev && it1 != it &&
			    vcpureq_vcpu_exit_epoch(v) == e0)
				break;
			it = it1;
			e_prev = e0;
		} while (h_now_ns() < end);
		CHECK_EQ(vcpureq_vcpu_mode(v), VCPUREQ_IN_GUEST_MODE);
		r1 = vcpureq_vcpu_kick(v);
		m = vcpureq_vcpu_mode(v);
		e_m = vcpureq_vcpu_exit_epoch(v);
		r2 = vcpureq_vcpu_kick(v);
		/* Nobody else kicks, and H_SPIN leaves the guest only when
		 * kicked: this kick won IN -> EXITING and sent the signal. */
		CHECK_EQ(r1, 1);
		/* Coherence on mode: after our own CAS we read EXITING or a
		 * later value (OUTSIDE, or IN of a later instance).  IN with
		 * the epoch still e0 after that read would be the instance
		 * our CAS left: a new one starts only after the bump. */
		CHECK(m == VCPUREQ_EXITING_GUEST_MODE ||
		      m == VCPUREQ_OUTSIDE_GUEST_MODE ||
		      (m == VCPUREQ_IN_GUEST_MODE && e_m != e0));
		seen_exiting += m == VCPUREQ_EXITING_GUEST_MODE;
		/* The signal ends the instance: KVM_RUN returns -EINTR, an
		 * exit with nothing pending (spurious, counted after the
		 * kicked exit). */
		end = h_now_ns() + HANG_NS;
		while (h_stats(&h, 0).spurious_exits == s0.spurious_exits &&
		       h_now_ns() < end)
			sched_yield();
		s1 = h_stats(&h, 0);
		if (s1.spurious_exits == s0.spurious_exits)
			fprintf(stderr, "round %d: r1 %d m %d r2 %d; kicked exits %llu -> %llu, spurious %llu -> %llu, exits %llu -> %llu, entries %llu -> %llu, aborts %llu -> %llu, signals %llu -> %llu, mode now %d\n",
				i, r1, m, r2,
				(unsigned long long)s0.kicked_exits, (unsigned long long)s1.kicked_exits,
				(unsigned long long)s0.spurious_exits, (unsigned long long)s1.spurious_exits,
				(unsigned long long)s0.exits, (unsigned long long)s1.exits,
				(unsigned long long)s0.entries, (unsigned long long)s1.entries,
				(unsigned long long)s0.entry_aborts, (unsigned long long)s1.entry_aborts,
				(unsigned long long)s0.signals_sent, (unsigned long long)s1.signals_sent,
				vcpureq_vcpu_mode(v));
		CHECK(s1.spurious_exits > s0.spurious_exits);
		CHECK(s1.kicked_exits > s0.kicked_exits);
		CHECK(vcpureq_vcpu_exit_epoch(v) != e0);
		/* Exact accounting of the two kicks. */
		CHECK_EQ(s1.kicks - s0.kicks, 2);
		CHECK_EQ(s1.signals_sent - s0.signals_sent, 1 + r2);
		CHECK(s1.signals_coalesced - s0.signals_coalesced <= 1);
		CHECK(r2 == 0 || s1.signals_coalesced == s0.signals_coalesced);
		coalesced += s1.signals_coalesced - s0.signals_coalesced;
		second_signals += (uint64_t)r2;
		/* No request was made: these exits are spurious. */
		CHECK_EQ(s1.requests_made, 0);
	}
	CHECK_EQ(h_stop_all(&h), 0);
	printf("%d rounds: mode EXITING seen right after the winning kick %llu times; second kick coalesced %llu, signalled a new instance %llu, found it outside %llu\n",
	       i, (unsigned long long)seen_exiting,
	       (unsigned long long)coalesced,
	       (unsigned long long)second_signals,
	       (unsigned long long)((uint64_t)i - coalesced - second_signals));
	h_vm_destroy(&h);
	return 0;
}
