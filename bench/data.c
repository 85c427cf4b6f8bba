/* SPDX-License-Identifier: MIT */
/*
 * The run's data file, DIR/data.json: the context (machine, options,
 * duration, load), every sample of every part and the counters, in the
 * order they were taken.  No figure is computed here: bench/render.py
 * reads this file and writes the report, the derived CSV files and the
 * plot (its top comment documents the schema).
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"

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
	fprintf(f, "\"machine\": {\"cpus\": %ld, \"model\": ",
		sysconf(_SC_NPROCESSORS_ONLN));
	json_str(f, model);
	fputs(", \"kernel\": ", f);
	json_str(f, u.release);
	fputs(", \"kvm\": ", f);
	json_str(f, kvm);
	fputs("}", f);
}

static void context(FILE *f, double seconds)
{
	double foreign, cap;

	b_load_end(&foreign, &cap);
	fputs("\"schema\": 1,\n", f);
	machine(f);
	fprintf(f, ",\n\"options\": {\"quick\": %s, \"reps\": %d, \"max_n\": %u, \"only\": %u, "
		   "\"outside_requests\": %lu, \"scale\": ",
		g_opt.quick ? "true" : "false", g_opt.reps, g_opt.max_n,
		g_opt.only, g_opt.outside_requests);
	json_num(f, g_opt.scale);
	fprintf(f, ", \"pause_cfgs\": %u, \"pause_samples\": %u, \"pause_impls\": %u, \"finish_poll\": %d, \"guest\": \"%s\"},\n",
		g_opt.pause_cfgs, g_opt.pause_samples, g_opt.pause_impls,
		g_opt.finish_poll, g_opt.native ? "native" : "real");
	fputs("\"seconds\": ", f);
	json_num(f, seconds);
	fputs(",\n\"load\": {\"foreign_cpu_s\": ", f);
	json_num(f, foreign);
	fputs(", \"capacity_s\": ", f);
	json_num(f, cap);
	fputs("}", f);
}

static void figures(FILE *f)
{
	int i;

	fputs("\"figures\": [", f);
	for (i = 0; i < FIG_NR; i++) {
		const struct figure *fg = &g_fig[i];

		fputs(i ? ",\n{\"key\": " : "\n{\"key\": ", f);
		json_str(f, fg->key);
		fputs(", \"title\": ", f);
		json_str(f, fg->title);
		fputs(", ", f);
		json_nums(f, "rep_p50_ns", fg->rep_p50, (size_t)fg->nrep);
		fputs(",\n", f);
		json_samples(f, "samples_ns", &fg->all);
		fputs("}", f);
	}
	fputs("]", f);
}

static void outside(FILE *f)
{
	int i;

	fputs("\"outside\": [", f);
	for (i = 0; i < 2; i++) {
		const struct outside_evidence *ev = &g_outside[i];

		fprintf(f, "%s{\"requests\": %lu, \"signals_sent\": %llu, \"wakeups\": %llu, "
			   "\"kicks\": %llu, \"requests_made\": %llu, \"stime_ms\": ",
			i ? ",\n" : "\n", ev->requests,
			(unsigned long long)ev->signals_sent,
			(unsigned long long)ev->wakeups,
			(unsigned long long)ev->kicks,
			(unsigned long long)ev->requests_made);
		json_num(f, ev->stime_ms);
		fprintf(f, ", \"vcsw\": %ld, \"ivcsw\": %ld, \"syscalls\": %lld, \"syscall_method\": ",
			ev->vcsw, ev->ivcsw, ev->syscalls);
		json_str(f, ev->syscall_method);
		fputs("}", f);
	}
	fputs("]", f);
}

static void requesters(FILE *f)
{
	int r, k;

	fputs("\"requesters\": [", f);
	for (r = 0; r < g_kreq_reps; r++)
		for (k = 0; k < B_NK; k++) {
			const struct kreq_result *x = &g_kreq[r][k];

			fprintf(f, "%s{\"repeat\": %d, \"k\": %u, \"r\": %u, \"requests_made\": %llu, "
				   "\"kicks\": %llu, \"signals_sent\": %llu, \"signals_coalesced\": %llu, "
				   "\"handled\": %llu, \"entries\": %llu, \"kicked_exits\": %llu, "
				   "\"spurious_exits\": %llu, \"ms\": ",
				r || k ? ",\n" : "\n", r + 1, x->k, x->r,
				(unsigned long long)x->requests_made,
				(unsigned long long)x->kicks,
				(unsigned long long)x->signals_sent,
				(unsigned long long)x->signals_coalesced,
				(unsigned long long)x->handled,
				(unsigned long long)x->entries,
				(unsigned long long)x->kicked_exits,
				(unsigned long long)x->spurious_exits);
			json_num(f, x->ms);
			fputs("}", f);
		}
	fputs("]", f);
}

static void impls(FILE *f, int n, const char *(*name)(int),
		  const char *(*source)(int))
{
	int i;

	fputs("\"impls\": [", f);
	for (i = 0; i < n; i++) {
		fputs(i ? ",\n{\"name\": " : "\n{\"name\": ", f);
		json_str(f, name(i));
		fputs(", \"source\": ", f);
		json_str(f, source(i));
		fputs("}", f);
	}
	fputs("]", f);
}

static void broadcast(FILE *f)
{
	int i, ni;
	bool first = true;

	/* "finish": where vcpureq's pause is timed to, every vCPU "parked"
	 * as for the peers (absent in data of runs before it was: "ack"). */
	fputs("\"broadcast\": {\"finish\": \"parked\", ", f);
	impls(f, B_NIMPL, bc_impl_name, bc_impl_source);
	fputs(",\n\"cells\": [", f);
	for (ni = 0; ni < B_NN; ni++)
		for (i = 0; i < B_NIMPL; i++) {
			const struct bc_cell *c = &g_bc[i][ni];

			if (!c->ran)
				continue;
			fprintf(f, "%s{\"n\": %u, \"impl\": %d, \"iterations\": %lu, \"failures\": %d, ",
				first ? "\n" : ",\n", g_n_values[ni], i, c->iters,
				c->failures);
			first = false;
			json_nums(f, "rep_p50_ns", c->rep_p50, (size_t)c->nrep);
			fputs(",\n", f);
			json_samples(f, "latency_ns", &c->seq);
			fputs(",\n", f);
			json_samples(f, "signals", &c->sig);
			fputs(",\n", f);
			json_samples(f, "requester_cpu_ns", &c->cpu);
			fputs("}", f);
		}
	fputs("]}", f);
}

