/* SPDX-License-Identifier: MIT */
/*
 * QEMU's pause_all_vcpus() and resume_all_vcpus(), re-implemented on the
 * benchmark's vCPUs.
 *
 * Follows qemu/qemu as read on 2026-12-01 from the stored snapshot of
 * system/cpus.c at commit 048a23851cd44e39c166bb31b733e9fd38c77cb8 (the
 * 10.2 shape: qemu_process_cpu_events(), cpu_pause() through cpu_exit());
 * cpu_exit() as changed for 10.2 by "hw/core/cpu-common: cpu_exit() kicks
 * for all accelerators" (Paolo Bonzini, qemu-devel, August 2025: a
 * store-release of exit_request, then qemu_cpu_kick()), read from the
 * posted patch (hw/core/cpu-common.c at that commit not verified); the
 * KVM side (accel/kvm/, target/i386/kvm/kvm.c) as the earlier version of
 * this file read it, adapted to the 10.2 thread loop (commit not
 * verified):
 *   system/cpus.c            pause_all_vcpus(), resume_all_vcpus(),
 *                            cpu_pause(), cpu_resume(), qemu_cpu_kick(),
 *                            cpus_kick_thread(), qemu_process_cpu_events(),
 *                            qemu_process_cpu_events_common(),
 *                            qemu_cpu_stop(), cpu_can_run(),
 *                            cpu_thread_is_idle(), all_vcpus_paused()
 *   hw/core/cpu-common.c     cpu_exit()
 *   accel/kvm/kvm-accel-ops.c kvm_vcpu_thread_fn(),
 *                            kvm_vcpu_thread_is_idle() (!halt in kernel)
 *   accel/kvm/kvm-all.c      kvm_cpu_exec(), kvm_init_cpu_signals(),
 *                            kvm_ipi_signal(), kvm_cpu_kick(),
 *                            kvm_eat_signals() (KVM_CAP_IMMEDIATE_EXIT case)
 *   target/i386/kvm/kvm.c    kvm_handle_halt(),
 *                            kvm_arch_process_async_events() (halted)
 *
 * The shape that matters here: the requester holds the Big QEMU Lock (BQL)
 * throughout; cpu_pause() sets cpu->stop and calls cpu_exit(), which sets
 * exit_request and kicks the vCPU (a broadcast of its halt condition, and
 * SIG_IPI unless thread_kicked is already set); pause_all_vcpus() then
 * waits on qemu_pause_cond and, after every wake-up, kicks every vCPU
 * again (O(N) kicks per wake-up); once all are stopped it drops the BQL
 * and takes it again (the replay mutex, a no-op without record/replay, is
 * taken in between), competing with the vCPU threads its last kick round
 * woke.  SIG_IPI's handler sets kvm_run->immediate_exit; the vCPU thread
 * takes the BQL after KVM_RUN returns, marks itself stopped, broadcasts
 * qemu_pause_cond and sleeps on its halt condition under the BQL.
 * resume_all_vcpus() (BQL held) clears stop/stopped and kicks each vCPU:
 * a broadcast and, as a stopped vCPU has cleared thread_kicked, a SIG_IPI
 * that usually makes its first KVM_RUN return at once; every woken vCPU
 * must take the BQL before it can run, one after the other.
 * With the user-space irqchip (kernel-irqchip=off), an HLT exit halts the
 * CPU (cpu->halted) and the thread sleeps on its halt condition;
 * pause wakes it to stop it, resume wakes it to go back to sleep.
 * KVM_KVMCLOCK_CTRL is not part of these two functions (QEMU's kvmclock
 * device issues it from its VM state change handler).  Omitted, as
 * irrelevant to the job: the replay mutex, virtual clock, plugins, queued
 * CPU work, MCE handling, interrupt injection.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "peers.h"

#define SIG_IPI SIGUSR1 /* QEMU's SIG_IPI on Linux */

enum { EXCP_INTERRUPT = 0x10000, EXCP_HLT = 0x10001 };

struct q_cpu {
	struct peer_vcpu *pv;
	struct bc_ctx *ctx;
	pthread_t thread;
	pthread_cond_t halt_cond;
	/* Under the BQL, as in CPUState. */
	bool stop, stopped, unplug, created, halted;
	bool gated; /* passed the benchmark's start gate */
	_Atomic bool thread_kicked;
	_Atomic bool exit_request;
};

struct q_state {
	struct q_cpu *cpus;
	unsigned int n;
};

static pthread_mutex_t bql = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qemu_pause_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t qemu_cpu_cond = PTHREAD_COND_INITIALIZER;
static __thread struct q_cpu *current_cpu;

/* kvm_ipi_signal() -> kvm_cpu_kick(): make the (next) KVM_RUN exit. */
static void kvm_ipi_signal(int sig)
{
	(void)sig;
	if (current_cpu)
		__atomic_store_n(&current_cpu->pv->run->immediate_exit, 1,
				 __ATOMIC_RELAXED);
}

