/* SPDX-License-Identifier: MIT */
/*
 * Trace export: the Chrome trace-event JSON format ("JSON Object Format",
 * the one Perfetto and chrome://tracing open).  docs/trace.md lists what
 * each event becomes; tools/trace-check.py checks the result against the
 * protocol.
 *
 * The events of every ring are read under the slot seqlock of trace.c,
 * sorted by timestamp (ties: thread, then the thread's own event order),
 * and written as:
 *   - one track per thread (pid = the process, tid = the thread), named
 *     "vCPU <index> (id <id>)" for a thread that ran a vCPU, else
 *     "requester <tid> (<comm>)";
 *   - B/E slices for what has a duration (guest-mode instance, lockless
 *     walk, block, parking, work item; request call, WAIT, pause,
 *     resume), instants for kick decisions, acknowledgements and aborts,
 *     1 ns X slices for makes, handles and clears (so flows bind to them);
 *   - flows (v1: "s" then "f" with "bp":"e") from each make to the handle
 *     or clear that consumed its bit (match_flows()), and from each work
 *     item's queueing to its run.
 * A slice under way when the trace started (a guest-mode instance, a
 * block, a parking, a work item, a WAIT, a call...) has its E recorded
 * but not its B: the export begins it at the trace's start, with
 * "before_start":true, and its E carries "began_before_start":true
 * (begun_before(): an E that no open slice of its track matches while
 * nothing is open there is one).  Any other E whose B was overwritten by
 * a full ring is left out, so slices on a track always nest.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct tev {
	uint64_t ts, b;
	uint32_t tid, a, tseq;
	uint16_t type, vcpu;
};

/* Read the events of @r positioned since its base into @v (grown). */
static int ring_collect(const struct vcpureq__trace_ring *r, unsigned int n,
			uint64_t start_ns, struct tev **v, size_t *len,
			size_t *cap)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t base = atomic_load_explicit(&r->base, memory_order_relaxed);
	uint64_t pos = head - base > n ? head - n : base;

	for (; pos < head; pos++) {
		const struct vcpureq__trace_ev *ev = &r->ev[pos & (n - 1)];
		struct tev e;
		uint64_t s1, s2;

		/* Acquire: pairs with the recorder's release of seq [T2]. */
		s1 = atomic_load_explicit(&ev->seq, memory_order_acquire);
		if (s1 != pos + 1)
			continue; /* overwritten, dropped, or being written */
		e.ts = atomic_load_explicit(&ev->ts, memory_order_relaxed);
		e.b = atomic_load_explicit(&ev->b, memory_order_relaxed);
		e.tid = atomic_load_explicit(&ev->tid, memory_order_relaxed);
		e.a = atomic_load_explicit(&ev->a, memory_order_relaxed);
		e.type = atomic_load_explicit(&ev->type, memory_order_relaxed);
		e.vcpu = atomic_load_explicit(&ev->vcpu, memory_order_relaxed);
		e.tseq = atomic_load_explicit(&ev->tseq, memory_order_relaxed);
		/* [T3] pairs with the recorder's [T1]: if a field above came
		 * from a later write of this slot, s2 sees its BUSY. */
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&ev->seq, memory_order_relaxed);
		if (s2 != s1 || e.type >= VCPUREQ__TEV_NR || e.ts < start_ns)
			continue;
		if (*len == *cap) {
			size_t c = *cap ? *cap * 2 : 4096;
			struct tev *nv = realloc(*v, c * sizeof(**v));

			if (!nv)
				return -ENOMEM;
			*v = nv;
			*cap = c;
		}
		(*v)[(*len)++] = e;
	}
	return 0;
}

static int tev_cmp(const void *pa, const void *pb)
{
	const struct tev *a = pa, *b = pb;

	if (a->ts != b->ts)
		return a->ts < b->ts ? -1 : 1;
	if (a->tid != b->tid)
		return a->tid < b->tid ? -1 : 1;
	if (a->tseq != b->tseq)
		return a->tseq < b->tseq ? -1 : 1;
	return 0;
}

