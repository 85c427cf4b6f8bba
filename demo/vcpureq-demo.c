/* SPDX-License-Identifier: MIT */
/*
 * The main job: a VM on /dev/kvm with N vCPUs (default 4, -n to change)
 * running real 16-bit guest code, and a control thread (plus helper
 * requesters) exercising the vCPU request protocol end to end:
 *
 *   1. per-vCPU requests with payload from 3 requester threads at once to
 *      vCPUs spinning in the guest (IPI reduction shows as signals <
 *      requests);
 *   2. a broadcast WAIT request (TLB_FLUSH): every vCPU has left guest mode
 *      when it returns;
 *   3. OUTSIDE_GUEST_MODE: the same with no request bit;
 *   4. a halted vCPU woken by a request;
 *   5. NO_WAKEUP leaving a halted vCPU asleep;
 *   6. UNBLOCK waking it (and the NO_WAKEUP request handled then);
 *   7. VM_DEAD: every vCPU stops, for good.
 *
 * With --trace FILE the whole run is traced and written to FILE as Chrome
 * trace-event JSON: open it in Perfetto (ui.perfetto.dev) or
 * chrome://tracing to see every vCPU's guest-mode instances, the kicks and
 * the WAITs (docs/trace.md).
 *
 * Prints a line per check and a per-vCPU table of the counters (each column
 * explained above it); exits 0 if every check passed, 1 if one failed, 2 for
 * a bad argument (with the reason), 77 without a usable /dev/kvm (saying
 * what to do).  --help lists the options and their limits.
 */
#include <getopt.h>
#include <linux/kvm.h>
#include <unistd.h>

#include "harness.h"

#define NR_REQUESTERS 3
#define REQ_DATA(r) VCPUREQ_ARCH_REQ(1 + (r))
#define REQ_HALT VCPUREQ_ARCH_REQ(10)
#define REQ_SPIN VCPUREQ_ARCH_REQ(11)
#define REQ_WAKE VCPUREQ_ARCH_REQ(12)
#define REQ_LAZY VCPUREQ_ARCH_REQ_FLAGS(13, VCPUREQ_REQUEST_NO_WAKEUP)
#define HANG_MS 10000
#define MAX_V 64

static unsigned int nr_vcpus = 4, rounds = 2000;
static const char *trace_path;
static struct h_vm H;
static int failures;

/* Payload per (requester, vCPU): written before the make, read by the
 * vCPU's handler after check_request() says the bit was set. */
static _Atomic uint64_t payload[NR_REQUESTERS][MAX_V];
static uint64_t last_seen[NR_REQUESTERS][MAX_V]; /* vCPU thread only */
static _Atomic uint64_t seen_pub[NR_REQUESTERS][MAX_V];
static _Atomic uint64_t payload_regressions;
static _Atomic uint64_t handled_flush, handled_wake, handled_lazy;

static void check(bool ok, const char *what)
{
	printf("check: %-62s %s\n", what, ok ? "PASS" : "FAIL");
	if (!ok)
		failures++;
}

