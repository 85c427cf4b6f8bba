/* SPDX-License-Identifier: MIT */
/*
 * Pause and resume (what VMMs build on kicks for live migration and
 * snapshots: QEMU's pause_all_vcpus(), cloud-hypervisor's
 * CpuManager::pause(), kvmtool's kvm__pause()), on the request protocol:
 *
 *   pauser                               vCPU thread
 *   pause_word++ (seq_cst)                 enter: PAUSE bit taken, or the
 *   PAUSE bit (release), [R]                 final check aborts on it
 *   kick: IN_GUEST -> one signal           park: complete a pending I/O
 *   wait until parked / asleep /                exit, KVMCLOCK_CTRL,
 *     unbound (park_epoch futex)                parked = 1 (release),
 *                                               park_epoch++, [E'], wake
 *   resume: pause_word-- ; at 0 wake it    sleep on pause_word while > 0
 *
 * The count goes up before the bit, so a vCPU that takes the bit (or
 * aborts an entry on it) sees the pause; the Dekker pair of the request
 * bit and the mode ([R]/[V]) means a vCPU seen OUTSIDE after [R] cannot
 * start a guest-mode instance without seeing the bit, so it never runs
 * guest code before it parks.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <time.h>

#include "futex.h"
#include "internal.h"
#include "park.h"
#include "targets.h"

int vcpureq__park_if_paused(struct vcpureq_vcpu *vcpu)
{
	/* Acquire: pairs with the release RMWs of the word in
	 * vcpureq_resume() and vcpureq__pause_kill(). */
	uint32_t w = atomic_load_explicit(&vcpu->pause_word,
					  memory_order_acquire);

	if (!(w & VCPUREQ__PAUSE_COUNT) || (w & VCPUREQ__PAUSE_DEAD))
		return 0;
	/* api.rst: an I/O or MMIO exit completes only on the next KVM_RUN;
	 * a paused vCPU must not be left half-way through one. */
	if (vcpu->io_pending && vcpu->ops->complete_io) {
		int r = vcpu->ops->complete_io(vcpu);

		if (r < 0)
			return r;
	}
	/* Stamped before parked is stored: a pauser sees it later. */
	VCPUREQ__TRACE(vcpu->vm, vcpu, park, 0, 0);
	/* Release: pairs with the acquire load in parked() (below): the
	 * completed I/O and the last guest instance before the pauser's
	 * return. */
	atomic_store_explicit(&vcpu->parked, 1, memory_order_release);
	vcpureq__park_notify(vcpu);
	/* The backend's work of a parked vCPU (KVM: KVM_KVMCLOCK_CTRL), after
	 * the pauser was told, not before: it is off the pause's critical
	 * path (QEMU issues it at resume for the same reason), and still
	 * done before this vCPU can run guest code again (it waits below). */
	if (vcpu->ops->on_park)
		vcpu->ops->on_park(vcpu);
	/* Acquire: pairs with the resumer's release decrement, so what it
	 * wrote before resume() is visible when we go on. */
	while (((w = atomic_load_explicit(&vcpu->pause_word,
					  memory_order_acquire)) &
		VCPUREQ__PAUSE_COUNT) &&
	       !(w & VCPUREQ__PAUSE_DEAD)) {
		/* Run-on-vCPU items queued to the paused vCPU run here, in
		 * its parking (QEMU runs run_on_cpu() work on a stopped
		 * vCPU's thread the same way): a VMM reads a paused vCPU's
		 * registers on its own thread.  Acquire: pairs with the
		 * release OR of vcpureq__park_work_notify(), made after the
		 * push: the exchange of the queue in vcpureq__work_run()
		 * finds the item. */
		if (w & VCPUREQ__PAUSE_WORK) {
			atomic_fetch_and_explicit(&vcpu->pause_word,
						  ~VCPUREQ__PAUSE_WORK,
						  memory_order_acquire);
			vcpureq__work_run(vcpu, false);
			continue;
		}
		vcpureq__futex_wait(&vcpu->pause_word, w);
	}
	atomic_store_explicit(&vcpu->parked, 0, memory_order_relaxed);
	VCPUREQ__TRACE(vcpu->vm, vcpu, unpark, 0, 0);
	if (w & VCPUREQ__PAUSE_DEAD)
		return vcpureq__err(-EIO, "the VM is dead (VM_DEAD)");
	return 0;
}