/* Events recorded by the thread running the vCPU. */
static bool vcpu_side(unsigned int type)
{
	switch (type) {
	case VCPUREQ__TEV_enter: case VCPUREQ__TEV_leave:
	case VCPUREQ__TEV_walk_begin: case VCPUREQ__TEV_block:
	case VCPUREQ__TEV_wake: case VCPUREQ__TEV_handle:
	case VCPUREQ__TEV_clear: case VCPUREQ__TEV_park:
	case VCPUREQ__TEV_unpark: case VCPUREQ__TEV_work_begin:
	case VCPUREQ__TEV_work_end:
		return true;
	default:
		return false;
	}
}

static void req_name(char *buf, size_t size, uint32_t req)
{
	unsigned int nr = req & VCPUREQ_REQUEST_MASK;
	const char *base;
	char tmp[32];
	size_t l;

	if (req & VCPUREQ_REQUEST_NO_ACTION)
		base = "no request";
	else if (nr == (VCPUREQ_REQ_TLB_FLUSH & VCPUREQ_REQUEST_MASK))
		base = "TLB_FLUSH";
	else if (nr == (VCPUREQ_REQ_VM_DEAD & VCPUREQ_REQUEST_MASK))
		base = "VM_DEAD";
	else if (nr == (VCPUREQ_REQ_UNBLOCK & VCPUREQ_REQUEST_MASK))
		base = "UNBLOCK";
	else if (nr == (VCPUREQ__REQ_PAUSE & VCPUREQ_REQUEST_MASK))
		base = "PAUSE";
	else if (nr == (VCPUREQ__REQ_WORK & VCPUREQ_REQUEST_MASK))
		base = "WORK";
	else {
		snprintf(tmp, sizeof(tmp), "ARCH(%u)",
			 nr - VCPUREQ_REQUEST_ARCH_BASE);
		base = tmp;
	}
	snprintf(buf, size, "%s", base);
	l = strlen(buf);
	if (req & VCPUREQ_REQUEST_WAIT)
		l += (size_t)snprintf(buf + l, size > l ? size - l : 0, "|WAIT");
	if ((req & VCPUREQ_REQUEST_NO_WAKEUP) && l < size)
		snprintf(buf + l, size - l, "|NO_WAKEUP");
}

static const char *mode_name(uint32_t m)
{
	switch (m) {
	case VCPUREQ_OUTSIDE_GUEST_MODE: return "OUTSIDE_GUEST_MODE";
	case VCPUREQ_IN_GUEST_MODE: return "IN_GUEST_MODE";
	case VCPUREQ_EXITING_GUEST_MODE: return "EXITING_GUEST_MODE";
	case VCPUREQ_READING_SHADOW_PAGE_TABLES:
		return "READING_SHADOW_PAGE_TABLES";
	default: return "?";
	}
}

static const char *kick_name(uint32_t k)
{
	static const char *const n[] = {
		[VCPUREQ__KICK_WOKE] = "kick: woke",
		[VCPUREQ__KICK_SIGNAL] = "kick: signal",
		[VCPUREQ__KICK_SELF] = "kick: self",
		[VCPUREQ__KICK_COALESCED] = "kick: coalesced",
		[VCPUREQ__KICK_OUTSIDE] = "kick: outside",
		[VCPUREQ__KICK_READING] = "kick: reading",
		[VCPUREQ__KICK_FAILED] = "kick: failed",
		[VCPUREQ__KICK_RECHECK] = "kick: signal (re-kick)",
	};

	return k < sizeof(n) / sizeof(n[0]) && n[k] ? n[k] : "kick: ?";
}

static const char *call_name(uint64_t c)
{
	switch (c) {
	case VCPUREQ__CALL_REQUEST: return "request";
	case VCPUREQ__CALL_BROADCAST: return "broadcast";
	case VCPUREQ__CALL_KICK: return "kick";
	case VCPUREQ__CALL_POST: return "post_interrupt";
	default: return "make_request";
	}
}

