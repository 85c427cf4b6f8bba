/* SPDX-License-Identifier: MIT */
/*
 * The trace (issue 11): the API's errors, exact event counts, the flight
 * recorder's overwrite, export while recording, and real traffic (requests,
 * WAITs, broadcasts, pause/resume, run-on-vCPU, VM_DEAD) whose exported
 * JSON tools/trace-check.py parses and checks against the protocol.
 */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define REQ_B VCPUREQ_ARCH_REQ(2)
#define REQ_WAIT VCPUREQ_ARCH_REQ_FLAGS(3, VCPUREQ_REQUEST_WAIT)
#define HANG_MS (20000 * h_time_scale())

static uint64_t recorded(struct vcpureq_vm *vm)
{
	struct vcpureq_trace_counts c;

	if (vcpureq_trace_counts(vm, &c, sizeof(c)))
		return UINT64_MAX;
	return c.recorded;
}

/* The export, in memory (free it). */
static char *export(struct vcpureq_vm *vm, long *n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	*n = vcpureq_trace_write_json(vm, f);
	fclose(f);
	return buf;
}

/* Run tools/trace-check.py on the export of @vm.  0: it passed; 1: it
 * failed (its report on stderr); H_SKIP: no python3 here (said why). */
static int check_trace_n(struct vcpureq_vm *vm, bool structure_only,
			 bool may_be_empty);

static int check_trace(struct vcpureq_vm *vm, bool structure_only)
{
	return check_trace_n(vm, structure_only, false);
}

/* check_trace(); @may_be_empty: an export of 0 events is checked too. */
static int check_trace_n(struct vcpureq_vm *vm, bool structure_only,
			 bool may_be_empty)
{
	char path[] = "/tmp/vcpureq-trace-XXXXXX";
	char cmd[512];
	int fd = mkstemp(path), st;
	FILE *f;
	long n;

	if (system("command -v python3 >/dev/null 2>&1") != 0) {
		printf("SKIP: python3 is not installed (tools/install-deps.sh test installs it)\n");
		return H_SKIP;
	}
	if (fd < 0 || !(f = fdopen(fd, "w")))
		return 1;
	n = vcpureq_trace_write_json(vm, f);
	fclose(f);
	if (n < 0 || (n == 0 && !may_be_empty)) {
		fprintf(stderr, "export: %ld (%s)\n", n, vcpureq_errmsg());
		unlink(path);
		return 1;
	}
	snprintf(cmd, sizeof(cmd), "python3 %s/tools/trace-check.py %s %s 1>&2",
		 VCPUREQ_SOURCE_DIR, structure_only ? "--structure-only" : "",
		 path);
	st = system(cmd);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		unlink(path);
	else
		fprintf(stderr, "trace kept in %s\n", path);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

TEST_BOTH(trace_api_errors)
{
	struct vcpureq_trace_opts o = VCPUREQ_TRACE_OPTS_INIT;
	struct vcpureq_trace_counts c;
	unsigned char big[sizeof(o) + 8];
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, NULL);
	/* Nothing started yet. */
	CHECK_EQ(vcpureq_trace_counts(h.vm, &c, sizeof(c)), -EINVAL);
	CHECK_EQ(vcpureq_trace_write_json(h.vm, stdout), -EINVAL);
	CHECK_EQ(vcpureq_trace_stop(h.vm), -EINVAL);
	/* Bad arguments. */
	CHECK_EQ(vcpureq_trace_start(NULL, NULL), -EINVAL);
	CHECK_EQ(vcpureq_trace_counts(h.vm, NULL, sizeof(c)), -EINVAL);
	CHECK_EQ(vcpureq_trace_counts(h.vm, &c, 4), -EINVAL);
	o.ring_events = 63;
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), -EINVAL);
	o.ring_events = 100;
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), -EINVAL);
	o.ring_events = 1u << 25;
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), -EINVAL);
	o.ring_events = 128;
	o.size = 4;
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), -EINVAL);
	/* A newer caller's larger struct: zero tail accepted, else -E2BIG. */
	o.size = sizeof(big);
	memset(big, 0, sizeof(big));
	memcpy(big, &o, sizeof(o));
	big[sizeof(o) + 3] = 1;
	CHECK_EQ(vcpureq_trace_start(h.vm, (struct vcpureq_trace_opts *)big),
		 -E2BIG);
	big[sizeof(o) + 3] = 0;
	CHECK_EQ(vcpureq_trace_start(h.vm, (struct vcpureq_trace_opts *)big), 0);
	/* Started: a second start is refused, the size is fixed. */
	CHECK_EQ(vcpureq_trace_start(h.vm, NULL), -EBUSY);
	CHECK_EQ(vcpureq_trace_counts(h.vm, &c, sizeof(c)), 0);
	CHECK(c.recording);
	CHECK_EQ(c.ring_events, 128);
	CHECK_EQ(vcpureq_trace_write_json(h.vm, NULL), -EINVAL);
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);
	CHECK_EQ(vcpureq_trace_stop(h.vm), -EINVAL);
	o.size = sizeof(o);
	o.ring_events = 256;
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), -EINVAL);
	o.ring_events = 0; /* 0: keep the VM's */
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), 0);
	CHECK_EQ(vcpureq_trace_counts(h.vm, &c, sizeof(c)), 0);
	CHECK_EQ(c.ring_events, 128);
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);
	/* After destroy. */
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);
	CHECK_EQ(vcpureq_trace_start(h.vm, NULL), -ESHUTDOWN);
	CHECK_EQ(vcpureq_trace_stop(h.vm), -ESHUTDOWN);
	CHECK_EQ(vcpureq_trace_write_json(h.vm, stdout), -ESHUTDOWN);
	h_vm_destroy(&h);
	return 0;
}

