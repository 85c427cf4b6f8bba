/* SPDX-License-Identifier: MIT */
/*
 * What the trace costs (part "trace", issue 11): the library's figures with
 * the trace compiled in (always) and off (the default), against the same
 * with it recording, in one run, on one VM of one vCPU:
 *
 *  - guest-entry overhead: the H_OUT I/O-exit loop on the vCPU thread (CPU
 *    1) in batches of 50 round trips, rotating three ways batch by batch:
 *    the raw KVM_RUN loop (the floor), vcpureq_vcpu_run() with the trace
 *    off, and with it on (vcpureq_trace_start() before the batch,
 *    vcpureq_trace_stop() after, both outside the timed loop); every mode
 *    takes each position of the rotation equally often;
 *  - kick latency: the same vCPU re-pointed at H_SPIN; per iteration, the
 *    raw signal floor of the kick part, then make + kick -> handler
 *    running with the trace off and with it on (the order flips every
 *    iteration), the trace started or stopped by the requester (CPU 0)
 *    before it waits for the vCPU to be back in the guest;
 *  - (information) make + kick of that vCPU while no thread runs it (the
 *    kick finds it outside guest mode: no signal), ns per call in batches,
 *    off and on alternated: the recording cost itself, two events a call.
 *
 * Rings of 4096 events: a long run overwrites (a flight recorder), as a
 * VMM that leaves the trace on would.  Each comparison is reported as p50
 * / p90 per mode, the median of the per-pair ratios on / off (and off /
 * raw floor) and the median of the per-pair differences on - off.
 */
#include <string.h>

#include "bench.h"

enum { T_RAW = 0, T_OFF = 1, T_ON = 2 };
#define TC_RING_EVENTS 4096u

static struct {
	struct samples entry[3];     /* ns per I/O-exit round trip */
	struct samples entry_on_off; /* per rotation: on / off */
	struct samples entry_d;      /* per rotation: on - off, ns */
	struct samples entry_off_raw;/* per rotation: off / raw */
	struct samples kick[3];      /* raw signal floor; request + kick */
	struct samples kick_on_off;  /* per iteration: on / off */
	struct samples kick_d;
	struct samples kick_off_raw; /* per iteration: off / raw */
	struct samples out[3];       /* [T_OFF], [T_ON]: ns per make + kick */
	struct samples out_on_off, out_d;
	uint64_t recorded, lost;
	bool ran;
} tc;

static void trace_on(struct vcpureq_vm *vm)
{
	struct vcpureq_trace_opts o = VCPUREQ_TRACE_OPTS_INIT;
	int r;

	o.ring_events = TC_RING_EVENTS;
	r = vcpureq_trace_start(vm, &o);
	if (r)
		b_die("vcpureq_trace_start: %d", r);
}

static void trace_off(struct vcpureq_vm *vm)
{
	int r = vcpureq_trace_stop(vm);

	if (r)
		b_die("vcpureq_trace_stop: %d", r);
}

/* ---- guest entry ---- */
struct tc_entry {
	struct h_vm *h;
	size_t rounds;
	_Atomic int err;
};

static void *tc_entry_vcpu(void *arg)
{
	enum { B = 50, WARM = 3 };
	struct tc_entry *e = arg;
	struct vcpureq_vm *vm = e->h->vm;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(vm, 0);
	size_t p;
	int r;

	b_pin(1);
	r = vcpureq_vcpu_bind(v);
	if (r) {
		/* Relaxed: read after pthread_join(). */
		atomic_store_explicit(&e->err, r, memory_order_relaxed);
		return NULL;
	}
	for (p = 0; p < e->rounds + WARM; p++) {
		double per[3];
		int j;

		for (j = 0; j < 3; j++) {
			int m = (int)((p + (size_t)j) % 3);
			uint64_t t0;

			if (m == T_ON)
				trace_on(vm);
			t0 = b_now();
			r = b_entry_batch(v, m != T_RAW, B);
			if (r)
				goto fail;
			per[m] = (double)(b_now() - t0) / B;
			if (m == T_ON)
				trace_off(vm);
		}
		if (p >= WARM) {
			for (j = 0; j < 3; j++)
				samples_add(&tc.entry[j], per[j]);
			samples_add(&tc.entry_on_off, per[T_ON] / per[T_OFF]);
			samples_add(&tc.entry_off_raw, per[T_OFF] / per[T_RAW]);
			samples_add(&tc.entry_d, per[T_ON] - per[T_OFF]);
		}
	}
	vcpureq_vcpu_unbind(v);
	return NULL;
fail:
	atomic_store_explicit(&e->err, r, memory_order_relaxed);
	vcpureq_vcpu_unbind(v);
	return NULL;
}

/* ---- kick latency ---- */
static void tc_kick(struct h_vm *h, struct vr_rec *rec, int rep)
{
	enum { WARM = 5 };
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, 0);
	int sig = vcpureq_vm_kick_signal(h->vm);
	uint32_t rnd = 4242u + (uint32_t)rep;
	size_t n = b_count(600, 150), i;
	struct pair_thr p;
	pthread_t t;

	b_start_pair(&p, h, rec, b_kick_vcpu, &t, "trace kick");
	for (i = 0; i < n + WARM; i++) {
		double lat[3];
		int j;

		/* The floor: the thread is in the raw loop. */
		lat[T_RAW] = b_kick_floor(&p, sig, &rnd, NULL);
		/* The library's loop, trace off and on (order flips). */
		for (j = 0; j < 2; j++) {
			int m = (i + (size_t)j) & 1 ? T_ON : T_OFF;

			if (m == T_ON)
				trace_on(h->vm);
			lat[m] = b_kick_lib(&p, v, &rnd, "trace kick latency");
			if (m == T_ON)
				trace_off(h->vm);
		}
		if (i >= WARM) {
			for (j = 0; j < 3; j++)
				samples_add(&tc.kick[j], lat[j]);
			samples_add(&tc.kick_on_off, lat[T_ON] / lat[T_OFF]);
			samples_add(&tc.kick_d, lat[T_ON] - lat[T_OFF]);
			samples_add(&tc.kick_off_raw, lat[T_OFF] / lat[T_RAW]);
		}
		b_kick_to_raw(&p, v, "trace kick");
	}
	b_kick_pair_stop(&p, v, sig, t);
}

