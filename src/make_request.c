/* SPDX-License-Identifier: MIT */
/*
 * Making requests: of one vCPU or of a set, with or without a kick, with
 * WAIT acknowledgements and deadlines (kernel: kvm_make_request(),
 * kvm_make_vcpus_request_mask(), kvm_make_all_cpus_request(), the IPI wait
 * of smp_call_function_many(), kvm_vm_dead()).
 *
 * The requester's half of the Dekker pattern of vcpu-requests.rst:
 *
 *   requester                          vCPU thread (vcpu_mode.c)
 *   set request bit (release)          mode = IN_GUEST_MODE
 *   smp_mb()              [R]          smp_mb()               [V]
 *   read mode / CAS IN -> EXITING      read requests: abort entry if any
 *   (kick.c)
 *
 * Fences R and V forbid the store-buffering outcome in which the vCPU reads
 * "no request" AND the requester reads "not in guest mode": one of the two
 * always sees the other, so a request is never stranded in guest mode.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "futex.h"
#include "internal.h"
#include "targets.h"

int vcpureq_make_request(unsigned int req, struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_vcpu(vcpu);

	if (!r)
		r = vcpureq__check_req(req, false);
	if (r)
		return r;
	vcpureq__mark_dead(vcpu->vm, req);
	vcpureq__set_request(vcpu, req);
	return 0;
}

void vcpureq__mark_dead(struct vcpureq_vm *vm, unsigned int req)
{
	if ((req & VCPUREQ_REQUEST_MASK) ==
	    (VCPUREQ_REQ_VM_DEAD & VCPUREQ_REQUEST_MASK)) {
		/* Sticky, VM-wide; published before the bits (the release
		 * in vcpureq__set_request()).  Release: pairs with the
		 * acquire load in vcpureq__vm_dead(), which reads the flag
		 * itself, not the bit (an acquire cannot pair with a
		 * relaxed store).  Parked vCPUs leave their parking for
		 * good. */
		atomic_store_explicit(&vm->dead, 1, memory_order_release);
		vcpureq__pause_kill(vm);
	}
}

/*
 * A WAIT request from a vCPU thread that is itself not OUTSIDE (inside a
 * lockless walk, or in guest mode: the thread backend's guest callback)
 * could wait for a vCPU that waits for it, of this VM or of another: both
 * would wait forever (the Spin model's GUEST_WAIT variant finds the
 * cycle).  Refused, except that
 * from guest mode a WAIT naming only the caller's own vCPU is fine: it
 * never waits on itself.  @t NULL: the single target @one.
 */
static int check_wait_deadlock(const struct vcpureq_vm *vm, unsigned int req,
			       const struct targets *t,
			       const struct vcpureq_vcpu *one)
{
	const struct vcpureq_vcpu *self = vcpureq__self;
	unsigned int w;

	/* Any VM: two vCPU threads of different VMs waiting for each
	 * other's vCPU deadlock just the same. */
	if (!(req & VCPUREQ_REQUEST_WAIT) || !self)
		return 0;
	if (self->in_walk)
		return vcpureq__err(-EDEADLK,
				    "a WAIT request from inside a lockless walk could wait forever on another walker");
	if (atomic_load_explicit(&self->mode, memory_order_relaxed) ==
	    VCPUREQ_OUTSIDE_GUEST_MODE)
		return 0;
	if (!t)
		return one == self ? 0 :
			vcpureq__err(-EDEADLK,
				     "a WAIT request of another vCPU from guest mode could wait forever on a vCPU waiting for this one");
	for_each_word(t, w) {
		uint64_t others = vcpureq__tword(t, w);

		if (self->vm == vm && w == self->index / 64)
			others &= ~(UINT64_C(1) << (self->index % 64));
		if (others)
			return vcpureq__err(-EDEADLK,
					    "a WAIT request of another vCPU from guest mode could wait forever on a vCPU waiting for this one");
	}
	return 0;
}

