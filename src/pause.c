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
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "futex.h"
#include "internal.h"

void vcpureq__park_notify(struct vcpureq_vcpu *vcpu)
{
	/* Release: what the vCPU did before (its last guest instance, the
	 * completed I/O) happens before a pauser that sees the bump returns.
	 * [E'] pairs with [W'] in wait_parked(): either the pauser sees the
	 * new epoch (or the state it checks), or we see its registration. */
	atomic_fetch_add_explicit(&vcpu->park_epoch, 1, memory_order_release);
	vcpureq__smp_mb();
	if (atomic_load_explicit(&vcpu->park_waiters, memory_order_relaxed))
		vcpureq__futex_wake(&vcpu->park_epoch, INT_MAX);
}

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
	if (vcpu->ops->on_park)
		vcpu->ops->on_park(vcpu);
	/* Stamped before parked is stored: a pauser sees it later. */
	VCPUREQ__TRACE(vcpu->vm, vcpu, park, 0, 0);
	/* Release: pairs with the acquire load in parked() (kick.c): the
	 * completed I/O and the last guest instance before the pauser's
	 * return. */
	atomic_store_explicit(&vcpu->parked, 1, memory_order_release);
	vcpureq__park_notify(vcpu);
	/* Acquire: pairs with the resumer's release decrement, so what it
	 * wrote before resume() is visible when we go on. */
	while (((w = atomic_load_explicit(&vcpu->pause_word,
					  memory_order_acquire)) &
		VCPUREQ__PAUSE_COUNT) &&
	       !(w & VCPUREQ__PAUSE_DEAD))
		vcpureq__futex_wait(&vcpu->pause_word, w);
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
		 * (wait_parked() in kick.c reads the dead flag, stored
		 * before this call, after its epoch load): the bump and its
		 * [E'] pair with their [W'], so none sleeps through it. */
		vcpureq__park_notify(v);
	}
}

uint32_t vcpureq__self_park_begin(struct vcpureq_vcpu *self)
{
	uint32_t was = atomic_load_explicit(&self->parked, memory_order_relaxed);

	/* Release: pairs with the acquire load in parked() (kick.c) of a
	 * pauser waiting for this vCPU: what this thread did before (its
	 * last guest instance) happens before that pauser's return. */
	atomic_store_explicit(&self->parked, 1, memory_order_release);
	vcpureq__park_notify(self);
	return was;
}

void vcpureq__self_park_end(struct vcpureq_vcpu *self, uint32_t was)
{
	/* Relaxed: the thread is outside guest mode either way; a pause
	 * made meanwhile parks it at its next entry (the PAUSE bit). */
	atomic_store_explicit(&self->parked, was, memory_order_relaxed);
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
