/* SPDX-License-Identifier: MIT */
/*
 * vcpureq inside a real VMM: the VMM's own VM and vCPU fds (adopted), ids
 * of its choosing, vCPUs added while others run, an in-kernel irqchip whose
 * HLT sleeps inside KVM_RUN, the VMM's own run loop (enter/exit pair), and
 * the VMM's own signals.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define REQ_WAIT VCPUREQ_ARCH_REQ_FLAGS(2, VCPUREQ_REQUEST_WAIT)
#define HANG_MS (20000 * h_time_scale()) /* a hang, not a deadline: the CTest timeout is 60 s */

static _Atomic uint64_t handled[H_CAP];

static int count_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0)
		atomic_fetch_add(&handled[vcpureq_vcpu_index(v)], 1);
	if (vcpureq_check_request(REQ_WAIT, v) > 0)
		atomic_fetch_add(&handled[vcpureq_vcpu_index(v)], 1);
	return 0;
}

static bool wait_handled(unsigned int i, uint64_t n)
{
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

	while (atomic_load(&handled[i]) < n) {
		if (h_now_ns() > end)
			return false;
		h_sleep_us(100);
	}
	return true;
}

/* In guest mode with the guest loop entered at least once: for H_PIC that
 * is the in-kernel halt (sti; hlt with no interrupt source). */
static bool halted_in_kernel(struct h_vm *h, unsigned int i)
{
	return h_in_guest(h, i) && h_guest_iters(h, i) >= 1;
}

/* (a) A request + kick reaches a vCPU halted inside KVM_RUN: the one
 * signal interrupts the in-kernel halt, the handler runs, and the guest is
 * still halted afterwards (no interrupt was injected for the kick; on
 * arm64 the kicked wfi has completed, as wfi may without an interrupt, and
 * the guest's loop waits in the next one). */
