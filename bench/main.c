/* SPDX-License-Identifier: MIT */
/*
 * vcpureq-bench: the benchmark suite of vcpureq.
 *
 *   vcpureq-bench [--quick] [--out DIR] [--reps N] [--max-n N]
 *                 [--only PARTS] [--outside-requests N] [--scale X]
 *   vcpureq-bench --render-only DIR
 *   vcpureq-bench --no-output [PART OPTIONS]
 *
 * Measures, then writes the run's data, DIR/data.json (data.c), and runs
 * bench/render.py on DIR: it writes DIR/report.md, the CSV/data files and a
 * gnuplot plot of the broadcast results, and prints the Markdown report on
 * stdout (progress on stderr).  Without --out, DIR is a new directory under
 * /tmp (named on stderr).  --render-only renders saved data again without
 * measuring; --no-output measures and writes nothing (bench/run.sh counts
 * the system calls of such a run).  Exit 0 on success, 77 (SKIP) only if /dev/kvm is absent (or
 * python3, which renders the report), 1 on error (also if /dev/kvm exists
 * but cannot be opened).  Targets are reported, not asserted.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

struct bopts g_opt;

bool b_part(unsigned int part)
{
	return !g_opt.only || (g_opt.only & part);
}

static const struct {
	const char *name;
	unsigned int bit;
	int (*fn)(int rep);
} parts[] = {
	{ "floors", B_PART_FLOORS, part_floors },
	{ "kick", B_PART_KICK, part_kick },
	{ "outside", B_PART_OUTSIDE, part_outside },
	{ "entry", B_PART_ENTRY, part_entry },
	{ "wake", B_PART_WAKE, part_wake },
	{ "requesters", B_PART_REQUESTERS, part_requesters },
	{ "broadcast", B_PART_BROADCAST, part_broadcast },
	{ "kickab", B_PART_KICKAB, part_kickab },
	{ "pause", B_PART_PAUSE, part_pause },
	{ "trace", B_PART_TRACE, part_trace },
};
#define NPARTS (sizeof(parts) / sizeof(parts[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"usage: vcpureq-bench [--quick] [--out DIR] [--reps N] [--max-n N]\n"
		"                     [--only PART[,PART...]] [--outside-requests N] [--scale X]\n"
		"                     [--pause-n N[,N...]] [--pause-samples K]\n"
		"                     [--pause-impls IMPL[,IMPL...]]\n"
		"                     [--finish-poll fixed|scaled|alt] [--guest native|real]\n"
		"                     [--no-output]\n"
		"       vcpureq-bench --render-only DIR\n"
		"  --quick    a run of a few tens of seconds (CI): 1 repeat, broadcast and\n"
		"             pause/resume up to N = 64, few samples\n"
		"  --out DIR  write data.json, report.md, data files and the plot into DIR\n"
		"             (default: a new directory under /tmp)\n"
		"  --render-only DIR\n"
		"             measure nothing: render DIR/data.json of an earlier run again\n"
		"  --no-output\n"
		"             measure, write and render nothing (the system-call count\n"
		"             of bench/run.sh)\n"
		"  --guest native|real\n"
		"             the guest code: 64-bit, its loops at CPL3 (native: run by the\n"
		"             CPU where KVM emulates real-mode and CPL0 code; vCPUs 256 and\n"
		"             up run real mode) or 16-bit real mode (default; also set by\n"
		"             VCPUREQ_TEST_GUEST=native)\n"
		"  --reps N   repeat runs (default 3; 1 with --quick)\n"
		"  --max-n N  largest broadcast N (default 1024; 64 with --quick)\n"
		"  --scale X  multiply the sample counts by X\n"
		"  --pause-n  pause/resume: only these configurations (1 4 16 64 256 1024,\n"
		"             mix: the 64 mixed vCPUs), e.g. --pause-n 16,64,mix\n"
		"  --pause-samples K\n"
		"             pause/resume: K samples per configuration and repeat, every\n"
		"             N in every repeat, no time budget (default: 8 6 5 4 1 1 4\n"
		"             in 60 s at most per configuration, N >= 256 in the first\n"
		"             repeat only)\n"
		"  --pause-impls\n"
		"             pause/resume: only these implementations (vcpureq qemu\n"
		"             cloud-hypervisor kvmtool floor; the others' cells say\n"
		"             \"not run\"; floor: the scheduler floor of a resume)\n"
		"  --finish-poll RULE\n"
		"             pause/resume: the resume finish line's poll interval, the\n"
		"             same for every implementation: fixed (default) sleeps\n"
		"             20 us; scaled sleeps elapsed/16, between 20 us and 1 ms;\n"
		"             alt alternates the two from sample to sample (an\n"
		"             experiment: pause-samples.csv says which)\n"
		"  --only     parts:");
	for (i = 0; i < NPARTS; i++)
		fprintf(f, " %s", parts[i].name);
	fprintf(f, "\n");
}

/*
 * A comma-separated list of names, as a bit set: @bit_of(token) gives the
 * token's bit, or -1 for a name it does not know, which ends the program
 * with a message naming @opt and the token (exit 2, the usage).
 */
