/* SPDX-License-Identifier: MIT */
/*
 * The two kick mechanisms side by side (part "kickab"): SIGMASK
 * (KVM_SET_SIGNAL_MASK, the pending signal taken with sigtimedwait) and
 * IMMEDIATE_EXIT (a handler sets kvm_run->immediate_exit).  Two VMs of one
 * spinning vCPU each, one per mechanism, both alive for the whole run; the
 * samples alternate between them one by one (the order flips every pair),
 * so a busy neighbour weighs on both alike.
 *
 *  - kick latency: make + kick of a vCPU spinning in the guest until its
 *    request handler runs;
 *  - system calls per kick on the vCPU thread (perf raw_syscalls
 *    tracepoint on that thread: KVM_RUN re-entries, sigtimedwait,
 *    rt_sigreturn of the handler), when tracefs is there;
 *  - guest-entry cost: an I/O-exit loop through vcpureq_vcpu_run() of each
 *    VM, alternated in blocks on one thread, against the raw KVM_RUN loop.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/perf_event.h>
#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

struct ab_vm {
	struct h_vm h;
	struct vr_rec rec[1];
	_Atomic uint32_t parked;      /* 1: stay in the handler */
	struct vcpureq_vcpu *v;
	pthread_t t;
	_Atomic int stop, ready, err;
	_Atomic int sc_fd;            /* syscall counter of the vCPU thread */
	struct samples kick;
};

static struct {
	struct samples kick[2], entry[2], entry_raw;
	double sc_per_kick[2];
	bool have_sc, ran;
} ab;

static long long sc_read(int fd)
{
	unsigned long long c = 0;

	if (fd < 0 || read(fd, &c, sizeof(c)) != (ssize_t)sizeof(c))
		return -1;
	return (long long)c;
}

#define AB_REQ_PING B_REQ_PING
#define AB_REQ_PARK VCPUREQ_ARCH_REQ_FLAGS(40, VCPUREQ_REQUEST_WAIT)

/* Only one of the two spinning vCPUs may run at a time (both are on CPU
 * 1): the other waits in its handler, out of the guest. */
static int ab_handler(struct vcpureq_vcpu *v, void *opaque)
{
	struct ab_vm *a = opaque;
	uint64_t t = b_now();

	(void)v;
	if (vcpureq_check_request(AB_REQ_PING, a->v) > 0) {
		atomic_store_explicit(&a->rec[0].ping_t, t, memory_order_relaxed);
		atomic_fetch_add_explicit(&a->rec[0].ping_seen, 1,
					  memory_order_release);
	}
	if (vcpureq_check_request(AB_REQ_PARK, a->v) > 0)
		while (atomic_load(&a->parked))
			b_futex_wait(&a->parked, 1);
	if (vcpureq_test_request(B_REQ_STOP, a->v) > 0)
		return 1;
	return 0;
}

static void ab_park(struct ab_vm *a)
{
	atomic_store(&a->parked, 1);
	vcpureq_request(AB_REQ_PARK, a->v);
}

static void ab_unpark(struct ab_vm *a)
{
	atomic_store(&a->parked, 0);
	b_futex_wake(&a->parked, 1);
}

static void *ab_vcpu(void *arg)
{
	struct ab_vm *a = arg;
	int r = vcpureq_vcpu_bind(a->v);

	b_pin(1);
	atomic_store(&a->sc_fd, b_syscall_counter_open());
	atomic_store(&a->err, r);
	atomic_store(&a->ready, 1);
	while (!r && !atomic_load(&a->stop)) {
		r = vcpureq_vcpu_run(a->v);
		if (r == VCPUREQ_RUN_REQUEST) {
			vcpureq_check_request(B_REQ_STOP, a->v);
			r = 0;
		}
	}
	if (r < 0)
		atomic_store(&a->err, r);
	vcpureq_vcpu_unbind(a->v);
	return NULL;
}

static int ab_start(struct ab_vm *a, enum vcpureq_kick_mechanism k)
{
	struct vcpureq_vm_opts o = { .handle_requests = ab_handler,
				     .opaque = a, .kick = k };

	memset(a->rec, 0, sizeof(a->rec));
	if (b_vm(&a->h, 1, H_SPIN, &o))
		return H_SKIP;
	a->v = vcpureq_vm_vcpu(a->h.vm, 0);
	if (b_thread(&a->t, ab_vcpu, a))
		b_die("pthread_create");
	while (!atomic_load(&a->ready))
		b_sleep_us(100);
	if (atomic_load(&a->err))
		b_die("kickab: bind: %d", atomic_load(&a->err));
	return 0;
}

static void ab_stop(struct ab_vm *a)
{
	int fd = atomic_load(&a->sc_fd);

	atomic_store(&a->stop, 1);
	ab_unpark(a);
	vcpureq_request(B_REQ_STOP, a->v);
	pthread_join(a->t, NULL);
	if (fd >= 0)
		close(fd);
	h_vm_destroy(&a->h);
}

/* One timed kick of a spinning vCPU: ns until its handler ran. */
static double one_kick(struct ab_vm *a, uint32_t *rnd)
{
	uint64_t seq, t0, end;

	wait_in_guest(&a->h, 0, NULL, rnd);
	seq = atomic_load(&a->rec[0].ping_seen);
	t0 = b_now();
	vcpureq_make_request(B_REQ_PING, a->v);
	vcpureq_vcpu_kick(a->v);
	end = t0 + 5000000000ull;
	while (atomic_load_explicit(&a->rec[0].ping_seen,
				    memory_order_acquire) == seq)
		if (b_now() > end)
			b_die("kickab: kick not handled within 5 s");
	return (double)(atomic_load(&a->rec[0].ping_t) - t0);
}