void vcpureq__pause_kill(struct vcpureq_vm *vm)
{
	unsigned int i, n = vcpureq__nr_vcpus(vm);

	/* The futex word itself changes, so a parked vCPU between its load
	 * and its futex_wait() does not sleep through it. */
	for (i = 0; i < n; i++) {
		struct vcpureq_vcpu *v = vm->vcpus[i];

		/* Release: pairs with the acquire loads of the word in
		 * vcpureq__park_if_paused(). */
		atomic_fetch_or_explicit(&v->pause_word, VCPUREQ__PAUSE_DEAD,
					 memory_order_release);
		vcpureq__futex_wake(&v->pause_word, INT_MAX);
		/* Pausers waiting for this vCPU to park return -EIO now
		 * (wait_parked() below reads the dead flag, stored
		 * before this call, after its epoch load): the bump and its
		 * [E'] pair with their [W'], so none sleeps through it. */
		vcpureq__park_notify(v);
	}
}

/*
 * The pause target will not run guest code until resumed and has done
 * with its current exit: parked, asleep in block, unbound, or itself
 * waiting in vcpureq_pause() (a vCPU thread pausing others).
 */
static bool parked(const struct vcpureq_vcpu *v)
{
	/* Acquire: pairs with the release store of parked (and the release
	 * of the sleeper's and the unbinder's state): the target's last
	 * guest run happens before our return. */
	return atomic_load_explicit(&v->parked, memory_order_acquire) ||
	       atomic_load_explicit(&v->sleep_state, memory_order_acquire) ==
		       VCPUREQ__SLEEPING ||
	       atomic_load_explicit(&v->tid, memory_order_acquire) == 0;
}

/* Wait until @v is parked or @deadline passes; re-kick it every
 * VCPUREQ__RECHECK_NS if it is back IN_GUEST (a kick that could not be sent).
 * 0, -ETIMEDOUT, -EIO (the VM died meanwhile), -EINVAL (the kernel
 * refused the deadline: never retried) or the kick's error. */
static int wait_parked(struct vcpureq_vcpu *v, const struct timespec *deadline)
{
	int r = 0;

	atomic_fetch_add_explicit(&v->park_waiters, 1, memory_order_relaxed);
	vcpureq__smp_mb(); /* [W'] pairs with [E'] in vcpureq__park_notify() */
	for (;;) {
		/* Acquire: pairs with the release bump in
		 * vcpureq__park_notify(). */
		uint32_t e = atomic_load_explicit(&v->park_epoch,
						  memory_order_acquire);
		struct timespec recheck = vcpureq__ts_after(VCPUREQ__RECHECK_NS);
		const struct timespec *until = vcpureq__ts_min(&recheck, deadline);
		int mode;

		if (parked(v))
			break;
		/* VM_DEAD: vcpureq__pause_kill() stores the dead flag and
		 * then bumps every park_epoch ([E']): read after our epoch
		 * load, either we see the flag here or the bump makes the
		 * futex wait below return (or wakes it: [W']). */
		if (vcpureq__vm_dead(v->vm)) {
			r = -EIO;
			break;
		}
		if (!vcpureq__futex_wait_until(&v->park_epoch, e, until))
			continue;
		if (errno == EINVAL) {
			r = vcpureq__err(-EINVAL, "the futex wait refused the deadline (EINVAL)");
			break;
		}
		if (errno != ETIMEDOUT)
			continue;
		if (parked(v))
			break;
		if (until == deadline) {
			r = -ETIMEDOUT;
			break;
		}
		/* Acquire: pairs with the release exchange to OUTSIDE in
		 * vcpureq__exit_guest_mode() (a target seen gone is not
		 * kicked); vcpureq__rekick()'s CAS reads the mode again anyway. */
		mode = atomic_load_explicit(&v->mode, memory_order_acquire);
		if (mode == VCPUREQ_IN_GUEST_MODE && (r = vcpureq__rekick(v, &mode)) < 0)
			break;
		r = 0;
	}
	atomic_fetch_sub_explicit(&v->park_waiters, 1, memory_order_relaxed);
	return r;
}

/* The checks shared by vcpureq_pause() and vcpureq_pause_wait(). */
static int pause_checks(struct vcpureq_vm *vm, const uint64_t *mask,
			size_t mask_bits, const struct vcpureq_deadline *dl,
			struct targets *t)
{
	struct vcpureq_vcpu *self = vcpureq__self;
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if ((r = vcpureq__check_deadline(dl)))
		return r;
	if (self && (self->in_walk ||
		     atomic_load_explicit(&self->mode, memory_order_relaxed) !=
			     VCPUREQ_OUTSIDE_GUEST_MODE))
		return vcpureq__err(-EDEADLK,
				    "pause from guest mode or a lockless walk could wait on a vCPU that waits for this one");
	if (!mask && mask_bits)
		return vcpureq__err(-EINVAL, "mask is NULL");
	r = vcpureq__targets_of(vm, mask, mask_bits, t);
	if (r)
		return r;
	if (vcpureq__vm_dead(vm))
		return vcpureq__err(-EIO, "the VM is dead (VM_DEAD): nothing paused");
	return 0;
}

