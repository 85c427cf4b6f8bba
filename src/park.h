/* SPDX-License-Identifier: MIT */
/*
 * The park epoch: the event count that pausers wait on (wait_parked() in
 * pause.c), bumped each time a vCPU becomes parked: it parks for a pause
 * (pause.c), falls asleep in block while paused (block.c), unbinds, or
 * waits on other vCPUs itself.  Kept in a header of its own because
 * block.c, below pause.c, bumps it too.
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

#endif /* VCPUREQ_PARK_H */