/* Per-thread state of the writer: the track's open slices. */
#define MAX_DEPTH 16
struct track {
	uint32_t tid;
	int vcpu;           /* first vCPU it ran, or -1 */
	unsigned int depth;
	const char *open[MAX_DEPTH];
	/* begun_before(): the slices under way at the start, innermost
	 * first (the order their E's come in), and the vCPU of each. */
	unsigned int nr_before;
	const char *before[MAX_DEPTH];
	uint16_t before_vcpu[MAX_DEPTH];
};

static int track_cmp(const void *pa, const void *pb)
{
	const struct track *a = pa, *b = pb;

	return a->tid < b->tid ? -1 : a->tid > b->tid;
}

static struct track *track_of(struct track *t, size_t n, uint32_t tid)
{
	struct track key = { .tid = tid };

	return bsearch(&key, t, n, sizeof(*t), track_cmp);
}

struct writer {
	FILE *f;
	int pid;
	bool first;
	unsigned int argn; /* args written in the current "args" object */
	const struct vcpureq_vm *vm;
	bool cur_before;   /* the event being written closes a slice that
			      began before the start (begun_before()) */
};

/* Before each argument of an "args" object: the comma if needed. */
static FILE *arg(struct writer *w)
{
	if (w->argn++)
		fputc(',', w->f);
	return w->f;
}

static void ts_us(char *buf, size_t size, uint64_t ns)
{
	snprintf(buf, size, "%" PRIu64 ".%03u", ns / 1000, (unsigned)(ns % 1000));
}

static void sep(struct writer *w)
{
	fputs(w->first ? "\n" : ",\n", w->f);
	w->first = false;
}

/* The common head of an event: name, phase, pid, tid, ts. */
static void head(struct writer *w, const char *name, const char *ph,
		 uint32_t tid, uint64_t ts)
{
	char t[32];

	ts_us(t, sizeof(t), ts);
	sep(w);
	fprintf(w->f, "{\"name\":\"%s\",\"ph\":\"%s\",\"pid\":%d,\"tid\":%u,\"ts\":%s",
		name, ph, w->pid, tid, t);
}

/* Open the "args" object: the thread's event count, and the vCPU if the
 * event has one. */
static void vcpu_args(struct writer *w, const struct tev *e)
{
	fputs("\"args\":{", w->f);
	w->argn = 0;
	/* The recording thread's own event count: the checker sees that
	 * timestamp order is each thread's program order. */
	fprintf(arg(w), "\"tseq\":%u", e->tseq);
	if (e->vcpu == VCPUREQ__TRACE_NO_VCPU)
		return;
	fprintf(arg(w), "\"vcpu\":%u", e->vcpu);
	fprintf(arg(w), "\"vcpu_id\":%lu",
		e->vcpu < vcpureq__nr_vcpus(w->vm) ? w->vm->vcpus[e->vcpu]->id : 0ul);
}

/* Returns false (and writes nothing) past MAX_DEPTH, deeper than any real
 * nesting: that slice is not shown, and neither is its end. */
static bool begin(struct writer *w, struct track *tr, const char *name,
		  const struct tev *e)
{
	if (tr->depth == MAX_DEPTH)
		return false;
	tr->open[tr->depth++] = name;
	head(w, name, "B", e->tid, e->ts);
	fputc(',', w->f);
	vcpu_args(w, e);
	return true;
}

/* Returns false (and writes nothing) if @name is not the open slice. */
static bool end(struct writer *w, struct track *tr, const char *name,
		const struct tev *e)
{
	if (!tr->depth || strcmp(tr->open[tr->depth - 1], name))
		return false;
	tr->depth--;
	head(w, name, "E", e->tid, e->ts);
	fputc(',', w->f);
	vcpu_args(w, e);
	if (w->cur_before)
		fputs("\"began_before_start\":true", arg(w));
	return true;
}

static void instant(struct writer *w, const char *name, const struct tev *e)
{
	head(w, name, "i", e->tid, e->ts);
	fputs(",\"s\":\"t\",", w->f);
	vcpu_args(w, e);
}

