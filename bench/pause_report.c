/* SPDX-License-Identifier: MIT */
/*
 * The pause/resume section of the report: per configuration and quantity,
 * each implementation's median, and for each peer the median and p25-p75
 * of the per-sample ratios vcpureq / peer; the targets of issue 10,
 * reported (not asserted).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { Q_PAUSE, Q_RESUME, Q_CYCLE, Q_NR };
static const char *const q_title[Q_NR] = { "Pause", "Resume", "Pause + resume cycle" };

static double q_of(const struct pr_sample *s, int q)
{
	return q == Q_PAUSE ? s->pause : q == Q_RESUME ? s->resume : s->cycle;
}

/* Percentile @p of field @q of implementation @ii in cell @ci. */
static double impl_pct(int ci, int ii, int q, double p)
{
	struct samples t = { 0 };
	double v;
	unsigned int k;

	for (k = 0; k < g_pr[ci].ns; k++)
		if (!isnan(q_of(&g_pr[ci].s[ii][k], q)))
			samples_add(&t, q_of(&g_pr[ci].s[ii][k], q));
	v = samples_pct(&t, p);
	samples_free(&t);
	return v;
}

/* The per-sample counters impl_mean() averages. */
enum { M_PAUSE_SIG, M_PAUSE_CPU, M_RESUME_SIG, M_RESUME_CPU };

/* Mean of per-sample counter @which (M_*). */
static double impl_mean(int ci, int ii, int which)
{
	double sum = 0;
	unsigned int k;

	for (k = 0; k < g_pr[ci].ns; k++) {
		const struct pr_sample *s = &g_pr[ci].s[ii][k];

		sum += which == M_PAUSE_SIG ? s->pause_sig :
		       which == M_PAUSE_CPU ? s->pause_cpu :
		       which == M_RESUME_SIG ? s->resume_sig : s->resume_cpu;
	}
	return g_pr[ci].ns ? sum / g_pr[ci].ns : NAN;
}

/* Percentile @p of the per-sample ratios vcpureq / peer @pi. */
static double ratio_pct(int ci, int pi, int q, double p)
{
	struct samples t = { 0 };
	double v;
	unsigned int k;

	for (k = 0; k < g_pr[ci].ns; k++) {
		double a = q_of(&g_pr[ci].s[0][k], q);
		double b = q_of(&g_pr[ci].s[pi][k], q);

		if (b > 0 && !isnan(a))
			samples_add(&t, a / b);
	}
	v = samples_pct(&t, p);
	samples_free(&t);
	return v;
}

/* The peer with the lowest median of its own for quantity @q. */
static int best_peer(int ci, int q)
{
	double best = INFINITY;
	int i, bi = 1;

	for (i = 1; i < PR_NIMPL; i++) {
		double v = impl_pct(ci, i, q, 50);

		if (v < best) {
			best = v;
			bi = i;
		}
	}
	return bi;
}

/* Samples of implementation @ii in cell @ci whose resume timed out. */
static unsigned int timeouts(int ci, int ii)
{
	unsigned int k, n = 0;

	for (k = 0; k < g_pr[ci].ns; k++)
		n += g_pr[ci].s[ii][k].timed_out;
	return n;
}

static const char *fmt_ns(char *buf, size_t sz, double ns)
{
	if (isnan(ns))
		snprintf(buf, sz, "n/a");
	else if (ns < 1e6)
		snprintf(buf, sz, "%.1f µs", ns / 1e3);
	else
		snprintf(buf, sz, "%.2f ms", ns / 1e6);
	return buf;
}

/* The first word of implementation @i's name ("QEMU", "kvmtool"...). */
static const char *short_name(char *buf, size_t sz, int i)
{
	const char *s = pr_impl_name(i);

	snprintf(buf, sz, "%.*s", (int)strcspn(s, " "), s);
	return buf;
}

static const char *cfg_name(char *buf, size_t sz, int ci)
{
	if (g_pr_cfg[ci].mix)
		snprintf(buf, sz, "%u mixed (⅓ spin, ⅓ I/O, ⅓ halted)",
			 g_pr_cfg[ci].n);
	else
		snprintf(buf, sz, "%u", g_pr_cfg[ci].n);
	return buf;
}

/* The target of quantity @q at configuration @ci: the bound on the
 * paired-ratio median against the best peer, or 0 if none. */