static int kick_halted_vcpu(enum vcpureq_backend be, unsigned int flags,
			    unsigned int req, int rounds)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct vcpureq_stats s0, s1;
	struct h_vm h;
	uint64_t iters;
	int k;

	H_VM_CFG(&h, be, 1, H_PIC, &o, flags, NULL);
	CHECK(vcpureq_vcpu_lapic_in_kernel(vcpureq_vm_vcpu(h.vm, 0)));
	/* The mailbox is for the user-space irqchip. */
	CHECK_EQ(vcpureq_post_interrupt(vcpureq_vm_vcpu(h.vm, 0), 0x30),
		 -ENOTSUP);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(halted_in_kernel, &h, 0, HANG_MS));
	iters = h_guest_iters(&h, 0);
	for (k = 1; k <= rounds; k++) {
		CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
		s0 = h_stats(&h, 0);
		CHECK_EQ(vcpureq_request(req, vcpureq_vm_vcpu(h.vm, 0)), 1);
		CHECK(wait_handled(0, (uint64_t)k));
		s1 = h_stats(&h, 0);
		CHECK_EQ(s1.signals_sent - s0.signals_sent, 1);
	}
	if (!h_kick_ends_inkernel_halt)
		CHECK_EQ(h_guest_iters(&h, 0), iters); /* still the same hlt */
	else /* at most one more wfi per kick, each woken by no interrupt */
		CHECK(h_guest_iters(&h, 0) <= iters + (uint64_t)rounds);
	CHECK_EQ(h_guest_irqs(&h, 0), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

TEST(irqchip_kick_halted_vcpu)
{
	return kick_halted_vcpu(be, H_F_IRQCHIP, REQ_A, 5);
}

/* The same with a split irqchip (LAPIC in the kernel, PIC in user space:
 * the guest's PIC programming exits to us, its hlt still sleeps in the
 * kernel). */
TEST(split_irqchip_kick_halted_vcpu)
{
	return kick_halted_vcpu(be, H_F_SPLIT_IRQCHIP, REQ_WAIT, 1);
}

/* (b) KVM_IRQ_LINE from another thread wakes the halted vCPU through the
 * in-kernel PIC: the guest's handler counts each interrupt and reports it
 * on port 0x11; KVM delivers it itself, so vcpureq sends no signal. */
static _Atomic uint64_t port_reports;

static bool on_exit_count(struct h_vm *h, unsigned int id, int reason)
{
	if (h_exit_port(h, id, reason) == H_PORT_IRQ)
		atomic_fetch_add(&port_reports, 1);
	return true;
}

static bool irqs_reach(struct h_vm *h, unsigned int want)
{
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

	while (h_guest_irqs(h, 0) < want || atomic_load(&port_reports) < want) {
		if (h_now_ns() > end)
			return false;
		h_sleep_us(100);
	}
	return true;
}

TEST(irqchip_irq_line_wakes_guest)
{
	struct h_vm h;
	struct vcpureq_stats s0, s1;
	struct kvm_irq_level irq = { .irq = h_irqchip_line };
	unsigned int k;

	H_VM_CFG(&h, be, 1, H_PIC, NULL, H_F_IRQCHIP, NULL);
	h.hooks.on_exit = on_exit_count;
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(halted_in_kernel, &h, 0, HANG_MS));
	s0 = h_stats(&h, 0);
	for (k = 1; k <= 10; k++) {
		irq.level = 1; /* an edge on IRQ0 */
		CHECK_EQ(ioctl(vcpureq_vm_kvm_fd(h.vm), KVM_IRQ_LINE, &irq), 0);
		irq.level = 0;
		CHECK_EQ(ioctl(vcpureq_vm_kvm_fd(h.vm), KVM_IRQ_LINE, &irq), 0);
		CHECK(irqs_reach(&h, k));
	}
	CHECK_EQ(h_guest_irqs(&h, 0), 10);
	CHECK_EQ(atomic_load(&port_reports), 10);
	s1 = h_stats(&h, 0);
	CHECK_EQ(s1.signals_sent - s0.signals_sent, 0);
	CHECK_EQ(s1.requests_made - s0.requests_made, 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* (c) A broadcast WAIT over vCPUs all halted in-kernel returns with every
 * exit epoch moved and one signal each; (d) VM_DEAD stops them all. */
TEST(irqchip_broadcast_wait_and_vm_dead)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	uint32_t before[4];
	struct vcpureq_stats s0[4], s1;
	struct h_vm h;
	unsigned int i;

	H_VM_CFG(&h, be, 4, H_PIC, &o, H_F_IRQCHIP, NULL);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 4; i++) {
		CHECK(h_wait_until(halted_in_kernel, &h, i, HANG_MS));
		before[i] = vcpureq_vcpu_exit_epoch(vcpureq_vm_vcpu(h.vm, i));
		s0[i] = h_stats(&h, i);
	}
	CHECK_EQ(vcpureq_make_all_cpus_request(h.vm, REQ_WAIT), 1);
	for (i = 0; i < 4; i++) {
		s1 = h_stats(&h, i);
		CHECK(vcpureq_vcpu_exit_epoch(vcpureq_vm_vcpu(h.vm, i)) !=
		      before[i]);
		CHECK_EQ(s1.signals_sent - s0[i].signals_sent, 1);
		CHECK_EQ(s1.acks_waited - s0[i].acks_waited, 1);
		CHECK(wait_handled(i, 1));
	}
	for (i = 0; i < 4; i++)
		CHECK(h_wait_until(h_in_guest, &h, i, HANG_MS));
	CHECK_EQ(vcpureq_vm_dead(h.vm), 1);
	h_join_all(&h); /* every loop ends with -EIO */
	for (i = 0; i < 4; i++) {
		CHECK(atomic_load(&h.vcpus[i].finished));
		CHECK_EQ(atomic_load(&h.vcpus[i].run_ret), 0);
		CHECK(vcpureq_vcpu_mode(vcpureq_vm_vcpu(h.vm, i)) ==
		      VCPUREQ_OUTSIDE_GUEST_MODE);
	}
	CHECK(vcpureq_vm_is_dead(h.vm));
	h_vm_destroy(&h);
	return 0;
}