/*
 * Exactly the events each call records, on vCPUs with no thread (outside
 * guest mode): nothing while off; then a make is 1 event, a request 4
 * (call, make, kick, end), a WAIT broadcast over 2 vCPUs 8 (call, 2 makes,
 * 2 kicks, wait begin and end with no target in guest mode, end).
 */
TEST_BOTH(trace_exact_events)
{
	struct h_vm h;
	char *json;
	long n;

	H_VM(&h, be, 2, H_SPIN, NULL);
	CHECK_EQ(vcpureq_trace_start(h.vm, NULL), 0);
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);
	CHECK_EQ(vcpureq_make_request(REQ_A, vcpureq_vm_vcpu(h.vm, 0)), 0);
	CHECK_EQ(recorded(h.vm), 0); /* off: nothing */

	CHECK_EQ(vcpureq_trace_start(h.vm, NULL), 0);
	CHECK_EQ(vcpureq_make_request(REQ_A, vcpureq_vm_vcpu(h.vm, 0)), 0);
	CHECK_EQ(recorded(h.vm), 1);
	CHECK_EQ(vcpureq_request(REQ_B, vcpureq_vm_vcpu(h.vm, 1)), 0);
	CHECK_EQ(recorded(h.vm), 5);
	CHECK_EQ(vcpureq_make_all_cpus_request(h.vm, REQ_WAIT), 0);
	CHECK_EQ(recorded(h.vm), 13);
	json = export(h.vm, &n);
	CHECK(json != NULL);
	CHECK_EQ(n, 13);
	CHECK(strstr(json, "\"name\":\"make ARCH(1)\",\"ph\":\"X\"") != NULL);
	CHECK(strstr(json, "\"name\":\"kick: outside\",\"ph\":\"i\"") != NULL);
	CHECK(strstr(json, "\"name\":\"broadcast\",\"ph\":\"B\"") != NULL);
	CHECK(strstr(json, "\"name\":\"make ARCH(3)|WAIT\"") != NULL);
	CHECK(strstr(json, "\"lost\":0") != NULL);
	/* Nobody handled anything yet: no flow. */
	CHECK(strstr(json, "\"ph\":\"s\"") == NULL);
	free(json);
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);

	/* A restart shows only what follows it. */
	CHECK_EQ(vcpureq_trace_start(h.vm, NULL), 0);
	CHECK_EQ(recorded(h.vm), 0);
	CHECK_EQ(vcpureq_make_request(REQ_B, vcpureq_vm_vcpu(h.vm, 0)), 0);
	json = export(h.vm, &n);
	CHECK(json != NULL);
	CHECK_EQ(n, 1);
	CHECK(strstr(json, "make ARCH(2)") != NULL);
	CHECK(strstr(json, "make ARCH(1)") == NULL);
	free(json);
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);
	h_vm_destroy(&h);
	return 0;
}

/* A vCPU added while tracing gets its own ring; its events are exported;
 * the requester's track is named after its thread, in plain characters. */
