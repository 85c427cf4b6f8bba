/* SPDX-License-Identifier: MIT */
/* The Markdown report, the data files and the plot. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* ---- formatting ---- */
static const char *fmt_t(char *buf, size_t sz, double ns)
{
	if (isnan(ns))
		snprintf(buf, sz, "n/a");
	else if (ns < 1000)
		snprintf(buf, sz, "%.0f ns", ns);
	else if (ns < 1e6)
		snprintf(buf, sz, "%.1f µs", ns / 1e3);
	else
		snprintf(buf, sz, "%.2f ms", ns / 1e6);
	return buf;
}

static const char *fmt_spread(char *buf, size_t sz, const double *v, int n)
{
	char a[32], b[32];
	double lo = NAN, hi = NAN;
	int i;

	for (i = 0; i < n; i++) {
		if (i == 0 || v[i] < lo)
			lo = v[i];
		if (i == 0 || v[i] > hi)
			hi = v[i];
	}
	if (n <= 1)
		snprintf(buf, sz, "(1 run)");
	else
		snprintf(buf, sz, "%s – %s", fmt_t(a, sizeof(a), lo),
			 fmt_t(b, sizeof(b), hi));
	return buf;
}

static const char *fmt_ratio(char *buf, size_t sz, double r)
{
	if (isnan(r) || isinf(r))
		snprintf(buf, sz, "n/a");
	else
		snprintf(buf, sz, "%.2f×", r);
	return buf;
}

void report_impls(FILE *f, int n, const char *(*name)(int),
		  const char *(*source)(int))
{
	int i;

	for (i = 0; i < n; i++)
		fprintf(f, "- **%s**: %s%s\n", name(i), source(i),
			i ? " (re-implemented in bench/peers/)" : "");
}

static double p50(int fig)
{
	return figure_pct(&g_fig[fig], 50);
}

static const char *yesno(bool met)
{
	return met ? "**met**" : "**missed**";
}

static void machine(FILE *f)
{
	char model[256] = "unknown", line[512];
	const char *kvm = "unknown";
	struct utsname u;
	FILE *c = fopen("/proc/cpuinfo", "r");
	struct stat st;

	if (c) {
		while (fgets(line, sizeof(line), c))
			if (!strncmp(line, "model name", 10)) {
				char *p = strchr(line, ':');

				if (p) {
					snprintf(model, sizeof(model), "%s", p + 2);
					model[strcspn(model, "\n")] = '\0';
				}
				break;
			}
		fclose(c);
	}
	if (!stat("/sys/module/kvm_pvm", &st))
		kvm = "kvm_pvm (software virtualization, nested)";
	else if (!stat("/sys/module/kvm_intel", &st))
		kvm = "kvm_intel";
	else if (!stat("/sys/module/kvm_amd", &st))
		kvm = "kvm_amd";
	uname(&u);
	fprintf(f, "Machine: %ld CPUs (%s), Linux %s, KVM module %s.\n",
		sysconf(_SC_NPROCESSORS_ONLN), model, u.release, kvm);
}

/* ---- broadcast helpers ---- */
static int bc_best_peer(int ni)
{
	double best = INFINITY;
	int i, bi = -1;

	for (i = 1; i < B_NIMPL; i++) {
		double v;

		if (!g_bc[i][ni].ran)
			continue;
		v = samples_pct(&g_bc[i][ni].lat, 50);
		if (v < best) {
			best = v;
			bi = i;
		}
	}
	return bi;
}

/* Percentile @p of the paired ratios vcpureq / peer @pi at N index @ni
 * (iteration k of each, interleaved). */
static double bc_ratio_pct(int ni, int pi, double p)
{
	const struct samples *a = &g_bc[0][ni].seq, *b = &g_bc[pi][ni].seq;
	struct samples t = { 0 };
	double v;
	size_t k;

	for (k = 0; k < a->n && k < b->n; k++)
		if (b->v[k] > 0)
			samples_add(&t, a->v[k] / b->v[k]);
	v = samples_pct(&t, p);
	samples_free(&t);
	return v;
}

static double bc_min_peer_signals(int ni)
{
	double m = INFINITY;
	int i;

	for (i = 1; i < B_NIMPL; i++)
		if (g_bc[i][ni].ran && samples_mean(&g_bc[i][ni].sig) < m)
			m = samples_mean(&g_bc[i][ni].sig);
	return m;
}

