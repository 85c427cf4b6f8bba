/* SPDX-License-Identifier: MIT */
/*
 * The library's figures on one vCPU:
 *  - kick latency: request + kick -> handler running, vCPU spinning in the
 *    guest (floor: raw signal -> KVM_RUN -EINTR);
 *  - a request to an awake vCPU outside guest mode: ns per request, and the
 *    evidence that it costs no system call;
 *  - guest-entry overhead: the H_OUT I/O-exit loop through
 *    vcpureq_vcpu_run() against the raw KVM_RUN loop, same vCPU, same
 *    thread, batches interleaved;
 *  - wake latency of a vCPU asleep in vcpureq_vcpu_block() (floor: raw
 *    futex wake);
 *  - K requester threads hitting one spinning vCPU: signals sent.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

struct outside_evidence g_outside[2];
const unsigned int g_k_values[B_NK] = { 1, 4, 16, 64 };
struct kreq_result g_kreq[B_MAX_REP][B_NK];
int g_kreq_reps;

static void stats(struct vcpureq_vcpu *v, struct vcpureq_stats *st)
{
	if (vcpureq_vcpu_stats(v, st, sizeof(*st)))
		b_die("vcpureq_vcpu_stats");
}

void b_wait_vr_in_guest(struct h_vm *h, struct vcpureq_vcpu *v,
			uint32_t *rnd)
{
	do
		wait_in_guest(h, vcpureq_vcpu_index(v), NULL, rnd);
	while (vcpureq_vcpu_mode(v) != VCPUREQ_IN_GUEST_MODE);
}

/* ---- kick latency, paired with the raw signal floor ---- */
/*
 * One vCPU thread (bound to the library, so KVM_SET_SIGNAL_MASK unblocks
 * the kick signal inside KVM_RUN only) alternates two loops on the same
 * spinning vCPU: the raw one (ioctl(KVM_RUN); on -EINTR take the time,
 * then drain the signal with sigtimedwait()) and the library's
 * (vcpureq_vcpu_run() with the handler timestamping the request).  The
 * requester (CPU 0) alternates: a tgkill of the kick signal while the
 * thread (CPU 1) is in the raw loop -> the floor sample; a
 * vcpureq_make_request() + vcpureq_vcpu_kick() while it is in the
 * library's loop -> the figure's sample (struct pair_thr: bench.h).
 */

/* Start the vCPU thread of a paired measurement (raw loop first) and wait
 * until it is bound. */
void b_start_pair(struct pair_thr *p, struct h_vm *h, struct vr_rec *rec,
		  void *(*fn)(void *), pthread_t *t, const char *what)
{
	memset(p, 0, sizeof(*p));
	p->h = h;
	p->rec = rec;
	p->mode = MODE_RAW;
	if (b_thread(t, fn, p))
		b_die("pthread_create");
	while (!atomic_load(&p->ready))
		;
	if (atomic_load(&p->err))
		b_die("%s: bind: %d", what, atomic_load(&p->err));
}