static void pause_sample(FILE *f, const struct pr_sample *s)
{
	static const char *const name[] = {
		"pause_ns", "resume_ns", "cycle_ns", "pause_signals",
		"resume_signals", "pause_cpu_ns", "resume_cpu_ns",
		"resume_call_ns", "wakes_done_ns", "finish_polls",
		"resume_ivcsw", "resume_call_ivcsw", "cycle_pause_ns",
		"cycle_wakes_done_ns",
	};
	const double v[] = {
		s->pause, s->resume, s->cycle, s->pause_sig, s->resume_sig,
		s->pause_cpu, s->resume_cpu, s->resume_call, s->wakes_done,
		s->polls, s->ivcsw, s->call_ivcsw, s->cycle_pause,
		s->cycle_wakes,
	};
	size_t i;

	fprintf(f, "{\"failed\": %d, \"resume_timed_out\": %d, \"finish_poll\": \"%s\"",
		s->failed, s->timed_out,
		s->poll_rule == PR_POLL_FIXED ? "fixed" : "scaled");
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		fprintf(f, ", \"%s\": ", name[i]);
		json_num(f, v[i]);
	}
	fputs("}", f);
}

static void pause_data(FILE *f)
{
	unsigned int k;
	int ci, i;
	bool first = true;

	fputs("\"pause\": {", f);
	impls(f, PR_NIMPL, pr_impl_name, pr_impl_source);
	fprintf(f, ",\n\"floor\": %d", PR_FLOOR);
	fputs(",\n\"cells\": [", f);
	for (ci = 0; ci < PR_NCFG; ci++) {
		const struct pr_cell *c = &g_pr[ci];

		if (!c->ran)
			continue;
		fprintf(f, "%s{\"n\": %u, \"mix\": %s, \"impls\": [", first ? "\n" : ",\n",
			g_pr_cfg[ci].n, g_pr_cfg[ci].mix ? "true" : "false");
		first = false;
		for (i = 0; i < PR_NIMPL; i++) {
			fprintf(f, "%s{\"skipped\": %s, \"failures\": %d, \"samples\": [",
				i ? ",\n" : "\n", c->skipped[i] ? "true" : "false",
				c->failures[i]);
			for (k = 0; k < c->ns; k++) {
				fputs(k ? ",\n" : "\n", f);
				pause_sample(f, &c->s[i][k]);
			}
			fputs("]}", f);
		}
		fputs("]}", f);
	}
	fputs("]}", f);
}

int data_write(const char *dir, double seconds)
{
	char path[4096];
	FILE *f;
	int err;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "vcpureq-bench: cannot create %s: %s\n", dir,
			strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/data.json", dir);
	f = fopen(path, "w");
	if (!f) {
		err = errno;
		fprintf(stderr, "vcpureq-bench: cannot write %s: %s\n", path,
			strerror(err));
		return -err;
	}
	fputs("{", f);
	context(f, seconds);
	fputs(",\n", f);
	figures(f);
	fputs(",\n", f);
	outside(f);
	fputs(",\n", f);
	requesters(f);
	fputs(",\n", f);
	broadcast(f);
	fputs(",\n", f);
	kickab_data(f);
	fputs(",\n", f);
	trace_data(f);
	fputs(",\n", f);
	pause_data(f);
	fputs("}\n", f);
	if (ferror(f) | fclose(f)) {
		fprintf(stderr, "vcpureq-bench: error writing %s\n", path);
		return -EIO;
	}
	return 0;
}
