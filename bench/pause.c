/* SPDX-License-Identifier: MIT */
/*
 * Pause and resume: vcpureq_pause()/vcpureq_resume() against the pause and
 * resume paths of QEMU, cloud-hypervisor and kvmtool (bench/peers/), on
 * the same VM, the same vCPU fds and the same guest, N = 1 ... 1024
 * vCPUs spinning in the guest (H_SPIN), and a mix of spinning, I/O-looping
 * (H_OUT) and halted (H_HALT, user-space irqchip) vCPUs.
 *
 * One finish line for all:
 * - pause: from the call until it returns.  Each implementation returns
 *   only once every vCPU is parked, by its own contract: vcpureq_pause()
 *   by the library's (out of guest mode, pending I/O completed,
 *   KVM_KVMCLOCK_CTRL issued, staying out until resumed); QEMU when every
 *   vCPU thread has set cpu->stopped under the BQL (it then sleeps on its
 *   halt condition); cloud-hypervisor when every vCPU thread has set
 *   paused (it then parks); kvmtool when every vCPU has written its
 *   acknowledgement from its signal handler (it then blocks on
 *   pause_lock, still in that handler).  After each pause the benchmark
 *   checks that no guest counter moves any more (not timed).
 * - resume: from the call until the call has returned AND every vCPU that
 *   was running guest code before the pause (spinning or I/O-looping) has
 *   run guest code again: its guest counter (ds:0, incremented by the
 *   guest loop) moved past the value it had while paused.  The requester
 *   polls the counters, sleeping 20 µs between polls (about 70 µs with the
 *   default timer slack: the resolution of this finish line), the same
 *   for every implementation; it does not spin, which would keep one of
 *   the two CPUs from the vCPU threads it waits for.  (--finish-poll
 *   scaled sleeps elapsed/16, 20 µs to 1 ms, for every implementation
 *   alike: a test of whether the poll slows the resume; it did not, see
 *   docs/performance.md.)  It gives up after
 *   60 s (10 s with --quick): the sample is then a lower bound (reported as such) and the
 *   cycle is not measured.  Halted vCPUs stay halted across a pause
 *   and a resume under every implementation and are not waited for.
 * - cycle: a pause and a resume back to back, from the pause call to the
 *   resume's finish line (the counters are read between the two, inside
 *   the window, the same for all).
 *
 * Interleaving: a *sample* is one run of each of the five implementations
 * (the four above and the scheduler floor of resume_floor.c, plain
 * threads standing in for the vCPUs), in an order rotated from sample to
 * sample; within it each implementation starts its N threads (behind the
 * start gate, not timed), waits until every vCPU has run guest code (and
 * every halted vCPU's thread sleeps), then times a pause, a resume and a
 * cycle, and stops its threads from a last (untimed) pause.  So the five
 * measurements of a sample are taken within seconds of each other, and
 * the report gives, for each peer and the floor, the median and p25-p75
 * of the per-sample ratios vcpureq / other: a busy neighbour that slows
 * one sample slows the five of that sample alike.
 *
 * Signals per pause: the library's signals_sent summed over the vCPUs,
 * the peers' own pthread_kill()s; requester CPU: getrusage(RUSAGE_THREAD)
 * around the pause call (and around the resume call alone, without the
 * finish-line polling).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "peers/peers.h"

/* ---- the library, with vcpureq_pause()/vcpureq_resume() ---- */
static void pq_start(struct bc_ctx *c)
{
	unsigned int i;

	vr_start(c->h, c->recs, 0, c->n);
	for (i = 0; i < c->n; i++)
		atomic_store(&c->pv[i].tid, atomic_load(&c->recs[i].tid));
}

static void pq_pause(struct bc_ctx *c)
{
	int r = vcpureq_pause(c->h->vm, NULL, 0, NULL);

	if (r < 0)
		b_die("vcpureq_pause: %d", r);
}

static void pq_resume(struct bc_ctx *c)
{
	int r = vcpureq_resume(c->h->vm, NULL, 0);

	if (r < 0)
		b_die("vcpureq_resume: %d", r);
	atomic_store(&c->wakes_done, b_now());
}