TEST_BOTH(trace_vcpu_added_while_tracing)
{
	struct h_vm h;
	char *json;
	long n;

	H_VM(&h, be, 1, H_SPIN, NULL);
	CHECK_EQ(vcpureq_trace_start(h.vm, NULL), 0);
	CHECK_EQ(h_add_vcpu(&h, 7, H_SPIN), 0);
	/* A thread name with characters a JSON string cannot hold as is. */
	CHECK_EQ(pthread_setname_np(pthread_self(), "rq\"a\\b\tc"), 0);
	CHECK_EQ(vcpureq_make_request(REQ_A, vcpureq_vm_vcpu(h.vm, 1)), 0);
	CHECK_EQ(recorded(h.vm), 1);
	json = export(h.vm, &n);
	CHECK(json != NULL);
	CHECK_EQ(n, 1);
	CHECK(strstr(json, "\"vcpu\":1,\"vcpu_id\":7") != NULL);
	CHECK(strstr(json, "(rq?a?b?c)\"") != NULL);
	free(json);
	h_vm_destroy(&h);
	return 0;
}

/*
 * The flight recorder: a full ring overwrites its oldest events and counts
 * them lost; the export holds at most a ring's worth and still parses, its
 * slices nesting.
 */
TEST_BOTH(trace_ring_overwrite)
{
	struct vcpureq_trace_opts o = VCPUREQ_TRACE_OPTS_INIT;
	struct vcpureq_trace_counts c;
	struct h_vm h;
	char *json;
	long n;
	int i, r;

	H_VM(&h, be, 1, H_SPIN, NULL);
	o.ring_events = 64;
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), 0);
	for (i = 0; i < 1000; i++)
		CHECK_EQ(vcpureq_make_request(REQ_A, vcpureq_vm_vcpu(h.vm, 0)), 0);
	CHECK_EQ(vcpureq_trace_counts(h.vm, &c, sizeof(c)), 0);
	CHECK_EQ(c.recorded, 1000);
	CHECK_EQ(c.lost, 1000 - 64);
	json = export(h.vm, &n);
	CHECK(json != NULL);
	CHECK_EQ(n, 64);
	CHECK(strstr(json, "\"lost\":936") != NULL);
	free(json);
	r = check_trace(h.vm, true);
	if (r == H_SKIP)
		goto out;
	CHECK_EQ(r, 0);
out:
	h_vm_destroy(&h);
	return r;
}

/* ---- real traffic ---- */

static _Atomic uint64_t handled_a, handled_b, handled_wait;

static int handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0)
		atomic_fetch_add(&handled_a, 1);
	if (vcpureq_check_request(REQ_B, v) > 0)
		atomic_fetch_add(&handled_b, 1);
	if (vcpureq_check_request(REQ_WAIT, v) > 0)
		atomic_fetch_add(&handled_wait, 1);
	return 0;
}

static struct h_vm *th;
static _Atomic int traffic_stop;

static int work_fn(struct vcpureq_vcpu *v, void *arg)
{
	(void)v;
	return (int)(uintptr_t)arg;
}

static void *requester(void *arg)
{
	unsigned int me = (unsigned int)(uintptr_t)arg, i = 0;

	while (!atomic_load(&traffic_stop)) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(th->vm, (me + i) % th->nr);

		vcpureq_request(i % 3 ? REQ_A : REQ_WAIT, v);
		if (i % 7 == 0)
			vcpureq_make_all_cpus_request(th->vm, REQ_B);
		i++;
		h_sleep_us(100);
	}
	return NULL;
}

/*
 * Two requester threads make requests and WAIT requests while the main
 * thread runs broadcasts, pause/resume cycles and run-on-vCPU items, then
 * VM_DEAD; the export is checked against the protocol by
 * tools/trace-check.py, and holds every kind of event the traffic makes.
 */