static double min_of(struct samples *s)
{
	return samples_pct(s, 0);
}

static double max_of(struct samples *s)
{
	return samples_pct(s, 100);
}

static char plot_note[512] = "Plot: not drawn (no --out directory).";

/* ---- the report ---- */
struct target {
	const char *what;
	char value[160];
	bool met, known;
};

/* A summary row of a latency figure against its floor, with a ratio
 * target; adds the target to *t. */
static void floor_row(FILE *f, const char *title, int fig, const char *floor,
		      int floor_fig, double target, const char *what,
		      struct target *t)
{
	char a[32], b[32], c[32], d[64], e[32];
	double r = p50(fig) / p50(floor_fig);

	fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %.2f× | ≤ %g× | %s |\n",
		title, fmt_t(a, 32, p50(fig)),
		fmt_t(b, 32, figure_pct(&g_fig[fig], 90)),
		fmt_t(c, 32, figure_pct(&g_fig[fig], 99)),
		fmt_spread(d, 64, g_fig[fig].rep_p50, g_fig[fig].nrep), floor,
		fmt_t(e, 32, p50(floor_fig)), r, target, yesno(r <= target));
	t->what = what;
	snprintf(t->value, sizeof(t->value), "%.2f× (%s vs %s)", r,
		 fmt_t(a, 32, p50(fig)), fmt_t(b, 32, p50(floor_fig)));
	t->met = r <= target;
	t->known = true;
}