/* Wait until every target of @t other than the caller's own vCPU is
 * parked, or @dl passes; the caller's vCPU counts as parked meanwhile. */
static int wait_targets(struct vcpureq_vm *vm, const struct targets *t,
			const struct vcpureq_deadline *dl)
{
	struct vcpureq_vcpu *self = vcpureq__self;
	uint32_t was = 0;
	unsigned int w, i;
	int r, err = 0;

	/* A vCPU thread pausing others counts as parked while it waits: it
	 * is outside guest mode and parks at its next entry if paused, so
	 * two vCPU threads pausing each other do not wait forever. */
	if (self)
		was = vcpureq__self_park_begin(self);
	for_each_word(t, w) {
		uint64_t m = vcpureq__tword(t, w);

		for_each_bit(m, i, w) {
			if (vm->vcpus[i] == self)
				continue;
			r = wait_parked(vm->vcpus[i], dl ? &dl->when : NULL);
			if (!r)
				VCPUREQ__TRACE(vm, vm->vcpus[i], parked_seen, 0, 0);
			vcpureq__note_wait(dl, i, r, &err);
			if (r == -EIO || r == -EINVAL)
				goto out; /* the others are not waited for */
		}
	}
out:
	if (self)
		vcpureq__self_park_end(self, was);
	/* The VM died while we waited (every target may have parked or
	 * unbound on its way out): the pause did not take hold. */
	if (vcpureq__vm_dead(vm))
		err = -EIO;
	if (err == -ETIMEDOUT)
		vcpureq__err(err, "not every vCPU had parked by the deadline (see the pending mask); the pause stays in force: vcpureq_pause_wait() waits again");
	else if (err == -EIO)
		vcpureq__err(err, "the VM died (VM_DEAD) while the pause waited");
	return err;
}

int vcpureq_pause(struct vcpureq_vm *vm, const uint64_t *mask, size_t mask_bits,
		  const struct vcpureq_deadline *dl)
{
	unsigned int w, i;
	struct targets t;
	int err = 0, r = pause_checks(vm, mask, mask_bits, dl, &t);

	if (r)
		return r;
	VCPUREQ__TRACE(vm, NULL, pause_begin, 0, 0);
	vcpureq__pending_clear(dl);
	/* The count before the bit: the bit's release (vcpureq__set_bits())
	 * carries the count to a vCPU whose acquire RMW takes the bit
	 * (take_bit() in request.c), so a vCPU that sees the bit sees the
	 * pause.  seq_cst (more than that needs) also keeps it before [R]
	 * below, which pairs with [S] of a vCPU going to sleep in block.c:
	 * either it reads the count and counts itself parked, or we read
	 * its SLEEPING in parked(). */
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w)
			atomic_fetch_add_explicit(&vm->vcpus[i]->pause_word, 1,
						  memory_order_seq_cst);
	}
	vcpureq__set_bits(vm, VCPUREQ__REQ_PAUSE, &t);
	VCPUREQ__MB_R(); /* [R]: the bit before every mode read */
	/* NO_WAKEUP: a sleeper stays asleep (it parks when it enters). */
	vcpureq__kick_all(vm, VCPUREQ__REQ_PAUSE, &t, NULL, &err);
	r = wait_targets(vm, &t, dl);
	if (r && (!err || r != -ETIMEDOUT))
		err = r;
	VCPUREQ__TRACE(vm, NULL, pause_end, err, 0);
	return err;
}

int vcpureq_pause_wait(struct vcpureq_vm *vm, const uint64_t *mask,
		       size_t mask_bits, const struct vcpureq_deadline *dl)
{
	unsigned int w, i;
	struct targets t;
	int r = pause_checks(vm, mask, mask_bits, dl, &t);

	if (r)
		return r;
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w)
			if (!(atomic_load_explicit(&vm->vcpus[i]->pause_word,
						   memory_order_relaxed) &
			      VCPUREQ__PAUSE_COUNT))
				return vcpureq__errf(-EINVAL,
						     "vCPU %lu is not paused (nothing waited for): vcpureq_pause() it first",
						     vm->vcpus[i]->id);
	}
	VCPUREQ__TRACE(vm, NULL, pause_begin, 0, 0);
	vcpureq__pending_clear(dl);
	r = wait_targets(vm, &t, dl);
	VCPUREQ__TRACE(vm, NULL, pause_end, r, 0);
	return r;
}