static int handler(struct vcpureq_vcpu *v, void *opaque)
{
	unsigned int id = vcpureq_vcpu_index(v), r;

	(void)opaque;
	for (r = 0; r < NR_REQUESTERS; r++) {
		if (vcpureq_check_request(REQ_DATA(r), v) > 0) {
			uint64_t p = atomic_load_explicit(&payload[r][id],
							  memory_order_relaxed);

			if (p == 0 || p < last_seen[r][id])
				atomic_fetch_add(&payload_regressions, 1);
			last_seen[r][id] = p;
			atomic_store(&seen_pub[r][id], p);
		}
	}
	if (vcpureq_check_request(VCPUREQ_REQ_TLB_FLUSH, v) > 0)
		atomic_fetch_add(&handled_flush, 1);
	if (vcpureq_check_request(REQ_WAKE, v) > 0)
		atomic_fetch_add(&handled_wake, 1);
	if (vcpureq_check_request(REQ_LAZY, v) > 0)
		atomic_fetch_add(&handled_lazy, 1);
	if (vcpureq_check_request(REQ_HALT, v) > 0)
		h_set_prog(&H, id, H_HALT);
	if (vcpureq_check_request(REQ_SPIN, v) > 0)
		h_set_prog(&H, id, H_SPIN);
	return 0;
}

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *requester(void *arg)
{
	unsigned int r = (unsigned int)(uintptr_t)arg, i;
	uint32_t seed = 0x9e3779b9u * (r + 1);

	for (i = 1; i <= rounds; i++) {
		unsigned int v = rnd(&seed) % nr_vcpus;

		/* payload first, then the request (release inside make) */
		atomic_store_explicit(&payload[r][v],
				      atomic_load_explicit(&payload[r][v],
							   memory_order_relaxed) + 1,
				      memory_order_relaxed);
		vcpureq_request(REQ_DATA(r), vcpureq_vm_vcpu(H.vm, v));
	}
	return NULL;
}

static bool spinning(struct h_vm *h, unsigned int id)
{
	return h_in_guest(h, id) && h_guest_iters(h, id) > 100;
}

static bool asleep(struct h_vm *h, unsigned int id)
{
	return h_sleeping(h, id);
}

static bool finished(struct h_vm *h, unsigned int id)
{
	return atomic_load(&h->vcpus[id].finished);
}

static bool until(bool (*f)(void), unsigned int ms)
{
	uint64_t end = h_now_ns() + (uint64_t)ms * 1000000u;

	while (!f())
		if (h_now_ns() > end)
			return false;
	return true;
}

static bool payloads_caught_up(void)
{
	unsigned int r, v;

	for (r = 0; r < NR_REQUESTERS; r++)
		for (v = 0; v < nr_vcpus; v++)
			if (atomic_load(&seen_pub[r][v]) !=
			    atomic_load(&payload[r][v]))
				return false;
	return true;
}

static bool woke(void)
{
	return atomic_load(&handled_wake) > 0;
}

static bool lazy_done(void)
{
	return atomic_load(&handled_lazy) > 0;
}

static void print_table(void)
{
	unsigned int i;

	printf("\nPer vCPU: made = request bits set, handled = check_request() that found its\n"
	       "bit (below made: requests of one number coalesce until the vCPU checks), kicks\n"
	       "= kicks aimed at it, signals = kick signals sent, coalesced = kicks that found\n"
	       "it already exiting (no signal), wakeups = futex wakes out of block, acks =\n"
	       "WAIT requesters that waited for it, entries = guest entries, aborts = entries\n"
	       "cancelled by the final check, kicked exits = exits forced by a kick, spurious =\n"
	       "kicked exits with nothing pending, blocks = vcpureq_vcpu_block() calls.\n");
	printf("\n| vcpu | made | handled | kicks | signals | coalesced | wakeups | acks | entries | aborts | kicked exits | spurious | blocks |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (i = 0; i < nr_vcpus; i++) {
		struct vcpureq_stats s;

		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, i), &s, sizeof(s));
		printf("| %u | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu |\n",
		       i, (unsigned long long)s.requests_made,
		       (unsigned long long)s.requests_handled,
		       (unsigned long long)s.kicks,
		       (unsigned long long)s.signals_sent,
		       (unsigned long long)s.signals_coalesced,
		       (unsigned long long)s.wakeups,
		       (unsigned long long)s.acks_waited,
		       (unsigned long long)s.entries,
		       (unsigned long long)s.entry_aborts,
		       (unsigned long long)s.kicked_exits,
		       (unsigned long long)s.spurious_exits,
		       (unsigned long long)s.blocks);
	}
	printf("\n");
}

#define MAX_ROUNDS 1000000u