/* A 1 ns slice (a flow binds to the slice that encloses its point). */
static void point(struct writer *w, const char *name, const struct tev *e)
{
	head(w, name, "X", e->tid, e->ts);
	fputs(",\"dur\":0.001,", w->f);
	vcpu_args(w, e);
}

static void flow(struct writer *w, const char *ph, uint64_t id,
		 const char *cat, const struct tev *e)
{
	head(w, cat, ph, e->tid, e->ts);
	fprintf(w->f, ",\"cat\":\"%s\",\"id\":%" PRIu64 "%s}", cat, id,
		ph[0] == 'f' ? ",\"bp\":\"e\"" : "");
}

/*
 * Which make each handle or clear consumed.  Per vCPU and number the bit
 * goes set, clear, set, clear...: a make that found it clear (not
 * coalesced) began an instance, and the k-th handle or clear of the pair
 * consumed the k-th instance, with the makes that coalesced into it.  In
 * timestamp order (a make stamped before its set, a handle after its
 * clear) the k-th new make is taken for the k-th instance, and a coalesced
 * make joins the newest instance begun before it; when requesters race,
 * two flows may cross, never one go backwards.  to[j]: the consumer of
 * make j, or -1; from[i]: the first make consumed by event i, or -1, the
 * next in next[].
 */
struct flows {
	long *to, *from, *next;
	/* The ids of the work items whose queueing is in the export (sorted):
	 * a flow ends at an item's run only if it starts there. */
	uint64_t *queued;
	size_t nr_queued;
};

static int u64_cmp(const void *pa, const void *pb)
{
	uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;

	return a < b ? -1 : a > b;
}

static bool was_queued(const struct flows *fl, uint64_t id)
{
	return bsearch(&id, fl->queued, fl->nr_queued, sizeof(id), u64_cmp);
}

static int match_flows(const struct tev *v, size_t n, struct flows *fl)
{
	unsigned int maxv = 0;
	size_t i, keys;
	/* Per key: the new makes not yet consumed, a FIFO through qnext;
	 * each new make heads the list (inext) of makes of its instance. */
	long *qhead, *qtail, *qnext, *itail;

	for (i = 0; i < n; i++)
		if (v[i].vcpu != VCPUREQ__TRACE_NO_VCPU && v[i].vcpu + 1u > maxv)
			maxv = v[i].vcpu + 1u;
	keys = (size_t)maxv * 64;
	fl->to = malloc(n * sizeof(long) + 1);
	fl->from = malloc(n * sizeof(long) + 1);
	fl->next = malloc(n * sizeof(long) + 1);
	fl->queued = malloc(n * sizeof(uint64_t) + 1);
	qhead = malloc(keys * sizeof(long) + 1);
	qtail = malloc(keys * sizeof(long) + 1);
	qnext = malloc(n * sizeof(long) + 1);
	itail = malloc(n * sizeof(long) + 1);
	if (!fl->to || !fl->from || !fl->next || !fl->queued || !qhead ||
	    !qtail || !qnext || !itail) {
		free(qhead);
		free(qtail);
		free(qnext);
		free(itail);
		return -ENOMEM;
	}
	for (i = 0; i < keys; i++)
		qhead[i] = qtail[i] = -1;
	for (i = 0; i < n; i++) {
		const struct tev *e = &v[i];
		size_t k = (size_t)e->vcpu * 64 + (e->a & VCPUREQ_REQUEST_MASK);
		long j, q;

		fl->to[i] = fl->from[i] = fl->next[i] = -1;
		if (e->type == VCPUREQ__TEV_work_queue && e->b)
			fl->queued[fl->nr_queued++] = e->b;
		if (e->vcpu == VCPUREQ__TRACE_NO_VCPU)
			continue;
		if (e->type == VCPUREQ__TEV_make &&
		    !(e->a & VCPUREQ_REQUEST_NO_ACTION)) {
			if (!e->b || qtail[k] < 0) {
				/* A new instance (or a coalesced make whose
				 * instance began before the trace). */
				qnext[i] = -1;
				itail[i] = (long)i;
				if (qtail[k] < 0)
					qhead[k] = (long)i;
				else
					qnext[qtail[k]] = (long)i;
				qtail[k] = (long)i;
			} else {
				/* Joins the newest instance. */
				q = qtail[k];
				fl->next[itail[q]] = (long)i;
				itail[q] = (long)i;
			}
		} else if ((e->type == VCPUREQ__TEV_handle ||
			    e->type == VCPUREQ__TEV_clear) && qhead[k] >= 0) {
			q = qhead[k];
			fl->from[i] = q;
			for (j = q; j >= 0; j = fl->next[j])
				fl->to[j] = (long)i;
			qhead[k] = qnext[q];
			if (qhead[k] < 0)
				qtail[k] = -1;
		}
	}
	free(qhead);
	free(qtail);
	free(qnext);
	free(itail);
	qsort(fl->queued, fl->nr_queued, sizeof(uint64_t), u64_cmp);
	return 0;
}

