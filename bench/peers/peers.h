/* SPDX-License-Identifier: MIT */
/*
 * The broadcast-and-wait job, as each implementation does it: make every
 * vCPU of the VM leave guest mode and acknowledge, and keep it out (the
 * peers' "pause").  The vCPUs spin in real guest code (H_SPIN) on the benchmark VM's
 * KVM vCPU fds; the peers drive them with their own raw KVM_RUN loops and
 * threads, the library with vcpureq_vcpu_run().  Each peer file names the
 * source file(s) of the VMM it follows.  The code is this project's own,
 * written from reading those sources; none of it is copied.
 */
#ifndef VCPUREQ_BENCH_PEERS_H
#define VCPUREQ_BENCH_PEERS_H

#include <linux/kvm.h>

#include "../bench.h"

struct peer_vcpu {
	unsigned int id;
	int fd;
	struct kvm_run *run;
	_Atomic pid_t tid;      /* the thread driving it now (set at start) */
};

struct bc_ctx {
	struct h_vm *h;
	unsigned int n;
	struct peer_vcpu *pv;   /* n entries */
	struct vr_rec *recs;    /* the library's vCPU threads */
	_Atomic uint64_t signals; /* signals sent by the algorithm so far */
	/* b_now() once the resume has issued its last wake-up (set by each
	 * .resume: a timestamp, not part of the algorithm; diagnostics of
	 * the pause/resume part only). */
	_Atomic uint64_t wakes_done;
	void *priv;
};

struct bc_impl {
	const char *name;
	const char *source;
	/* Start n vCPU threads running the guest: each sets up, waits at the
	 * start gate (b_gate_arrive()), then runs; start opens the gate once
	 * all have arrived. */
	void (*start)(struct bc_ctx *c);
	/* The measured job: broadcast, then wait until every vCPU is parked
	 * (out of guest mode and staying out until resumed). */
	void (*pause)(struct bc_ctx *c);
	/* From the paused state: the VMM's resume; returns when the VMM's
	 * own resume returns (the pause/resume part then waits until every
	 * vCPU runs guest code again). */
	void (*resume)(struct bc_ctx *c);
	/* From the paused state: make the threads exit (without running the
	 * guest again) and join them.  Not measured. */
	void (*stop)(struct bc_ctx *c);
	/* Signals sent so far. */
	uint64_t (*signals)(struct bc_ctx *c);
};

extern const struct bc_impl bc_qemu, bc_cloud_hypervisor, bc_kvmtool;
/* Not a peer: the scheduler floor of a resume (resume_floor.c). */
extern const struct bc_impl bc_resume_floor;

/* A VM of @n vCPUs spinning in the guest (H_SPIN, the library's handler
 * installed: vr_opts()) and its context @c (peer_vcpu of every vCPU, the
 * library's vr_rec records); H_SKIP without /dev/kvm.  bc_ctx_free()
 * destroys both. */
int bc_ctx_init(struct bc_ctx *c, struct h_vm *h, unsigned int n);
void bc_ctx_free(struct bc_ctx *c);

/* One timed pause: b_now() at the call and at its return, and the
 * requester CPU (getrusage RUSAGE_THREAD) and signals it cost. */
struct bc_timed {
	uint64_t t0, t1, cpu, sig;
};
/* Time @im's pause of c's vCPUs (the broadcast and pause/resume parts
 * alike): signals read outermost, then CPU time, then the clock. */
void bc_time_pause(const struct bc_impl *im, struct bc_ctx *c,
		   struct bc_timed *out);

/* On the vCPU thread before its first KVM_RUN: no KVM signal mask (the
 * library may have set one on this vCPU fd earlier), immediate_exit 0,
 * the thread id recorded. */
void peer_vcpu_init(struct peer_vcpu *pv);
/* Signals sent so far (c->signals): the .signals of every peer. */
uint64_t peer_signals(struct bc_ctx *c);
/* The library's kick signals to the VM's vCPUs so far (its counters). */
uint64_t vq_lib_signals(struct bc_ctx *c);
/*
 * The halt of a vCPU whose VMM keeps the LAPIC in the kernel
 * (cloud-hypervisor, kvmtool: KVM_CREATE_IRQCHIP on x86): there the vCPU
 * thread sleeps inside KVM_RUN until an interrupt or a signal, and a
 * signal makes KVM_RUN return -EINTR after its handler ran.  The
 * benchmark's VM has the user-space irqchip (H_HALT exits with
 * KVM_EXIT_HLT), so after that exit such a peer sleeps here instead:
 * until a signal handler has run on this thread (pause()).  A signal
 * handled just before the call is not seen, as a signal handled just
 * before KVM_RUN is not seen by the in-kernel halt.
 */
void peer_halt_wait(void);
/* Install @fn as the handler of @sig (flags as given). */
void peer_sigaction(int sig, void (*fn)(int), int flags);
/* pthread_kill and count it in c->signals. */
void peer_kill(struct bc_ctx *c, pthread_t t, int sig);

#endif /* VCPUREQ_BENCH_PEERS_H */
