/* SPDX-License-Identifier: MIT */
/* First light: a spinning vCPU handles a request made with a kick. */
#include "harness.h"

#define REQ_PING VCPUREQ_ARCH_REQ(1)

static _Atomic int pings;

static int handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_PING, v) > 0)
		atomic_fetch_add(&pings, 1);
	return 0;
}

static bool progressing(struct h_vm *h, unsigned int id)
{
	return h_in_guest(h, id) && h_guest_iters(h, id) > 1000;
}

TEST_BOTH(spin_kick_handled)
{
	struct vcpureq_vm_opts o = { .handle_requests = handler };
	struct vcpureq_stats st;
	struct h_vm h;
	int i;

	H_VM(&h, be, 1, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 100; i++) {
		CHECK(h_wait_until(progressing, &h, 0, 10000));
		CHECK(vcpureq_make_request(REQ_PING, vcpureq_vm_vcpu(h.vm, 0)) == 0);
		CHECK(vcpureq_vcpu_kick(vcpureq_vm_vcpu(h.vm, 0)) >= 0);
		uint64_t end = h_now_ns() + 10000000000ull;
		while (atomic_load(&pings) != i + 1 && h_now_ns() < end)
			;
		CHECK_EQ(atomic_load(&pings), i + 1);
	}
	CHECK_EQ(h_stop_all(&h), 0);
	vcpureq_vcpu_stats(vcpureq_vm_vcpu(h.vm, 0), &st, sizeof(st));
	printf("signals %llu kicked_exits %llu spurious %llu entries %llu aborts %llu\n",
	       (unsigned long long)st.signals_sent, (unsigned long long)st.kicked_exits,
	       (unsigned long long)st.spurious_exits, (unsigned long long)st.entries,
	       (unsigned long long)st.entry_aborts);
	CHECK(st.signals_sent >= 100);
	h_vm_destroy(&h);
	return 0;
}