/* --trace FILE: stop the trace and write it.  0 or -1 (said why). */
static int write_trace(void)
{
	struct vcpureq_trace_counts tc;
	FILE *f = fopen(trace_path, "w");
	long n;

	vcpureq_trace_stop(H.vm);
	if (!f) {
		fprintf(stderr, "vcpureq-demo: cannot open the trace file '%s': %s\n",
			trace_path, strerror(errno));
		return -1;
	}
	n = vcpureq_trace_write_json(H.vm, f);
	if (fclose(f) && n >= 0)
		n = -EIO;
	if (n < 0) {
		fprintf(stderr, "vcpureq-demo: cannot write the trace to '%s': %s (%ld)\n",
			trace_path, vcpureq_errmsg(), n);
		return -1;
	}
	vcpureq_trace_counts(H.vm, &tc, sizeof(tc));
	printf("trace: %ld events written to %s (%llu recorded, %llu lost)\n", n,
	       trace_path, (unsigned long long)tc.recorded,
	       (unsigned long long)tc.lost);
	return 0;
}

static void usage(FILE *f, const char *p)
{
	fprintf(f,
		"usage: %s [-n VCPUS] [-r ROUNDS] [-t FILE]\n"
		"A VM on /dev/kvm running real guest code; every kind of vCPU request\n"
		"is exercised and checked, then each vCPU's counters are printed.\n"
		"  -n, --vcpus=VCPUS    number of vCPUs, %d..%d (default 4)\n"
		"  -r, --rounds=ROUNDS  requests each of the %d requester threads makes,\n"
		"                       1..%u (default 2000)\n"
		"  -t, --trace=FILE     record a trace of the run and write it to FILE\n"
		"                       (Chrome trace-event JSON, for Perfetto)\n"
		"  -h, --help           this text\n"
		"Needs read/write access to /dev/kvm (the kvm group).  Exit status: 0 all\n"
		"checks passed, 1 a check failed, 2 bad arguments, 77 no usable /dev/kvm.\n",
		p, 2, MAX_V, NR_REQUESTERS, MAX_ROUNDS);
}

/* A decimal number in lo..hi, nothing else (no sign, no suffix, no spaces). */
static bool parse_uint(const char *s, unsigned int lo, unsigned int hi,
		       unsigned int *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end != '\0' || v < lo || v > hi)
		return false;
	*out = (unsigned int)v;
	return true;
}

