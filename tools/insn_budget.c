/* SPDX-License-Identifier: MIT */
/*
 * User-space instructions per operation, counted by callgrind: the same
 * whatever the machine's load, so a budget can be checked in CI where a
 * timed test could not (tools/insn-budget.sh runs this under
 * valgrind --tool=callgrind and compares with docs/performance.md).
 *
 * One thread does everything, so every count is deterministic:
 *   raw       N guest entries through the raw loop: ioctl(KVM_RUN) on the
 *             vCPU fd, the guest exits to user space (an OUT) each time;
 *   entry     N guest entries through vcpureq_vcpu_run(), same vCPU, same
 *             guest (what the library adds per entry/exit pair: entry -
 *             raw);
 *   enter     N pairs vcpureq_vcpu_enter() + ioctl(KVM_RUN) +
 *             vcpureq_vcpu_exit() (the VMM-owned loop of docs/vmm.md);
 *   request   N vcpureq_request() of an awake vCPU outside guest mode
 *             (another vCPU, no thread bound: bit, fence, mode read, no
 *             signal: the requester's side of every kick);
 *   check     N make + check of a request by the bound thread.
 * Between parts it asks callgrind to dump its counts (a client request,
 * a no-op when not under valgrind), labelled with the part's name.
 *
 *   insn-budget [N]      (default 20000)
 * Exit 77 (SKIP) without /dev/kvm.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <valgrind/callgrind.h>

#include "harness.h"

#define REQ VCPUREQ_ARCH_REQ(1)

static int fail(const char *what, int r)
{
	fprintf(stderr, "insn-budget: %s: %d (%s)\n", what, r, vcpureq_errmsg());
	return 1;
}

static int raw_loop(struct vcpureq_vcpu *v, long n)
{
	struct kvm_run *run = vcpureq_vcpu_kvm_run(v);
	int fd = vcpureq_vcpu_kvm_fd(v);
	long i;

	for (i = 0; i < n; i++) {
		if (ioctl(fd, KVM_RUN, 0) < 0)
			return -errno;
		if (run->exit_reason != KVM_EXIT_IO)
			return -EPROTO;
	}
	return 0;
}

static int run_loop(struct vcpureq_vcpu *v, long n)
{
	struct kvm_run *run = vcpureq_vcpu_kvm_run(v);
	long i;
	int r;

	for (i = 0; i < n; i++) {
		r = vcpureq_vcpu_run(v);
		if (r != VCPUREQ_RUN_EXIT)
			return r < 0 ? r : -EIO;
		if (run->exit_reason != KVM_EXIT_IO)
			return -EPROTO;
	}
	return 0;
}

static int enter_loop(struct vcpureq_vcpu *v, long n)
{
	struct kvm_run *run = vcpureq_vcpu_kvm_run(v);
	int fd = vcpureq_vcpu_kvm_fd(v);
	long i;
	int r;

	for (i = 0; i < n; i++) {
		r = vcpureq_vcpu_enter(v);
		if (r != 0)
			return r < 0 ? r : -EIO;
		r = ioctl(fd, KVM_RUN, 0) < 0 ? -errno : 0;
		r = vcpureq_vcpu_exit(v, r);
		if (r < 0)
			return r;
		if (run->exit_reason != KVM_EXIT_IO)
			return -EPROTO;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000, i;
	struct vcpureq_vcpu *v, *other;
	struct h_vm h;
	int r;

	if (n <= 0)
		return fprintf(stderr, "usage: insn-budget [N > 0]\n"), 2;
	r = h_vm_create(&h, VCPUREQ_BACKEND_KVM, 2, H_OUT, NULL);
	if (r == H_SKIP) /* no usable /dev/kvm: the harness said why */
		return 77;
	if (r == -ENOENT || r == -EACCES || r == -ENODEV) {
		printf("SKIP: /dev/kvm is not usable here (%d)\n", r);
		return 77;
	}
	if (r)
		return fail("h_vm_create", r);
	v = vcpureq_vm_vcpu(h.vm, 0);
	other = vcpureq_vm_vcpu(h.vm, 1);
	if ((r = vcpureq_vcpu_bind(v)))
		return fail("bind", r);
	/* Warm up every path once (first-touch page faults, lazy binding). */
	if ((r = raw_loop(v, 100)) || (r = run_loop(v, 100)) ||
	    (r = enter_loop(v, 100)))
		return fail("warm-up", r);
	for (i = 0; i < 100; i++)
		vcpureq_request(REQ, other);

	CALLGRIND_ZERO_STATS;
	if ((r = raw_loop(v, n)))
		return fail("raw loop", r);
	CALLGRIND_DUMP_STATS_AT("raw");
	if ((r = run_loop(v, n)))
		return fail("vcpureq_vcpu_run loop", r);
	CALLGRIND_DUMP_STATS_AT("entry");
	if ((r = enter_loop(v, n)))
		return fail("enter/exit loop", r);
	CALLGRIND_DUMP_STATS_AT("enter");
	for (i = 0; i < n; i++)
		if ((r = vcpureq_request(REQ, other)) < 0)
			return fail("vcpureq_request", r);
	CALLGRIND_DUMP_STATS_AT("request");
	for (i = 0; i < n; i++) {
		vcpureq_make_request(REQ, v);
		if (vcpureq_check_request(REQ, v) != 1)
			return fail("check_request", -EPROTO);
	}
	CALLGRIND_DUMP_STATS_AT("check");

	vcpureq_vcpu_unbind(v);
	h_vm_destroy(&h);
	printf("insn-budget: %ld of each part done%s\n", n,
	       RUNNING_ON_VALGRIND ? "" : " (not under callgrind: nothing counted)");
	return 0;
}