static bool cpu_can_run(struct q_cpu *cpu)
{
	return !cpu->stop && !cpu->stopped;
}

/* No queued work; the VM is in the running state; KVM without an
 * in-kernel irqchip: a halted CPU is idle. */
static bool cpu_thread_is_idle(struct q_cpu *cpu)
{
	if (cpu->stop)
		return false;
	if (cpu->stopped)
		return true;
	if (!cpu->halted)
		return false;
	return true; /* kvm_vcpu_thread_is_idle(): !kvm_halt_in_kernel() */
}

static void qemu_cpu_stop(struct q_cpu *cpu)
{
	cpu->stop = false;
	cpu->stopped = true;
	pthread_cond_broadcast(&qemu_pause_cond);
}

static void qemu_process_cpu_events_common(struct q_cpu *cpu)
{
	atomic_store(&cpu->thread_kicked, false); /* qatomic_set_mb */
	if (cpu->stop)
		qemu_cpu_stop(cpu);
}

static void qemu_process_cpu_events(struct q_cpu *cpu)
{
	atomic_store_explicit(&cpu->exit_request, false, memory_order_relaxed);
	while (cpu_thread_is_idle(cpu))
		pthread_cond_wait(&cpu->halt_cond, &bql);
	qemu_process_cpu_events_common(cpu);
}

static void cpus_kick_thread(struct q_cpu *cpu)
{
	if (atomic_load_explicit(&cpu->thread_kicked, memory_order_relaxed))
		return;
	atomic_store_explicit(&cpu->thread_kicked, true, memory_order_relaxed);
	peer_kill(cpu->ctx, cpu->thread, SIG_IPI);
}

static void qemu_cpu_kick(struct q_cpu *cpu)
{
	pthread_cond_broadcast(&cpu->halt_cond);
	cpus_kick_thread(cpu);
}

/* hw/core/cpu-common.c, 10.2 */
static void cpu_exit(struct q_cpu *cpu)
{
	atomic_store_explicit(&cpu->exit_request, true, memory_order_release);
	qemu_cpu_kick(cpu);
}

static int kvm_cpu_exec(struct q_cpu *cpu)
{
	struct kvm_run *run = cpu->pv->run;
	int ret, r;

	/* kvm_arch_process_async_events(): a halted x86 CPU without a
	 * pending interrupt stays halted. */
	if (cpu->halted)
		return EXCP_HLT;
	pthread_mutex_unlock(&bql);
	if (!cpu->gated) {
		/* The benchmark's start gate, before the first KVM_RUN and
		 * without the BQL (see q_start()). */
		cpu->gated = true;
		b_gate_arrive();
	}
	do {
		if (atomic_load_explicit(&cpu->exit_request,
					 memory_order_acquire))
			/* kvm_cpu_kick_self() */
			__atomic_store_n(&run->immediate_exit, 1,
					 __ATOMIC_RELAXED);
		/* smp_rmb(): exit_request before KVM reads immediate_exit. */
		atomic_thread_fence(memory_order_acquire);
		r = ioctl(cpu->pv->fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* kvm_eat_signals(), immediate-exit case */
				__atomic_store_n(&run->immediate_exit, 0,
						 __ATOMIC_RELAXED);
				atomic_thread_fence(memory_order_release);
				ret = EXCP_INTERRUPT;
				break;
			}
			b_die("qemu peer: KVM_RUN: %s", strerror(errno));
		}
		switch (run->exit_reason) {
		case KVM_EXIT_HLT:
			/* kvm_handle_halt(): no interrupt pending (the
			 * benchmark injects none), so the CPU halts. */
			cpu->halted = true;
			ret = EXCP_HLT;
			break;
		case KVM_EXIT_IO: /* the benchmark's ports: unassigned */
		default:
			ret = 0;
			break;
		}
	} while (ret == 0);
	pthread_mutex_lock(&bql);
	return ret;
}

/* kvm_vcpu_thread_fn() */
static void *kvm_vcpu_thread_fn(void *arg)
{
	struct q_cpu *cpu = arg;
	sigset_t set;

	pthread_mutex_lock(&bql);
	current_cpu = cpu;
	peer_vcpu_init(cpu->pv);
	/* kvm_init_cpu_signals(), immediate-exit case: SIG_IPI unblocked in
	 * the thread, handled by kvm_ipi_signal(). */
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	sigdelset(&set, SIG_IPI);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	cpu->created = true;
	pthread_cond_signal(&qemu_cpu_cond);
	do {
		qemu_process_cpu_events(cpu);
		if (cpu_can_run(cpu))
			kvm_cpu_exec(cpu);
	} while (!cpu->unplug || cpu_can_run(cpu));
	pthread_mutex_unlock(&bql);
	return NULL;
}