/* From the paused state: resume, then the STOP request (vr_stop()). */
static void pq_stop(struct bc_ctx *c)
{
	pq_resume(c);
	vr_stop(c->h, c->recs, 0, c->n, false);
}

static const struct bc_impl pr_vcpureq = {
	.name = "vcpureq",
	.source = "vcpureq_pause() / vcpureq_resume() of every vCPU",
	.start = pq_start,
	.pause = pq_pause,
	.resume = pq_resume,
	.stop = pq_stop,
	.signals = vq_lib_signals,
};

static const struct bc_impl *const impls[PR_NIMPL] = {
	&pr_vcpureq, &bc_qemu, &bc_cloud_hypervisor, &bc_kvmtool,
	&bc_resume_floor,
};

static const char *const resume_names[PR_NIMPL] = {
	"vcpureq_pause / vcpureq_resume",
	"QEMU pause_all_vcpus / resume_all_vcpus",
	"cloud-hypervisor CpuManager::pause / resume",
	"kvmtool kvm__pause / kvm__continue",
	"floor: N plain threads resumed by one FUTEX_WAKE",
};

const char *pr_impl_name(int i)
{
	return resume_names[i];
}

const char *pr_impl_source(int i)
{
	return impls[i]->source;
}

/* The configurations: N spinning vCPUs, then the mix. */
const struct pr_cfg g_pr_cfg[PR_NCFG] = {
	{ 1, false }, { 4, false }, { 16, false }, { 64, false },
	{ 256, false }, { 1024, false }, { 64, true },
};
struct pr_cell g_pr[PR_NCFG];

/* The mix: vCPU i spins (i % 3 == 0), loops on I/O exits (1) or halts (2). */
static enum h_prog mix_prog(const struct pr_cfg *cfg, unsigned int i)
{
	static const enum h_prog progs[3] = { H_SPIN, H_OUT, H_HALT };

	return cfg->mix ? progs[i % 3] : H_SPIN;
}

/* Samples per configuration; 0: not run. */
static unsigned int nr_samples(int ci)
{
	static const unsigned int full[PR_NCFG] = { 8, 6, 5, 4, 1, 1, 4 };
	static const unsigned int quick[PR_NCFG] = { 3, 3, 1, 0, 0, 0, 0 };
	unsigned int base = g_opt.quick ? quick[ci] : full[ci];
	double s = (double)base * g_opt.scale;

	if (g_opt.pause_samples)
		return g_opt.pause_samples;
	if (!base)
		return 0;
	return s < 1 ? 1 : (unsigned int)s;
}

static uint64_t cfg_budget_ns(void)
{
	return g_opt.quick ? 4000000000ull : 60000000000ull;
}

struct pr_run {
	struct bc_ctx *c;
	const struct pr_cfg *cfg;
	uint32_t *snap, *tmp;
	int poll_rule;          /* PR_POLL_SCALED or PR_POLL_FIXED */
	unsigned int polls;     /* of the last wait_running() */
};

/* The finish line of a resume is given up after this long (10 s with
 * --quick, which must stay short): the sample is kept as a lower bound
 * (timed_out) and its cycle is not measured. */
static uint64_t finish_cap_ns(void)
{
	return g_opt.quick ? 10000000000ull : 60000000000ull;
}

/* The finish line's sleep between two polls, @elapsed ns after the
 * resume call began: 20 µs (FIXED), or elapsed / 16 between 20 µs and
 * 1 ms (SCALED: a resolution of 1/16 of the time measured, and at most
 * one wake-up per ms however long the resume takes). */
static unsigned int poll_us(const struct pr_run *r, uint64_t elapsed)
{
	uint64_t us = elapsed / 16000;

	if (r->poll_rule == PR_POLL_FIXED || us < 20)
		return 20;
	return us > 1000 ? 1000 : (unsigned int)us;
}

/* Until every vCPU that runs guest code (not halted) moved past snap;
 * false if one had not after finish_cap_ns(). */