void report_write(FILE *f, double seconds)
{
	static const int floors[] = { FIG_SIG, FIG_SIG_DRAIN, FIG_IO, FIG_FUTEX,
				      FIG_CACHE };
	struct target tg[32];
	char a[32], b[32], c[32], d[64], e[32], r1[32];
	int nt = 0, i, ni;

	memset(tg, 0, sizeof(tg));
	fprintf(f, "# vcpureq benchmark report\n\n");
	machine(f);
	fprintf(f, "Run: %s, %d repeat(s), %.0f s. Latencies are p50 / p90 / p99 over all samples of all repeats; "
		   "\"spread\" is the lowest and highest per-repeat p50.\n",
		g_opt.quick ? "--quick" : "full", g_opt.reps, seconds);
	{
		double foreign, cap;

		b_load_end(&foreign, &cap);
		fprintf(f, "Other processes used %.1f CPU-seconds during the run (%.1f%% of the machine)%s.\n\n",
			foreign, cap > 0 ? 100 * foreign / cap : 0,
			cap > 0 && foreign / cap > 0.05 ?
				": the machine was not quiet, expect noisier figures" : "");
	}

	/* Summary. */
	fprintf(f, "## Summary: each figure against its floor\n\n");
	fprintf(f, "| Figure | p50 | p90 | p99 | spread of p50 | Floor (same run) | Floor p50 | Ratio to floor | Target | Result |\n");
	fprintf(f, "|---|---|---|---|---|---|---|---|---|---|\n");
	if (g_fig[FIG_KICK].all.n && g_fig[FIG_SIG].all.n)
		floor_row(f, "Request + kick → handler running (vCPU spinning in the guest)",
			  FIG_KICK, "raw signal → KVM_RUN -EINTR", FIG_SIG, 1.05,
			  "kick latency p50 ≤ 1.05× raw signal floor", &tg[nt++]);
	if (g_fig[FIG_ENTRY].all.n && g_fig[FIG_IO].all.n) {
		double ov = figure_pct(&g_fig[FIG_ENTRY_RATIO], 50) - 1;

		fprintf(f, "| Guest entry: I/O-exit loop through vcpureq_vcpu_run() | %s | %s | %s | %s | raw KVM_RUN I/O-exit loop | %s | %+.2f%% (paired) | ≤ +2%% | %s |\n",
			fmt_t(a, 32, p50(FIG_ENTRY)), fmt_t(b, 32, figure_pct(&g_fig[FIG_ENTRY], 90)),
			fmt_t(c, 32, figure_pct(&g_fig[FIG_ENTRY], 99)),
			fmt_spread(d, 64, g_fig[FIG_ENTRY].rep_p50, g_fig[FIG_ENTRY].nrep),
			fmt_t(e, 32, p50(FIG_IO)), ov * 100, yesno(ov <= 0.02));
		tg[nt].what = "guest-entry overhead ≤ 2% over the raw loop";
		snprintf(tg[nt].value, sizeof(tg[nt].value),
			 "%+.2f%% (median of per-batch-pair ratios; p50 %s vs %s)", ov * 100,
			 fmt_t(a, 32, p50(FIG_ENTRY)), fmt_t(b, 32, p50(FIG_IO)));
		tg[nt].met = ov <= 0.02;
		tg[nt++].known = true;
	}
	for (i = 0; i < 2; i++) {
		int fig = i ? FIG_OUT_IDLE : FIG_OUT_BUSY;
		struct outside_evidence *ev = &g_outside[i];
		bool zero;

		if (!g_fig[fig].all.n)
			continue;
		zero = ev->signals_sent == 0 && ev->wakeups == 0 &&
		       (ev->syscalls <= 0);
		fprintf(f, "| Request to an awake vCPU outside guest mode, %s (ns per make + kick) | %s | %s | %s | %s | cache-line round trip | %s | %s | ≤ 100 ns, 0 syscalls | %s |\n",
			i ? "vCPU busy elsewhere" : "vCPU polling its requests",
			fmt_t(a, 32, p50(fig)), fmt_t(b, 32, figure_pct(&g_fig[fig], 90)),
			fmt_t(c, 32, figure_pct(&g_fig[fig], 99)),
			fmt_spread(d, 64, g_fig[fig].rep_p50, g_fig[fig].nrep),
			fmt_t(e, 32, p50(FIG_CACHE)),
			fmt_ratio(r1, sizeof(r1), p50(fig) / p50(FIG_CACHE)),
			yesno(p50(fig) <= 100 && zero));
		tg[nt].what = i ? "request to an awake vCPU outside guest mode ≤ 100 ns, zero syscalls (vCPU busy elsewhere)" :
				  "request to an awake vCPU outside guest mode ≤ 100 ns, zero syscalls (vCPU polling)";
		snprintf(tg[nt].value, sizeof(tg[nt].value),
			 "%s per request; signals %llu, wake-ups %llu, syscalls %s",
			 fmt_t(a, 32, p50(fig)), (unsigned long long)ev->signals_sent,
			 (unsigned long long)ev->wakeups,
			 ev->syscalls < 0 ? "not counted in-process (see run.sh)" : "counted");
		if (ev->syscalls >= 0) {
			size_t l = strlen(tg[nt].value);

			snprintf(tg[nt].value + l, sizeof(tg[nt].value) - l, ": %lld", ev->syscalls);
		}
		tg[nt].met = p50(fig) <= 100 && zero;
		tg[nt++].known = true;
	}
	if (g_fig[FIG_OUT_REQ1].all.n)
		fprintf(f, "| (information) the same, vCPU busy elsewhere, with the one-call vcpureq_request() | %s | %s | %s | %s | cache-line round trip | %s | %s | — | — |\n",
			fmt_t(a, 32, p50(FIG_OUT_REQ1)), fmt_t(b, 32, figure_pct(&g_fig[FIG_OUT_REQ1], 90)),
			fmt_t(c, 32, figure_pct(&g_fig[FIG_OUT_REQ1], 99)),
			fmt_spread(d, 64, g_fig[FIG_OUT_REQ1].rep_p50, g_fig[FIG_OUT_REQ1].nrep),
			fmt_t(e, 32, p50(FIG_CACHE)),
			fmt_ratio(r1, sizeof(r1), p50(FIG_OUT_REQ1) / p50(FIG_CACHE)));
	if (g_fig[FIG_WAKE].all.n && g_fig[FIG_FUTEX].all.n)
		floor_row(f, "Wake: request → vcpureq_vcpu_block() returns",
			  FIG_WAKE, "raw futex wake → woken thread running",
			  FIG_FUTEX, 1.2, "wake latency p50 ≤ 1.2× raw futex floor",
			  &tg[nt++]);
	for (ni = 0; ni < B_NN; ni++) {
		struct bc_cell *v = &g_bc[0][ni];
		int bp = bc_best_peer(ni);
		double vp, pp, vs, ps;

		if (!v->ran || bp < 0)
			continue;
		vp = samples_pct(&v->lat, 50);
		pp = samples_pct(&g_bc[bp][ni].lat, 50);
		vs = samples_mean(&v->sig);
		ps = bc_min_peer_signals(ni);
		fprintf(f, "| Broadcast WAIT acknowledgement vs the peers' pause, N = %u (signals/pause: %.1f, fewest of any peer %.1f) | %s | %s | %s | %s | best peer: %s | %s | %.2f× the best peer (paired-ratio median, p25–p75 %.2f–%.2f) | ≤ best peer, signals ≤ every peer | %s |\n",
			g_n_values[ni], vs, ps, fmt_t(a, 32, vp),
			fmt_t(b, 32, samples_pct(&v->lat, 90)), fmt_t(c, 32, samples_pct(&v->lat, 99)),
			fmt_spread(d, 64, v->rep_p50, v->nrep), bc_impl_name(bp),
			fmt_t(e, 32, pp), bc_ratio_pct(ni, bp, 50),
			bc_ratio_pct(ni, bp, 25), bc_ratio_pct(ni, bp, 75),
			yesno(bc_ratio_pct(ni, bp, 50) <= 1 && vs <= ps));
	}
	fprintf(f, "\n");

	/* Floors. */
	kickab_report(f);
	trace_report(f);
	fprintf(f, "## Floors (measured in this run)\n\n");
	fprintf(f, "| Floor | p50 | p90 | p99 | spread of p50 | samples |\n|---|---|---|---|---|---|\n");
	for (i = 0; i < (int)(sizeof(floors) / sizeof(floors[0])); i++) {
		struct figure *fg = &g_fig[floors[i]];

		if (!fg->all.n)
			continue;
		fprintf(f, "| %s%s | %s | %s | %s | %s | %zu |\n", fg->title,
			floors[i] == FIG_SIG_DRAIN ? " (information)" : "",
			fmt_t(a, 32, figure_pct(fg, 50)), fmt_t(b, 32, figure_pct(fg, 90)),
			fmt_t(c, 32, figure_pct(fg, 99)),
			fmt_spread(d, 64, fg->rep_p50, fg->nrep), fg->all.n);
	}
	fprintf(f, "\n");

	/* Outside guest mode. */
	if (g_outside[0].requests || g_outside[1].requests) {
		fprintf(f, "## Requests to an awake vCPU outside guest mode: the system-call evidence\n\n");
		fprintf(f, "Requester loop of vcpureq_make_request() + vcpureq_vcpu_kick(), last repeat. "
			   "Counters are the library's; system time and context switches are the requester thread's getrusage(RUSAGE_THREAD).\n\n");
		fprintf(f, "| vCPU thread | requests | kicks | signals_sent | wakeups | requester system time | voluntary / involuntary context switches | syscalls |\n");
		fprintf(f, "|---|---|---|---|---|---|---|---|\n");
		for (i = 0; i < 2; i++) {
			struct outside_evidence *ev = &g_outside[i];

			if (!ev->requests)
				continue;
			char sc[64] = "";

			if (ev->syscalls >= 0)
				snprintf(sc, sizeof(sc), ": %lld", ev->syscalls);
			fprintf(f, "| %s | %lu | %llu | %llu | %llu | %.1f ms | %ld / %ld | %s%s |\n",
				i ? "busy elsewhere" : "polling its requests", ev->requests,
				(unsigned long long)ev->kicks,
				(unsigned long long)ev->signals_sent,
				(unsigned long long)ev->wakeups, ev->stime_ms, ev->vcsw,
				ev->ivcsw, ev->syscall_method, sc);
		}
		fprintf(f, "\n");
	}

	/* K requesters. */
	if (g_kreq_reps) {
		int k, r;

		fprintf(f, "## K requester threads, one vCPU spinning in the guest\n\n");
		fprintf(f, "Each requester makes R requests, each with a kick (vcpureq_make_request() + vcpureq_vcpu_kick()), no pause between them. "
			   "Counters summed over %d repeat(s); a peer that signals on every kick would send one signal per kick.\n\n",
			g_kreq_reps);
		fprintf(f, "| K | R each | requests_made | kicks | signals_sent | signals_coalesced | handled | guest entries | kicked exits | spurious exits | signals per kick | signals per repeat | wall time per request (all K threads) |\n");
		fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
		for (k = 0; k < B_NK; k++) {
			struct kreq_result t;
			char per[128] = "";

			memset(&t, 0, sizeof(t));
			for (r = 0; r < g_kreq_reps; r++) {
				struct kreq_result *x = &g_kreq[r][k];
				size_t l = strlen(per);

				t.k = x->k;
				t.r = x->r;
				t.requests_made += x->requests_made;
				t.kicks += x->kicks;
				t.signals_sent += x->signals_sent;
				t.signals_coalesced += x->signals_coalesced;
				t.handled += x->handled;
				t.entries += x->entries;
				t.kicked_exits += x->kicked_exits;
				t.spurious_exits += x->spurious_exits;
				t.ms += x->ms;
				snprintf(per + l, sizeof(per) - l, "%s%llu", r ? " / " : "",
					 (unsigned long long)x->signals_sent);
			}
			fprintf(f, "| %u | %u | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %.4f | %s | %s |\n",
				t.k, t.r, (unsigned long long)t.requests_made,
				(unsigned long long)t.kicks, (unsigned long long)t.signals_sent,
				(unsigned long long)t.signals_coalesced,
				(unsigned long long)t.handled, (unsigned long long)t.entries,
				(unsigned long long)t.kicked_exits,
				(unsigned long long)t.spurious_exits,
				t.kicks ? (double)t.signals_sent / (double)t.kicks : 0.0, per,
				fmt_t(a, 32, t.requests_made ? t.ms * 1e6 / (double)t.requests_made : NAN));
		}
		fprintf(f, "\n");
	}

	/* Broadcast. */
	if (g_bc[0][0].ran || g_bc[1][0].ran) {
		fprintf(f, "## Broadcast WAIT: N vCPUs spinning in the guest, oversubscribed on the cores\n\n");
		fprintf(f, "Job: every vCPU leaves guest mode and acknowledges, and stays out (the peers' pause). "
			   "Each iteration starts the N vCPU threads, waits until every one has run guest code, then times one pause "
			   "from the call to its return; signals and requester CPU time (getrusage RUSAGE_THREAD) are per pause. "
			   "Not one finish line: vcpureq's WAIT returns at each vCPU's exit-epoch bump, before its handler has parked the vCPU, "
			   "while every peer returns once all are parked (a bias in vcpureq's favour; the pause/resume section compares vcpureq_pause(), which returns at parked). "
			   "The four are interleaved iteration by iteration; \"paired\" is the median (p25–p75) of the per-iteration ratios vcpureq / peer. "
			   "Implementations:\n\n");
		report_impls(f, B_NIMPL, bc_impl_name, bc_impl_source);
		fprintf(f, "\n| N | implementation | p50 | p90 | p99 | spread of p50 | signals/pause mean (min–max) | requester CPU/pause | iterations | p50 / best peer | vcpureq / this peer, paired |\n");
		fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|\n");
		for (ni = 0; ni < B_NN; ni++) {
			int bp = bc_best_peer(ni);
			double best = bp >= 0 ? samples_pct(&g_bc[bp][ni].lat, 50) : NAN;

			for (i = 0; i < B_NIMPL; i++) {
				struct bc_cell *cl = &g_bc[i][ni];
				double lp;

				if (!cl->ran)
					continue;
				lp = samples_pct(&cl->lat, 50);
				char pr[64] = "—";

				if (i)
					snprintf(pr, sizeof(pr), "%.2f× (%.2f–%.2f)",
						 bc_ratio_pct(ni, i, 50), bc_ratio_pct(ni, i, 25),
						 bc_ratio_pct(ni, i, 75));
				fprintf(f, "| %u | %s%s | %s | %s | %s | %s | %.1f (%.0f–%.0f) | %s | %lu | %.2f× | %s |\n",
					g_n_values[ni], bc_impl_name(i),
					cl->failures ? " (FAILED to stop every vCPU)" : "",
					fmt_t(a, 32, lp), fmt_t(b, 32, samples_pct(&cl->lat, 90)),
					fmt_t(c, 32, samples_pct(&cl->lat, 99)),
					fmt_spread(d, 64, cl->rep_p50, cl->nrep),
					samples_mean(&cl->sig), min_of(&cl->sig), max_of(&cl->sig),
					fmt_t(e, 32, samples_mean(&cl->cpu)), cl->iters, lp / best, pr);
			}
		}
		fprintf(f, "\n");
		for (ni = 0; ni < B_NN; ni++) {
			struct bc_cell *v = &g_bc[0][ni];
			int bp = bc_best_peer(ni);
			double vp, pp, vs, ps;

			if (!v->ran || bp < 0 || nt >= 30)
				continue;
			vp = samples_pct(&v->lat, 50);
			pp = samples_pct(&g_bc[bp][ni].lat, 50);
			vs = samples_mean(&v->sig);
			ps = bc_min_peer_signals(ni);
			tg[nt].what = "broadcast WAIT acknowledgement (not parked) vs the peers' pause: signals ≤ every peer's, latency ≤ the best peer's";
			snprintf(tg[nt].value, sizeof(tg[nt].value),
				 "N = %u: %s vs %s (%s), paired %.2f× (p25–p75 %.2f–%.2f); signals %.1f vs fewest %.1f",
				 g_n_values[ni], fmt_t(a, 32, vp), fmt_t(b, 32, pp),
				 bc_impl_name(bp), bc_ratio_pct(ni, bp, 50),
				 bc_ratio_pct(ni, bp, 25), bc_ratio_pct(ni, bp, 75), vs, ps);
			tg[nt].met = bc_ratio_pct(ni, bp, 50) <= 1 && vs <= ps;
			tg[nt++].known = true;
		}
	}

	if (g_bc[0][0].ran || g_bc[1][0].ran)
		fprintf(f, "%s\n\n", plot_note);

	pause_report(f);

	/* Targets. */
	fprintf(f, "## Targets (reported, not asserted)\n\n");
	for (i = 0; i < nt; i++)
		fprintf(f, "- %s: %s — %s\n", tg[i].what, yesno(tg[i].met), tg[i].value);
	if (!nt)
		fprintf(f, "- (no target measured in this run)\n");
	fprintf(f, "\n");
}

