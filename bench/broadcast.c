/* SPDX-License-Identifier: MIT */
/*
 * Broadcast WAIT: make every one of N vCPUs spinning in the guest leave
 * guest mode and acknowledge, for N = 1 ... 1024 (oversubscribed: two
 * cores), with the library and with each peer's algorithm on the same VM,
 * the same guest and the same vCPU fds.
 *
 * The job is the peers' "pause": the requester returns once every vCPU has
 * left guest mode and acknowledged, and the vCPUs stay out.  The library
 * does it with one WAIT request (B_REQ_PAUSE) made of every vCPU with
 * vcpureq_make_all_cpus_request(); its handler parks the vCPU, and the
 * requester then waits until every handler has parked (vr_wait_parked()):
 * the finish line each peer has, every vCPU parked.  (The WAIT alone
 * returns at each vCPU's exit-epoch bump, before its handler has parked
 * it: up to tens of µs earlier, a bias this part once had in vcpureq's
 * favour.)  The pause/resume part (pause.c) compares vcpureq_pause(),
 * which returns at parked, with the same peers.  Each iteration
 * (run_iter()): start the vCPU threads, wait until every one has run
 * guest code (all spinning in the guest), time the pause, count the
 * signals it sent and the requester's CPU time (getrusage RUSAGE_THREAD),
 * check that no guest counter moves any more, stop.  The implementations
 * are interleaved iteration by iteration (run_n()).
 */
#include <stdlib.h>
#include <string.h>

#include "peers/peers.h"

const unsigned int g_n_values[B_NN] = { 1, 4, 16, 64, 256, 1024 };
struct bc_cell g_bc[B_NIMPL][B_NN];

/* ---- the library ---- */
static void vq_start(struct bc_ctx *c)
{
	vr_start(c->h, c->recs, 0, c->n);
}

static void vq_pause(struct bc_ctx *c)
{
	int r;

	vr_pause_arm(c->n);
	r = vcpureq_make_all_cpus_request(c->h->vm, B_REQ_PAUSE);
	if (r < 0)
		b_die("vcpureq_make_all_cpus_request: %d", r);
	/* The peers' finish line: every vCPU parked, not only past its
	 * acknowledgement (the WAIT returns at each exit-epoch bump,
	 * before the handler has parked the vCPU). */
	vr_wait_parked();
}

static void vq_stop(struct bc_ctx *c)
{
	vr_stop(c->h, c->recs, 0, c->n, true);
}

static const struct bc_impl bc_vcpureq = {
	.name = "vcpureq",
	.source = "vcpureq_make_all_cpus_request() of a WAIT request whose handler parks the vCPU, then a futex wait until every handler has parked (the peers' finish line)",
	.start = vq_start,
	.pause = vq_pause,
	.stop = vq_stop,
	.signals = vq_lib_signals,
};

static const struct bc_impl *const impls[B_NIMPL] = {
	&bc_vcpureq, &bc_qemu, &bc_cloud_hypervisor, &bc_kvmtool,
};

const char *bc_impl_name(int i)
{
	return impls[i]->name;
}

const char *bc_impl_source(int i)
{
	return impls[i]->source;
}

/* ---- the driver ---- */
static unsigned int max_iters(unsigned int n)
{
	static const unsigned int full[B_NN] = { 30, 20, 15, 10, 4, 2 };
	static const unsigned int quick[B_NN] = { 5, 4, 3, 3, 2, 1 };
	double it = 0;
	int i;

	for (i = 0; i < B_NN; i++)
		if (g_n_values[i] == n)
			it = (double)(g_opt.quick ? quick[i] : full[i]);
	it *= g_opt.scale;
	return it < 1 ? 1 : (unsigned int)it;
}

/* Per N and repeat, for all four implementations together. */
static uint64_t budget_ns(void)
{
	return g_opt.quick ? 4000000000ull : 24000000000ull;
}

/*
 * One iteration of implementation @ii at N = c->n: start the N vCPU
 * threads afresh, wait until every one has run guest code (all spinning
 * in the guest), time one pause, check that every vCPU is out and stays
 * out, and stop the threads from the paused state.  Fresh threads instead
 * of resume: this part times the pause alone (the pause/resume part,
 * pause.c, times resume).  Returns the latency.
 */