static void thread_comm(char *buf, size_t size, uint32_t tid)
{
	char path[64];
	FILE *f;

	buf[0] = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%u/comm", tid);
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, (int)size, f)) {
		char *c;

		buf[strcspn(buf, "\n")] = 0;
		/* A thread's name is any bytes: keep the JSON string plain. */
		for (c = buf; *c; c++)
			if ((unsigned char)*c < 0x20 ||
			    (unsigned char)*c > 0x7e || *c == '"' || *c == '\\')
				*c = '?';
	}
	fclose(f);
}

static void metadata(struct writer *w, struct track *t, size_t nt)
{
	char comm[32];
	size_t i, req = 0;

	sep(w);
	fprintf(w->f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"vcpureq VM (%u vCPUs)\"}}",
		w->pid, vcpureq__nr_vcpus(w->vm));
	for (i = 0; i < nt; i++) {
		thread_comm(comm, sizeof(comm), t[i].tid);
		sep(w);
		if (t[i].vcpu >= 0)
			fprintf(w->f, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"name\":\"vCPU %d (id %lu)\"}}",
				w->pid, t[i].tid, t[i].vcpu,
				(unsigned)t[i].vcpu < vcpureq__nr_vcpus(w->vm) ?
					w->vm->vcpus[t[i].vcpu]->id : 0ul);
		else
			fprintf(w->f, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"name\":\"requester %u%s%s%s\"}}",
				w->pid, t[i].tid, t[i].tid, comm[0] ? " (" : "",
				comm, comm[0] ? ")" : "");
		/* vCPUs first, by index; then the requesters. */
		sep(w);
		fprintf(w->f, "{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"sort_index\":%ld}}",
			w->pid, t[i].tid,
			t[i].vcpu >= 0 ? (long)t[i].vcpu : 1000000L + (long)req++);
	}
}

/*
 * The events written the same way: a B or E of a slice (an E with
 * "result": a as int if @result), or an instant.  The others, with args
 * or flows of their own, are in write_event()'s switch.
 */
static const struct shape {
	char ph;           /* 'B', 'E', 'i'; 0: see write_event() */
	bool result;
	const char *name;
} shapes[VCPUREQ__TEV_NR] = {
	[VCPUREQ__TEV_enter] = { 'B', false, "guest" },
	[VCPUREQ__TEV_walk_begin] = { 'B', false, "lockless walk" },
	[VCPUREQ__TEV_block] = { 'B', false, "block" },
	[VCPUREQ__TEV_wake] = { 'E', true, "block" },
	[VCPUREQ__TEV_park] = { 'B', false, "parked" },
	[VCPUREQ__TEV_unpark] = { 'E', false, "parked" },
	[VCPUREQ__TEV_work_end] = { 'E', true, "work" },
	[VCPUREQ__TEV_ack] = { 'i', false, "ack" },
	[VCPUREQ__TEV_wait_end] = { 'E', true, "wait" },
	[VCPUREQ__TEV_pause_begin] = { 'B', false, "pause" },
	[VCPUREQ__TEV_pause_end] = { 'E', true, "pause" },
	[VCPUREQ__TEV_parked_seen] = { 'i', false, "parked" },
	[VCPUREQ__TEV_resume_begin] = { 'B', false, "resume" },
	[VCPUREQ__TEV_resume_end] = { 'E', true, "resume" },
	[VCPUREQ__TEV_unpause] = { 'i', false, "unpause" },
};