static bool wait_running(struct pr_run *r, uint64_t t0)
{
	unsigned int i = 0, n = r->c->n;
	uint64_t now;

	r->polls = 0;
	while (i < n) {
		if (mix_prog(r->cfg, i) == H_HALT ||
		    (uint32_t)h_guest_iters(r->c->h, i) != r->snap[i]) {
			i++;
			continue;
		}
		now = b_now();
		if (now - t0 > finish_cap_ns())
			return false;
		/* Sleep, never spin: a requester spinning here would hold
		 * one of the two CPUs that the woken vCPU threads need (a
		 * woken thread queued behind it waits for the 4 ms tick). */
		b_sleep_us(poll_us(r, now - t0));
		r->polls++;
	}
	return true;
}

/* Involuntary context switches so far of the whole process
 * (RUSAGE_SELF) or of the calling thread (RUSAGE_THREAD). */
static double ivcsw(int who)
{
	struct rusage ru;

	return getrusage(who, &ru) ? NAN : (double)ru.ru_nivcsw;
}

/* Untimed: every vCPU has run guest code since snap, every halted vCPU's
 * thread sleeps. */
static void wait_started(struct pr_run *r, const char *what)
{
	unsigned int i;

	if (!b_wait_progress(r->c->h, 0, r->c->n, r->snap, 300000000000ull))
		b_die("%s: vCPUs did not all run guest code within 300 s", what);
	for (i = 0; i < r->c->n; i++)
		if (mix_prog(r->cfg, i) == H_HALT &&
		    !b_wait_sleeping(atomic_load(&r->c->pv[i].tid),
				     10000000000ull))
			b_progress("  %s: halted vCPU %u not asleep after 10 s\n",
				   what, i);
}

/* One implementation's share of one sample. */
static void run_one(int ii, struct pr_run *r, struct pr_sample *out)
{
	const struct bc_impl *im = impls[ii];
	struct bc_ctx *c = r->c;
	uint64_t t0, t1, c0, c1, s0, s1, tc;
	struct bc_timed p;
	double cs0, ts0;
	char phase[128];

	snprintf(phase, sizeof(phase), "pause/resume: %s, N=%u%s", im->name,
		 c->n, r->cfg->mix ? " (mix)" : "");
	b_phase(phase);
	atomic_store(&c->signals, 0);
	b_snap_counters(c->h, 0, c->n, r->snap);
	im->start(c);
	wait_started(r, phase);

	/* pause */
	bc_time_pause(im, c, &p);
	out->pause = (double)(p.t1 - p.t0);
	out->pause_cpu = (double)p.cpu;
	out->pause_sig = (double)p.sig;
	if (!b_counters_still(c->h, c->n, r->snap, r->tmp)) {
		out->failed = true;
		b_progress("  %s: a vCPU still runs guest code after pause returned\n",
			   phase);
	}

	/* resume (r->snap holds the paused counters) */
	s0 = im->signals(c);
	cs0 = ivcsw(RUSAGE_SELF);
	ts0 = ivcsw(RUSAGE_THREAD);
	c0 = b_thread_cpu_ns();
	t0 = b_now();
	im->resume(c);
	tc = b_now();
	c1 = b_thread_cpu_ns();
	out->call_ivcsw = ivcsw(RUSAGE_THREAD) - ts0;
	out->timed_out = !wait_running(r, t0);
	t1 = b_now();
	out->ivcsw = ivcsw(RUSAGE_SELF) - cs0;
	out->polls = r->polls;
	out->resume_call = (double)(tc - t0);
	out->wakes_done = (double)(atomic_load(&c->wakes_done) - t0);
	out->poll_rule = r->poll_rule;
	s1 = im->signals(c);
	out->resume = (double)(t1 - t0);
	out->resume_cpu = (double)(c1 - c0);
	out->resume_sig = (double)(s1 - s0);

	/* cycle */
	if (out->timed_out) {
		b_progress("  %s: not every vCPU ran guest code %.0f s after resume: kept as a lower bound, no cycle\n",
			   phase, (double)finish_cap_ns() / 1e9);
		out->cycle = NAN;
	} else {
		t0 = b_now();
		im->pause(c);
		tc = b_now();
		b_snap_counters(c->h, 0, c->n, r->snap);
		im->resume(c);
		out->cycle_wakes = (double)(atomic_load(&c->wakes_done) - tc);
		out->timed_out = !wait_running(r, t0);
		t1 = b_now();
		out->cycle = out->timed_out ? NAN : (double)(t1 - t0);
		out->cycle_pause = (double)(tc - t0);
	}

	b_phase("pause/resume: stopping the vCPU threads");
	im->pause(c);
	im->stop(c);
}

