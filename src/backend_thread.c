/* SPDX-License-Identifier: MIT */
/*
 * The thread backend: guest mode is the user's guest callback (or whatever
 * the VMM runs between vcpureq_vcpu_enter() and vcpureq_vcpu_exit()).  The
 * kick signal is unblocked in the vCPU thread; its handler (signal.c) sets
 * the vCPU's "kicked" flag, which prepare_entry clears before IN_GUEST_MODE
 * is published (the role of kvm_run->immediate_exit), so a kick that lands
 * between the final check and the callback's first poll is not lost: the
 * callback sees the flag at once.  The signal also interrupts the
 * callback's blocking system calls (no SA_RESTART).
 */
#include <errno.h>
#include <signal.h>

#include "internal.h"

static int thread_vm_open(struct vcpureq_vm *vm, int vm_fd)
{
	if (vm_fd >= 0)
		return vcpureq__err(-EINVAL, "the thread backend has no VM fd: pass -1");
	if (vm->opts.max_vcpus > VCPUREQ_THREAD_MAX_VCPUS)
		return vcpureq__errf(-EINVAL, "max_vcpus %u is above VCPUREQ_THREAD_MAX_VCPUS (%u)",
				     vm->opts.max_vcpus, VCPUREQ_THREAD_MAX_VCPUS);
	vm->max_vcpus = vm->opts.max_vcpus ? vm->opts.max_vcpus :
					     VCPUREQ_THREAD_MAX_VCPUS;
	return 0;
}

static void thread_vm_close(struct vcpureq_vm *vm)
{
	(void)vm;
}

static int thread_vcpu_create(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu;
	return 0;
}

static int thread_vcpu_adopt(struct vcpureq_vcpu *vcpu, int fd,
			     struct kvm_run *run, size_t run_size)
{
	(void)vcpu, (void)fd, (void)run, (void)run_size;
	return vcpureq__err(-EINVAL, "the thread backend has no vCPU fds to adopt: use vcpureq_vcpu_create()");
}

static void thread_vcpu_release(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu;
}

static int thread_bind(struct vcpureq_vcpu *vcpu)
{
	sigset_t kick;

	/* The handler sets vcpureq__self->kicked, so it may only run once
	 * vcpureq__self is set (vcpu_thread.c did, before calling us). */
	sigemptyset(&kick);
	sigaddset(&kick, vcpu->vm->kick_signal);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	return 0;
}

static void thread_unbind(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu;
}

static void thread_prepare_entry(struct vcpureq_vcpu *vcpu)
{
	/* Fenced before the publish by vcpureq__enter_guest_mode(). */
	atomic_store_explicit(&vcpu->kicked, 0, memory_order_relaxed);
}

static int thread_run_guest(struct vcpureq_vcpu *vcpu)
{
	const struct vcpureq_vm_opts *o = &vcpu->vm->opts;

	return o->guest(vcpu, o->opaque);
}

static int thread_classify_exit(struct vcpureq_vcpu *vcpu, int ret, int left)
{
	(void)left;
	if (ret == VCPUREQ_GUEST_KICKED || ret == -EINTR)
		return VCPUREQ__EXIT_KICKED;
	vcpu->guest_ret = ret;
	return VCPUREQ__EXIT_GUEST;
}

static void thread_self_kick(struct vcpureq_vcpu *vcpu)
{
	atomic_store_explicit(&vcpu->kicked, 1, memory_order_relaxed);
}

const struct vcpureq__backend vcpureq__backend_thread = {
	.name = "thread",
	.kick = VCPUREQ_KICK_IMMEDIATE_EXIT,
	.vm_open = thread_vm_open,
	.vm_close = thread_vm_close,
	.vcpu_create = thread_vcpu_create,
	.vcpu_adopt = thread_vcpu_adopt,
	.vcpu_release = thread_vcpu_release,
	.bind = thread_bind,
	.unbind = thread_unbind,
	.prepare_entry = thread_prepare_entry,
	.run_guest = thread_run_guest,
	.classify_exit = thread_classify_exit,
	.self_kick = thread_self_kick,
};