/* The VMM's own VM fd and vCPU fds, adopted, with sparse ids (x86 APIC ids
 * need not be dense): lookups by id and index, a duplicate id refused,
 * requests by id handled, a broadcast reaching all. */
TEST(adopted_fds_sparse_ids)
{
	static const unsigned long ids[] = { 0, 2, 7, 255 };
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct h_vm h;
	unsigned int i;

	H_VM_CFG(&h, be, 4, H_SPIN, &o, H_F_ADOPT, ids);
	CHECK_EQ(vcpureq_vm_kvm_fd(h.vm), h.own_vm_fd);
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 4);
	for (i = 0; i < 4; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu_by_id(h.vm, ids[i]);

		CHECK(v == vcpureq_vm_vcpu(h.vm, i));
		CHECK_EQ(vcpureq_vcpu_id(v), ids[i]);
		CHECK_EQ(vcpureq_vcpu_index(v), i);
		CHECK_EQ(vcpureq_vcpu_kvm_fd(v), h.own_vcpu_fd[i]);
		CHECK(vcpureq_vcpu_kvm_run(v) == h.own_run[i]);
		CHECK(!vcpureq_vcpu_lapic_in_kernel(v));
	}
	CHECK(vcpureq_vm_vcpu_by_id(h.vm, 1) == NULL);
	CHECK(vcpureq_vm_vcpu(h.vm, 4) == NULL);
	CHECK_EQ(vcpureq_vcpu_create(h.vm, 7, NULL), -EEXIST);
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 4);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 4; i++) {
		CHECK(h_wait_until(h_in_guest, &h, i, HANG_MS));
		CHECK(vcpureq_request(REQ_A, vcpureq_vm_vcpu_by_id(h.vm, ids[i])) >= 0);
		CHECK(wait_handled(i, 1));
	}
	CHECK(vcpureq_make_all_cpus_request(h.vm, REQ_WAIT) >= 0);
	for (i = 0; i < 4; i++)
		CHECK(wait_handled(i, 2));
	CHECK_EQ(h_stop_all(&h), 0);
	/* vcpureq never closes the VMM's fds: they still work after free. */
	{
		int vm_fd = h.own_vm_fd, vcpu_fd = h.own_vcpu_fd[3];
		struct kvm_mp_state mp;

		h.own_vm_fd = -1;
		h.own_vcpu_fd[3] = -1;
		CHECK_EQ(vcpureq_vm_free(h.vm), 0);
		h.vm = NULL;
		CHECK_EQ(ioctl(vcpu_fd, KVM_GET_MP_STATE, &mp), 0);
		CHECK(ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) > 0);
		close(vcpu_fd);
		close(vm_fd);
	}
	h_vm_destroy(&h);
	return 0;
}

/* A vCPU added while the others run (and while another thread broadcasts
 * all along) receives requests at once; broadcasts that start after the
 * add include it. */
static _Atomic int bc_stop;
static _Atomic uint64_t bc_count;

static void *broadcaster(void *arg)
{
	struct h_vm *h = arg;

	while (!atomic_load(&bc_stop)) {
		if (vcpureq_make_all_cpus_request(h->vm, REQ_A) < 0)
			break;
		atomic_fetch_add(&bc_count, 1);
		h_sleep_us(50);
	}
	return NULL;
}