static int acks_alloc(struct acks *a, unsigned int n)
{
	size_t words = ((size_t)n + 63) / 64;

	a->waits = calloc(1, words * sizeof(uint64_t) + n * sizeof(uint32_t));
	if (!a->waits)
		return vcpureq__err(-ENOMEM, "out of memory for a WAIT broadcast's acknowledgements (nothing was made)");
	a->snaps = (uint32_t *)(a->waits + words);
	return 0;
}

/*
 * How long a WAIT requester polls the epoch before it sleeps: about one
 * signal-to-exit round trip, as the kernel spins for IPI acks (a sleeping
 * requester adds a futex wake-up to every WAIT).  It polls with
 * sched_yield(), not a pause loop, and only when it waits for a single vCPU
 * on a machine with another CPU: a busy requester holds a CPU that the
 * target may need in order to exit.  Measured on 2 CPUs
 * (docs/performance.md): a pause-loop spin for every wait took broadcast
 * N = 4 from 67 to 117 us; this policy gives N = 1 19 us (sleeping: 33 us)
 * and N = 4 53 us.
 */
#define ACK_SPIN_NS 30000u

/* Wait until the exit epoch moves past @snap, or @deadline (absolute,
 * CLOCK_MONOTONIC; NULL: none) passes.  0, -ETIMEDOUT, or -errno if the
 * target could not be kicked out of its instance. */
static int wait_ack(struct vcpureq_vcpu *vcpu, uint32_t snap, bool spin,
		    const struct timespec *deadline)
{
	struct timespec t0, t;
	unsigned int i;
	bool timed_out = false; /* the last sleep ended at the recheck */
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; spin; i++) {
		/* Acquire: pairs with the release bump in
		 * vcpureq__exit_guest_mode(). */
		if (atomic_load_explicit(&vcpu->exit_epoch,
					 memory_order_acquire) != snap)
			return 0;
		if ((i & 7) == 7) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000u +
				    (uint64_t)t.tv_nsec - (uint64_t)t0.tv_nsec >
			    ACK_SPIN_NS)
				break;
		}
		/* Yield, not pause: if the target shares this CPU, it
		 * needs the CPU to exit; if not, this returns at once. */
		sched_yield();
	}
	atomic_fetch_add_explicit(&vcpu->ack_waiters, 1, memory_order_relaxed);
	vcpureq__smp_mb(); /* [W] pairs with [E] in vcpureq__exit_guest_mode() */
	VCPUREQ_RACE_WINDOW(VCPUREQ__WIN_ACK_REGISTER);
	while (atomic_load_explicit(&vcpu->exit_epoch, memory_order_acquire) ==
	       snap) {
		struct timespec recheck = vcpureq__ts_after(VCPUREQ__RECHECK_NS);
		const struct timespec *until = vcpureq__ts_min(&recheck, deadline);
		int mode;

		timed_out = false;
		if (vcpureq__futex_wait_until(&vcpu->exit_epoch, snap,
					      until) == 0)
			continue;
		if (errno == EINVAL) { /* a refused deadline: never retried */
			r = vcpureq__err(-EINVAL, "the futex wait refused the deadline (EINVAL)");
			break;
		}
		if (errno != ETIMEDOUT)
			continue;
		timed_out = until != deadline;
		if (timed_out)
			VCPUREQ__STAT_INC(vcpu, rstats, ack_rechecks);
		if (until == deadline) {
			r = atomic_load_explicit(&vcpu->exit_epoch,
						 memory_order_acquire) == snap ?
				    -ETIMEDOUT : 0;
			break;
		}
		/* Still the same instance after a while.  EXITING: the
		 * signal is on its way (the vCPU may just be descheduled);
		 * IN_GUEST: nobody's signal went out: kick it ourselves.
		 * Acquire: the IN_GUEST of a later instance is stored after
		 * the fence [E] of vcpureq__exit_guest_mode(), which follows
		 * the epoch bump; pairing with [E], it makes the epoch load
		 * below see that bump, so "== snap" means this instance. */
		mode = atomic_load_explicit(&vcpu->mode, memory_order_acquire);
		if (mode == VCPUREQ_IN_GUEST_MODE &&
		    atomic_load_explicit(&vcpu->exit_epoch,
					 memory_order_acquire) == snap &&
		    (r = vcpureq__rekick(vcpu, &mode)) < 0)
			break;
		r = 0;
	}
	/* The ack found at a recheck, not by the exit's wake-up: late by up
	 * to VCPUREQ__RECHECK_NS (or the timer expired in the instant between the
	 * exit's epoch bump and its wake-up). */
	if (timed_out && r == 0)
		VCPUREQ__STAT_INC(vcpu, rstats, acks_at_recheck);
	atomic_fetch_sub_explicit(&vcpu->ack_waiters, 1, memory_order_relaxed);
	return r;
}