/* Why the VM could not be made, with what to do about it. */
static void explain_no_kvm(void)
{
	if (access("/dev/kvm", F_OK) != 0)
		fprintf(stderr, "vcpureq-demo: /dev/kvm does not exist: load kvm_intel or kvm_amd "
				"(virtualization enabled in the firmware or the host); "
				"on an x86-64 machine without KVM, make test-x86-emu runs "
				"the KVM tests and this demo on KVM emulated by qemu\n");
	else
		fprintf(stderr, "vcpureq-demo: no read/write access to /dev/kvm: add yourself to the "
				"kvm group (usermod -aG kvm USER, then log in again)\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "vcpus", required_argument, NULL, 'n' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "trace", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vcpureq_vm_opts o = { .handle_requests = handler };
	uint64_t made = 0, signals = 0, coalesced = 0;
	uint32_t e0[MAX_V];
	pthread_t req[NR_REQUESTERS];
	unsigned int i, last;
	int c, r;
	bool ok;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "n:r:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!parse_uint(optarg, 2, MAX_V, &nr_vcpus)) {
				fprintf(stderr, "vcpureq-demo: -n '%s': the number of vCPUs must be a whole number from 2 to %d\n",
					optarg, MAX_V);
				return 2;
			}
			break;
		case 'r':
			if (!parse_uint(optarg, 1, MAX_ROUNDS, &rounds)) {
				fprintf(stderr, "vcpureq-demo: -r '%s': the rounds must be a whole number from 1 to %u\n",
					optarg, MAX_ROUNDS);
				return 2;
			}
			break;
		case 't':
			trace_path = optarg;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		default: /* getopt_long named the option already */
			fprintf(stderr, "Try '%s --help'.\n", argv[0]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vcpureq-demo: unexpected argument '%s' (options only; try --help)\n",
			argv[optind]);
		return 2;
	}
	last = nr_vcpus - 1;
	r = h_vm_create(&H, VCPUREQ_BACKEND_KVM, nr_vcpus, H_SPIN, &o);
	if (r == H_SKIP) {
		explain_no_kvm();
		return 77;
	}
	if (r) {
		fprintf(stderr, "vcpureq-demo: cannot create the VM: %s (%d)\n",
			vcpureq_errmsg(), r);
		return 1;
	}
	if (trace_path) {
		/* Big enough rings that nothing of this run is overwritten. */
		struct vcpureq_trace_opts to = VCPUREQ_TRACE_OPTS_INIT;

		to.ring_events = 1u << 18;
		r = vcpureq_trace_start(H.vm, &to);
		if (r) {
			fprintf(stderr, "vcpureq-demo: cannot start the trace: %s (%d)\n",
				vcpureq_errmsg(), r);
			return 1;
		}
	}
	printf("vcpureq demo: %u vCPUs on /dev/kvm, kick signal %d, %d requesters x %u requests\n\n",
	       nr_vcpus, vcpureq_vm_kick_signal(H.vm), NR_REQUESTERS, rounds);
	if (h_start(&H)) {
		fprintf(stderr, "vcpureq-demo: cannot start vCPU threads: %s\n",
			vcpureq_errmsg());
		return 1;
	}
	for (i = 0; i < nr_vcpus; i++)
		if (!h_wait_until(spinning, &H, i, HANG_MS))
			check(false, "vCPU entered the guest and runs guest code");

	/* 1. Requests with payload from several requesters at once. */
	for (i = 0; i < NR_REQUESTERS; i++)
		pthread_create(&req[i], NULL, requester, (void *)(uintptr_t)i);
	for (i = 0; i < NR_REQUESTERS; i++)
		pthread_join(req[i], NULL);
	check(until(payloads_caught_up, HANG_MS),
	      "1. every request with payload handled (latest payload seen)");
	check(atomic_load(&payload_regressions) == 0,
	      "1. no handler saw a payload older than its bit promised");
	for (i = 0; i < nr_vcpus; i++) {
		struct vcpureq_stats s;

		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, i), &s, sizeof(s));
		made += s.requests_made;
		signals += s.signals_sent;
		coalesced += s.signals_coalesced;
	}
	printf("       requests made %llu, signals sent %llu, kicks coalesced %llu\n",
	       (unsigned long long)made, (unsigned long long)signals,
	       (unsigned long long)coalesced);
	printf("       (one signal per guest-mode instance: kicks that find the vCPU already\n"
	       "       exiting send none, and requests of one number made before the vCPU\n"
	       "       checks them coalesce in its bitmap, so handled < made is expected)\n");
	check(signals < made,
	      "1. fewer signals than requests to vCPUs in guest mode");

	/* 2. Broadcast WAIT: all have left the guest-mode instance. */
	for (i = 0; i < nr_vcpus; i++) {
		h_wait_until(spinning, &H, i, HANG_MS);
		e0[i] = vcpureq_vcpu_exit_epoch(vcpureq_vm_vcpu(H.vm, i));
	}
	r = vcpureq_make_all_cpus_request(H.vm, VCPUREQ_REQ_TLB_FLUSH);
	ok = r == 1;
	for (i = 0; i < nr_vcpus; i++)
		ok &= vcpureq_vcpu_exit_epoch(vcpureq_vm_vcpu(H.vm, i)) != e0[i];
	check(ok, "2. broadcast TLB_FLUSH (WAIT): every vCPU left guest mode");

	/* 3. OUTSIDE_GUEST_MODE: no bit, same guarantee. */
	for (i = 0; i < nr_vcpus; i++) {
		h_wait_until(spinning, &H, i, HANG_MS);
		e0[i] = vcpureq_vcpu_exit_epoch(vcpureq_vm_vcpu(H.vm, i));
	}
	made = 0;
	for (i = 0; i < nr_vcpus; i++) {
		struct vcpureq_stats s;

		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, i), &s, sizeof(s));
		made += s.requests_made;
	}
	r = vcpureq_make_all_cpus_request(H.vm, VCPUREQ_REQ_OUTSIDE_GUEST_MODE);
	ok = r == 1;
	for (i = 0; i < nr_vcpus; i++) {
		struct vcpureq_stats s;

		ok &= vcpureq_vcpu_exit_epoch(vcpureq_vm_vcpu(H.vm, i)) != e0[i];
		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, i), &s, sizeof(s));
		made -= s.requests_made;
	}
	check(ok && made == 0,
	      "3. OUTSIDE_GUEST_MODE: all left guest mode, no request bit set");

	/* 4. A halted vCPU woken by a request. */
	vcpureq_request(REQ_HALT, vcpureq_vm_vcpu(H.vm, last));
	ok = h_wait_until(asleep, &H, last, HANG_MS);
	check(ok, "4. last vCPU halted (HLT exit) and sleeps in block");
	{
		struct vcpureq_stats s0, s1;

		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, last), &s0, sizeof(s0));
		r = vcpureq_request(REQ_WAKE, vcpureq_vm_vcpu(H.vm, last));
		ok = until(woke, HANG_MS);
		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, last), &s1, sizeof(s1));
		check(ok && r == 0 && s1.wakeups == s0.wakeups + 1 &&
			      s1.signals_sent == s0.signals_sent,
		      "4. request woke the halted vCPU (futex wake, no signal)");
	}

	/* 5. NO_WAKEUP leaves it asleep. */
	h_wait_until(asleep, &H, last, HANG_MS);
	h_sleep_us(20000);
	{
		struct vcpureq_stats s0, s1;

		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, last), &s0, sizeof(s0));
		vcpureq_request(REQ_LAZY, vcpureq_vm_vcpu(H.vm, last));
		h_sleep_us(50000);
		vcpureq_vcpu_stats(vcpureq_vm_vcpu(H.vm, last), &s1, sizeof(s1));
		check(h_sleeping(&H, last) && s1.wakeups == s0.wakeups &&
			      atomic_load(&handled_lazy) == 0,
		      "5. NO_WAKEUP request left the halted vCPU asleep");
	}

	/* 6. UNBLOCK wakes it; the NO_WAKEUP request is handled then. */
	vcpureq_request(VCPUREQ_REQ_UNBLOCK, vcpureq_vm_vcpu(H.vm, last));
	check(until(lazy_done, HANG_MS),
	      "6. UNBLOCK woke it; the NO_WAKEUP request was handled then");

	/* 7. VM_DEAD: final. */
	vcpureq_vm_dead(H.vm);
	for (i = 0; i < last; i++)
		ok &= h_wait_until(finished, &H, i, HANG_MS);
	/* The halted one is not woken by VM_DEAD (NO_WAKEUP): wake it. */
	vcpureq_request(VCPUREQ_REQ_UNBLOCK, vcpureq_vm_vcpu(H.vm, last));
	ok = h_wait_until(finished, &H, last, HANG_MS);
	for (i = 0; i < last; i++)
		ok &= atomic_load(&H.vcpus[i].finished) != 0;
	h_join_all(&H);
	{
		uint64_t it[MAX_V];

		for (i = 0; i < nr_vcpus; i++)
			it[i] = h_guest_iters(&H, i);
		h_sleep_us(20000);
		for (i = 0; i < nr_vcpus; i++) {
			ok &= h_guest_iters(&H, i) == it[i];
			ok &= atomic_load(&H.vcpus[i].run_ret) == 0;
		}
	}
	check(ok && vcpureq_vm_is_dead(H.vm),
	      "7. VM_DEAD: every vCPU stopped with -EIO, none runs again");

	print_table();
	if (trace_path && write_trace())
		failures++;
	h_vm_destroy(&H);
	printf("%s: %d check(s) failed\n", failures ? "FAILED" : "OK", failures);
	return failures ? 1 : 0;
}
