/* SPDX-License-Identifier: MIT */
/*
 * vcpureq-bench: shared declarations.
 *
 * The benchmark measures, in one run and on the same machine, the floors
 * that bound each figure (raw signal -> KVM_RUN -EINTR, raw I/O-exit round
 * trip, raw futex wake, cache-line round trip), the library's figures, and
 * the broadcast-and-wait algorithms of three peer VMMs re-implemented in
 * bench/peers/.  Everything runs real guest code on /dev/kvm (tests/guest.S
 * through the harness).  Times are in nanoseconds internally.
 */
#ifndef VCPUREQ_BENCH_H
#define VCPUREQ_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "harness.h"

#define B_MAX_REP 9

/* ---- options (main.c) ---- */
struct bopts {
	bool quick;
	const char *out;        /* output directory or NULL */
	int reps;               /* repeat runs */
	unsigned int max_n;     /* largest broadcast N */
	unsigned int only;      /* bit set of B_PART_*; 0 = all */
	unsigned long outside_requests; /* requests per outside-mode run */
	double scale;           /* sample-count multiplier */
	unsigned int pause_cfgs;    /* bit set of g_pr_cfg indexes; 0 = all */
	unsigned int pause_samples; /* samples per configuration; 0 = default */
	unsigned int pause_impls;   /* bit set of implementations; 0 = all */
	int finish_poll;        /* PR_POLL_*: the resume finish line's poll */
	bool native;            /* the native guest (--guest native) */
};
extern struct bopts g_opt;

enum {
	B_PART_FLOORS = 1u << 0,
	B_PART_KICK = 1u << 1,
	B_PART_OUTSIDE = 1u << 2,
	B_PART_ENTRY = 1u << 3,
	B_PART_WAKE = 1u << 4,
	B_PART_REQUESTERS = 1u << 5,
	B_PART_BROADCAST = 1u << 6,
	B_PART_KICKAB = 1u << 7,
	B_PART_PAUSE = 1u << 8,
	B_PART_TRACE = 1u << 9,
};
bool b_part(unsigned int part);

/* ---- samples and figures (stats.c) ---- */
struct samples {
	double *v;
	size_t n, cap;
};
void samples_add(struct samples *s, double x);
void samples_clear(struct samples *s);
void samples_free(struct samples *s);
/* Percentile p in [0, 100] (sorts in place); NAN if empty. */
double samples_pct(struct samples *s, double p);
double samples_mean(const struct samples *s);

/* One reported quantity: all samples of all repeats, and each repeat's p50. */
struct figure {
	const char *key;   /* file name stem */
	const char *title;
	struct samples all;
	double rep_p50[B_MAX_REP];
	int nrep;
};
/* Append one repeat's samples (consumed: cleared afterwards). */
void figure_add_rep(struct figure *f, struct samples *rep);

/* JSON of the data file (data.c; schema at the top of bench/render.py):
 * a number (NaN and infinities as null), a string, and a member
 * "NAME": [numbers] (samples in the order they are held). */
void json_num(FILE *f, double x);
void json_str(FILE *f, const char *s);
void json_nums(FILE *f, const char *name, const double *v, size_t n);
void json_samples(FILE *f, const char *name, const struct samples *s);

/* ---- utilities (util.c) ---- */
uint64_t b_now(void);
/* A part's sample count: @full, or @quick with --quick, times --scale;
 * at least 5. */
size_t b_count(size_t full, size_t quick);
void b_spin_ns(uint64_t ns);
void b_sleep_us(unsigned int us);
pid_t b_gettid(void);
/* Pin the calling thread to one CPU (best effort); -1: every CPU. */
void b_pin(int cpu);
/* The scheduler state letter of thread @tid of this process ('S', 'R'...). */
char b_thread_state(pid_t tid);
/* Wait (spinning) until thread @tid sleeps in the kernel; false on timeout. */
bool b_wait_sleeping(pid_t tid, uint64_t timeout_ns);
/* Create a thread with a small stack. */
int b_thread(pthread_t *t, void *(*fn)(void *), void *arg);
/* Requester-side CPU time of the calling thread (getrusage RUSAGE_THREAD). */
uint64_t b_thread_cpu_ns(void);
void b_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void b_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Name the phase for the watchdog. */
void b_phase(const char *what);
void b_watchdog_start(unsigned int seconds);
/* CPU time the rest of the machine used during the run: start, then end
 * (seconds of CPU used by other processes, and the machine's capacity in
 * CPU-seconds over the same wall time). */