static unsigned int parse_list(const char *opt, const char *s,
			       int (*bit_of)(const char *tok))
{
	unsigned int bits = 0;
	char *dup = strdup(s), *tok, *save = NULL;

	if (!dup)
		b_die("out of memory");
	for (tok = strtok_r(dup, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int b = bit_of(tok);

		if (b < 0) {
			fprintf(stderr, "vcpureq-bench: %s: unknown '%s'\n", opt, tok);
			usage(stderr);
			exit(2);
		}
		bits |= 1u << b;
	}
	free(dup);
	return bits;
}

/* --only: a part's name. */
static int part_bit(const char *tok)
{
	size_t i;

	for (i = 0; i < NPARTS; i++)
		if (!strcmp(tok, parts[i].name))
			return __builtin_ctz(parts[i].bit);
	return -1;
}

/* --pause-n: an N of g_pr_cfg (spinning), or "mix". */
static int pause_cfg_bit(const char *tok)
{
	bool mix = !strcmp(tok, "mix");
	unsigned long n = mix ? 64 : strtoul(tok, NULL, 10);
	int ci;

	for (ci = 0; ci < PR_NCFG; ci++)
		if (g_pr_cfg[ci].n == n && g_pr_cfg[ci].mix == mix)
			return ci;
	return -1;
}

/* --pause-impls: vcpureq, qemu, cloud-hypervisor, kvmtool, floor. */
static int pause_impl_bit(const char *tok)
{
	static const char *const names[PR_NIMPL] = {
		"vcpureq", "qemu", "cloud-hypervisor", "kvmtool", "floor",
	};
	int i;

	for (i = 0; i < PR_NIMPL; i++)
		if (!strcmp(tok, names[i]))
			return i;
	return -1;
}

#ifndef VCPUREQ_BENCH_RENDER
#define VCPUREQ_BENCH_RENDER "bench/render.py"
#endif

/*
 * Run the renderer (VCPUREQ_BENCH_RENDER in the environment, else the
 * bench/render.py of the source tree) on @dir: it writes DIR/report.md,
 * the data files and the plot, and prints the report on stdout.  0, 77
 * (SKIP) if python3 cannot be run, 1 if the renderer failed.
 */
static int render(const char *dir)
{
	const char *script = getenv("VCPUREQ_BENCH_RENDER");
	pid_t pid;
	int st;

	if (!script || !*script)
		script = VCPUREQ_BENCH_RENDER;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "vcpureq-bench: fork for the renderer: %s\n",
			strerror(errno));
		return 1;
	}
	if (pid == 0) {
		execlp("python3", "python3", script, dir, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			fprintf(stderr, "vcpureq-bench: waitpid: %s\n", strerror(errno));
			return 1;
		}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
		printf("SKIP: the report is not rendered: python3 cannot be run (apt-get install -y python3); the data is in %s/data.json\n",
		       dir);
		return H_SKIP;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "vcpureq-bench: python3 %s %s failed; the data is in %s/data.json\n",
			script, dir, dir);
		return 1;
	}
	return 0;
}

/* 77 (SKIP) if /dev/kvm is really absent, 1 if present but unusable,
 * 0 if usable. */
