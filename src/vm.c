/* SPDX-License-Identifier: MIT */
/* VM and vCPU objects: create, destroy, accessors, counters. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int check_opts(const struct vcpureq_vm_opts *o)
{
	if (!o)
		return vcpureq__err(-EINVAL, "opts is NULL");
	if (o->backend != VCPUREQ_BACKEND_KVM &&
	    o->backend != VCPUREQ_BACKEND_THREAD)
		return vcpureq__err(-EINVAL, "unknown backend");
	if (o->nr_vcpus == 0 || o->nr_vcpus > VCPUREQ_MAX_VCPUS)
		return vcpureq__errf(-EINVAL, "nr_vcpus must be 1..%u",
				     VCPUREQ_MAX_VCPUS);
	if (o->backend == VCPUREQ_BACKEND_THREAD && !o->guest)
		return vcpureq__err(-EINVAL,
				    "the thread backend needs opts.guest (the guest-mode callback)");
	if (o->kick_signal < 0 || o->kick_signal >= _NSIG)
		return vcpureq__err(-EINVAL, "kick_signal out of range");
	return 0;
}

int vcpureq_vm_create(const struct vcpureq_vm_opts *opts,
		      struct vcpureq_vm **out)
{
	struct vcpureq_vm *vm;
	size_t sz;
	unsigned int i;
	int r = check_opts(opts);

	if (r)
		return r;
	if (!out)
		return vcpureq__err(-EINVAL, "out is NULL");
	*out = NULL;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vcpureq__err(-ENOMEM, "out of memory");
	vm->opts = *opts;
	vm->nr_vcpus = opts->nr_vcpus;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->pid = getpid();
	{
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		vm->nr_cpus = n > 0 ? (unsigned int)n : 1;
	}
	vm->kick_signal = opts->kick_signal ? opts->kick_signal : SIGRTMIN + 5;
	sz = sizeof(struct vcpureq_vcpu) * vm->nr_vcpus;
	vm->vcpus = aligned_alloc(VCPUREQ__CACHELINE, sz);
	if (!vm->vcpus) {
		free(vm);
		return vcpureq__err(-ENOMEM, "out of memory");
	}
	memset(vm->vcpus, 0, sz);
	for (i = 0; i < vm->nr_vcpus; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].id = i;
		vm->vcpus[i].fd = -1;
	}
	r = vcpureq__signal_acquire(vm->kick_signal);
	if (r) {
		free(vm->vcpus);
		free(vm);
		return r;
	}
	if (opts->backend == VCPUREQ_BACKEND_KVM) {
		r = vcpureq__kvm_vm_init(vm);
		if (r) {
			vcpureq__kvm_vm_fini(vm);
			vcpureq__signal_release(vm->kick_signal);
			free(vm->vcpus);
			free(vm);
			return r;
		}
	}
	*out = vm;
	return 0;
}

int vcpureq_vm_destroy(struct vcpureq_vm *vm)
{
	unsigned int i;

	if (!vm)
		return vcpureq__err(-EINVAL, "vm is NULL");
	if (atomic_load_explicit(&vm->state, memory_order_relaxed) !=
	    VCPUREQ__VM_LIVE)
		return vcpureq__err(-ESHUTDOWN, "the VM has been destroyed");
	if (vcpureq__self && vcpureq__self->vm == vm)
		return vcpureq__err(-EBUSY, "a vCPU thread cannot destroy its own VM");
	for (i = 0; i < vm->nr_vcpus; i++)
		if (atomic_load_explicit(&vm->vcpus[i].tid,
					 memory_order_acquire))
			return vcpureq__errf(-EBUSY,
					     "vCPU %u is still bound to a thread; unbind it first",
					     i);
	atomic_store_explicit(&vm->state, VCPUREQ__VM_DESTROYED,
			      memory_order_relaxed);
	if (vm->opts.backend == VCPUREQ_BACKEND_KVM)
		vcpureq__kvm_vm_fini(vm);
	vcpureq__signal_release(vm->kick_signal);
	return 0;
}

int vcpureq_vm_free(struct vcpureq_vm *vm)
{
	if (!vm)
		return 0;
	if (atomic_load_explicit(&vm->state, memory_order_relaxed) ==
	    VCPUREQ__VM_LIVE) {
		int r = vcpureq_vm_destroy(vm);

		if (r)
			return r;
	}
	free(vm->vcpus);
	free(vm);
	return 0;
}

struct vcpureq_vcpu *vcpureq_vm_vcpu(const struct vcpureq_vm *vm,
				     unsigned int id)
{
	if (!vm || id >= vm->nr_vcpus)
		return NULL;
	return &vm->vcpus[id];
}

unsigned int vcpureq_vm_nr_vcpus(const struct vcpureq_vm *vm)
{
	return vm ? vm->nr_vcpus : 0;
}

unsigned int vcpureq_vcpu_id(const struct vcpureq_vcpu *vcpu)
{
	return vcpu->id;
}

struct vcpureq_vm *vcpureq_vcpu_vm(const struct vcpureq_vcpu *vcpu)
{
	return vcpu->vm;
}

int vcpureq_vm_kick_signal(const struct vcpureq_vm *vm)
{
	return vm->kick_signal;
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

int vcpureq_vcpu_stats(const struct vcpureq_vcpu *vcpu,
		       struct vcpureq_stats *out)
{
	const struct vcpureq__req_stats *r;
	const struct vcpureq__vcpu_stats *v;

	if (!vcpu || !out)
		return vcpureq__err(-EINVAL, "vcpu or out is NULL");
	r = &vcpu->rstats;
	v = &vcpu->vstats;
	out->requests_made = LD(r->requests_made);
	out->requests_handled = LD(v->requests_handled);
	out->kicks = LD(r->kicks);
	out->signals_sent = LD(r->signals_sent);
	out->signals_coalesced = LD(r->signals_coalesced);
	out->wakeups = LD(r->wakeups);
	out->acks_waited = LD(r->acks_waited);
	out->entries = LD(v->entries);
	out->entry_aborts = LD(v->entry_aborts);
	out->exits = LD(v->exits);
	out->kicked_exits = LD(v->kicked_exits);
	out->spurious_exits = LD(v->spurious_exits);
	out->blocks = LD(v->blocks);
	out->halt_poll_hits = LD(v->halt_poll_hits);
	out->interrupts_posted = LD(r->interrupts_posted);
	out->interrupts_injected = LD(v->interrupts_injected);
	return 0;
}