static bool all_vcpus_paused(struct q_state *q)
{
	unsigned int i;

	for (i = 0; i < q->n; i++)
		if (!q->cpus[i].stopped)
			return false;
	return true;
}

/* cpu_pause() of another thread's vCPU */
static void cpu_pause(struct q_cpu *cpu)
{
	cpu->stop = true;
	cpu_exit(cpu);
}

/* Caller holds the BQL, as QEMU's main loop does. */
static void pause_all_vcpus(struct q_state *q)
{
	unsigned int i;

	for (i = 0; i < q->n; i++)
		cpu_pause(&q->cpus[i]);
	while (!all_vcpus_paused(q)) {
		pthread_cond_wait(&qemu_pause_cond, &bql);
		/* "FIXME: is this needed?" */
		for (i = 0; i < q->n; i++)
			qemu_cpu_kick(&q->cpus[i]);
	}
	/* bql_unlock(); replay_mutex_lock(); bql_lock(); */
	pthread_mutex_unlock(&bql);
	pthread_mutex_lock(&bql);
}

/* Caller holds the BQL. */
static void resume_all_vcpus(struct q_state *q)
{
	unsigned int i;

	for (i = 0; i < q->n; i++) {
		/* cpu_resume() */
		q->cpus[i].stop = false;
		q->cpus[i].stopped = false;
		qemu_cpu_kick(&q->cpus[i]);
	}
}

static void q_start(struct bc_ctx *c)
{
	struct q_state *q = calloc(1, sizeof(*q));
	unsigned int i;

	/* qemu_init_vcpu() waits until each vCPU thread is up.  QEMU then
	 * starts them with resume_all_vcpus(); here each thread goes on
	 * into kvm_cpu_exec() and waits at the benchmark's start gate
	 * before its first KVM_RUN, without the BQL: starting 1024 vCPUs
	 * through a BQL hand-off while the started ones spin in the guest
	 * takes minutes on two cores, and starting is not what is measured
	 * (resume_all_vcpus() is measured from the paused state by the
	 * pause/resume part). */
	if (!q || !(q->cpus = calloc(c->n, sizeof(*q->cpus))))
		b_die("out of memory");
	q->n = c->n;
	c->priv = q;
	peer_sigaction(SIG_IPI, kvm_ipi_signal, 0);
	b_gate_close();
	pthread_mutex_lock(&bql);
	for (i = 0; i < c->n; i++) {
		struct q_cpu *cpu = &q->cpus[i];

		cpu->pv = &c->pv[i];
		cpu->ctx = c;
		pthread_cond_init(&cpu->halt_cond, NULL);
		if (b_thread(&cpu->thread, kvm_vcpu_thread_fn, cpu))
			b_die("pthread_create");
		while (!cpu->created)
			pthread_cond_wait(&qemu_cpu_cond, &bql);
	}
	pthread_mutex_unlock(&bql);
	b_gate_open(c->n);
}

/* The main loop's do_vm_stop() -> pause_all_vcpus(), BQL held around it
 * (the main loop releases it afterwards). */
static void q_pause(struct bc_ctx *c)
{
	pthread_mutex_lock(&bql);
	pause_all_vcpus(c->priv);
	pthread_mutex_unlock(&bql);
}

/* vm_start() -> resume_all_vcpus(), BQL held around it. */
static void q_resume(struct bc_ctx *c)
{
	pthread_mutex_lock(&bql);
	resume_all_vcpus(c->priv);
	pthread_mutex_unlock(&bql);
	atomic_store(&c->wakes_done, b_now()); /* the benchmark's, see peers.h */
}

static void q_stop(struct bc_ctx *c)
{
	struct q_state *q = c->priv;
	unsigned int i;

	/* cpu_remove_sync() for each (from the paused state), kicks first,
	 * joins after. */
	pthread_mutex_lock(&bql);
	for (i = 0; i < q->n; i++) {
		q->cpus[i].stop = true;
		q->cpus[i].unplug = true;
		cpu_exit(&q->cpus[i]);
	}
	pthread_mutex_unlock(&bql);
	for (i = 0; i < q->n; i++) {
		pthread_join(q->cpus[i].thread, NULL);
		pthread_cond_destroy(&q->cpus[i].halt_cond);
	}
	free(q->cpus);
	free(q);
	c->priv = NULL;
}

const struct bc_impl bc_qemu = {
	.name = "QEMU pause_all_vcpus",
	.source = "qemu/qemu system/cpus.c (048a238, 10.2 shape), hw/core/cpu-common.c cpu_exit(), accel/kvm/",
	.start = q_start,
	.pause = q_pause,
	.resume = q_resume,
	.stop = q_stop,
	.signals = peer_signals,
};