int vcpureq_request(unsigned int req, struct vcpureq_vcpu *vcpu)
{
	bool act = !(req & VCPUREQ_REQUEST_NO_ACTION);
	uint32_t snap;
	bool wait;
	int r = vcpureq__check_vcpu(vcpu);

	if (!r)
		r = vcpureq__check_req(req, true);
	if (!r)
		r = check_wait_deadlock(vcpu->vm, req, NULL, vcpu);
	if (r)
		return r;
	VCPUREQ__TRACE(vcpu->vm, vcpu, call_begin, req, VCPUREQ__CALL_REQUEST);
	/* request_mask() for one target, without walking masks. */
	if (act) {
		vcpureq__mark_dead(vcpu->vm, req);
		vcpureq__set_request(vcpu, req);
	}
	VCPUREQ__MB_R(); /* [R] */
	r = vcpureq__kick_after_fence(vcpu, req, &wait, &snap);
	if (wait) {
		int e;

		VCPUREQ__TRACE(vcpu->vm, vcpu, wait_begin, 1, 0);
		e = wait_ack(vcpu, snap, vcpu->vm->nr_cpus > 1, NULL);
		if (!e)
			VCPUREQ__TRACE(vcpu->vm, vcpu, ack, 0, 0);
		VCPUREQ__TRACE(vcpu->vm, vcpu, wait_end, e, 0);
		if (e < 0)
			r = e;
	}
	VCPUREQ__TRACE(vcpu->vm, vcpu, call_end, r, VCPUREQ__CALL_REQUEST);
	return r;
}

/*
 * make + kick of every target (validated by the caller): set every bit,
 * one fence [R] for all, kick each (signals go out as we go), then wait
 * for every acknowledgement, until @dl if given.  No lock is held at any
 * point.
 */
static int request_targets(struct vcpureq_vm *vm, unsigned int req,
			   const struct targets *t,
			   const struct vcpureq_deadline *dl)
{
	unsigned int flags = req & ~VCPUREQ_REQUEST_MASK;
	unsigned int w, i, nr_waits = 0;
	struct acks a = { NULL, NULL };
	int sent, err = 0, r = check_wait_deadlock(vm, req, t, NULL);

	if (r)
		return r;
	if ((flags & VCPUREQ_REQUEST_WAIT) && (r = acks_alloc(&a, t->n)))
		return r;
	VCPUREQ__TRACE(vm, NULL, call_begin, req, VCPUREQ__CALL_BROADCAST);
	vcpureq__pending_clear(dl);
	vcpureq__mark_dead(vm, req);
	vcpureq__set_bits(vm, req, t);
	VCPUREQ__MB_R(); /* [R] for every target at once */
	sent = vcpureq__kick_all(vm, req, t, a.waits ? &a : NULL, &err);
	if (!a.waits) {
		r = err ? err : sent;
		VCPUREQ__TRACE(vm, NULL, call_end, r, VCPUREQ__CALL_BROADCAST);
		return r;
	}
	for_each_word(t, w)
		nr_waits += (unsigned int)__builtin_popcountll(a.waits[w]);
	VCPUREQ__TRACE(vm, NULL, wait_begin, nr_waits, 0);
	for_each_word(t, w) {
		uint64_t m = a.waits[w];

		for_each_bit(m, i, w) {
			r = wait_ack(vm->vcpus[i], a.snaps[i],
				     nr_waits == 1 && vm->nr_cpus > 1,
				     dl ? &dl->when : NULL);
			if (!r)
				VCPUREQ__TRACE(vm, vm->vcpus[i], ack, 0, 0);
			vcpureq__note_wait(dl, i, r, &err);
		}
	}
	free(a.waits);
	VCPUREQ__TRACE(vm, NULL, wait_end, err, 0);
	if (err == -ETIMEDOUT)
		vcpureq__err(err, "not every WAIT target acknowledged by the deadline (see the pending mask); the requests stay made");
	r = err ? err : sent;
	VCPUREQ__TRACE(vm, NULL, call_end, r, VCPUREQ__CALL_BROADCAST);
	return r;
}