/*
 * What event @e does to its track's slices, as write_event() writes it:
 * 'B' or 'E' with the slice's name, or 0 (an instant, a point, nothing).
 */
static char slice_of(const struct tev *e, const char **name)
{
	const struct shape *sh = &shapes[e->type];

	if (sh->ph == 'B' || sh->ph == 'E') {
		*name = sh->name;
		return sh->ph;
	}
	switch (e->type) {
	case VCPUREQ__TEV_leave:
		if (e->b == VCPUREQ__LEAVE_ABORT)
			return 0;
		*name = e->b == VCPUREQ__LEAVE_WALK ? "lockless walk" : "guest";
		return 'E';
	case VCPUREQ__TEV_work_begin:
		*name = "work";
		return 'B';
	case VCPUREQ__TEV_call_begin:
	case VCPUREQ__TEV_call_end:
		*name = call_name(e->b);
		return e->type == VCPUREQ__TEV_call_begin ? 'B' : 'E';
	case VCPUREQ__TEV_wait_begin:
		*name = "wait";
		return 'B';
	default:
		return 0;
	}
}

/*
 * The slices under way when the trace started.  A step that began before
 * vcpureq_trace_start() recorded nothing, so its slice's E comes with no
 * B: on a running VM that is every vCPU's current guest-mode instance (or
 * block, parking, work item) and every call in progress.  Such an E meets
 * its track with nothing open: everything before it on the track, since
 * the start, happened inside that slice.  Replay the tracks' nesting as
 * write_event() will: each E that finds its track empty is marked in
 * @before[] and its slice noted in the track (tr->before[], innermost
 * first), to be begun at the start by write_begun_before().  An E that
 * finds another slice open is left out as before (its B was overwritten).
 */
static void begun_before(const struct tev *v, size_t n, struct track *t,
			 size_t nt, bool *before)
{
	size_t i;

	for (i = 0; i < nt; i++)
		t[i].depth = 0;
	for (i = 0; i < n; i++) {
		struct track *tr = track_of(t, nt, v[i].tid);
		const char *name;
		char ph = slice_of(&v[i], &name);

		if (ph == 'B') {
			if (tr->depth < MAX_DEPTH)
				tr->open[tr->depth++] = name;
		} else if (ph == 'E') {
			if (tr->depth && !strcmp(tr->open[tr->depth - 1], name))
				tr->depth--;
			else if (!tr->depth && tr->nr_before < MAX_DEPTH) {
				before[i] = true;
				tr->before_vcpu[tr->nr_before] = v[i].vcpu;
				tr->before[tr->nr_before++] = name;
			}
		}
	}
	for (i = 0; i < nt; i++)
		t[i].depth = 0;
}

/* Begin, at the trace's start, the slices begun_before() found: the
 * outermost (whose E comes last) first. */
static void write_begun_before(struct writer *w, struct track *t, size_t nt,
			       uint64_t start_ns)
{
	size_t i;

	for (i = 0; i < nt; i++) {
		struct track *tr = &t[i];

		while (tr->nr_before) {
			unsigned int k = --tr->nr_before;
			struct tev e = { .ts = start_ns, .tid = tr->tid,
					 .vcpu = tr->before_vcpu[k] };

			tr->open[tr->depth++] = tr->before[k];
			head(w, tr->before[k], "B", e.tid, e.ts);
			fputs(",\"args\":{", w->f);
			w->argn = 0;
			if (e.vcpu != VCPUREQ__TRACE_NO_VCPU) {
				fprintf(arg(w), "\"vcpu\":%u", e.vcpu);
				fprintf(arg(w), "\"vcpu_id\":%lu",
					e.vcpu < vcpureq__nr_vcpus(w->vm) ?
						w->vm->vcpus[e.vcpu]->id : 0ul);
			}
			fputs("\"before_start\":true}}", arg(w));
		}
	}
}