void b_load_start(void);
void b_load_end(double *foreign_cpu_s, double *capacity_s);
/* Cheap deterministic pseudo-random numbers (per thread state). */
uint32_t b_rand(uint32_t *state);
int b_futex_wait(_Atomic uint32_t *w, uint32_t val);
/* The start gate: vCPU threads, once set up, wait here until every one of
 * them is ready, so that creating N threads does not compete with N - 1
 * vCPUs already spinning in the guest.  b_gate_arrive() counts the
 * arrival and waits; b_gate_open() waits for @n arrivals and opens. */
void b_gate_close(void);
void b_gate_arrive(void);
void b_gate_open(unsigned int n);
int b_futex_wake(_Atomic uint32_t *w, int n);
/* perf_event_open on the raw_syscalls:sys_enter tracepoint, for the calling
 * thread, disabled; -1 if unavailable (no tracefs). */
int b_syscall_counter_open(void);
/* Create the harness VM or die; returns 77 (SKIP) when /dev/kvm is absent. */
int b_vm(struct h_vm *h, unsigned int nr, enum h_prog prog,
	 const struct vcpureq_vm_opts *opts);

/* ---- the library's vCPU threads (vr.c) ---- */
#define B_REQ_PING VCPUREQ_ARCH_REQ(1)
#define B_REQ_PAUSE VCPUREQ_ARCH_REQ_FLAGS(2, VCPUREQ_REQUEST_WAIT)
#define B_REQ_STOP VCPUREQ_ARCH_REQ(54)

/* Per-vCPU record of the handler, written by the vCPU thread. */
struct vr_rec {
	_Atomic uint64_t ping_seen;  /* pings handled */
	_Atomic uint64_t ping_t;     /* b_now() when the last was seen */
	_Atomic uint64_t wake_seen;  /* blocks that returned */
	_Atomic uint64_t wake_t;     /* b_now() right after block returned */
	_Atomic uint64_t pause_t;    /* b_now() when the handler saw PAUSE */
	_Atomic pid_t tid;
	_Atomic int started, finished, err;
	pthread_t thread;
	struct h_vm *h;
	unsigned int id;
	int pin;  /* 0: not pinned; k: pinned to CPU k - 1 */
	char pad[64];
};
/* The request handler every benchmark VM uses (opts.handle_requests). */
int vr_handler(struct vcpureq_vcpu *v, void *opaque);
/* Opts for a benchmark VM: handler installed with @recs (one per vCPU of
 * the VM) as its opaque, halt polling off. */
struct vcpureq_vm_opts vr_opts(struct vr_rec *recs);
/* Start the library's VMM loop on vCPUs [0, n) (records in recs[]). */
int vr_start(struct h_vm *h, struct vr_rec *recs, unsigned int first,
	     unsigned int n);
/* Stop them (STOP request, then join); @paused: they are parked by a
 * PAUSE request, release them too. */
void vr_stop(struct h_vm *h, struct vr_rec *recs, unsigned int first,
	     unsigned int n, bool paused);
/* The pause flag the PAUSE request parks on, and resume. */
/* Arm the pause of @n vCPUs: their handler parks them on B_REQ_PAUSE;
 * vr_wait_parked() returns once all @n are parked. */
void vr_pause_arm(unsigned int n);
void vr_wait_parked(void);
void vr_resume_all(void);
/* Wait until guest counters of vCPUs [first, first+n) advanced past snap;
 * snap is updated.  false on timeout. */
bool b_wait_progress(struct h_vm *h, unsigned int first, unsigned int n,
		     uint32_t *snap, uint64_t timeout_ns);
void b_snap_counters(struct h_vm *h, unsigned int first, unsigned int n,
		     uint32_t *snap);
/* true if no guest counter of vCPUs [0, n) moves for a while (300 µs
 * spinning for n <= 2, else 2 ms asleep): every vCPU is out.  snap is
 * left holding the counters read first; tmp is scratch (n entries each). */
bool b_counters_still(struct h_vm *h, unsigned int n, uint32_t *snap,
		      uint32_t *tmp);
/* Wait until vCPU @id runs guest code (@flag, if any, set and its guest
 * counter moving), then a short random delay. */
void wait_in_guest(struct h_vm *h, unsigned int id, _Atomic int *flag,
		   uint32_t *rnd);

/* ---- paired measurements on one vCPU (micro.c) ---- */
/* The vCPU thread of a paired measurement alternates a raw loop (MODE_RAW)
 * and the library's (MODE_LIB), as the requester sets mode. */