/* ---- files ---- */
static int write_plot(const char *dir)
{
	char path[4096], cmd[8192];
	FILE *gp;
	int i, st;

	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		snprintf(plot_note, sizeof(plot_note),
			 "Plot skipped: gnuplot is not installed (apt-get install -y gnuplot-nox); the data is in %s/broadcast.dat.",
			 dir);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/broadcast.gp", dir);
	gp = fopen(path, "w");
	if (!gp)
		return -1;
	fprintf(gp, "# Generated by vcpureq-bench: broadcast latency and signals against N.\n");
	fprintf(gp, "set datafile separator whitespace\n");
	fprintf(gp, "set termoption noenhanced\n");
	fprintf(gp, "set logscale x 2\nset logscale y\nset grid\nset key top left\n");
	fprintf(gp, "set xlabel 'N (vCPUs spinning in the guest, 2 cores)'\n");
	fprintf(gp, "set multiplot layout 1,2 title 'Broadcast WAIT (pause every vCPU): vcpureq vs peers'\n");
	fprintf(gp, "set ylabel 'latency p50 (ms)'\n");
	fprintf(gp, "plot ");
	for (i = 0; i < B_NIMPL; i++)
		fprintf(gp, "%s'broadcast.dat' using 1:%d with linespoints lw 2 title '%s'",
			i ? ", " : "", 2 + i * 2, bc_impl_name(i));
	fprintf(gp, "\nset ylabel 'signals per pause (mean)'\n");
	fprintf(gp, "set title 'vcpureq, cloud-hypervisor and kvmtool overlap (one signal per vCPU)'\n");
	fprintf(gp, "plot ");
	for (i = 0; i < B_NIMPL; i++)
		fprintf(gp, "%s'broadcast.dat' using 1:%d with linespoints lw 2 title '%s'",
			i ? ", " : "", 3 + i * 2, bc_impl_name(i));
	fprintf(gp, "\nunset multiplot\n");
	fclose(gp);
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && gnuplot -e \"set terminal pngcairo size 1400,560; set output 'broadcast.png'\" broadcast.gp >gnuplot.log 2>&1 || "
		 "gnuplot -e \"set terminal png size 1400,560; set output 'broadcast.png'\" broadcast.gp >>gnuplot.log 2>&1 || "
		 "gnuplot -e \"set terminal svg size 1400,560; set output 'broadcast.svg'\" broadcast.gp >>gnuplot.log 2>&1",
		 dir);
	st = system(cmd);
	if (st != 0) {
		snprintf(plot_note, sizeof(plot_note),
			 "Plot skipped: gnuplot failed (see %s/gnuplot.log); the data is in %s/broadcast.dat.",
			 dir, dir);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/broadcast.png", dir);
	snprintf(plot_note, sizeof(plot_note),
		 "Plot of broadcast latency and signals against N: %s/%s (data: broadcast.dat).",
		 dir, access(path, F_OK) == 0 ? "broadcast.png" : "broadcast.svg");
	return 0;
}

