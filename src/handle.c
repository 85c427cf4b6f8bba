/* SPDX-License-Identifier: MIT */
/*
 * Handles: whether a VM or vCPU pointer a caller passes is one to act on
 * (not NULL, not destroyed, not the parent's after a fork()), and whether
 * the caller is the vCPU's bound thread.  Every file that takes a handle
 * checks it here; the VM's life (create, destroy) is vm.c's.
 */
#include <errno.h>

#include "internal.h"

VCPUREQ__TLS struct vcpureq_vcpu *vcpureq__self;

_Atomic unsigned int vcpureq__fork_gen;

static void forked_child(void)
{
	atomic_fetch_add_explicit(&vcpureq__fork_gen, 1, memory_order_relaxed);
	/* The child has only the forking thread; if it was a vCPU thread,
	 * it is not one in the child. */
	vcpureq__self = NULL;
	vcpureq__immediate_exit = NULL;
}

/* Registered once, when the library is loaded (no lazy global state). */
__attribute__((constructor)) static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, forked_child);
}

int vcpureq__check_vm(const struct vcpureq_vm *vm)
{
	if (!vm)
		return vcpureq__err(-EINVAL, "vm is NULL");
	if (atomic_load_explicit(&vm->state, memory_order_relaxed) !=
	    VCPUREQ__VM_LIVE)
		return vcpureq__err(-ESHUTDOWN, "the VM has been destroyed");
	if (vm->fork_gen != atomic_load_explicit(&vcpureq__fork_gen,
						 memory_order_relaxed))
		return vcpureq__err(-ECHILD,
				    "the VM belongs to the parent process (inherited through fork()): create a new one in the child");
	return 0;
}

int vcpureq__check_vcpu(const struct vcpureq_vcpu *vcpu)
{
	if (!vcpu)
		return vcpureq__err(-EINVAL, "vcpu is NULL");
	return vcpureq__check_vm(vcpu->vm);
}

int vcpureq__check_self_slow(const struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	if (vcpureq__self != vcpu)
		return vcpureq__err(-EPERM,
				    "only the vCPU's own bound thread may call this");
	return 0;
}