enum { MODE_RAW = 0, MODE_LIB = 1 };

struct pair_thr {
	struct h_vm *h;
	struct vr_rec *rec;
	_Atomic int mode, stop, err, ready;
	_Atomic int in_raw;            /* kick: in the raw KVM_RUN */
	_Atomic int raw_sleeping;      /* wake: in the raw futex sleep */
	_Atomic uint32_t word;         /* wake: the raw futex */
	_Atomic pid_t tid;
	_Atomic uint64_t raw_seq, raw_t, raw_t2;
};
/* Start the vCPU thread @fn of a paired measurement (raw loop first) and
 * wait until it is bound. */
void b_start_pair(struct pair_thr *p, struct h_vm *h, struct vr_rec *rec,
		  void *(*fn)(void *), pthread_t *t, const char *what);
/* The kick part's vCPU thread (CPU 1): raw KVM_RUN taking the kick signal
 * (raw_seq/raw_t/raw_t2), or vcpureq_vcpu_run() until a B_REQ_STOP. */
void *b_kick_vcpu(void *arg);
/* Spin until *seq moves from @old; die after 5 s. */
void b_wait_seq(_Atomic uint64_t *seq, uint64_t old, const char *what);
/* Wait until vCPU @v runs guest code and is IN_GUEST_MODE. */
void b_wait_vr_in_guest(struct h_vm *h, struct vcpureq_vcpu *v, uint32_t *rnd);
/* One sample of the kick pair (b_kick_vcpu on vCPU 0), for the kick and
 * trace parts alike.  The raw signal floor, the thread in the raw loop:
 * once it runs guest code, tgkill of the kick signal -> KVM_RUN -EINTR,
 * ns (and in *drain, if not NULL, to the end of the sigtimedwait drain);
 * the thread goes on in the library's loop. */
double b_kick_floor(struct pair_thr *p, int sig, uint32_t *rnd, double *drain);
/* Request + kick of @v -> its handler running, ns (the thread in the
 * library's loop, waited for IN_GUEST_MODE first). */
double b_kick_lib(struct pair_thr *p, struct vcpureq_vcpu *v, uint32_t *rnd,
		  const char *what);
/* Back to the raw loop (not timed); dies if the vCPU thread failed. */
void b_kick_to_raw(struct pair_thr *p, struct vcpureq_vcpu *v,
		   const char *what);
/* @b I/O-exit round trips of the H_OUT vCPU @v, bound to the calling
 * thread: raw KVM_RUN on its fd, or vcpureq_vcpu_run() if @lib (the entry
 * and trace parts).  0, or a negative errno (-EPROTO: another exit). */
int b_entry_batch(struct vcpureq_vcpu *v, bool lib, int b);
/* Stop the kick pair's thread and join it. */
void b_kick_pair_stop(struct pair_thr *p, struct vcpureq_vcpu *v, int sig,
		      pthread_t t);

/* ---- the parts ---- */
/* Figures filled by the parts, written to the data file by data.c. */
enum {
	FIG_SIG,        /* floor: signal -> KVM_RUN -EINTR */
	FIG_SIG_DRAIN,  /* info: ... + sigtimedwait drain */
	FIG_IO,         /* floor: raw I/O-exit round trip */
	FIG_FUTEX,      /* floor: futex wake -> woken thread running */
	FIG_CACHE,      /* floor: cache-line round trip */
	FIG_KICK,       /* request + kick -> handler running */
	FIG_OUT_BUSY,   /* request to an awake vCPU outside guest mode, vCPU polling */
	FIG_OUT_IDLE,   /* same, vCPU busy elsewhere */
	FIG_OUT_REQ1,   /* same with the one-call vcpureq_request() */
	FIG_ENTRY,      /* I/O-exit loop through vcpureq_vcpu_run */
	FIG_ENTRY_RATIO,/* per batch pair: vcpureq / raw */
	FIG_WAKE,       /* request -> block returns */
	FIG_NR
};
extern struct figure g_fig[FIG_NR];

/* Zero-syscall evidence of the outside-guest-mode run (last repeat). */
struct outside_evidence {
	unsigned long requests;
	uint64_t signals_sent, wakeups, kicks, requests_made;
	double stime_ms;          /* requester system time during the loop */
	long vcsw, ivcsw;         /* requester context switches */
	long long syscalls;       /* perf tracepoint count, -1 if unavailable */
	const char *syscall_method;
};
extern struct outside_evidence g_outside[2]; /* [0] polling, [1] idle */

