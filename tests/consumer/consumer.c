/* SPDX-License-Identifier: MIT */
/*
 * An outside program built against an installed vcpureq (tools/consumer-check.sh
 * builds it with pkg-config and with find_package(vcpureq), against the
 * shared and the static library).  A thread-backend VM, so no /dev/kvm is
 * needed: one request with a payload, made from this thread, must be
 * handled by the vCPU thread with the payload visible; then a WAIT request
 * stops the vCPU.  Exits 0 only if all of that happened.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <vcpureq/vcpureq.h>

#define REQ_WORK VCPUREQ_ARCH_REQ(0)
#define REQ_STOP VCPUREQ_ARCH_REQ_FLAGS(1, VCPUREQ_REQUEST_WAIT)

static _Atomic unsigned int payload;
static _Atomic unsigned int seen;

static int handle_requests(struct vcpureq_vcpu *vcpu, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_WORK, vcpu) > 0)
		atomic_store(&seen, atomic_load_explicit(&payload,
							 memory_order_relaxed));
	return 0;
}

static int guest(struct vcpureq_vcpu *vcpu, void *opaque)
{
	(void)opaque;
	while (!vcpureq_guest_kicked(vcpu))
		;
	return VCPUREQ_GUEST_KICKED;
}

static void *vcpu_thread(void *arg)
{
	struct vcpureq_vcpu *vcpu = arg;
	int r;

	if (vcpureq_vcpu_bind(vcpu) != 0)
		return NULL;
	do
		r = vcpureq_vcpu_run(vcpu);
	while (r >= 0 && !(r == VCPUREQ_RUN_REQUEST &&
			   vcpureq_check_request(REQ_STOP, vcpu) > 0));
	vcpureq_vcpu_unbind(vcpu);
	return NULL;
}

int main(void)
{
	struct vcpureq_vm_opts opts = {
		.backend = VCPUREQ_BACKEND_THREAD,
		.nr_vcpus = 1,
		.handle_requests = handle_requests,
		.guest = guest,
	};
	struct vcpureq_stats st;
	struct vcpureq_vm *vm;
	pthread_t t;
	int r;

	if (vcpureq_version() != VCPUREQ_VERSION) {
		fprintf(stderr, "consumer: compiled against %s, linked with %s\n",
			VCPUREQ_VERSION_STRING, vcpureq_version_string());
		return 1;
	}
	r = vcpureq_vm_create(&opts, &vm);
	if (r) {
		fprintf(stderr, "consumer: vcpureq_vm_create: %d %s\n", r,
			vcpureq_errmsg());
		return 1;
	}
	if (pthread_create(&t, NULL, vcpu_thread, vcpureq_vm_vcpu(vm, 0)))
		return 1;
	atomic_store_explicit(&payload, 42, memory_order_relaxed);
	r = vcpureq_request(REQ_WORK, vcpureq_vm_vcpu(vm, 0));
	if (r < 0) {
		fprintf(stderr, "consumer: vcpureq_request: %s\n", vcpureq_errmsg());
		return 1;
	}
	r = vcpureq_make_all_cpus_request(vm, REQ_STOP);
	pthread_join(t, NULL);
	vcpureq_vcpu_stats(vcpureq_vm_vcpu(vm, 0), &st);
	if (r < 0 || atomic_load(&seen) != 42 || st.requests_handled < 2) {
		fprintf(stderr, "consumer: FAIL (stop %d, payload seen %u, handled %llu)\n",
			r, atomic_load(&seen),
			(unsigned long long)st.requests_handled);
		return 1;
	}
	if (vcpureq_vm_free(vm) != 0)
		return 1;
	printf("consumer: vcpureq %s: request handled with its payload, "
	       "vCPU stopped by a WAIT request\n", vcpureq_version_string());
	return 0;
}