/* Write event @i of @v (its flows from @fl); false if left out. */
static bool write_event(struct writer *w, struct track *tr, const struct tev *v,
			size_t i, const struct flows *fl)
{
	const struct tev *e = &v[i];
	const struct shape *sh = &shapes[e->type];
	char name[64], rq[48];
	long j;

	switch (sh->ph) {
	case 'B':
		if (!begin(w, tr, sh->name, e))
			return false;
		fputs("}}", w->f);
		return true;
	case 'E':
		if (!end(w, tr, sh->name, e))
			return false;
		if (sh->result)
			fprintf(arg(w), "\"result\":%d", (int)e->a);
		fputs("}}", w->f);
		return true;
	case 'i':
		instant(w, sh->name, e);
		fputs("}}", w->f);
		return true;
	}
	switch (e->type) {
	case VCPUREQ__TEV_leave:
		if (e->b == VCPUREQ__LEAVE_EXIT) {
			if (!end(w, tr, "guest", e))
				return false;
		} else if (e->b == VCPUREQ__LEAVE_WALK) {
			if (!end(w, tr, "lockless walk", e))
				return false;
		} else {
			instant(w, "entry aborted", e);
		}
		fprintf(arg(w), "\"left\":\"%s\"}}", mode_name(e->a));
		return true;
	case VCPUREQ__TEV_handle:
	case VCPUREQ__TEV_clear:
		req_name(rq, sizeof(rq), e->a);
		snprintf(name, sizeof(name), "%s %s",
			 e->type == VCPUREQ__TEV_handle ? "handle" : "clear", rq);
		point(w, name, e);
		fprintf(arg(w), "\"req\":%u}}", e->a & VCPUREQ_REQUEST_MASK);
		/* The flows of every make it consumed end here. */
		for (j = fl->from[i]; j >= 0; j = fl->next[j])
			flow(w, "f", 2 * (uint64_t)j + 1, "request", e);
		return true;
	case VCPUREQ__TEV_make:
		req_name(rq, sizeof(rq), e->a);
		snprintf(name, sizeof(name), "make %s", rq);
		point(w, name, e);
		fprintf(arg(w), "\"req\":%u", e->a & VCPUREQ_REQUEST_MASK);
		fprintf(arg(w), "\"coalesced\":%s}}", e->b ? "true" : "false");
		if (fl->to[i] >= 0)
			flow(w, "s", 2 * (uint64_t)i + 1, "request", e);
		return true;
	case VCPUREQ__TEV_work_begin:
	case VCPUREQ__TEV_work_queue:
		if (e->type == VCPUREQ__TEV_work_queue)
			point(w, "queue work", e);
		else if (!begin(w, tr, "work", e))
			return false;
		fprintf(arg(w), "\"work\":%" PRIu64 "}}", e->b);
		/* No flow for an item queued before the trace started (id 0),
		 * nor into one whose queueing was overwritten. */
		if (e->b && (e->type == VCPUREQ__TEV_work_queue ||
			     was_queued(fl, e->b)))
			flow(w, e->type == VCPUREQ__TEV_work_begin ? "f" : "s",
			     2 * e->b, "work", e);
		return true;
	case VCPUREQ__TEV_call_begin:
		req_name(rq, sizeof(rq), e->a);
		if (!begin(w, tr, call_name(e->b), e))
			return false;
		fprintf(arg(w), "\"req\":\"%s\"}}", rq);
		return true;
	case VCPUREQ__TEV_call_end:
		if (!end(w, tr, call_name(e->b), e))
			return false;
		fprintf(arg(w), "\"result\":%d}}", (int)e->a);
		return true;
	case VCPUREQ__TEV_kick:
		instant(w, kick_name(e->a), e);
		fputs("}}", w->f);
		return true;
	case VCPUREQ__TEV_wait_begin:
		if (!begin(w, tr, "wait", e))
			return false;
		fprintf(arg(w), "\"targets\":%u}}", e->a);
		return true;
	default:
		return false;
	}
}

