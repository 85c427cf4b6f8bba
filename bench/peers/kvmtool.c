/* SPDX-License-Identifier: MIT */
/*
 * kvmtool's kvm__pause() and kvm__continue(), re-implemented on the
 * benchmark's vCPUs.
 *
 * Follows kvmtool/kvmtool at commit
 * b48735e5d562eaffb96cf98a91da212176f1534c (2024-08-30), read on
 * 2026-12-01 from a fetched snapshot:
 *   kvm.c      kvm__pause(): take pause_lock, create the pause_event
 *              eventfd, pthread_kill(SIGKVMPAUSE) every vCPU that is
 *              running and not paused, then read() the eventfd, adding up
 *              the counts, until every vCPU has acknowledged;
 *              kvm__continue(): release pause_lock;
 *              kvm__notify_paused(): write 1 to pause_event, then block on
 *              pause_lock until the VM continues.
 *   kvm-cpu.c  kvm_cpu_signal_handler(): SIGKVMPAUSE marks the vCPU paused
 *              and calls kvm__notify_paused() from the handler itself;
 *              SIGKVMEXIT clears is_running; kvm_cpu__start(): the handlers
 *              installed with signal(), a KVM_RUN loop that ignores
 *              EINTR/EAGAIN (KVM_EXIT_INTR) while is_running.
 *   include/kvm/kvm.h  SIGKVMEXIT = SIGRTMIN + 0, SIGKVMPAUSE = SIGRTMIN + 1.
 * The signal is unblocked in the vCPU thread and not masked around
 * KVM_RUN: a SIGKVMPAUSE that lands outside KVM_RUN is handled at once in
 * user space (the vCPU pauses inside the handler, even half-way through an
 * I/O exit, which kvmtool does not complete), so pause is not lost;
 * a SIGKVMEXIT that lands between the is_running check and KVM_RUN is.
 * Resume is kvm__continue(): one unlock, after which the paused vCPUs go
 * through pause_lock one after the other (each takes it, clears paused,
 * releases it, wakes the next).  kvmtool issues no KVM_KVMCLOCK_CTRL.
 * On x86 kvmtool always creates the in-kernel irqchip: a halted vCPU
 * sleeps inside KVM_RUN, modelled by peer_halt_wait().
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "peers.h"

#define SIGKVMEXIT (SIGRTMIN + 0)
#define SIGKVMPAUSE (SIGRTMIN + 1)

struct k_cpu {
	struct peer_vcpu *pv;
	pthread_t thread;
	volatile sig_atomic_t is_running;
	volatile sig_atomic_t paused;
	_Atomic bool finished;
	bool halted; /* in the (modelled) in-kernel halt; vCPU thread only */
};

struct k_state {
	struct k_cpu *cpus;
	unsigned int n;
};

static pthread_mutex_t pause_lock = PTHREAD_MUTEX_INITIALIZER;
static int pause_event = -1;
static __thread struct k_cpu *current_kvm_cpu;

static void kvm__notify_paused(void)
{
	uint64_t p = 1;

	if (write(pause_event, &p, sizeof(p)) < 0)
		b_die("kvmtool peer: failed notifying of paused VCPU");
	pthread_mutex_lock(&pause_lock);
	current_kvm_cpu->paused = 0;
	pthread_mutex_unlock(&pause_lock);
}

static void kvm_cpu_signal_handler(int signum)
{
	if (signum == SIGKVMEXIT) {
		if (current_kvm_cpu && current_kvm_cpu->is_running)
			current_kvm_cpu->is_running = 0;
	} else if (signum == SIGKVMPAUSE) {
		if (current_kvm_cpu->paused)
			b_die("kvmtool peer: pause signaled for already paused CPU");
		/* pause_lock is held by kvm__pause() */
		current_kvm_cpu->paused = 1;
		kvm__notify_paused();
	}
}

/* Returns the exit reason. */
static uint32_t kvm_cpu__run(struct k_cpu *cpu)
{
	int err;

	if (!cpu->is_running)
		return cpu->pv->run->exit_reason;
	if (cpu->halted) {
		/* In-kernel halt until a signal: KVM_EXIT_INTR. */
		peer_halt_wait();
		return KVM_EXIT_INTR;
	}
	err = ioctl(cpu->pv->fd, KVM_RUN, 0);
	if (err < 0 && errno != EINTR && errno != EAGAIN)
		b_die("kvmtool peer: KVM_RUN failed: %s", strerror(errno));
	if (cpu->pv->run->exit_reason == KVM_EXIT_HLT)
		cpu->halted = true; /* see peer_halt_wait() */
	return cpu->pv->run->exit_reason;
}