static void run_cfg(int ci, int rep)
{
	const struct pr_cfg *cfg = &g_pr_cfg[ci];
	struct pr_cell *cell = &g_pr[ci];
	unsigned int n = cfg->n, i, want = nr_samples(ci), k;
	uint64_t t_begin = b_now();
	struct bc_ctx c;
	struct pr_run r;
	struct h_vm h;

	b_phase("pause/resume: creating the VM");
	if (bc_ctx_init(&c, &h, n))
		b_die("pause/resume: no VM");
	r.c = &c;
	r.cfg = cfg;
	r.snap = calloc(n, sizeof(*r.snap));
	r.tmp = calloc(n, sizeof(*r.tmp));
	if (!r.snap || !r.tmp)
		b_die("out of memory");
	for (i = 0; cfg->mix && i < n; i++) {
		int e = h_set_prog(&h, i, mix_prog(cfg, i));

		if (e < 0)
			b_die("h_set_prog: %d", e);
	}
	for (k = 0; k < want; k++) {
		struct pr_sample s[PR_NIMPL];
		int j;

		if (k >= 1 && !g_opt.pause_samples &&
		    b_now() - t_begin > cfg_budget_ns())
			break;
		if (cell->ns >= PR_MAX_SAMPLES)
			break;
		memset(s, 0, sizeof(s));
		r.poll_rule = g_opt.finish_poll != PR_POLL_ALT ? g_opt.finish_poll :
			      (k + (unsigned int)rep) % 2 ? PR_POLL_FIXED :
							     PR_POLL_SCALED;
		/* Rotate the order from sample to sample (and repeat). */
		for (j = 0; j < PR_NIMPL; j++) {
			int ii = (int)((j + k + (unsigned int)rep) % PR_NIMPL);

			if (g_opt.pause_impls &&
			    !(g_opt.pause_impls & (1u << ii))) {
				s[ii].pause = s[ii].resume = s[ii].cycle = NAN;
				cell->skipped[ii] = true;
				continue;
			}
			run_one(ii, &r, &s[ii]);
			if (s[ii].failed)
				cell->failures[ii]++;
		}
		for (j = 0; j < PR_NIMPL; j++)
			cell->s[j][cell->ns] = s[j];
		cell->ns++;
		b_progress("  N=%u%s sample %u (%s poll): resume ms", n,
			   cfg->mix ? " mix" : "", k,
			   r.poll_rule == PR_POLL_FIXED ? "fixed" : "scaled");
		for (j = 0; j < PR_NIMPL; j++)
			b_progress(" %.1f", s[j].resume / 1e6);
		b_progress("\n");
	}
	cell->ran = true;
	b_progress("  N=%-4u%s %u samples in %.1f s; pause p50 (us):", n,
		   cfg->mix ? " mix" : "    ", k,
		   (double)(b_now() - t_begin) / 1e9);
	for (i = 0; i < PR_NIMPL; i++) {
		struct samples t = { 0 };

		for (k = 0; k < cell->ns; k++)
			samples_add(&t, cell->s[i][k].pause);
		b_progress(" %.0f", samples_pct(&t, 50) / 1e3);
		samples_free(&t);
	}
	b_progress("\n");
	free(r.snap);
	free(r.tmp);
	bc_ctx_free(&c);
}

int part_pause(int rep)
{
	int ci;

	for (ci = 0; ci < PR_NCFG; ci++) {
		if (g_pr_cfg[ci].n > g_opt.max_n || !nr_samples(ci) ||
		    (g_opt.pause_cfgs && !(g_opt.pause_cfgs & (1u << ci))))
			continue;
		/* From N = 256 on one sample takes minutes (the peers'
		 * resume chains through a lock, every woken thread waiting
		 * for a CPU behind hundreds of vCPUs in the guest): those
		 * run in the first repeat only. */
		if (g_pr_cfg[ci].n >= 256 && rep > 0 && !g_opt.pause_samples)
			continue;
		run_cfg(ci, rep);
	}
	return 0;
}
