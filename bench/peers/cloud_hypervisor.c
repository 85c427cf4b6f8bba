/* SPDX-License-Identifier: MIT */
/*
 * cloud-hypervisor's CpuManager::pause() and resume(), re-implemented on
 * the benchmark's vCPUs.
 *
 * Follows cloud-hypervisor/cloud-hypervisor at commit
 * ae44c2971c83dd2b1bd704fa81102ec0dec4e7d4 (2026-08-22; vmm/src/cpu.rs
 * last changed by 18366e1b79b8f11a6f0feea61ff20991e5684ea7), read on
 * 2026-12-01 from a fetched snapshot:
 *   vmm/src/cpu.rs
 *   impl Pausable for CpuManager: pause(), resume()
 *   CpuManager::signal_vcpus()   signal every vCPU thread first, then wait
 *                                for each acknowledgement (PR #7290:
 *                                254 vCPUs from over 254 ms to about 4 ms)
 *   VcpuState::signal_thread()   pthread_kill(SIGRTMIN)
 *   VcpuState::wait_until_signal_acknowledged()
 *                                poll vcpu_run_interrupted every 1 ms
 *                                (thread::sleep), re-signal every 10 ms,
 *                                give up after 1000 ms (PR #7459)
 *   VcpuState::unpark_thread()   thread::unpark()
 *   the vCPU thread loop of CpuManager::start_vcpu(): an empty SIGRTMIN
 *   handler; at the top of the loop, if vcpus_pause_signalled: one KVM_RUN
 *   with immediate_exit set (completes a pending I/O; three separate
 *   lockings of the vCPU), then vcpu_run_interrupted = true, paused =
 *   true, thread::park() until the flag clears, then paused = false,
 *   vcpu_run_interrupted = false; else lock the vCPU and run it
 *   (EINTR/EAGAIN map to VmExit::Ignore in the hypervisor crate).
 *   hypervisor/src/kvm/mod.rs    KvmVcpu::notify_guest_clock_paused():
 *                                KVM_KVMCLOCK_CTRL, EINVAL ignored
 * pause(): set vcpus_pause_signalled, signal_vcpus(), then for every vCPU
 * lock it and issue KVM_KVMCLOCK_CTRL ("must be called unconditionally":
 * on every pause, whatever the guest; the EINVAL of a guest without
 * kvmclock, like the benchmark's, is ignored, so the ioctl is paid all
 * the same), then wait, sleeping 1 ms at a time, until each vCPU reports
 * paused.  resume(): clear the flag, unpark every thread, then wait,
 * sleeping 1 ms at a time, until each vCPU has cleared paused.
 * A kick that lands between the flag check and KVM_RUN is lost (the
 * handler is empty and the signal is not masked), which is why the
 * re-signal exists.  thread::park()/unpark() are modelled on Rust's futex
 * parker.  On x86 cloud-hypervisor keeps the LAPIC in the kernel: a halted
 * vCPU sleeps inside KVM_RUN, modelled by peer_halt_wait().
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "peers.h"

#define VCPU_SIG (SIGRTMIN) /* vmm_sys_util SIGRTMIN() */

/* Rust's futex thread parker: EMPTY 0, NOTIFIED 1, PARKED -1. */
struct parker {
	_Atomic uint32_t state;
};
#define P_EMPTY 0u
#define P_NOTIFIED 1u
#define P_PARKED UINT32_MAX

static void thread_park(struct parker *p)
{
	if (atomic_fetch_sub(&p->state, 1) == P_NOTIFIED)
		return; /* NOTIFIED -> EMPTY */
	for (;;) {
		uint32_t n = P_NOTIFIED;

		b_futex_wait(&p->state, P_PARKED);
		if (atomic_compare_exchange_strong(&p->state, &n, P_EMPTY))
			return;
	}
}

static void thread_unpark(struct parker *p)
{
	if (atomic_exchange(&p->state, P_NOTIFIED) == P_PARKED)
		b_futex_wake(&p->state, 1);
}

