/* SPDX-License-Identifier: MIT */
/*
 * The README's usage example, compiled by the build and run as a test.
 * One vCPU on the thread backend (runs anywhere); on /dev/kvm the only
 * differences are .backend = VCPUREQ_BACKEND_KVM, setting up guest memory
 * and registers through vcpureq_vm_kvm_fd() / vcpureq_vcpu_kvm_fd(), and
 * reading exits from vcpureq_vcpu_kvm_run().
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <vcpureq/vcpureq.h>

#define REQ_FLUSH_MY_CACHE VCPUREQ_ARCH_REQ(0)           /* user request */
#define REQ_STOP VCPUREQ_ARCH_REQ_FLAGS(1, VCPUREQ_REQUEST_WAIT)

static _Atomic int new_cache_size; /* payload of REQ_FLUSH_MY_CACHE */
static int cache_size;             /* vCPU thread only */

/* Called on the vCPU thread, outside guest mode, before each entry. */
static int handle_requests(struct vcpureq_vcpu *vcpu, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_FLUSH_MY_CACHE, vcpu) > 0)
		cache_size = atomic_load_explicit(&new_cache_size,
						  memory_order_relaxed);
	return 0; /* REQ_STOP is left pending: vcpureq_vcpu_run() returns */
}

/* Guest mode of the thread backend: "emulate" until kicked. */
static int guest(struct vcpureq_vcpu *vcpu, void *opaque)
{
	(void)opaque;
	while (!vcpureq_guest_kicked(vcpu))
		; /* emulate one instruction */
	return VCPUREQ_GUEST_KICKED;
}

static void *vcpu_thread(void *arg)
{
	struct vcpureq_vcpu *vcpu = arg;

	vcpureq_vcpu_bind(vcpu);
	for (;;) {
		int r = vcpureq_vcpu_run(vcpu);

		if (r == VCPUREQ_RUN_REQUEST &&
		    vcpureq_check_request(REQ_STOP, vcpu) > 0)
			break;
		if (r < 0)
			break; /* -EIO: the VM is dead */
	}
	vcpureq_vcpu_unbind(vcpu);
	return NULL;
}

int main(void)
{
	struct vcpureq_vm_opts opts = {
		.size = sizeof(opts),
		.backend = VCPUREQ_BACKEND_THREAD,
		.nr_vcpus = 1,
		.handle_requests = handle_requests,
		.guest = guest,
	};
	struct vcpureq_vm *vm;
	pthread_t t;
	int r = vcpureq_vm_create(&opts, &vm);

	if (r) {
		fprintf(stderr, "vcpureq_vm_create: %s\n", vcpureq_errmsg());
		return 1;
	}
	pthread_create(&t, NULL, vcpu_thread, vcpureq_vm_vcpu(vm, 0));

	/* Any thread: write the payload, then make the request and kick. */
	atomic_store_explicit(&new_cache_size, 4096, memory_order_relaxed);
	vcpureq_request(REQ_FLUSH_MY_CACHE, vcpureq_vm_vcpu(vm, 0));

	/* WAIT: returns once the vCPU has left guest mode. */
	vcpureq_make_all_cpus_request(vm, REQ_STOP);
	pthread_join(t, NULL);

	printf("cache_size seen by the vCPU: %d\n", cache_size);
	vcpureq_vm_free(vm);
	return cache_size == 4096 ? 0 : 1;
}