long vcpureq_trace_write_json(struct vcpureq_vm *vm, FILE *f)
{
	struct writer w = { f, (int)getpid(), true, 0, vm, false };
	struct vcpureq_trace_counts c = { 0, 0, 0, false };
	struct flows fl = { NULL, NULL, NULL, NULL, 0 };
	struct vcpureq__trace *t;
	struct tev *v = NULL;
	struct track *tracks = NULL;
	bool *before = NULL;
	size_t n = 0, cap = 0, nt = 0, i;
	long written = 0;
	int r = vcpureq__check_vm(vm);
	unsigned int nv, k;

	if (r)
		return r;
	if (!f)
		return vcpureq__err(-EINVAL, "f is NULL");
	pthread_mutex_lock(&vm->trace_lock);
	t = atomic_load_explicit(&vm->trace, memory_order_relaxed);
	if (!t) {
		r = vcpureq__err(-EINVAL, "no trace was started on this VM");
		goto out;
	}
	nv = vcpureq__nr_vcpus(vm);
	r = ring_collect(t->vm_ring, t->ring_events, t->start_ns, &v, &n, &cap);
	for (k = 0; !r && k < nv; k++)
		if (vm->vcpus[k]->trace_ring)
			r = ring_collect(vm->vcpus[k]->trace_ring,
					 t->ring_events, t->start_ns, &v, &n,
					 &cap);
	if (!r) {
		/* qsort() and the flows of nothing: v is NULL then (qsort's
		 * pointer must be valid even for 0 elements). */
		if (n)
			qsort(v, n, sizeof(*v), tev_cmp);
		r = match_flows(v, n, &fl);
	}
	if (!r && (!(tracks = calloc(n + 1, sizeof(*tracks))) ||
		   !(before = calloc(n + 1, sizeof(*before)))))
		r = -ENOMEM;
	if (r) {
		r = vcpureq__err(r, "out of memory for the trace's export");
		goto out;
	}
	/* One track per thread, named by the first vCPU it ran. */
	for (i = 0; i < n; i++)
		tracks[i].tid = v[i].tid;
	if (n)
		qsort(tracks, n, sizeof(*tracks), track_cmp);
	for (i = 0; i < n; i++)
		if (!nt || tracks[nt - 1].tid != tracks[i].tid)
			tracks[nt++] = (struct track){ .tid = tracks[i].tid,
						       .vcpu = -1 };
	for (i = 0; i < n; i++) {
		struct track *tr = track_of(tracks, nt, v[i].tid);

		if (tr->vcpu < 0 && vcpu_side(v[i].type))
			tr->vcpu = v[i].vcpu;
	}
	begun_before(v, n, tracks, nt, before);
	fputs("{\"traceEvents\":[", f);
	metadata(&w, tracks, nt);
	write_begun_before(&w, tracks, nt, t->start_ns);
	for (i = 0; i < n; i++) {
		w.cur_before = before[i];
		written += write_event(&w, track_of(tracks, nt, v[i].tid), v, i,
				       &fl);
	}
	vcpureq_trace_counts(vm, &c, sizeof(c));
	fprintf(f, "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"library\":\"vcpureq %s\",\"clock\":\"CLOCK_MONOTONIC\",\"ring_events\":%u,\"recorded\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"exported\":%ld}}\n",
		vcpureq_version_string(), t->ring_events, c.recorded, c.lost,
		written);
	if (fflush(f) || ferror(f))
		r = vcpureq__err(-EIO, "write error on the trace's file");
out:
	pthread_mutex_unlock(&vm->trace_lock);
	free(v);
	free(fl.to);
	free(fl.from);
	free(fl.next);
	free(fl.queued);
	free(tracks);
	free(before);
	return r ? r : written;
}