TEST_BOTH(vcpu_added_while_running)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct h_vm h;
	pthread_t t;
	unsigned int i;
	uint64_t seen;

	static const unsigned long ids[] = { 0, 1, 2 };

	/* The split lifecycle (ids given), not the one-call create. */
	H_VM_CFG(&h, be, 3, H_SPIN, &o, 0, ids);
	CHECK_EQ(h_start(&h), 0);
	CHECK_EQ(pthread_create(&t, NULL, broadcaster, &h), 0);
	for (i = 0; i < 3; i++)
		CHECK(wait_handled(i, 1));
	CHECK_EQ(h_add_vcpu(&h, 9, H_SPIN), 0);
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 4);
	CHECK_EQ(vcpureq_vcpu_id(vcpureq_vm_vcpu(h.vm, 3)), 9);
	CHECK_EQ(h_start_one(&h, 3), 0);
	/* A request made now is handled. */
	CHECK(h_wait_until(h_in_guest, &h, 3, HANG_MS));
	seen = atomic_load(&handled[3]);
	CHECK(vcpureq_request(REQ_A, vcpureq_vm_vcpu(h.vm, 3)) >= 0);
	CHECK(wait_handled(3, seen + 1));
	/* And the broadcaster's next rounds reach it too. */
	seen = atomic_load(&bc_count);
	while (atomic_load(&bc_count) < seen + 3)
		h_sleep_us(100);
	CHECK(atomic_load(&handled[3]) >= 1);
	atomic_store(&bc_stop, 1);
	pthread_join(t, NULL);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* The VMM's own signal (SIGUSR2, handled and unblocked in its vCPU thread)
 * interrupts KVM_RUN: with VCPUREQ_VM_RETURN_FOREIGN_EINTR the run returns
 * VCPUREQ_RUN_INTR to the VMM; without, the vCPU re-enters and the exit is
 * counted as foreign, not as a kick. */
static _Atomic uint64_t usr2_taken;

static void on_usr2(int sig)
{
	(void)sig;
	atomic_fetch_add(&usr2_taken, 1);
}

struct fe_arg {
	struct vcpureq_vcpu *v;
	_Atomic pid_t tid;
	_Atomic int ret;
	_Atomic int go;
};

static void *fe_vcpu(void *p)
{
	struct fe_arg *a = p;
	int r;

	if (vcpureq_vcpu_bind(a->v))
		return NULL;
	atomic_store(&a->tid, gettid());
	do {
		r = vcpureq_vcpu_run(a->v);
	} while (r == VCPUREQ_RUN_REQUEST &&
		 vcpureq_check_request(H_REQ_STOP, a->v) <= 0);
	atomic_store(&a->ret, r);
	vcpureq_vcpu_unbind(a->v);
	return NULL;
}

/* The instance the foreign signal ended is over (its exit bumped the
 * epoch) and a later one is in guest mode.  Acquire (the epoch read)
 * pairs with the release bump in the exit, which follows its OUTSIDE
 * store: the mode read after it is that OUTSIDE or a later entry's. */
static _Atomic uint32_t fe_epoch0;

static bool fe_reentered(struct h_vm *h, unsigned int id)
{
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, id);

	return vcpureq_vcpu_exit_epoch(v) != atomic_load(&fe_epoch0) &&
	       vcpureq_vcpu_mode(v) == VCPUREQ_IN_GUEST_MODE;
}

