/* SPDX-License-Identifier: MIT */
/*
 * The thread backend: guest mode is the user's guest callback.  The kick
 * signal is unblocked in the vCPU thread; its handler (signal.c) sets the
 * vCPU's "kicked" flag, which run.c clears before publishing IN_GUEST_MODE
 * (the role of kvm_run->immediate_exit), so a kick that lands between the
 * final check and the callback's first poll is not lost: the callback sees
 * the flag at once.  The signal also interrupts the callback's blocking
 * system calls (no SA_RESTART).
 */
#include "internal.h"

int vcpureq__thread_enter(struct vcpureq_vcpu *vcpu)
{
	const struct vcpureq_vm_opts *o = &vcpu->vm->opts;
	int ret = o->guest(vcpu, o->opaque);

	if (ret == VCPUREQ_GUEST_KICKED)
		return 1;
	vcpu->guest_ret = ret;
	return 0;
}