struct c_vcpu {
	struct peer_vcpu *pv;
	pthread_mutex_t lock; /* Arc<Mutex<Vcpu>> */
	pthread_t thread;
	struct parker parker;
	/* VcpuState */
	_Atomic bool vcpu_run_interrupted, paused, kill;
	bool halted; /* in the (modelled) in-kernel halt; vCPU thread only */
};

struct c_state {
	struct c_vcpu *vcpus;
	unsigned int n;
	_Atomic bool vcpus_pause_signalled, vcpus_kill_signalled;
	struct bc_ctx *ctx;
	int timeouts;
};

static void handle_signal(int sig)
{
	(void)sig;
}

/* Vcpu::run(): 0 for VmExit::Ignore (EINTR/EAGAIN) and handled exits. */
static int vcpu_run(struct c_vcpu *v)
{
	int r;

	if (v->halted) {
		/* In-kernel halt: KVM_RUN with immediate_exit returns at
		 * once, otherwise it sleeps until a signal (EINTR). */
		if (!__atomic_load_n(&v->pv->run->immediate_exit,
				     __ATOMIC_RELAXED))
			peer_halt_wait();
		return 0;
	}
	r = ioctl(v->pv->fd, KVM_RUN, 0);
	if (r < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return 0;
		b_die("cloud-hypervisor peer: KVM_RUN: %s", strerror(errno));
	}
	if (v->pv->run->exit_reason == KVM_EXIT_HLT)
		v->halted = true; /* the guest halts: see peer_halt_wait() */
	return 0; /* KVM_EXIT_IO on the benchmark's ports: ignored */
}

static void set_immediate_exit(struct c_vcpu *v, int on)
{
	__atomic_store_n(&v->pv->run->immediate_exit, (uint8_t)on,
			 __ATOMIC_RELAXED);
}

struct c_arg {
	struct c_state *s;
	struct c_vcpu *v;
};

static void *vcpu_thread(void *arg)
{
	struct c_arg *a = arg;
	struct c_state *s = a->s;
	struct c_vcpu *v = a->v;
	sigset_t set;

	free(a);
	peer_vcpu_init(v->pv);
	sigemptyset(&set);
	sigaddset(&set, VCPU_SIG);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	b_gate_arrive(); /* vcpu_thread_barrier.wait() */
	for (;;) {
		if (atomic_load(&s->vcpus_pause_signalled)) {
			/* Complete any pending I/O without running the
			 * guest, then acknowledge and park. */
			pthread_mutex_lock(&v->lock);
			set_immediate_exit(v, 1);
			pthread_mutex_unlock(&v->lock);
			pthread_mutex_lock(&v->lock);
			vcpu_run(v);
			pthread_mutex_unlock(&v->lock);
			pthread_mutex_lock(&v->lock);
			set_immediate_exit(v, 0);
			pthread_mutex_unlock(&v->lock);
			atomic_store(&v->vcpu_run_interrupted, true);
			atomic_store(&v->paused, true);
			while (atomic_load(&s->vcpus_pause_signalled))
				thread_park(&v->parker);
			atomic_store(&v->paused, false);
			atomic_store(&v->vcpu_run_interrupted, false);
		}
		if (atomic_load(&s->vcpus_kill_signalled) ||
		    atomic_load(&v->kill)) {
			atomic_store(&v->vcpu_run_interrupted, true);
			break;
		}
		pthread_mutex_lock(&v->lock);
		vcpu_run(v);
		pthread_mutex_unlock(&v->lock);
	}
	return NULL;
}

static void signal_thread(struct c_state *s, struct c_vcpu *v)
{
	peer_kill(s->ctx, v->thread, VCPU_SIG);
}

static int wait_until_signal_acknowledged(struct c_state *s, struct c_vcpu *v)
{
	unsigned int count = 0;

	for (;;) {
		if (atomic_load(&v->vcpu_run_interrupted))
			return 0;
		/* "more effective than thread::yield_now() at avoiding a
		 * priority inversion with the vCPU thread" */
		b_sleep_us(1000);
		count++;
		if (count >= 1000)
			return -ETIMEDOUT;
		if (count % 10 == 0)
			signal_thread(s, v);
	}
}