static int foreign_eintr(enum vcpureq_backend be, unsigned int flags)
{
	struct vcpureq_vm_opts o = { .flags = flags };
	struct sigaction sa = { .sa_handler = on_usr2 };
	struct fe_arg a = { .ret = -1000 };
	struct vcpureq_stats st;
	struct h_vm h;
	pthread_t t;

	H_VM(&h, be, 1, H_SPIN, &o);
	sigaction(SIGUSR2, &sa, NULL);
	a.v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(pthread_create(&t, NULL, fe_vcpu, &a), 0);
	/* Guest code has run, so the thread is inside KVM_RUN (H_SPIN never
	 * exits).  IN_GUEST_MODE alone is not enough: it is published before
	 * the ioctl, and a signal taken in between interrupts nothing (the
	 * entry then spins for good and the join below hangs: seen once in an
	 * ASan run under load). */
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
	while (!atomic_load(&a.tid))
		h_sleep_us(100);
	/* H_SPIN never exits: this instance ends with our signal only. */
	atomic_store(&fe_epoch0, vcpureq_vcpu_exit_epoch(a.v));
	CHECK_EQ(tgkill(getpid(), atomic_load(&a.tid), SIGUSR2), 0);
	while (!atomic_load(&usr2_taken))
		h_sleep_us(100);
	if (flags) {
		pthread_join(t, NULL);
		CHECK_EQ(atomic_load(&a.ret), VCPUREQ_RUN_INTR);
	} else {
		/* Back in the guest: only a kick gets it out now.  Not
		 * h_in_guest(): the handler runs on the way out of KVM_RUN,
		 * before vcpureq_vcpu_exit(), so the mode is still the
		 * interrupted instance's IN_GUEST_MODE, and a request made
		 * then wins IN -> EXITING for it: its EINTR is counted as a
		 * kick, not as foreign (seen once under load).  Wait for the
		 * exit (the epoch moved) and a new entry. */
		CHECK(h_wait_until(fe_reentered, &h, 0, HANG_MS));
		CHECK_EQ(h_stats(&h, 0).foreign_exits, 1);
		CHECK_EQ(atomic_load(&a.ret), -1000);
		CHECK(vcpureq_request(H_REQ_STOP, a.v) >= 0);
		pthread_join(t, NULL);
		CHECK_EQ(atomic_load(&a.ret), VCPUREQ_RUN_REQUEST);
	}
	vcpureq_vcpu_stats(a.v, &st, sizeof(st));
	CHECK_EQ(st.foreign_exits, 1);
	CHECK_EQ(st.spurious_exits, 0);
	h_vm_destroy(&h);
	return 0;
}

TEST(foreign_eintr_returned)
{
	return foreign_eintr(be, VCPUREQ_VM_RETURN_FOREIGN_EINTR);
}

TEST(foreign_eintr_reentered)
{
	return foreign_eintr(be, 0);
}

/* Misuse of the pair and of the run loop: refused, nothing changed. */
static _Atomic int mu_run_ret, mu_unbind_ret, mu_enter_ret;

static int misuse_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0) {
		atomic_store(&mu_run_ret, vcpureq_vcpu_run(v));
		atomic_store(&mu_enter_ret, vcpureq_vcpu_enter(v));
		atomic_store(&mu_unbind_ret, vcpureq_vcpu_unbind(v));
	}
	return 0;
}

