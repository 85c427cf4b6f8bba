/* SPDX-License-Identifier: MIT */
/*
 * Binding a thread to a vCPU.  Lessons of the peers: per-thread state is
 * set up before the kick signal can be delivered, and torn down only after
 * it is blocked and no kicker is about to send one (Firecracker and libkrun
 * crashed when a kick raced thread start-up).
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "park.h"

int vcpureq_vcpu_bind(struct vcpureq_vcpu *vcpu)
{
	sigset_t kick;
	pid_t none = 0;
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	if (vcpureq__self)
		return vcpureq__errf(-EBUSY, "this thread is already bound to vCPU %lu",
				     vcpureq__self->id);
	/* A handler installed over ours after create would swallow kicks
	 * (IMMEDIATE_EXIT, thread backend): every kick a hang. */
	if (!vcpureq__signal_is_ours(vcpu->vm->kick_signal))
		return vcpureq__errf(-EBUSY,
				     "the kick signal %d's handler was replaced after the VM was created; kicks would be lost",
				     vcpu->vm->kick_signal);
	/* Claim the vCPU (-1: binding in progress). */
	if (!atomic_compare_exchange_strong_explicit(&vcpu->tid, &none, -1,
						     memory_order_acquire,
						     memory_order_relaxed))
		return vcpureq__errf(-EBUSY, "vCPU %lu is already bound to a thread",
				     vcpu->id);
	sigemptyset(&kick);
	sigaddset(&kick, vcpu->vm->kick_signal);
	pthread_sigmask(SIG_BLOCK, &kick, &vcpu->saved_mask);
	vcpureq__self = vcpu;
	/* The backend makes the thread ready to be kicked (a KVM_RUN mask,
	 * or the handler's pointer and then unblock) before the tid below
	 * lets any kicker signal it. */
	r = vcpu->ops->bind(vcpu);
	if (r) {
		vcpureq__self = NULL;
		pthread_sigmask(SIG_SETMASK, &vcpu->saved_mask, NULL);
		/* Release: as at the end of vcpureq_vcpu_unbind(). */
		atomic_store_explicit(&vcpu->tid, 0, memory_order_release);
		return r;
	}
	/* Release: pairs with the acquire loads of tid in parked() (pause.c)
	 * and vm.c.  Kickers load it relaxed: they signal only a vCPU whose
	 * IN_GUEST they saw, which this thread publishes after this store. */
	atomic_store_explicit(&vcpu->tid, (pid_t)syscall(SYS_gettid),
			      memory_order_release);
	return 0;
}

int vcpureq_vcpu_unbind(struct vcpureq_vcpu *vcpu)
{
	sigset_t kick;
	int r = vcpureq__check_self(vcpu);

	if (r)
		return r;
	if (vcpu->in_walk)
		return vcpureq__err(-EBUSY, "unbind inside a lockless walk");
	if (vcpu->in_handler)
		return vcpureq__err(-EBUSY, "unbind from the request handler: the vCPU would enter the guest unbound");
	if (vcpu->in_run || vcpu->entered ||
	    atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
		    VCPUREQ_OUTSIDE_GUEST_MODE)
		return vcpureq__err(-EBUSY, "unbind from guest mode (the guest callback, or between enter and exit)");
	sigemptyset(&kick);
	sigaddset(&kick, vcpu->vm->kick_signal);
	pthread_sigmask(SIG_BLOCK, &kick, NULL);
	/*
	 * Mode is OUTSIDE and stays so (only we leave it), so no new kicker
	 * can win the CAS; wait for the ones that won it to send their
	 * signal.  The fence pairs with the kicker's seq_cst increment that
	 * precedes its CAS: a kicker whose CAS read IN_GUEST is counted here.
	 */
	vcpureq__smp_mb();
	while (atomic_load_explicit(&vcpu->kick_inflight, memory_order_acquire))
		sched_yield();
	vcpureq__signal_drain(vcpu->vm->kick_signal, true);
	vcpu->ops->unbind(vcpu);
	vcpureq__self = NULL;
	pthread_sigmask(SIG_SETMASK, &vcpu->saved_mask, NULL);
	/* Release: pairs with the acquire load of tid in parked() (pause.c)
	 * and in vm.c: a thread that sees 0 sees this unbind done. */
	atomic_store_explicit(&vcpu->tid, 0, memory_order_release);
	/* Unbound counts as parked for a pauser (no thread, no guest). */
	vcpureq__park_notify(vcpu);
	/* After VM_DEAD nobody would take this queue before the destroy
	 * (run_on_vcpu.c; the fence [E'] above orders tid = 0 before the load). */
	vcpureq__work_cancel_if_dead(vcpu);
	return 0;
}