/* ---- make + kick outside guest mode: the recording itself ---- */
static void tc_outside(struct h_vm *h)
{
	enum { B = 1000, WARM = 2 };
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, 0);
	size_t n = b_count(200, 40), i;

	for (i = 0; i < n + WARM; i++) {
		double per[3] = { 0, 0, 0 };
		int j;

		for (j = 0; j < 2; j++) {
			int m = (i + (size_t)j) & 1 ? T_ON : T_OFF;
			uint64_t t0;
			int k;

			if (m == T_ON)
				trace_on(h->vm);
			t0 = b_now();
			for (k = 0; k < B; k++) {
				vcpureq_make_request(B_REQ_PING, v);
				vcpureq_vcpu_kick(v);
			}
			per[m] = (double)(b_now() - t0) / B;
			if (m == T_ON)
				trace_off(h->vm);
		}
		if (i >= WARM) {
			samples_add(&tc.out[T_OFF], per[T_OFF]);
			samples_add(&tc.out[T_ON], per[T_ON]);
			samples_add(&tc.out_on_off, per[T_ON] / per[T_OFF]);
			samples_add(&tc.out_d, per[T_ON] - per[T_OFF]);
		}
	}
}

int part_trace(int rep)
{
	static struct vr_rec recs[1];
	struct vcpureq_trace_counts c;
	struct vcpureq_vm_opts o;
	struct tc_entry e;
	struct h_vm h;
	pthread_t t;
	int r;

	b_phase("trace: guest-entry overhead, trace off / on");
	memset(recs, 0, sizeof(recs));
	o = vr_opts(recs);
	if (b_vm(&h, 1, H_OUT, &o))
		return H_SKIP;
	memset(&e, 0, sizeof(e));
	e.h = &h;
	e.rounds = b_count(1200, 200);
	if (b_thread(&t, tc_entry_vcpu, &e))
		b_die("pthread_create");
	pthread_join(t, NULL);
	if (atomic_load_explicit(&e.err, memory_order_relaxed))
		b_die("trace: guest-entry loop: %d",
		      atomic_load_explicit(&e.err, memory_order_relaxed));

	b_phase("trace: kick latency, trace off / on");
	r = h_set_prog(&h, 0, H_SPIN);
	if (r)
		b_die("h_set_prog: %d", r);
	tc_kick(&h, &recs[0], rep);

	b_phase("trace: make + kick outside guest mode, trace off / on");
	tc_outside(&h);

	if (vcpureq_trace_counts(h.vm, &c, sizeof(c)) == 0) {
		tc.recorded = c.recorded; /* the last start's */
		tc.lost = c.lost;
	}
	tc.ran = true;
	h_vm_destroy(&h);
	return 0;
}

/* ---- data ---- */
/* The part's member of the data file: "trace": {...} (null if not run);
 * the series by name (T_RAW, T_OFF, T_ON as raw, off, on). */
void trace_data(FILE *f)
{
	static const char *const mode[3] = { "raw", "off", "on" };
	char name[64];
	int m;

	fputs("\"trace\": ", f);
	if (!tc.ran) {
		fputs("null", f);
		return;
	}
	fprintf(f, "{\"ring_events\": %u, \"recorded\": %llu, \"lost\": %llu",
		TC_RING_EVENTS, (unsigned long long)tc.recorded,
		(unsigned long long)tc.lost);
	for (m = 0; m < 3; m++) {
		snprintf(name, sizeof(name), "entry_%s_ns", mode[m]);
		fputs(",\n", f);
		json_samples(f, name, &tc.entry[m]);
		snprintf(name, sizeof(name), "kick_%s_ns", mode[m]);
		fputs(",\n", f);
		json_samples(f, name, &tc.kick[m]);
		if (m == T_RAW)
			continue;
		snprintf(name, sizeof(name), "outside_%s_ns", mode[m]);
		fputs(",\n", f);
		json_samples(f, name, &tc.out[m]);
	}
	fputs(",\n", f);
	json_samples(f, "entry_on_off", &tc.entry_on_off);
	fputs(",\n", f);
	json_samples(f, "entry_on_minus_off_ns", &tc.entry_d);
	fputs(",\n", f);
	json_samples(f, "entry_off_raw", &tc.entry_off_raw);
	fputs(",\n", f);
	json_samples(f, "kick_on_off", &tc.kick_on_off);
	fputs(",\n", f);
	json_samples(f, "kick_on_minus_off_ns", &tc.kick_d);
	fputs(",\n", f);
	json_samples(f, "kick_off_raw", &tc.kick_off_raw);
	fputs(",\n", f);
	json_samples(f, "outside_on_off", &tc.out_on_off);
	fputs(",\n", f);
	json_samples(f, "outside_on_minus_off_ns", &tc.out_d);
	fputs("}", f);
}