TEST_BOTH(trace_traffic_obeys_protocol)
{
	struct vcpureq_vm_opts vo = { .handle_requests = handler };
	struct vcpureq_trace_opts o = VCPUREQ_TRACE_OPTS_INIT;
	struct vcpureq_trace_counts c;
	pthread_t rq[2];
	struct h_vm h;
	char *json;
	long n;
	int i, r, res;

	H_VM(&h, be, 4, H_SPIN, &vo);
	th = &h;
	atomic_store(&traffic_stop, 0);
	o.ring_events = 1u << 18; /* nothing of this run overwritten */
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), 0);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 4; i++)
		CHECK(h_wait_until(h_in_guest, &h, (unsigned int)i, HANG_MS));
	for (i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&rq[i], NULL, requester,
					(void *)(uintptr_t)i), 0);
	for (i = 0; i < 20; i++) {
		CHECK(vcpureq_make_all_cpus_request(h.vm, REQ_WAIT) >= 0);
		CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
		h_sleep_us(1000);
		CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
		res = -1;
		CHECK_EQ(vcpureq_run_on_vcpu(vcpureq_vm_vcpu(h.vm, (unsigned int)i % 4),
					     work_fn, (void *)(uintptr_t)i, &res), 0);
		CHECK_EQ(res, i);
		CHECK_EQ(vcpureq_run_on_vcpu_async(vcpureq_vm_vcpu(h.vm, (unsigned int)(i + 1) % 4),
						   work_fn, NULL, NULL), 0);
		h_sleep_us(2000);
	}
	atomic_store(&traffic_stop, 1);
	for (i = 0; i < 2; i++)
		pthread_join(rq[i], NULL);
	CHECK(vcpureq_vm_dead(h.vm) >= 0);
	h_join_all(&h);
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);
	CHECK_EQ(vcpureq_trace_counts(h.vm, &c, sizeof(c)), 0);
	CHECK_EQ(c.lost, 0);
	json = export(h.vm, &n);
	CHECK(json != NULL);
	CHECK((uint64_t)n == c.recorded);
	/* Every kind of event the traffic makes is there. */
	CHECK(strstr(json, "\"name\":\"guest\",\"ph\":\"B\"") != NULL);
	CHECK(strstr(json, "\"name\":\"kick: signal\"") != NULL);
	CHECK(strstr(json, "\"name\":\"wait\",\"ph\":\"E\"") != NULL);
	CHECK(strstr(json, "\"name\":\"ack\"") != NULL);
	CHECK(strstr(json, "\"name\":\"pause\",\"ph\":\"E\"") != NULL);
	CHECK(strstr(json, "\"name\":\"parked\",\"ph\":\"B\"") != NULL);
	CHECK(strstr(json, "\"name\":\"parked\",\"ph\":\"i\"") != NULL);
	CHECK(strstr(json, "\"name\":\"unpause\"") != NULL);
	CHECK(strstr(json, "\"name\":\"queue work\"") != NULL);
	CHECK(strstr(json, "\"name\":\"work\",\"ph\":\"B\"") != NULL);
	CHECK(strstr(json, "\"name\":\"handle ARCH(1)\"") != NULL);
	CHECK(strstr(json, "\"name\":\"make VM_DEAD") != NULL);
	CHECK(strstr(json, "\"ph\":\"f\",\"pid\"") != NULL);
	free(json);
	r = check_trace(h.vm, false);
	h_vm_destroy(&h);
	return r;
}

/*
 * Export while recording: requesters and vCPUs keep recording, into rings
 * small enough to wrap while they are read, while the main thread exports
 * 30 times; every export completes, and every tenth, taken by the checker,
 * parses and nests (each event is read whole or skipped under the slot
 * seqlock).
 */
TEST_BOTH(trace_export_while_recording)
{
	struct vcpureq_vm_opts vo = { .handle_requests = handler };
	struct vcpureq_trace_opts o = VCPUREQ_TRACE_OPTS_INIT;
	pthread_t rq[2];
	struct h_vm h;
	char *json;
	long n;
	int i, r = 0;

	H_VM(&h, be, 2, H_SPIN, &vo);
	th = &h;
	atomic_store(&traffic_stop, 0);
	o.ring_events = 256; /* small: the ring wraps while we read it */
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), 0);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&rq[i], NULL, requester,
					(void *)(uintptr_t)i), 0);
	for (i = 0; i < 30 && !r; i++) {
		json = export(h.vm, &n);
		CHECK(json != NULL);
		CHECK(n >= 0);
		CHECK(strstr(json, "\"otherData\"") != NULL);
		free(json);
		if (i % 10 == 9)
			r = check_trace(h.vm, true);
		h_sleep_us(2000);
	}
	atomic_store(&traffic_stop, 1);
	for (i = 0; i < 2; i++)
		pthread_join(rq[i], NULL);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return r;
}

/*
 * A trace started on a running VM (the normal case): every vCPU is already
 * in a guest-mode instance when vcpureq_trace_start() is called, so the
 * instance's end is recorded but not its begin.  The export begins such
 * slices at the trace's start ("before_start") and the trace, with
 * requests, WAIT broadcasts, kicks, a pause and VM_DEAD after the start,
 * passes tools/trace-check.py (every kick has its exit).
 */