void *b_kick_vcpu(void *arg)
{
	static const struct timespec zero = { 0, 0 };
	struct pair_thr *p = arg;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(p->h->vm, 0);
	struct kvm_run *run = vcpureq_vcpu_kvm_run(v);
	int fd = vcpureq_vcpu_kvm_fd(v), r;
	sigset_t kick;

	b_pin(1);
	sigemptyset(&kick);
	sigaddset(&kick, vcpureq_vm_kick_signal(p->h->vm));
	r = vcpureq_vcpu_bind(v);
	if (r) {
		atomic_store(&p->err, r);
		atomic_store(&p->ready, 1);
		return NULL;
	}
	atomic_store(&p->tid, b_gettid());
	atomic_store(&p->ready, 1);
	while (!atomic_load(&p->stop)) {
		if (atomic_load(&p->mode) == MODE_RAW) {
			uint64_t t, t2;

			/* As a raw VMM of the VM's mechanism would:
			 * IMMEDIATE_EXIT clears what the handler set,
			 * SIGMASK takes the pending signal. */
			run->immediate_exit = 0;
			atomic_store(&p->in_raw, 1);
			r = ioctl(fd, KVM_RUN, 0);
			t = b_now();
			atomic_store(&p->in_raw, 0);
			if (r < 0 && errno == EINTR) {
				if (vcpureq_vm_kick_mechanism(p->h->vm) ==
				    VCPUREQ_KICK_SIGMASK)
					sigtimedwait(&kick, NULL, &zero);
				t2 = b_now();
				atomic_store_explicit(&p->raw_t, t,
						      memory_order_relaxed);
				atomic_store_explicit(&p->raw_t2, t2,
						      memory_order_relaxed);
				atomic_fetch_add_explicit(&p->raw_seq, 1,
							  memory_order_release);
			} else if (r < 0 || run->exit_reason != KVM_EXIT_INTR) {
				atomic_store(&p->err, r < 0 ? -errno : -EPROTO);
				break;
			}
			continue;
		}
		/* The library's loop; the handler returns 1 (run returns
		 * VCPUREQ_RUN_REQUEST) only for B_REQ_STOP, used here to
		 * come back to the raw loop. */
		r = vcpureq_vcpu_run(v);
		if (r < 0) {
			atomic_store(&p->err, r);
			break;
		}
		if (r == VCPUREQ_RUN_REQUEST)
			vcpureq_check_request(B_REQ_STOP, v);
	}
	vcpureq_vcpu_unbind(v);
	return NULL;
}

void b_wait_seq(_Atomic uint64_t *seq, uint64_t old, const char *what)
{
	uint64_t end = b_now() + 5000000000ull;

	while (atomic_load_explicit(seq, memory_order_acquire) == old)
		if (b_now() > end)
			b_die("%s: not seen within 5 s", what);
}

double b_kick_floor(struct pair_thr *p, int sig, uint32_t *rnd, double *drain)
{
	uint64_t seq, t0;

	wait_in_guest(p->h, 0, &p->in_raw, rnd);
	seq = atomic_load_explicit(&p->raw_seq, memory_order_acquire);
	/* Seq_cst: the thread reads the mode after the -EINTR this signal
	 * causes; next, the library's loop. */
	atomic_store_explicit(&p->mode, MODE_LIB, memory_order_seq_cst);
	t0 = b_now();
	syscall(SYS_tgkill, getpid(),
		atomic_load_explicit(&p->tid, memory_order_relaxed), sig);
	b_wait_seq(&p->raw_seq, seq, "raw signal floor");
	/* Relaxed: ordered by b_wait_seq()'s acquire of raw_seq. */
	if (drain)
		*drain = (double)(atomic_load_explicit(&p->raw_t2,
						       memory_order_relaxed) - t0);
	return (double)(atomic_load_explicit(&p->raw_t, memory_order_relaxed) -
			t0);
}

double b_kick_lib(struct pair_thr *p, struct vcpureq_vcpu *v, uint32_t *rnd,
		  const char *what)
{
	uint64_t seq, t0;

	b_wait_vr_in_guest(p->h, v, rnd);
	seq = atomic_load_explicit(&p->rec->ping_seen, memory_order_acquire);
	t0 = b_now();
	vcpureq_make_request(B_REQ_PING, v);
	vcpureq_vcpu_kick(v);
	b_wait_seq(&p->rec->ping_seen, seq, what);
	/* Read after b_wait_seq() saw ping_seen move (acquire). */
	return (double)(atomic_load_explicit(&p->rec->ping_t,
					     memory_order_relaxed) - t0);
}

void b_kick_to_raw(struct pair_thr *p, struct vcpureq_vcpu *v,
		   const char *what)
{
	atomic_store_explicit(&p->mode, MODE_RAW, memory_order_seq_cst);
	vcpureq_make_request(B_REQ_STOP, v);
	vcpureq_vcpu_kick(v);
	if (atomic_load_explicit(&p->err, memory_order_relaxed))
		b_die("%s: vCPU thread: %d", what,
		      atomic_load_explicit(&p->err, memory_order_relaxed));
}