/* kvm_cpu__start() */
static void *kvm_cpu_thread(void *arg)
{
	struct k_cpu *cpu = arg;
	sigset_t set;

	current_kvm_cpu = cpu;
	peer_vcpu_init(cpu->pv);
	sigemptyset(&set);
	sigaddset(&set, SIGKVMEXIT);
	sigaddset(&set, SIGKVMPAUSE);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	b_gate_arrive(); /* the benchmark's start gate */
	while (cpu->is_running) {
		switch (kvm_cpu__run(cpu)) {
		case KVM_EXIT_INTR:
			if (cpu->is_running)
				break;
			goto exit_kvm;
		case KVM_EXIT_IO: /* the benchmark's ports: nothing to do */
		case KVM_EXIT_HLT: /* the in-kernel halt begins (model) */
		default:
			break;
		}
	}
exit_kvm:
	atomic_store(&cpu->finished, true);
	return NULL;
}

static void k_start(struct bc_ctx *c)
{
	struct k_state *k = calloc(1, sizeof(*k));
	unsigned int i;

	if (!k || !(k->cpus = calloc(c->n, sizeof(*k->cpus))))
		b_die("out of memory");
	k->n = c->n;
	c->priv = k;
	/* signal(): BSD semantics (SA_RESTART) with glibc. */
	peer_sigaction(SIGKVMEXIT, kvm_cpu_signal_handler, SA_RESTART);
	peer_sigaction(SIGKVMPAUSE, kvm_cpu_signal_handler, SA_RESTART);
	b_gate_close();
	for (i = 0; i < c->n; i++) {
		struct k_cpu *cpu = &k->cpus[i];

		cpu->pv = &c->pv[i];
		cpu->is_running = 1;
		if (b_thread(&cpu->thread, kvm_cpu_thread, cpu))
			b_die("pthread_create");
	}
	b_gate_open(c->n);
}

/* kvm__pause() */
static void k_pause(struct bc_ctx *c)
{
	struct k_state *k = c->priv;
	unsigned int i, paused_vcpus = 0;

	pthread_mutex_lock(&pause_lock);
	pause_event = eventfd(0, 0);
	if (pause_event < 0)
		b_die("kvmtool peer: failed creating pause notification event");
	for (i = 0; i < k->n; i++) {
		if (k->cpus[i].is_running && k->cpus[i].paused == 0)
			peer_kill(c, k->cpus[i].thread, SIGKVMPAUSE);
		else
			paused_vcpus++;
	}
	while (paused_vcpus < k->n) {
		uint64_t cur_read;

		if (read(pause_event, &cur_read, sizeof(cur_read)) < 0)
			b_die("kvmtool peer: failed reading pause event");
		paused_vcpus += (unsigned int)cur_read;
	}
	close(pause_event);
}

/* kvm__continue() */
static void k_resume(struct bc_ctx *c)
{
	pthread_mutex_unlock(&pause_lock);
	atomic_store(&c->wakes_done, b_now()); /* the benchmark's, see peers.h */
}

/* From the paused state: kvm_cpu__reboot() (SIGKVMEXIT to every vCPU; the
 * handler runs nested in the paused one and clears is_running), then
 * kvm__continue(): each vCPU takes and releases pause_lock, returns from
 * its handler and leaves its loop.  kvmtool can lose a SIGKVMEXIT (see
 * above); the benchmark re-sends until the thread is gone so that
 * teardown cannot hang.  Not part of any measurement. */
static void k_stop(struct bc_ctx *c)
{
	struct k_state *k = c->priv;
	unsigned int i;

	for (i = 0; i < k->n; i++)
		pthread_kill(k->cpus[i].thread, SIGKVMEXIT);
	pthread_mutex_unlock(&pause_lock); /* kvm__continue() */
	for (i = 0; i < k->n; i++) {
		uint64_t next = 0;

		while (!atomic_load(&k->cpus[i].finished)) {
			if (b_now() >= next) {
				pthread_kill(k->cpus[i].thread, SIGKVMEXIT);
				next = b_now() + 10000000u;
			}
			b_sleep_us(200);
		}
		pthread_join(k->cpus[i].thread, NULL);
	}
	free(k->cpus);
	free(k);
	c->priv = NULL;
}

const struct bc_impl bc_kvmtool = {
	.name = "kvmtool kvm__pause",
	.source = "kvmtool/kvmtool kvm.c, kvm-cpu.c at b48735e",
	.start = k_start,
	.pause = k_pause,
	.resume = k_resume,
	.stop = k_stop,
	.signals = peer_signals,
};