int report_files(const char *dir, double seconds)
{
	char path[4096];
	FILE *f;
	int i, ni;

	if (mkdir(dir, 0755) < 0 && access(dir, W_OK) < 0) {
		fprintf(stderr, "vcpureq-bench: cannot create %s\n", dir);
		return -1;
	}
	for (i = 0; i < FIG_NR; i++)
		figure_dump(&g_fig[i], dir);

	snprintf(path, sizeof(path), "%s/summary.csv", dir);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "key,title,samples,p50_ns,p90_ns,p99_ns,rep_p50_min_ns,rep_p50_max_ns\n");
		for (i = 0; i < FIG_NR; i++) {
			struct figure *fg = &g_fig[i];
			double lo, hi;

			if (!fg->all.n)
				continue;
			figure_spread(fg, &lo, &hi);
			fprintf(f, "%s,\"%s\",%zu,%.1f,%.1f,%.1f,%.1f,%.1f\n", fg->key,
				fg->title, fg->all.n, figure_pct(fg, 50),
				figure_pct(fg, 90), figure_pct(fg, 99), lo, hi);
		}
		fclose(f);
	}

	snprintf(path, sizeof(path), "%s/broadcast.dat", dir);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "# N");
		for (i = 0; i < B_NIMPL; i++)
			fprintf(f, "  p50_ms[%d] signals[%d]", i, i);
		fprintf(f, "\n# implementations:");
		for (i = 0; i < B_NIMPL; i++)
			fprintf(f, " [%d] %s;", i, bc_impl_name(i));
		fprintf(f, "\n");
		for (ni = 0; ni < B_NN; ni++) {
			bool any = false;

			for (i = 0; i < B_NIMPL; i++)
				any |= g_bc[i][ni].ran;
			if (!any)
				continue;
			fprintf(f, "%u", g_n_values[ni]);
			for (i = 0; i < B_NIMPL; i++) {
				struct bc_cell *cl = &g_bc[i][ni];

				if (cl->ran)
					fprintf(f, " %.4f %.2f", samples_pct(&cl->lat, 50) / 1e6,
						samples_mean(&cl->sig));
				else
					fprintf(f, " NaN NaN");
			}
			fprintf(f, "\n");
		}
		fclose(f);
	}

	snprintf(path, sizeof(path), "%s/broadcast-samples.csv", dir);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "implementation,N,latency_ns,signals,requester_cpu_ns\n");
		for (ni = 0; ni < B_NN; ni++)
			for (i = 0; i < B_NIMPL; i++) {
				struct bc_cell *cl = &g_bc[i][ni];
				size_t k;

				/* The latency samples were sorted by the
				 * percentile code; signals and CPU too: the
				 * columns are each sorted, not paired. */
				for (k = 0; k < cl->lat.n; k++)
					fprintf(f, "\"%s\",%u,%.0f,%.0f,%.0f\n",
						bc_impl_name(i), g_n_values[ni], cl->lat.v[k],
						k < cl->sig.n ? cl->sig.v[k] : NAN,
						k < cl->cpu.n ? cl->cpu.v[k] : NAN);
			}
		fclose(f);
	}

	snprintf(path, sizeof(path), "%s/requesters.csv", dir);
	f = fopen(path, "w");
	if (f) {
		int r, k;

		fprintf(f, "repeat,K,R,requests_made,kicks,signals_sent,signals_coalesced,handled,entries,kicked_exits,spurious_exits,ms\n");
		for (r = 0; r < g_kreq_reps; r++)
			for (k = 0; k < B_NK; k++) {
				struct kreq_result *x = &g_kreq[r][k];

				fprintf(f, "%d,%u,%u,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.3f\n",
					r + 1, x->k, x->r,
					(unsigned long long)x->requests_made,
					(unsigned long long)x->kicks,
					(unsigned long long)x->signals_sent,
					(unsigned long long)x->signals_coalesced,
					(unsigned long long)x->handled,
					(unsigned long long)x->entries,
					(unsigned long long)x->kicked_exits,
					(unsigned long long)x->spurious_exits, x->ms);
			}
		fclose(f);
	}
	if (g_bc[0][0].ran || g_bc[1][0].ran)
		write_plot(dir);
	if (pause_files(dir) < 0)
		return -1;

	snprintf(path, sizeof(path), "%s/report.md", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	report_write(f, seconds);
	fclose(f);
	return 0;
}