static void signal_vcpus(struct c_state *s)
{
	unsigned int i;

	for (i = 0; i < s->n; i++)
		signal_thread(s, &s->vcpus[i]);
	for (i = 0; i < s->n; i++)
		if (wait_until_signal_acknowledged(s, &s->vcpus[i]))
			s->timeouts++;
}

static void c_start(struct bc_ctx *c)
{
	struct c_state *s = calloc(1, sizeof(*s));
	unsigned int i;

	if (!s || !(s->vcpus = calloc(c->n, sizeof(*s->vcpus))))
		b_die("out of memory");
	s->n = c->n;
	s->ctx = c;
	c->priv = s;
	peer_sigaction(VCPU_SIG, handle_signal, SA_SIGINFO);
	b_gate_close();
	for (i = 0; i < c->n; i++) {
		struct c_vcpu *v = &s->vcpus[i];
		struct c_arg *a = malloc(sizeof(*a));

		if (!a)
			b_die("out of memory");
		a->s = s;
		a->v = v;
		v->pv = &c->pv[i];
		pthread_mutex_init(&v->lock, NULL);
		if (b_thread(&v->thread, vcpu_thread, a))
			b_die("pthread_create");
	}
	b_gate_open(c->n);
}

/* impl Pausable for CpuManager: pause() */
static void c_pause(struct bc_ctx *c)
{
	struct c_state *s = c->priv;
	unsigned int i;

	atomic_store(&s->vcpus_pause_signalled, true);
	signal_vcpus(s);
	for (i = 0; i < s->n; i++) {
		/* vcpu.lock().vcpu.notify_guest_clock_paused() */
		pthread_mutex_lock(&s->vcpus[i].lock);
		if (ioctl(s->vcpus[i].pv->fd, KVM_KVMCLOCK_CTRL, 0) < 0 &&
		    errno != EINVAL)
			b_die("cloud-hypervisor peer: KVM_KVMCLOCK_CTRL: %s",
			      strerror(errno));
		pthread_mutex_unlock(&s->vcpus[i].lock);
	}
	for (i = 0; i < s->n; i++)
		while (!atomic_load(&s->vcpus[i].paused))
			b_sleep_us(1000);
}

/* impl Pausable for CpuManager: resume() */
static void c_resume(struct bc_ctx *c)
{
	struct c_state *s = c->priv;
	unsigned int i;

	atomic_store(&s->vcpus_pause_signalled, false);
	for (i = 0; i < s->n; i++)
		thread_unpark(&s->vcpus[i].parker);
	atomic_store(&c->wakes_done, b_now()); /* the benchmark's, see peers.h */
	for (i = 0; i < s->n; i++)
		while (atomic_load(&s->vcpus[i].paused))
			b_sleep_us(1000);
}

/* CpuManager::shutdown(), from the paused state */
static void c_stop(struct bc_ctx *c)
{
	struct c_state *s = c->priv;
	unsigned int i;

	atomic_store(&s->vcpus_kill_signalled, true);
	atomic_store(&s->vcpus_pause_signalled, false);
	for (i = 0; i < s->n; i++)
		thread_unpark(&s->vcpus[i].parker);
	signal_vcpus(s);
	for (i = 0; i < s->n; i++) {
		pthread_join(s->vcpus[i].thread, NULL);
		pthread_mutex_destroy(&s->vcpus[i].lock);
	}
	if (s->timeouts)
		b_progress("  cloud-hypervisor peer: %d signal acknowledgement timeout(s)\n",
			   s->timeouts);
	free(s->vcpus);
	free(s);
	c->priv = NULL;
}

const struct bc_impl bc_cloud_hypervisor = {
	.name = "cloud-hypervisor CpuManager::pause",
	.source = "cloud-hypervisor/cloud-hypervisor vmm/src/cpu.rs at ae44c29 (PR #7290, #7459; KVM_KVMCLOCK_CTRL on every pause)",
	.start = c_start,
	.pause = c_pause,
	.resume = c_resume,
	.stop = c_stop,
	.signals = peer_signals,
};