static int traced_from_running(enum vcpureq_backend be, enum h_prog prog,
			       bool (*state)(struct h_vm *, unsigned int),
			       bool paused)
{
	struct vcpureq_vm_opts vo = { .handle_requests = handler };
	struct vcpureq_trace_opts o = VCPUREQ_TRACE_OPTS_INIT;
	struct vcpureq_trace_counts c;
	pthread_t rq[2];
	struct h_vm h;
	char *json;
	long n;
	int i, r;

	H_VM(&h, be, 4, prog, &vo);
	th = &h;
	atomic_store(&traffic_stop, 0);
	CHECK_EQ(h_start(&h), 0);
	for (i = 0; i < 4; i++)
		CHECK(h_wait_until(state, &h, (unsigned int)i, HANG_MS));
	if (paused)
		CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
	o.ring_events = 1u << 18; /* nothing of this run overwritten */
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), 0);
	if (paused)
		CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
	for (i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&rq[i], NULL, requester,
					(void *)(uintptr_t)i), 0);
	for (i = 0; i < 10; i++) {
		CHECK(vcpureq_make_all_cpus_request(h.vm, REQ_WAIT) >= 0);
		CHECK_EQ(vcpureq_pause(h.vm, NULL, 0, NULL), 0);
		CHECK_EQ(vcpureq_resume(h.vm, NULL, 0), 0);
		h_sleep_us(1000);
	}
	atomic_store(&traffic_stop, 1);
	for (i = 0; i < 2; i++)
		pthread_join(rq[i], NULL);
	if (prog == H_HALT) {
		/* VM_DEAD does not wake a sleeper (NO_WAKEUP): stop them. */
		CHECK_EQ(h_stop_all(&h), 0);
	} else {
		CHECK(vcpureq_vm_dead(h.vm) >= 0);
		h_join_all(&h);
	}
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);
	CHECK_EQ(vcpureq_trace_counts(h.vm, &c, sizeof(c)), 0);
	CHECK_EQ(c.lost, 0);
	json = export(h.vm, &n);
	CHECK(json != NULL);
	/* The slices under way at the start are there, begun at it. */
	CHECK(strstr(json, "\"before_start\":true") != NULL);
	CHECK(strstr(json, "\"began_before_start\":true") != NULL);
	if (state == h_in_guest)
		CHECK(strstr(json, "\"name\":\"guest\",\"ph\":\"B\",\"pid\"") != NULL);
	free(json);
	r = check_trace(h.vm, false);
	h_vm_destroy(&h);
	return r;
}

TEST_BOTH(trace_started_in_guest_mode)
{
	return traced_from_running(be, H_SPIN, h_in_guest, false);
}

/* The same with every vCPU asleep in vcpureq_vcpu_block() at the start. */
TEST_BOTH(trace_started_while_blocked)
{
	return traced_from_running(be, H_HALT, h_sleeping, false);
}

/* The same with every vCPU parked by a pause at the start. */
TEST_BOTH(trace_started_while_parked)
{
	return traced_from_running(be, H_SPIN, h_in_guest, true);
}

/*
 * An empty trace exports as a valid, empty timeline (0 events, JSON that
 * the checker accepts): a trace started and stopped on a VM whose vCPUs
 * never ran, and one on a VM with no vCPUs at all (no ring but the VM's).
 * Once, qsort(NULL, 0, ...) made this undefined behaviour.
 */
TEST_BOTH(trace_export_empty)
{
	struct vcpureq_vm_opts vo = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm *vm;
	struct h_vm h;
	char *json;
	long n;
	int r;

	H_VM(&h, be, 2, H_SPIN, NULL);
	CHECK_EQ(vcpureq_trace_start(h.vm, NULL), 0);
	CHECK_EQ(vcpureq_trace_stop(h.vm), 0);
	json = export(h.vm, &n);
	CHECK(json != NULL);
	CHECK_EQ(n, 0);
	CHECK(strstr(json, "\"traceEvents\":[") != NULL);
	CHECK(strstr(json, "\"exported\":0") != NULL);
	free(json);
	r = check_trace_n(h.vm, false, true);
	h_vm_destroy(&h);
	if (r)
		return r;

	vo.backend = be;
	CHECK_EQ(vcpureq_vm_open(&vo, -1, &vm), 0);
	CHECK_EQ(vcpureq_vm_nr_vcpus(vm), 0);
	CHECK_EQ(vcpureq_trace_start(vm, NULL), 0);
	json = export(vm, &n); /* while recording, too */
	CHECK(json != NULL);
	CHECK_EQ(n, 0);
	free(json);
	CHECK_EQ(vcpureq_trace_stop(vm), 0);
	json = export(vm, &n);
	CHECK(json != NULL);
	CHECK_EQ(n, 0);
	free(json);
	CHECK_EQ(vcpureq_trace_write_json(vm, NULL), -EINVAL);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}

