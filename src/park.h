/* SPDX-License-Identifier: MIT */
/*
 * The park epoch: the event count that pausers wait on (wait_parked() in
 * pause.c), bumped each time a vCPU becomes parked: it parks for a pause
 * (pause.c), falls asleep in block while paused (block.c), unbinds, or
 * waits on other vCPUs itself (pause.c, run_on_vcpu.c).  Kept in a header
 * of its own because block.c and run_on_vcpu.c, below pause.c, bump it
 * too.
 */
#ifndef VCPUREQ_PARK_H
#define VCPUREQ_PARK_H

#include <limits.h>

#include "futex.h"
#include "internal.h"

/* Tell waiting pausers that @vcpu is parked now.  Any thread; does not
 * block (one futex wake if a pauser waits); async-signal-safe. */
static inline void vcpureq__park_notify(struct vcpureq_vcpu *vcpu)
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

/* The calling vCPU thread waits for other vCPUs (vcpureq_pause(),
 * vcpureq_run_on_vcpu()): it counts as parked meanwhile (outside guest
 * mode, and it parks at its next entry if paused).  _begin returns the
 * previous value, which _end restores. */
static inline uint32_t vcpureq__self_park_begin(struct vcpureq_vcpu *self)
{
	uint32_t was = atomic_load_explicit(&self->parked, memory_order_relaxed);

	/* Release: pairs with the acquire load in parked() (pause.c) of a
	 * pauser waiting for this vCPU: what this thread did before (its
	 * last guest instance) happens before that pauser's return. */
	atomic_store_explicit(&self->parked, 1, memory_order_release);
	vcpureq__park_notify(self);
	return was;
}

static inline void vcpureq__self_park_end(struct vcpureq_vcpu *self, uint32_t was)
{
	/* Relaxed: the thread is outside guest mode either way; a pause
	 * made meanwhile parks it at its next entry (the PAUSE bit). */
	atomic_store_explicit(&self->parked, was, memory_order_relaxed);
}

/*
 * A run-on-vCPU item was pushed to @vcpu: wake its thread if it waits in
 * its parking (vcpureq__park_if_paused()), which runs queued items there,
 * without leaving the pause.  The WORK bit is sticky until a parked thread
 * takes it, so a vCPU that parks after this sees it at once.  Release:
 * pairs with the parked thread's acquire clear of the bit, so the push
 * (before this) happens before its exchange of the queue: it finds the
 * item.  Any thread; does not block (one futex wake if paused).
 */
static inline void vcpureq__park_work_notify(struct vcpureq_vcpu *vcpu)
{
	if (atomic_fetch_or_explicit(&vcpu->pause_word, VCPUREQ__PAUSE_WORK,
				     memory_order_release) &
	    VCPUREQ__PAUSE_COUNT)
		vcpureq__futex_wake(&vcpu->pause_word, 1);
}

#endif /* VCPUREQ_PARK_H */