void b_kick_pair_stop(struct pair_thr *p, struct vcpureq_vcpu *v, int sig,
		      pthread_t t)
{
	atomic_store_explicit(&p->stop, 1, memory_order_seq_cst);
	vcpureq_make_request(B_REQ_STOP, v);
	vcpureq_vcpu_kick(v);
	syscall(SYS_tgkill, getpid(),
		atomic_load_explicit(&p->tid, memory_order_relaxed), sig);
	pthread_join(t, NULL);
}

int part_kick(int rep)
{
	static struct vr_rec recs[1];
	size_t n = b_count(1000, 150), i;
	struct samples s = { 0 }, d = { 0 }, k = { 0 };
	struct vcpureq_vm_opts o;
	struct vcpureq_vcpu *v;
	uint32_t rnd = 777u + (uint32_t)rep;
	struct pair_thr p;
	struct h_vm h;
	pthread_t t;
	int sig;

	b_phase("vcpureq: kick latency, paired with the raw signal floor");
	memset(recs, 0, sizeof(recs));
	o = vr_opts(recs);
	if (b_vm(&h, 1, H_SPIN, &o))
		return H_SKIP;
	v = vcpureq_vm_vcpu(h.vm, 0);
	sig = vcpureq_vm_kick_signal(h.vm);
	b_start_pair(&p, &h, &recs[0], b_kick_vcpu, &t, "kick");
	for (i = 0; i < n + 5; i++) {
		double floor, drain, kick;

		/* The floor: the thread is in the raw loop. */
		floor = b_kick_floor(&p, sig, &rnd, &drain);
		/* The figure: the thread is in vcpureq_vcpu_run(). */
		kick = b_kick_lib(&p, v, &rnd, "kick latency");
		if (i >= 5) {
			samples_add(&s, floor);
			samples_add(&d, drain);
			samples_add(&k, kick);
		}
		b_kick_to_raw(&p, v, "kick");
	}
	b_kick_pair_stop(&p, v, sig, t);
	figure_add_rep(&g_fig[FIG_SIG], &s);
	figure_add_rep(&g_fig[FIG_SIG_DRAIN], &d);
	figure_add_rep(&g_fig[FIG_KICK], &k);
	samples_free(&s);
	samples_free(&d);
	samples_free(&k);
	h_vm_destroy(&h);
	return 0;
}

/* ---- a request to an awake vCPU outside guest mode ---- */
struct outside_thr {
	struct vcpureq_vcpu *v;
	int polling;
	_Atomic int ready, stop, err;
	_Atomic uint64_t spins;
};

static void *outside_vcpu(void *arg)
{
	struct outside_thr *o = arg;
	uint64_t spins = 0;
	int r;

	b_pin(1);
	r = vcpureq_vcpu_bind(o->v);

	if (r) {
		atomic_store(&o->err, r);
		atomic_store(&o->ready, 1);
		return NULL;
	}
	atomic_store(&o->ready, 1);
	/* Awake, outside guest mode: a VMM doing device work between exits.
	 * Polling: it also handles its requests as they come. */
	while (!atomic_load_explicit(&o->stop, memory_order_relaxed)) {
		if (o->polling && vcpureq_request_pending(o->v) > 0)
			vcpureq_check_request(B_REQ_PING, o->v);
		spins++;
		__builtin_ia32_pause();
	}
	atomic_store(&o->spins, spins);
	vcpureq_vcpu_unbind(o->v);
	return NULL;
}

static long long syscall_counter_run(int fd, struct vcpureq_vcpu *v,
				     unsigned long nreq)
{
	unsigned long long c = 0;
	unsigned long i;

	ioctl(fd, PERF_EVENT_IOC_RESET, 0);
	ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
	for (i = 0; i < nreq; i++) {
		vcpureq_make_request(B_REQ_PING, v);
		vcpureq_vcpu_kick(v);
	}
	ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
	if (read(fd, &c, sizeof(c)) != (ssize_t)sizeof(c))
		return -1;
	return (long long)c;
}