TEST_BOTH(enter_exit_misuse)
{
	struct vcpureq_vm_opts o = { .handle_requests = misuse_handler };
	struct vcpureq_vcpu *v;
	struct h_vm h;

	H_VM(&h, be, 1, H_OUT, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_vcpu_exit(v, 0), -EINVAL); /* no entry */
	CHECK_EQ(vcpureq_vcpu_enter(v), VCPUREQ_RUN_ENTER);
	CHECK(vcpureq_vcpu_mode(v) == VCPUREQ_IN_GUEST_MODE);
	CHECK_EQ(vcpureq_vcpu_enter(v), -EBUSY);
	CHECK_EQ(vcpureq_vcpu_run(v), -EBUSY);
	CHECK_EQ(vcpureq_vcpu_unbind(v), -EBUSY);
	CHECK_EQ(vcpureq_walk_lockless_begin(v), -EBUSY);
	/* The entry is abandoned without running the guest: an exit with
	 * nothing for the VMM is allowed and publishes OUTSIDE. */
	CHECK_EQ(vcpureq_vcpu_exit(v, -EINTR), VCPUREQ_RUN_AGAIN);
	CHECK(vcpureq_vcpu_mode(v) == VCPUREQ_OUTSIDE_GUEST_MODE);
	/* From the request handler: run, enter and unbind are refused. */
	CHECK_EQ(vcpureq_make_request(REQ_A, v), 0);
	CHECK_EQ(h_run(&h, v), VCPUREQ_RUN_EXIT);
	CHECK_EQ(atomic_load(&mu_run_ret), -EBUSY);
	CHECK_EQ(atomic_load(&mu_enter_ret), -EBUSY);
	CHECK_EQ(atomic_load(&mu_unbind_ret), -EBUSY);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* A thread-backend VM without a guest callback: vcpureq_vcpu_run() is
 * refused, the pair works, with the caller's own "guest" in between. */
TEST(run_without_guest_refused)
{
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm *vm;
	struct vcpureq_vcpu *v;

	(void)be;
	o.backend = VCPUREQ_BACKEND_THREAD;
	CHECK_EQ(vcpureq_vm_open(&o, -1, &vm), 0);
	CHECK_EQ(vcpureq_vcpu_create(vm, 5, &v), 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_vcpu_run(v), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_enter(v), VCPUREQ_RUN_ENTER);
	CHECK_EQ(vcpureq_vcpu_exit(v, 42), VCPUREQ_RUN_EXIT);
	CHECK_EQ(vcpureq_vcpu_guest_ret(v), 42);
	CHECK_EQ(vcpureq_make_request(REQ_A, v), 0);
	CHECK_EQ(vcpureq_vcpu_enter(v), VCPUREQ_RUN_REQUEST);
	CHECK_EQ(vcpureq_check_request(REQ_A, v), 1);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/* The options and stats structs can grow: a caller's size is honoured. */
TEST_BOTH(opts_and_stats_extensible)
{
	struct {
		struct vcpureq_vm_opts o;
		unsigned char future[16];
	} big;
	struct {
		struct vcpureq_stats s;
		uint64_t future[2];
	} bs;
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm *vm = NULL;

	if (be == VCPUREQ_BACKEND_KVM && access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: /dev/kvm is absent or not accessible\n");
		return H_SKIP;
	}
	o.backend = be;
	o.nr_vcpus = 1;
	o.guest = NULL;
	o.size = 0;
	CHECK_EQ(vcpureq_vm_create(&o, &vm), -EINVAL);
	CHECK(strstr(vcpureq_errmsg(), "size") != NULL);
	o.size = sizeof(o);
	/* Larger, zero tail: fine (a newer caller asking for nothing new). */
	memset(&big, 0, sizeof(big));
	big.o = o;
	big.o.size = sizeof(big);
	CHECK_EQ(vcpureq_vm_create(&big.o, &vm), 0);
	/* Stats into a larger struct: the unknown tail is zeroed. */
	memset(&bs, 0xff, sizeof(bs));
	CHECK_EQ(vcpureq_vcpu_stats(vcpureq_vm_vcpu(vm, 0), &bs.s, sizeof(bs)), 0);
	CHECK_EQ(bs.future[0], 0);
	CHECK_EQ(bs.future[1], 0);
	CHECK_EQ(bs.s.requests_made, 0);
	CHECK_EQ(vcpureq_vcpu_stats(vcpureq_vm_vcpu(vm, 0), &bs.s, 8), -EINVAL);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	/* Larger with a non-zero unknown byte: -E2BIG. */
	big.future[3] = 1;
	vm = NULL;
	CHECK_EQ(vcpureq_vm_create(&big.o, &vm), -E2BIG);
	CHECK(vm == NULL);
	/* The limits come from the kernel at run time. */
	o.max_vcpus = 100000;
	CHECK_EQ(vcpureq_vm_open(&o, -1, &vm), -EINVAL);
	o.max_vcpus = 2;
	o.nr_vcpus = 0;
	CHECK_EQ(vcpureq_vm_open(&o, -1, &vm), 0);
	CHECK_EQ(vcpureq_vm_max_vcpus(vm), 2);
	CHECK_EQ(vcpureq_vcpu_create(vm, 10, NULL), 0);
	CHECK_EQ(vcpureq_vcpu_create(vm, 11, NULL), 0);
	CHECK_EQ(vcpureq_vcpu_create(vm, 12, NULL), -ENOSPC);
	CHECK_EQ(vcpureq_vm_nr_vcpus(vm), 2);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}
