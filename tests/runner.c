/* SPDX-License-Identifier: MIT */
/* The test runner: one case per process (CTest passes its name). */
#include "harness.h"

/* ---- runner ---- */
#define MAX_CASES 128
static struct h_case cases[MAX_CASES];
static int nr_cases;

void h_register(const char *name, h_case_fn fn, int both)
{
	if (nr_cases < MAX_CASES)
		cases[nr_cases++] = (struct h_case){ name, fn, both };
}

int main(int argc, char **argv)
{
	const char *want = argc > 1 ? argv[1] : NULL;
	int i, failed = 0, ran = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (want && !strcmp(want, "--list")) {
		for (i = 0; i < nr_cases; i++)
			if (cases[i].both)
				printf("%s.kvm\n%s.thread\n", cases[i].name,
				       cases[i].name);
			else
				printf("%s\n", cases[i].name);
		return 0;
	}
	for (i = 0; i < nr_cases; i++) {
		const struct h_case *c = &cases[i];
		size_t n = strlen(c->name);
		enum vcpureq_backend be = VCPUREQ_BACKEND_KVM;
		int r;

		if (want) {
			if (strncmp(want, c->name, n))
				continue;
			if (want[n] == '\0' && !c->both)
				be = VCPUREQ_BACKEND_KVM;
			else if (c->both && !strcmp(want + n, ".kvm"))
				be = VCPUREQ_BACKEND_KVM;
			else if (c->both && !strcmp(want + n, ".thread"))
				be = VCPUREQ_BACKEND_THREAD;
			else
				continue;
		}
		r = c->fn(be);
		ran++;
		printf("%s %s%s\n", r == 0 ? "PASS" : r == H_SKIP ? "SKIP" : "FAIL",
		       c->name, c->both ? (be == VCPUREQ_BACKEND_KVM ? ".kvm" : ".thread") : "");
		if (want)
			return r;
		if (r && r != H_SKIP)
			failed++;
	}
	if (!ran) {
		fprintf(stderr, "no such case: %s\n", want ? want : "(none)");
		return 2;
	}
	return failed ? 1 : 0;
}