/*
 * Each exported event is whole, even while its slot is being rewritten: a
 * recorder thread kicks an unbound vCPU without pause (one "kick: outside"
 * event per kick into a 64-event ring, lapped every 64 kicks) while this thread
 * exports again and again, and in every export the recorder's events come
 * in its own recording order (tseq) when sorted by time.  An event whose
 * slot was published before its fields were written (the
 * TRACE_PUBLISH_EARLY mutant) mixes a new timestamp with an old tseq, and
 * shows as a thread's event that comes after a later one.
 *
 * The tear is a window of a few stores, hit only by an export that runs while
 * the recorder records, and on a busy machine the two threads share a core
 * for long stretches (5,000 exports missed the mutant in one CI run out of
 * a few).  So the loop counts the exports during which the recorder made
 * progress (both ran at once) and goes on until 100,000 of them, about 4 s
 * quiet, with a 20 s cap for a machine too busy to run them together.  With
 * the mutant, 12 runs needed 23 to 10,916 such exports (mean 4,300): a miss
 * in 100,000 has odds about e^-23.
 */
static _Atomic int tear_stop;
static _Atomic unsigned long tear_kicks;

static void *tear_recorder(void *arg)
{
	struct vcpureq_vcpu *v = arg;

	while (!atomic_load_explicit(&tear_stop, memory_order_relaxed)) {
		vcpureq_vcpu_kick(v);
		atomic_fetch_add_explicit(&tear_kicks, 1, memory_order_relaxed);
	}
	return NULL;
}

/* The export's events of thread @tid must have increasing "tseq" in file
 * (time) order; returns the number of inversions. */
static unsigned int tseq_inversions(const char *json, unsigned int tid)
{
	char key[32];
	const char *p = json;
	unsigned int bad = 0;
	long last = -1;

	snprintf(key, sizeof(key), "\"tid\":%u,", tid);
	while ((p = strstr(p, key))) {
		const char *eol = strchr(p, '\n'), *q = strstr(p, "\"tseq\":");
		long seq;

		if (!q || (eol && q > eol)) {
			p += strlen(key);
			continue;
		}
		seq = strtol(q + 7, NULL, 10);
		if (seq <= last)
			bad++;
		last = seq;
		p = q;
	}
	return bad;
}

TEST(trace_events_whole_under_rewrite)
{
	struct vcpureq_trace_opts o = VCPUREQ_TRACE_OPTS_INIT;
	struct h_vm h;
	pthread_t rec;
	unsigned int tid = 0, bad = 0, i, with_events = 0, overlapped = 0;
	unsigned long k0;
	struct timespec t0, now;
	char *json, *t;
	long n;

	(void)be;
	H_VM(&h, VCPUREQ_BACKEND_THREAD, 1, H_SPIN, NULL);
	o.ring_events = 64;
	CHECK_EQ(vcpureq_trace_start(h.vm, &o), 0);
	atomic_store(&tear_stop, 0);
	CHECK_EQ(pthread_create(&rec, NULL, tear_recorder,
				vcpureq_vm_vcpu(h.vm, 0)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; overlapped < 100000 && !bad; i++) {
		if (!(i & 255)) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - t0.tv_sec > 20)
				break;
		}
		k0 = atomic_load_explicit(&tear_kicks, memory_order_relaxed);
		json = export(h.vm, &n);
		CHECK(json != NULL && n >= 0);
		if (atomic_load_explicit(&tear_kicks, memory_order_relaxed) != k0)
			overlapped++;
		if (!tid && (t = strstr(json, "\"name\":\"kick: outside\"")) &&
		    (t = strstr(t, "\"tid\":")))
			tid = (unsigned int)strtoul(t + 6, NULL, 10);
		if (tid && n > 0) {
			with_events++;
			bad = tseq_inversions(json, tid);
			if (bad)
				fprintf(stderr, "export %u: %u events of the recorder out of its order: a torn event\n",
					i, bad);
		}
		free(json);
	}
	atomic_store(&tear_stop, 1);
	pthread_join(rec, NULL);
	printf("%u exports, %u of them while the recorder recorded\n", i,
	       overlapped);
	CHECK_EQ(bad, 0);
	CHECK(tid != 0);
	CHECK(with_events > 100);
	h_vm_destroy(&h);
	return 0;
}