/*
 * Take one pause of @v: a CAS loop that never takes the count below zero
 * (two resumers of one pause cannot both take it: the loser sees 0).
 * Returns the count it took (>= 1), or 0 if @v was not paused.  Release:
 * pairs with the parked vCPU's acquire load of the word
 * (vcpureq__park_if_paused()): what the resumer wrote before is visible
 * to the vCPU that leaves its parking on this count.
 */
static uint32_t take_pause(struct vcpureq_vcpu *v)
{
	uint32_t w = atomic_load_explicit(&v->pause_word, memory_order_relaxed);
	/* "unpause" is stamped before the CAS that may take the count to 0:
	 * the vCPU can leave its parking (and enter the guest) as soon as it
	 * reads 0, before any wake; a stamp after the CAS could follow its
	 * next guest entry (trace.h: causal order). */
	uint64_t ts = VCPUREQ__TRACE_TS(v->vm);

	do {
		if (!(w & VCPUREQ__PAUSE_COUNT))
			return 0;
	} while (!atomic_compare_exchange_weak_explicit(
			 &v->pause_word, &w, w - 1, memory_order_release,
			 memory_order_relaxed));
	if ((w & VCPUREQ__PAUSE_COUNT) == 1)
		VCPUREQ__TRACE_AT(v->vm, v, unpause, 0, 0, ts);
	return w & VCPUREQ__PAUSE_COUNT;
}

/*
 * Give back a pause taken by a refused call.  If the count had gone to 0,
 * the vCPU may have seen it (a vCPU between its load of the word and its
 * futex wait, or one about to park): the PAUSE request is made again and
 * the vCPU kicked, so that it parks at its next entry as after any pause.
 */
static void untake_pause(struct vcpureq_vcpu *v)
{
	uint32_t snap;
	bool wait;

	/* Relaxed: the request bit's release and [R] below order it. */
	if (atomic_fetch_add_explicit(&v->pause_word, 1,
				      memory_order_relaxed) &
	    VCPUREQ__PAUSE_COUNT)
		return;
	vcpureq__set_request(v, VCPUREQ__REQ_PAUSE);
	VCPUREQ__MB_R(); /* [R]: the bit before the mode read */
	vcpureq__kick_after_fence(v, VCPUREQ__REQ_PAUSE, &wait, &snap);
}

int vcpureq_resume(struct vcpureq_vm *vm, const uint64_t *mask, size_t mask_bits)
{
	unsigned int w, i, j;
	struct targets t;
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if (!mask && mask_bits)
		return vcpureq__err(-EINVAL, "mask is NULL");
	r = vcpureq__targets_of(vm, mask, mask_bits, &t);
	if (r)
		return r;
	VCPUREQ__TRACE(vm, NULL, resume_begin, 0, 0);
	/*
	 * All or nothing, without a lock: take one pause of each target in
	 * index order; at the first target found not paused (never paused,
	 * or a racing resume took its last pause), give back what this call
	 * took and refuse.  Nobody is woken before every target was taken.
	 */
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w) {
			if (take_pause(vm->vcpus[i]))
				continue;
			for (j = 0; j < i; j++)
				if (vcpureq__tword(&t, j / 64) & (UINT64_C(1) << (j % 64)))
					untake_pause(vm->vcpus[j]);
			VCPUREQ__TRACE(vm, NULL, resume_end, (uint32_t)-EINVAL, 0);
			return vcpureq__errf(-EINVAL,
					     "vCPU %lu is not paused (nothing resumed)",
					     vm->vcpus[i]->id);
		}
	}
	for_each_word(&t, w) {
		uint64_t m = vcpureq__tword(&t, w);

		for_each_bit(m, i, w) {
			struct vcpureq_vcpu *v = vm->vcpus[i];

			/* A count at 0 now (ours was its last pause, or a
			 * racing resume took a later one): wake it; a vCPU
			 * paused again meanwhile re-checks and sleeps on. */
			if (!(atomic_load_explicit(&v->pause_word,
						   memory_order_relaxed) &
			      VCPUREQ__PAUSE_COUNT))
				vcpureq__futex_wake(&v->pause_word, 1);
		}
	}
	VCPUREQ__TRACE(vm, NULL, resume_end, 0, 0);
	return 0;
}

bool vcpureq_vcpu_paused(const struct vcpureq_vcpu *vcpu)
{
	return vcpu && (atomic_load_explicit(&vcpu->pause_word,
					     memory_order_relaxed) &
			VCPUREQ__PAUSE_COUNT);
}

bool vcpureq_vcpu_parked(const struct vcpureq_vcpu *vcpu)
{
	return vcpu && atomic_load_explicit(&vcpu->parked, memory_order_relaxed);
}