static void kicks(struct ab_vm *vm, size_t n, uint32_t *rnd)
{
	size_t i;
	int m;

	/* Latency: alternate the VMs sample by sample, the order flipping
	 * every pair; the idle one is parked out of the guest. */
	ab_park(&vm[1]);
	for (i = 0; i < n + 4; i++)
		for (m = 0; m < 2; m++) {
			int which = (int)((i + (size_t)m) & 1);
			double x;

			ab_park(&vm[!which]);
			ab_unpark(&vm[which]);
			x = one_kick(&vm[which], rnd);
			if (i >= 4)
				samples_add(&ab.kick[which], x);
		}
	/* System calls per kick: a burst of kicks to one VM, the other
	 * parked, counted on its vCPU thread alone. */
	ab.have_sc = true;
	for (m = 0; m < 2; m++) {
		int fd = atomic_load(&vm[m].sc_fd);
		long long c0, c1;

		ab_park(&vm[!m]);
		ab_unpark(&vm[m]);
		wait_in_guest(&vm[m].h, 0, NULL, rnd);
		if (fd >= 0) {
			ioctl(fd, PERF_EVENT_IOC_RESET, 0);
			ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
		}
		c0 = sc_read(fd);
		for (i = 0; i < n; i++)
			one_kick(&vm[m], rnd);
		c1 = sc_read(fd);
		if (c0 < 0 || c1 < 0)
			ab.have_sc = false;
		else
			ab.sc_per_kick[m] = (double)(c1 - c0) / (double)n;
	}
}

/* Guest entry: blocks of I/O exits through vcpureq_vcpu_run() of each
 * mechanism and through raw KVM_RUN, on one thread, rotating. */
static void entries(size_t pairs)
{
	enum { B = 200 };
	struct h_vm h[2];
	size_t p;
	int m, r;

	for (m = 0; m < 2; m++) {
		struct vcpureq_vm_opts o = { .kick = m ? VCPUREQ_KICK_IMMEDIATE_EXIT :
							VCPUREQ_KICK_SIGMASK };

		if (b_vm(&h[m], 1, H_OUT, &o))
			return;
	}
	b_pin(1);
	for (p = 0; p < pairs + 2; p++) {
		for (m = 0; m < 3; m++) {
			int which = (int)((p + (size_t)m) % 3); /* 2: raw */
			struct vcpureq_vcpu *v =
				vcpureq_vm_vcpu(h[which == 2 ? 0 : which].vm, 0);
			int fd = vcpureq_vcpu_kvm_fd(v);
			uint64_t t0;
			int k;

			if ((r = vcpureq_vcpu_bind(v)))
				b_die("kickab: bind: %d", r);
			t0 = b_now();
			for (k = 0; k < B; k++) {
				r = which == 2 ? ioctl(fd, KVM_RUN, 0) :
						 vcpureq_vcpu_run(v);
				if (which == 2 ? r < 0 : r != VCPUREQ_RUN_EXIT)
					b_die("kickab: entry loop: %d", r);
			}
			t0 = b_now() - t0;
			vcpureq_vcpu_unbind(v);
			if (p >= 2)
				samples_add(which == 2 ? &ab.entry_raw :
							 &ab.entry[which],
					    (double)t0 / B);
		}
	}
	for (m = 0; m < 2; m++)
		h_vm_destroy(&h[m]);
}

int part_kickab(int rep)
{
	struct ab_vm vm[2];
	uint32_t rnd = 4242u + (uint32_t)rep;
	size_t n = g_opt.quick ? 100 : 600;

	b_phase("kick mechanisms side by side: KVM_SET_SIGNAL_MASK vs immediate_exit");
	memset(vm, 0, sizeof(vm));
	if (ab_start(&vm[0], VCPUREQ_KICK_SIGMASK))
		return H_SKIP;
	if (ab_start(&vm[1], VCPUREQ_KICK_IMMEDIATE_EXIT))
		return H_SKIP;
	kicks(vm, n, &rnd);
	ab_stop(&vm[0]);
	ab_stop(&vm[1]);
	entries(g_opt.quick ? 30 : 200);
	ab.ran = true;
	return 0;
}

static const char *const ab_name[2] = { "SIGMASK (KVM_SET_SIGNAL_MASK + sigtimedwait)",
					"IMMEDIATE_EXIT (handler sets immediate_exit)" };

/* The part's member of the data file: "kickab": {...} (null if not run). */
void kickab_data(FILE *f)
{
	int m;

	fputs("\"kickab\": ", f);
	if (!ab.ran) {
		fputs("null", f);
		return;
	}
	fputs("{\n", f);
	json_samples(f, "entry_raw_ns", &ab.entry_raw);
	fputs(",\n\"mechanisms\": [", f);
	for (m = 0; m < 2; m++) {
		fputs(m ? ",\n{" : "\n{", f);
		fputs("\"name\": ", f);
		json_str(f, ab_name[m]);
		fputs(", \"syscalls_per_kick\": ", f);
		json_num(f, ab.have_sc ? ab.sc_per_kick[m] : NAN);
		fputs(",\n", f);
		json_samples(f, "kick_ns", &ab.kick[m]);
		fputs(",\n", f);
		json_samples(f, "entry_ns", &ab.entry[m]);
		fputs("}", f);
	}
	fputs("]}", f);
}