static double target_of(int ci, int q)
{
	if (q == Q_PAUSE)
		return 1.0;
	return g_pr_cfg[ci].n >= 64 ? 0.5 : 0;
}

static void q_table(FILE *f, int q)
{
	char a[48], b[48];
	int ci, i;

	fprintf(f, "#### %s\n\n", q_title[q]);
	fprintf(f, "| N | samples |");
	for (i = 0; i < PR_NIMPL; i++)
		fprintf(f, " %s p50 |", i ? short_name(a, sizeof(a), i) : "vcpureq");
	for (i = 1; i < PR_NIMPL; i++)
		fprintf(f, " vcpureq / %s: median of paired ratios (p25–p75) |",
			short_name(a, sizeof(a), i));
	fprintf(f, " target vs best peer | result |\n|---|---|");
	for (i = 0; i < PR_NIMPL * 2 - 1 + 2; i++)
		fprintf(f, "---|");
	fprintf(f, "\n");
	for (ci = 0; ci < PR_NCFG; ci++) {
		int bp;
		double t, m;

		if (!g_pr[ci].ran || !g_pr[ci].ns)
			continue;
		fprintf(f, "| %s | %u |", cfg_name(a, sizeof(a), ci), g_pr[ci].ns);
		for (i = 0; i < PR_NIMPL; i++)
			if (g_pr[ci].skipped[i])
				fprintf(f, " not run |");
			else if (isnan(impl_pct(ci, i, q, 50)))
				fprintf(f, " not measured (resume not finished in time) |");
			else
				fprintf(f, " %s%s%s |",
				q != Q_PAUSE && timeouts(ci, i) ? "≥ " : "",
				fmt_ns(b, sizeof(b), impl_pct(ci, i, q, 50)),
				g_pr[ci].failures[i] ? " (FAILED to park every vCPU)" :
				q != Q_PAUSE && timeouts(ci, i) ?
				" (not every vCPU back in time: lower bound; cycle not measured)" : "");
		for (i = 1; i < PR_NIMPL; i++)
			if (isnan(ratio_pct(ci, i, q, 50)))
				fprintf(f, " n/a |");
			else
				fprintf(f, " %s%.2f× (%.2f–%.2f) |",
				q != Q_PAUSE && timeouts(ci, i) ? "≤ " : "",
				ratio_pct(ci, i, q, 50),
				ratio_pct(ci, i, q, 25), ratio_pct(ci, i, q, 75));
		bp = best_peer(ci, q);
		t = target_of(ci, q);
		m = ratio_pct(ci, bp, q, 50);
		if (t > 0)
			fprintf(f, " ≤ %.1f× %s | %s %.2f× |\n", t,
				short_name(a, sizeof(a), bp),
				m <= t ? "**met**" : "**missed**", m);
		else
			fprintf(f, " — | (%.2f× %s) |\n", m,
				short_name(a, sizeof(a), bp));
	}
	fprintf(f, "\n");
}