/* K requesters hitting one spinning vCPU. */
#define B_NK 4
extern const unsigned int g_k_values[B_NK];
struct kreq_result {
	unsigned int k, r;
	uint64_t requests_made, kicks, signals_sent, signals_coalesced;
	uint64_t handled, entries, kicked_exits, spurious_exits;
	double ms;
};
extern struct kreq_result g_kreq[B_MAX_REP][B_NK];
extern int g_kreq_reps;

int part_floors(int rep);
int part_kick(int rep);
int part_outside(int rep);
int part_entry(int rep);
int part_wake(int rep);
int part_requesters(int rep);
int part_broadcast(int rep);
int part_kickab(int rep);
/* The part's member of the data file (data.c): "kickab": {...}. */
void kickab_data(FILE *f);
int part_pause(int rep);
/* The trace's cost, off and on (tracecost.c). */
int part_trace(int rep);
/* Its member of the data file: "trace": {...}. */
void trace_data(FILE *f);

/* ---- pause / resume results (pause.c) ---- */
#define PR_NIMPL 5      /* vcpureq, QEMU, cloud-hypervisor, kvmtool, floor */
#define PR_FLOOR 4      /* the scheduler floor (resume_floor.c), not a peer */
#define PR_NCFG 7       /* N = 1 ... 1024 spinning, then the mix */
#define PR_MAX_SAMPLES 64
/* The resume finish line's poll interval (the same for every
 * implementation): SCALED sleeps elapsed/16, at least 20 µs and at most
 * 1 ms; FIXED 20 µs; ALT alternates the two from sample to
 * sample (an experiment: the sample file says which). */
enum { PR_POLL_SCALED, PR_POLL_FIXED, PR_POLL_ALT };
struct pr_cfg {
	unsigned int n;
	bool mix;       /* a third each spinning, I/O-looping, halted */
};
/* One implementation's measurements in one sample (ns, signals). */
struct pr_sample {
	double pause, resume, cycle;
	double pause_cpu, resume_cpu;
	double pause_sig, resume_sig;
	bool failed;    /* a guest counter moved after pause returned */
	bool timed_out; /* resume (or cycle) finish line given up: resume is
			   a lower bound, cycle NAN */
	/* Diagnostics of the resume (sample file only): */
	double resume_call;     /* ns until the resume call returned */
	double wakes_done;      /* ns until it had issued its last wake-up */
	double polls;           /* finish-line polls after it returned */
	double ivcsw;           /* involuntary context switches of the
				   process in the resume window */
	double call_ivcsw;      /* the requester's own (preemptions) in the
				   resume call */
	int poll_rule;          /* PR_POLL_SCALED or PR_POLL_FIXED */
	double cycle_pause;     /* ns of the cycle's pause */
	double cycle_wakes;     /* ns from its return to the resume's last
				   wake-up */
};
struct pr_cell {
	/* s[impl][k]: sample k, in the order taken (paired across impls) */
	struct pr_sample s[PR_NIMPL][PR_MAX_SAMPLES];
	unsigned int ns;
	int failures[PR_NIMPL];
	bool skipped[PR_NIMPL]; /* left out by --pause-impls */
	bool ran;
};
extern const struct pr_cfg g_pr_cfg[PR_NCFG];
extern struct pr_cell g_pr[PR_NCFG];
const char *pr_impl_name(int i);
const char *pr_impl_source(int i);

/* ---- broadcast results (broadcast.c) ---- */
#define B_NN 6
#define B_NIMPL 4
extern const unsigned int g_n_values[B_NN];
struct bc_cell {
	struct samples lat;     /* ns per pause (sorted by the percentiles) */
	struct samples seq;     /* the same in the order taken: iteration k
				   of every implementation is paired */
	struct samples sig;     /* signals per pause */
	struct samples cpu;     /* requester CPU ns per pause */
	double rep_p50[B_MAX_REP];
	int nrep;
	unsigned long iters;
	bool ran;
	int failures;           /* pauses that did not stop every vCPU */
};
extern struct bc_cell g_bc[B_NIMPL][B_NN];
const char *bc_impl_name(int i);
const char *bc_impl_source(int i);

/* ---- the data file (data.c) ---- */
/* Write DIR/data.json (creating DIR): the run's context and every
 * sample; 0 or a negative errno (with a message on stderr). */
int data_write(const char *dir, double seconds);

#endif /* VCPUREQ_BENCH_H */