static int kvm_check(void)
{
	struct stat st;

	if (stat("/dev/kvm", &st) < 0) {
		printf("SKIP: /dev/kvm is absent (%s); vcpureq-bench needs it\n",
		       strerror(errno));
		return H_SKIP;
	}
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		fprintf(stderr,
			"vcpureq-bench: /dev/kvm exists but cannot be opened (%s); add this user to the 'kvm' group or fix its permissions\n",
			strerror(errno));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int reps = -1, i, rep;
	long max_n = -1;
	long outside = -1;
	uint64_t t0;
	double secs;
	char tmp_out[] = "/tmp/vcpureq-bench.XXXXXX";
	bool no_output = false;

	g_opt.scale = 1.0;
	g_opt.finish_poll = PR_POLL_FIXED;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			g_opt.quick = true;
		} else if (!strcmp(a, "--out") && v) {
			g_opt.out = v;
			i++;
		} else if (!strcmp(a, "--render-only") && v) {
			return render(v);
		} else if (!strcmp(a, "--no-output")) {
			no_output = true;
		} else if (!strcmp(a, "--reps") && v) {
			reps = atoi(v);
			i++;
		} else if (!strcmp(a, "--max-n") && v) {
			max_n = atol(v);
			i++;
		} else if (!strcmp(a, "--only") && v) {
			g_opt.only = parse_list("--only", v, part_bit);
			i++;
		} else if (!strcmp(a, "--outside-requests") && v) {
			outside = atol(v);
			i++;
		} else if (!strcmp(a, "--scale") && v) {
			g_opt.scale = atof(v);
			i++;
		} else if (!strcmp(a, "--pause-n") && v) {
			g_opt.pause_cfgs = parse_list("--pause-n", v, pause_cfg_bit);
			i++;
		} else if (!strcmp(a, "--pause-impls") && v) {
			g_opt.pause_impls = parse_list("--pause-impls", v, pause_impl_bit);
			i++;
		} else if (!strcmp(a, "--pause-samples") && v) {
			g_opt.pause_samples = (unsigned int)atoi(v);
			if (g_opt.pause_samples > PR_MAX_SAMPLES)
				g_opt.pause_samples = PR_MAX_SAMPLES;
			i++;
		} else if (!strcmp(a, "--finish-poll") && v) {
			if (!strcmp(v, "scaled"))
				g_opt.finish_poll = PR_POLL_SCALED;
			else if (!strcmp(v, "fixed"))
				g_opt.finish_poll = PR_POLL_FIXED;
			else if (!strcmp(v, "alt"))
				g_opt.finish_poll = PR_POLL_ALT;
			else {
				fprintf(stderr, "vcpureq-bench: --finish-poll: fixed, scaled or alt\n");
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--guest") && v) {
			/* The harness reads VCPUREQ_TEST_GUEST at each VM
			 * it creates: set before the first. */
			if (!strcmp(v, "native"))
				setenv("VCPUREQ_TEST_GUEST", "native", 1);
			else if (!strcmp(v, "real"))
				unsetenv("VCPUREQ_TEST_GUEST");
			else {
				fprintf(stderr, "vcpureq-bench: --guest: native or real\n");
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "vcpureq-bench: bad argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	g_opt.native = h_native_guest();
	g_opt.reps = reps > 0 ? reps : g_opt.quick ? 1 : 3;
	if (g_opt.reps > B_MAX_REP)
		g_opt.reps = B_MAX_REP;
	g_opt.max_n = max_n > 0 ? (unsigned int)max_n : g_opt.quick ? 64 : 1024;
	g_opt.outside_requests = outside >= 0 ? (unsigned long)outside :
				 g_opt.quick ? 100000ul : 1000000ul;
	if (g_opt.scale <= 0)
		g_opt.scale = 1.0;

	i = kvm_check();
	if (i)
		return i;
	if (!getenv("VCPUREQ_BENCH_NO_WATCHDOG"))
		b_watchdog_start(g_opt.quick ? 280 : 3600);
	setvbuf(stdout, NULL, _IOLBF, 0);
	t0 = b_now();
	b_load_start();
	for (rep = 0; rep < g_opt.reps; rep++) {
		size_t p;

		b_progress("vcpureq-bench: repeat %d of %d\n", rep + 1, g_opt.reps);
		for (p = 0; p < NPARTS; p++) {
			uint64_t ts = b_now();

			if (!b_part(parts[p].bit))
				continue;
			/* One-vCPU parts: the requester on CPU 0, the vCPU
			 * thread (or the other party) on CPU 1. */
			b_pin(parts[p].bit & (B_PART_REQUESTERS | B_PART_BROADCAST |
					      B_PART_PAUSE) ?
				      -1 : 0);
			if (parts[p].fn(rep) == H_SKIP) {
				printf("SKIP: /dev/kvm could not be used\n");
				return H_SKIP;
			}
			b_progress("  %-11s %.1f s\n", parts[p].name,
				   (double)(b_now() - ts) / 1e9);
		}
	}
	secs = (double)(b_now() - t0) / 1e9;
	if (no_output)
		return 0;
	b_phase("report");
	if (!g_opt.out) {
		if (!mkdtemp(tmp_out))
			b_die("cannot create a directory for the data: %s", strerror(errno));
		g_opt.out = tmp_out;
		b_progress("vcpureq-bench: data and report in %s\n", tmp_out);
	}
	if (data_write(g_opt.out, secs) < 0)
		b_die("cannot write the data file into %s", g_opt.out);
	return render(g_opt.out);
}
