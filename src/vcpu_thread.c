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

int vcpureq_vcpu_bind(struct vcpureq_vcpu *vcpu)
{
	sigset_t kick, guest;
	pid_t none = 0;
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	if (vcpureq__self)
		return vcpureq__errf(-EBUSY, "this thread is already bound to vCPU %u",
				     vcpureq__self->id);
	/* Claim the vCPU (-1: binding in progress). */
	if (!atomic_compare_exchange_strong_explicit(&vcpu->tid, &none, -1,
						     memory_order_acquire,
						     memory_order_relaxed))
		return vcpureq__errf(-EBUSY, "vCPU %u is already bound to a thread",
				     vcpu->id);
	sigemptyset(&kick);
	sigaddset(&kick, vcpu->vm->kick_signal);
	pthread_sigmask(SIG_BLOCK, &kick, &vcpu->saved_mask);
#ifdef VCPUREQ_MUTANT_SIGNAL_DELIVERABLE
	/* Mutant: a no-op handler with the signal deliverable outside
	 * KVM_RUN and no immediate_exit: a kick between the final check and
	 * KVM_RUN is swallowed. */
	if (vcpu->run)
		pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	else
#endif
	if (vcpu->run) {
		/* KVM_RUN runs with the thread's own mask minus the kick. */
		guest = vcpu->saved_mask;
		sigdelset(&guest, vcpu->vm->kick_signal);
		r = vcpureq__kvm_bind(vcpu, &guest);
		if (r) {
			pthread_sigmask(SIG_SETMASK, &vcpu->saved_mask, NULL);
			atomic_store_explicit(&vcpu->tid, 0, memory_order_release);
			return r;
		}
	}
	vcpureq__self = vcpu;
	if (!vcpu->run) {
		/* Thread backend: the handler sets vcpu->kicked, so it may
		 * only run once vcpureq__self is set. */
		pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	}
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
	if (atomic_load_explicit(&vcpu->mode, memory_order_relaxed) !=
	    VCPUREQ_OUTSIDE_GUEST_MODE)
		return vcpureq__err(-EBUSY, "unbind from guest mode (the guest callback)");
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
	vcpureq__self = NULL;
	pthread_sigmask(SIG_SETMASK, &vcpu->saved_mask, NULL);
	atomic_store_explicit(&vcpu->tid, 0, memory_order_release);
	return 0;
}