static int check_vm_req(const struct vcpureq_vm *vm, unsigned int req)
{
	int r = vcpureq__check_vm(vm);

	return r ? r : vcpureq__check_req(req, true);
}

int vcpureq_make_all_cpus_request(struct vcpureq_vm *vm, unsigned int req)
{
	struct targets t = { NULL, 0, 0 };
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	t.n = vcpureq__nr_vcpus(vm);
	return request_targets(vm, req, &t, NULL);
}

static const uint64_t no_target;

int vcpureq_make_vcpus_request_mask(struct vcpureq_vm *vm, unsigned int req,
				    const uint64_t *mask, size_t mask_bits)
{
	struct targets t;
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	if (!mask && mask_bits)
		return vcpureq__err(-EINVAL, "mask is NULL");
	if (!mask)
		mask = &no_target; /* zero bits: no target */
	r = vcpureq__targets_of(vm, mask, mask_bits, &t);
	return r ? r : request_targets(vm, req, &t, NULL);
}

int vcpureq_make_vcpus_request_deadline(struct vcpureq_vm *vm, unsigned int req,
					const uint64_t *mask, size_t mask_bits,
					const struct vcpureq_deadline *dl)
{
	struct targets t;
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	if ((r = vcpureq__check_deadline(dl)))
		return r;
	r = vcpureq__targets_of(vm, mask, mask_bits, &t);
	return r ? r : request_targets(vm, req, &t, dl);
}

int vcpureq_make_vcpus_request(struct vcpureq_vm *vm, unsigned int req,
			       const unsigned int *ids, size_t nr_ids)
{
	struct targets t = { NULL, 0, 0 };
	uint64_t *m;
	size_t i;
	int r = check_vm_req(vm, req);

	if (r)
		return r;
	if (!ids && nr_ids)
		return vcpureq__err(-EINVAL, "ids is NULL");
	t.n = vcpureq__nr_vcpus(vm);
	m = calloc(((size_t)t.n + 63) / 64 + 1, sizeof(uint64_t));
	if (!m)
		return vcpureq__err(-ENOMEM, "out of memory (nothing was made)");
	for (i = 0; i < nr_ids; i++) {
		unsigned int id = ids[i];

		if (id >= t.n) {
			free(m);
			return vcpureq__err(-EINVAL, "vCPU index out of range");
		}
		if (m[id / 64] & (UINT64_C(1) << (id % 64))) {
			free(m);
			return vcpureq__err(-EINVAL, "vCPU index named twice");
		}
		m[id / 64] |= UINT64_C(1) << (id % 64);
	}
	t.mask = m;
	t.mask_bits = t.n;
	r = request_targets(vm, req, &t, NULL);
	free(m);
	return r;
}

int vcpureq_vm_dead(struct vcpureq_vm *vm)
{
	int r = vcpureq_make_all_cpus_request(vm, VCPUREQ_REQ_VM_DEAD);
	unsigned int i, n;

	if (r < 0)
		return r;
	/* Work queued to a vCPU with no bound thread would wait for the
	 * destroy: cancelled here (work.c, after the [R] of the broadcast
	 * above, which follows the dead flag's store). */
	n = vcpureq__nr_vcpus(vm);
	for (i = 0; i < n; i++)
		vcpureq__work_cancel_if_dead(vm->vcpus[i]);
	return r;
}

bool vcpureq_vm_is_dead(const struct vcpureq_vm *vm)
{
	return vm && vcpureq__vm_dead(vm);
}