static void outside_run(int polling, struct figure *fig,
			struct outside_evidence *ev)
{
	enum { BATCH = 1000 };
	unsigned long nreq = g_opt.outside_requests, done = 0;
	struct vcpureq_stats s0, s1;
	struct samples s = { 0 };
	struct outside_thr o;
	struct rusage r0, r1;
	struct h_vm h;
	pthread_t t;
	int pfd;

	if (b_vm(&h, 1, H_SPIN, NULL))
		return;
	memset(&o, 0, sizeof(o));
	o.v = vcpureq_vm_vcpu(h.vm, 0);
	o.polling = polling;
	if (b_thread(&t, outside_vcpu, &o))
		b_die("pthread_create");
	while (!atomic_load(&o.ready))
		;
	if (atomic_load(&o.err))
		b_die("bind: %d", atomic_load(&o.err));
	/* Warm up the lines. */
	for (done = 0; done < 10000; done++) {
		vcpureq_make_request(B_REQ_PING, o.v);
		vcpureq_vcpu_kick(o.v);
	}
	stats(o.v, &s0);
	getrusage(RUSAGE_THREAD, &r0);
	for (done = 0; done < nreq; done += BATCH) {
		uint64_t t0 = b_now();
		int k;

		for (k = 0; k < BATCH; k++) {
			vcpureq_make_request(B_REQ_PING, o.v);
			vcpureq_vcpu_kick(o.v);
		}
		samples_add(&s, (double)(b_now() - t0) / BATCH);
	}
	getrusage(RUSAGE_THREAD, &r1);
	stats(o.v, &s1);
	if (!polling) {
		/* The one-call form (kvm_make_vcpus_request_mask() for one
		 * target), same conditions. */
		struct samples q = { 0 };
		unsigned long j;

		for (j = 0; j < nreq / 4; j += BATCH) {
			uint64_t t0 = b_now();
			int k;

			for (k = 0; k < BATCH; k++)
				vcpureq_request(B_REQ_PING, o.v);
			samples_add(&q, (double)(b_now() - t0) / BATCH);
		}
		figure_add_rep(&g_fig[FIG_OUT_REQ1], &q);
		samples_free(&q);
	}
	ev->requests = done;
	ev->signals_sent = s1.signals_sent - s0.signals_sent;
	ev->wakeups = s1.wakeups - s0.wakeups;
	ev->kicks = s1.kicks - s0.kicks;
	ev->requests_made = s1.requests_made - s0.requests_made;
	ev->stime_ms = (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e3 +
		       (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e3;
	ev->vcsw = r1.ru_nvcsw - r0.ru_nvcsw;
	ev->ivcsw = r1.ru_nivcsw - r0.ru_nivcsw;
	ev->syscalls = -1;
	ev->syscall_method =
		"unavailable (tracefs not mounted: see bench/run.sh, which counts with strace -c)";
	pfd = b_syscall_counter_open();
	if (pfd >= 0) {
		/* The counter's own DISABLE ioctl is counted: subtract a run
		 * of zero requests. */
		long long base = syscall_counter_run(pfd, o.v, 0);
		long long c = syscall_counter_run(pfd, o.v, 100000);

		if (base >= 0 && c >= 0) {
			ev->syscalls = c - base;
			ev->syscall_method =
				"perf_event raw_syscalls:sys_enter, requester thread, per 100000 requests";
		}
		close(pfd);
	}
	atomic_store(&o.stop, 1);
	pthread_join(t, NULL);
	figure_add_rep(fig, &s);
	samples_free(&s);
	h_vm_destroy(&h);
}

int part_outside(int rep)
{
	(void)rep;
	b_phase("vcpureq: request to a vCPU outside guest mode");
	outside_run(1, &g_fig[FIG_OUT_BUSY], &g_outside[0]);
	outside_run(0, &g_fig[FIG_OUT_IDLE], &g_outside[1]);
	return 0;
}

/* ---- guest-entry overhead ---- */
struct entry_thr {
	struct h_vm *h;
	struct samples raw, lib, ratio;
	size_t pairs;
	_Atomic int err;
};

int b_entry_batch(struct vcpureq_vcpu *v, bool lib, int b)
{
	struct kvm_run *run = vcpureq_vcpu_kvm_run(v);
	int fd = vcpureq_vcpu_kvm_fd(v);
	int k, r;

	for (k = 0; k < b; k++) {
		if (lib) {
			r = vcpureq_vcpu_run(v);
			if (r != VCPUREQ_RUN_EXIT)
				return r < 0 ? r : -EIO;
		} else if (ioctl(fd, KVM_RUN, 0) < 0) {
			return -errno;
		}
		/* The H_OUT program's exit: an OUT (real mode), or the
		 * native guest's MMIO store from CPL3. */
		if (run->exit_reason != KVM_EXIT_IO &&
		    run->exit_reason != KVM_EXIT_MMIO)
			return -EPROTO;
	}
	return 0;
}

static void *entry_vcpu(void *arg)
{
	enum { B = 200 };
	struct entry_thr *e = arg;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(e->h->vm, 0);
	size_t p;
	int r;

	b_pin(1);
	r = vcpureq_vcpu_bind(v);

	if (r) {
		atomic_store(&e->err, r);
		return NULL;
	}
	for (p = 0; p < e->pairs + 3; p++) {
		double per[2];
		int j;

		for (j = 0; j < 2; j++) {
			int lib = (int)((p + (size_t)j) & 1);
			uint64_t t0 = b_now();

			r = b_entry_batch(v, lib, B);
			if (r)
				goto fail;
			per[lib] = (double)(b_now() - t0) / B;
		}
		if (p >= 3) {
			samples_add(&e->raw, per[0]);
			samples_add(&e->lib, per[1]);
			samples_add(&e->ratio, per[1] / per[0]);
		}
	}
	vcpureq_vcpu_unbind(v);
	return NULL;
fail:
	atomic_store(&e->err, r);
	vcpureq_vcpu_unbind(v);
	return NULL;
}

int part_entry(int rep)
{
	struct entry_thr e;
	struct h_vm h;
	pthread_t t;

	(void)rep;
	b_phase("vcpureq: guest-entry overhead (I/O-exit loop)");
	if (b_vm(&h, 1, H_OUT, NULL))
		return H_SKIP;
	memset(&e, 0, sizeof(e));
	e.h = &h;
	e.pairs = b_count(400, 40);
	if (b_thread(&t, entry_vcpu, &e))
		b_die("pthread_create");
	pthread_join(t, NULL);
	if (atomic_load(&e.err))
		b_die("guest-entry loop: %d", atomic_load(&e.err));
	figure_add_rep(&g_fig[FIG_IO], &e.raw);
	figure_add_rep(&g_fig[FIG_ENTRY], &e.lib);
	figure_add_rep(&g_fig[FIG_ENTRY_RATIO], &e.ratio);
	samples_free(&e.raw);
	samples_free(&e.lib);
	samples_free(&e.ratio);
	h_vm_destroy(&h);
	return 0;
}

/* ---- wake latency, paired with the raw futex floor ---- */
/*
 * One vCPU thread runs the H_HALT guest through vcpureq_vcpu_run(); after
 * each HLT exit it sleeps either in vcpureq_vcpu_block() (the figure) or
 * in a plain futex_wait() (the floor), as the requester chose, so both
 * sleeps follow the same guest activity on the same CPU.  The requester
 * (CPU 0) waits until the thread (CPU 1) sleeps in the kernel, then wakes
 * it: vcpureq_make_request() + vcpureq_vcpu_kick(), or a store and
 * futex_wake().
 */
static void *wake_vcpu(void *arg)
{
	struct pair_thr *p = arg;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(p->h->vm, 0);
	struct kvm_run *run = vcpureq_vcpu_kvm_run(v);
	int r;

	b_pin(1);
	r = vcpureq_vcpu_bind(v);
	if (r) {
		atomic_store(&p->err, r);
		atomic_store(&p->ready, 1);
		return NULL;
	}
	atomic_store(&p->tid, b_gettid());
	atomic_store(&p->ready, 1);
	for (;;) {
		uint64_t t;

		r = vcpureq_vcpu_run(v);
		if (r < 0) {
			atomic_store(&p->err, r);
			break;
		}
		if (r == VCPUREQ_RUN_REQUEST) {
			if (vcpureq_check_request(B_REQ_STOP, v) > 0 &&
			    atomic_load(&p->stop))
				break;
			continue;
		}
		if (run->exit_reason != KVM_EXIT_HLT)
			continue;
		if (atomic_load(&p->mode) == MODE_RAW) {
			atomic_store(&p->word, 0);
			atomic_store(&p->raw_sleeping, 1);
			while (atomic_load(&p->word) == 0)
				b_futex_wait(&p->word, 0);
			t = b_now();
			atomic_store(&p->raw_sleeping, 0);
			if (atomic_load(&p->stop))
				break;
			atomic_store_explicit(&p->raw_t, t, memory_order_relaxed);
			atomic_fetch_add_explicit(&p->raw_seq, 1,
						  memory_order_release);
		} else {
			int why = vcpureq_vcpu_block(v);

			t = b_now();
			if (why < 0) {
				atomic_store(&p->err, why);
				break;
			}
			atomic_store_explicit(&p->rec->wake_t, t,
					      memory_order_relaxed);
			atomic_fetch_add_explicit(&p->rec->wake_seen, 1,
						  memory_order_release);
		}
	}
	vcpureq_vcpu_unbind(v);
	return NULL;
}

static void wait_asleep(struct pair_thr *p, bool (*in)(struct pair_thr *))
{
	uint64_t end = b_now() + 5000000000ull;

	for (;;) {
		if (b_now() > end)
			b_die("wake latency: the vCPU thread never slept");
		if (!in(p))
			continue;
		if (b_wait_sleeping(atomic_load(&p->tid), 5000000000ull) &&
		    in(p))
			break;
	}
	b_spin_ns(20000);
}

static bool in_raw_sleep(struct pair_thr *p)
{
	return atomic_load(&p->raw_sleeping) != 0;
}

static bool in_block(struct pair_thr *p)
{
	return vcpureq_vcpu_is_blocking(vcpureq_vm_vcpu(p->h->vm, 0));
}

int part_wake(int rep)
{
	static struct vr_rec recs[1];
	size_t n = b_count(1000, 150), i;
	struct samples s = { 0 }, f = { 0 };
	struct vcpureq_vm_opts o;
	struct vcpureq_vcpu *v;
	struct pair_thr p;
	struct h_vm h;
	pthread_t t;

	(void)rep;
	b_phase("vcpureq: wake latency, paired with the raw futex floor");
	memset(recs, 0, sizeof(recs));
	o = vr_opts(recs);
	if (b_vm(&h, 1, H_HALT, &o))
		return H_SKIP;
	v = vcpureq_vm_vcpu(h.vm, 0);
	b_start_pair(&p, &h, &recs[0], wake_vcpu, &t, "wake");
	for (i = 0; i < n + 5; i++) {
		uint64_t seq, t0;

		/* The floor: asleep in futex_wait(). */
		wait_asleep(&p, in_raw_sleep);
		seq = atomic_load(&p.raw_seq);
		atomic_store(&p.mode, MODE_LIB); /* its next sleep */
		t0 = b_now();
		atomic_store(&p.word, 1);
		b_futex_wake(&p.word, 1);
		b_wait_seq(&p.raw_seq, seq, "raw futex floor");
		if (i >= 5)
			samples_add(&f, (double)(atomic_load(&p.raw_t) - t0));
		/* The figure: asleep in vcpureq_vcpu_block(). */
		wait_asleep(&p, in_block);
		seq = atomic_load(&recs[0].wake_seen);
		atomic_store(&p.mode, MODE_RAW);
		t0 = b_now();
		vcpureq_make_request(B_REQ_PING, v);
		vcpureq_vcpu_kick(v);
		b_wait_seq(&recs[0].wake_seen, seq, "wake latency");
		if (i >= 5)
			samples_add(&s, (double)(atomic_load(&recs[0].wake_t) - t0));
		if (atomic_load(&p.err))
			b_die("wake: vCPU thread: %d", atomic_load(&p.err));
	}
	wait_asleep(&p, in_raw_sleep);
	atomic_store(&p.stop, 1);
	atomic_store(&p.word, 1);
	b_futex_wake(&p.word, 1);
	pthread_join(t, NULL);
	figure_add_rep(&g_fig[FIG_FUTEX], &f);
	figure_add_rep(&g_fig[FIG_WAKE], &s);
	samples_free(&f);
	samples_free(&s);
	h_vm_destroy(&h);
	return 0;
}

/* ---- K requesters, one spinning vCPU ---- */
struct kreq_thr {
	struct vcpureq_vcpu *v;
	pthread_barrier_t *bar;
	unsigned int r;
	pthread_t t;
	uint64_t t0, t1;
};

static void *kreq_main(void *arg)
{
	struct kreq_thr *k = arg;
	unsigned int i;

	pthread_barrier_wait(k->bar);
	k->t0 = b_now();
	for (i = 0; i < k->r; i++) {
		vcpureq_make_request(B_REQ_PING, k->v);
		vcpureq_vcpu_kick(k->v);
	}
	k->t1 = b_now();
	return NULL;
}

int part_requesters(int rep)
{
	static struct vr_rec recs[1];
	struct vcpureq_vm_opts o;
	struct vcpureq_vcpu *v;
	uint32_t rnd = 99;
	struct h_vm h;
	int ki;

	b_phase("vcpureq: K requesters");
	memset(recs, 0, sizeof(recs));
	o = vr_opts(recs);
	if (b_vm(&h, 1, H_SPIN, &o))
		return H_SKIP;
	v = vcpureq_vm_vcpu(h.vm, 0);
	vr_start(&h, recs, 0, 1);
	for (ki = 0; ki < B_NK; ki++) {
		unsigned int k = g_k_values[ki], j;
		unsigned int r = (unsigned int)b_count(200, 20);
		struct kreq_result *res = &g_kreq[rep][ki];
		struct kreq_thr *thr = calloc(k, sizeof(*thr));
		struct vcpureq_stats s0, s1;
		pthread_barrier_t bar;
		uint64_t t0, t1;

		if (!thr)
			b_die("out of memory");
		pthread_barrier_init(&bar, NULL, k + 1);
		b_wait_vr_in_guest(&h, v, &rnd);
		stats(v, &s0);
		for (j = 0; j < k; j++) {
			thr[j].v = v;
			thr[j].bar = &bar;
			thr[j].r = r;
			if (b_thread(&thr[j].t, kreq_main, &thr[j]))
				b_die("pthread_create");
		}
		pthread_barrier_wait(&bar);
		for (j = 0; j < k; j++)
			pthread_join(thr[j].t, NULL);
		/* From the first requester's start to the last one's end. */
		t0 = thr[0].t0;
		t1 = thr[0].t1;
		for (j = 1; j < k; j++) {
			if (thr[j].t0 < t0)
				t0 = thr[j].t0;
			if (thr[j].t1 > t1)
				t1 = thr[j].t1;
		}
		res->ms = (double)(t1 - t0) / 1e6;
		/* Let the last kick land and the vCPU go back in. */
		b_sleep_us(5000);
		b_wait_vr_in_guest(&h, v, &rnd);
		stats(v, &s1);
		res->k = k;
		res->r = r;
		res->requests_made = s1.requests_made - s0.requests_made;
		res->kicks = s1.kicks - s0.kicks;
		res->signals_sent = s1.signals_sent - s0.signals_sent;
		res->signals_coalesced = s1.signals_coalesced - s0.signals_coalesced;
		res->handled = s1.requests_handled - s0.requests_handled;
		res->entries = s1.entries - s0.entries;
		res->kicked_exits = s1.kicked_exits - s0.kicked_exits;
		res->spurious_exits = s1.spurious_exits - s0.spurious_exits;
		pthread_barrier_destroy(&bar);
		free(thr);
	}
	if (rep + 1 > g_kreq_reps)
		g_kreq_reps = rep + 1;
	vr_stop(&h, recs, 0, 1, false);
	h_vm_destroy(&h);
	return 0;
}