static double run_iter(int ii, int ni, struct bc_ctx *c, uint32_t *snap,
		       uint32_t *tmp)
{
	const struct bc_impl *im = impls[ii];
	struct bc_cell *cell = &g_bc[ii][ni];
	struct bc_timed p;
	char phase[128];

	snprintf(phase, sizeof(phase), "broadcast: %s, N=%u", im->name, c->n);
	b_phase(phase);
	atomic_store(&c->signals, 0);
	b_snap_counters(c->h, 0, c->n, snap);
	im->start(c);
	if (!b_wait_progress(c->h, 0, c->n, snap, 300000000000ull))
		b_die("%s: vCPUs did not all run guest code within 300 s", phase);
	bc_time_pause(im, c, &p);
	if (!b_counters_still(c->h, c->n, snap, tmp)) {
		cell->failures++;
		b_progress("  %s: a vCPU still runs guest code after pause returned\n",
			   phase);
	}
	if (getenv("VCPUREQ_BENCH_TRACE") && ii == 0) {
		/* Development aid: when did each vCPU's handler see the
		 * request, relative to the call? */
		struct samples h = { 0 };
		unsigned int k;

		for (k = 0; k < c->n; k++)
			samples_add(&h, ((double)c->recs[k].pause_t -
					 (double)p.t0) / 1e3);
		fprintf(stderr, "  trace N=%u: returned at %+.0f us; handlers saw PAUSE at p10 %+.0f p50 %+.0f p90 %+.0f max %+.0f us\n",
			c->n, (double)(p.t1 - p.t0) / 1e3, samples_pct(&h, 10),
			samples_pct(&h, 50), samples_pct(&h, 90),
			samples_pct(&h, 100));
		samples_free(&h);
	}
	samples_add(&cell->lat, (double)(p.t1 - p.t0));
	samples_add(&cell->seq, (double)(p.t1 - p.t0));
	samples_add(&cell->sig, (double)p.sig);
	samples_add(&cell->cpu, (double)p.cpu);
	cell->iters++;
	b_phase("broadcast: stopping the vCPU threads");
	im->stop(c);
	return (double)(p.t1 - p.t0);
}

/*
 * All implementations at one N in one repeat, interleaved: iteration k
 * runs each of the four once, in an order rotated from iteration to
 * iteration (and repeat to repeat), so that the k-th samples of the four
 * are taken within moments of each other and their ratios are paired.
 */
static void run_n(int ni, struct bc_ctx *c, int rep)
{
	unsigned int iters = max_iters(c->n), it;
	uint32_t *snap = calloc(c->n, sizeof(*snap));
	uint32_t *tmp = calloc(c->n, sizeof(*tmp));
	struct samples rep_lat[B_NIMPL];
	uint64_t t_begin = b_now();
	int i;

	if (!snap || !tmp)
		b_die("out of memory");
	memset(rep_lat, 0, sizeof(rep_lat));
	for (it = 0; it < iters; it++) {
		if (it >= 1 && b_now() - t_begin > budget_ns())
			break;
		for (i = 0; i < B_NIMPL; i++) {
			int ii = (int)((i + it + (unsigned int)rep) % B_NIMPL);

			samples_add(&rep_lat[ii], run_iter(ii, ni, c, snap, tmp));
		}
	}
	for (i = 0; i < B_NIMPL; i++) {
		struct bc_cell *cell = &g_bc[i][ni];

		cell->ran = true;
		if (cell->nrep < B_MAX_REP && rep_lat[i].n)
			cell->rep_p50[cell->nrep++] = samples_pct(&rep_lat[i], 50);
		b_progress("  N=%-4u %-36s p50 %9.1f us  signals/pause %7.1f  (repeat %d: %u iterations)\n",
			   c->n, impls[i]->name, samples_pct(&rep_lat[i], 50) / 1e3,
			   samples_mean(&cell->sig), rep + 1, it);
		samples_free(&rep_lat[i]);
	}
	b_progress("  N=%-4u %u interleaved iterations in %.1f s\n", c->n, it,
		   (double)(b_now() - t_begin) / 1e9);
	free(snap);
	free(tmp);
}

int part_broadcast(int rep)
{
	int ni;

	for (ni = 0; ni < B_NN; ni++) {
		unsigned int n = g_n_values[ni];
		struct bc_ctx c;
		struct h_vm h;

		if (n > g_opt.max_n)
			break;
		b_phase("broadcast: creating the VM");
		if (bc_ctx_init(&c, &h, n))
			return H_SKIP;
		run_n(ni, &c, rep);
		bc_ctx_free(&c);
	}
	return 0;
}