void pause_report(FILE *f)
{
	char a[48], b[48], c[48];
	int ci, i, q;
	bool any = false;

	for (ci = 0; ci < PR_NCFG; ci++)
		any |= g_pr[ci].ran;
	if (!any)
		return;
	fprintf(f, "## Pause and resume: vcpureq against the peers, interleaved\n\n");
	fprintf(f, "Each sample runs the four implementations one after the other (order rotated from sample to sample) on the same VM, vCPU fds and guest: "
		   "start the vCPU threads, wait until all run guest code, then time a pause (until the call returns: every implementation returns once every vCPU is parked), "
		   "a resume (until the call has returned and every vCPU that was running has run guest code again: its guest counter moved; halted vCPUs stay halted and are not waited for) "
		   "and a pause + resume cycle. Ratios are vcpureq / peer per sample, then the median and p25–p75 of those ratios. Implementations:\n\n");
	report_impls(f, PR_NIMPL, pr_impl_name, pr_impl_source);
	fprintf(f, "\n");
	for (q = 0; q < Q_NR; q++)
		q_table(f, q);

	fprintf(f, "#### Signals and requester CPU (means per call)\n\n");
	fprintf(f, "| N | implementation | signals per pause | requester CPU per pause | signals per resume | requester CPU per resume (the call alone) |\n");
	fprintf(f, "|---|---|---|---|---|---|\n");
	for (ci = 0; ci < PR_NCFG; ci++) {
		if (!g_pr[ci].ran || !g_pr[ci].ns)
			continue;
		for (i = 0; i < PR_NIMPL; i++)
			fprintf(f, "| %s | %s | %.1f | %s | %.1f | %s |\n",
				cfg_name(a, sizeof(a), ci), pr_impl_name(i),
				impl_mean(ci, i, M_PAUSE_SIG),
				fmt_ns(b, sizeof(b), impl_mean(ci, i, M_PAUSE_CPU)),
				impl_mean(ci, i, M_RESUME_SIG),
				fmt_ns(c, sizeof(c), impl_mean(ci, i, M_RESUME_CPU)));
	}
	fprintf(f, "\n#### Targets of issue 10 (reported, not asserted)\n\n");
	for (ci = 0; ci < PR_NCFG; ci++) {
		double vs, vc, minc = INFINITY;
		unsigned int n = g_pr_cfg[ci].n;
		int bi = 0;

		if (!g_pr[ci].ran || !g_pr[ci].ns)
			continue;
		cfg_name(a, sizeof(a), ci);
		for (q = 0; q < Q_NR; q++) {
			double t = target_of(ci, q), m;
			int bp = best_peer(ci, q);

			if (t <= 0)
				continue;
			m = ratio_pct(ci, bp, q, 50);
			fprintf(f, "- %s, N = %s: ≤ %.1f× the best peer (%s): %s — %.2f× (p25–p75 %.2f–%.2f)\n",
				q_title[q], a, t, pr_impl_name(bp),
				m <= t ? "**met**" : "**missed**", m,
				ratio_pct(ci, bp, q, 25), ratio_pct(ci, bp, q, 75));
		}
		vs = impl_mean(ci, 0, M_PAUSE_SIG);
		fprintf(f, "- Signals per pause = N, N = %s: %s — %.1f\n", a,
			vs == (double)n ? "**met**" :
			vs < (double)n ? "**met** (fewer: halted vCPUs need none)" : "**missed**", vs);
		vc = impl_mean(ci, 0, M_PAUSE_CPU);
		for (i = 1; i < PR_NIMPL; i++)
			if (impl_mean(ci, i, M_PAUSE_CPU) < minc) {
				minc = impl_mean(ci, i, M_PAUSE_CPU);
				bi = i;
			}
		fprintf(f, "- Requester CPU per pause the lowest of all, N = %s: %s — %s vs %s (%s)\n",
			a, vc <= minc ? "**met**" : "**missed**", fmt_ns(b, sizeof(b), vc),
			fmt_ns(c, sizeof(c), minc), pr_impl_name(bi));
	}
	fprintf(f, "\n");
}

int pause_files(const char *dir)
{
	char path[4096];
	unsigned int k;
	FILE *f;
	int ci, i;

	snprintf(path, sizeof(path), "%s/pause-samples.csv", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "N,mix,sample,implementation,pause_ns,resume_ns,cycle_ns,pause_signals,resume_signals,pause_cpu_ns,resume_cpu_ns,failed,resume_timed_out,resume_call_ns,wakes_done_ns,finish_polls,resume_ivcsw,resume_call_ivcsw,finish_poll,cycle_pause_ns,cycle_wakes_done_ns\n");
	for (ci = 0; ci < PR_NCFG; ci++)
		for (k = 0; k < g_pr[ci].ns; k++)
			for (i = 0; i < PR_NIMPL; i++) {
				const struct pr_sample *s = &g_pr[ci].s[i][k];

				fprintf(f, "%u,%d,%u,\"%s\",%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%d,%d,%.0f,%.0f,%.0f,%.0f,%.0f,%s,%.0f,%.0f\n",
					g_pr_cfg[ci].n, g_pr_cfg[ci].mix, k, pr_impl_name(i),
					s->pause, s->resume, s->cycle, s->pause_sig,
					s->resume_sig, s->pause_cpu, s->resume_cpu, s->failed,
					s->timed_out, s->resume_call, s->wakes_done, s->polls, s->ivcsw,
					s->call_ivcsw,
					s->poll_rule == PR_POLL_FIXED ? "fixed" : "scaled",
					s->cycle_pause, s->cycle_wakes);
			}
	fclose(f);
	return 0;
}
