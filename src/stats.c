/* SPDX-License-Identifier: MIT */
/*
 * The counters: vcpureq_vcpu_stats() (one vCPU's, as a struct),
 * vcpureq_vm_dump_stats() (every counter, as text or JSON),
 * vcpureq_vm_request_stats() (one request number's, as a struct) and
 * vcpureq_vm_reset_stats().
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

/* The fields of struct vcpureq_stats, in order, by name. */
#define STATS_FIELDS(X)                                                     \
	X(requests_made) X(requests_handled) X(kicks) X(signals_sent)      \
	X(signals_coalesced) X(wakeups) X(acks_waited) X(entries)           \
	X(entry_aborts) X(exits) X(kicked_exits) X(spurious_exits) X(blocks) \
	X(halt_poll_hits) X(interrupts_posted) X(interrupts_injected)       \
	X(foreign_exits) X(halt_poll_ns) X(ack_rechecks) X(acks_at_recheck)

/* The first version of struct vcpureq_stats with a size argument ends with
 * interrupts_injected. */
#define STATS_SIZE_MIN \
	(offsetof(struct vcpureq_stats, interrupts_injected) + sizeof(uint64_t))

int vcpureq_vcpu_stats(const struct vcpureq_vcpu *vcpu,
		       struct vcpureq_stats *out, size_t size)
{
	const struct vcpureq__req_stats *r;
	const struct vcpureq__vcpu_stats *v;
	struct vcpureq_stats s;

	int e = vcpureq__check_vcpu(vcpu);

	if (e)
		return e;
	if (!out)
		return vcpureq__err(-EINVAL, "out is NULL");
	if (size < STATS_SIZE_MIN)
		return vcpureq__err(-EINVAL, "size is below the first struct vcpureq_stats: pass sizeof(*out)");
	r = &vcpu->rstats;
	v = &vcpu->vstats;
	memset(&s, 0, sizeof(s));
	s.requests_made = LD(r->requests_made);
	s.requests_handled = LD(v->requests_handled);
	s.kicks = LD(r->kicks);
	s.signals_sent = LD(r->signals_sent);
	s.signals_coalesced = LD(r->signals_coalesced);
	s.wakeups = LD(r->wakeups);
	s.acks_waited = LD(r->acks_waited);
	s.entries = LD(v->entries);
	s.entry_aborts = LD(v->entry_aborts);
	s.exits = LD(v->exits);
	s.kicked_exits = LD(v->kicked_exits);
	s.spurious_exits = LD(v->spurious_exits);
	s.blocks = LD(v->blocks);
	s.halt_poll_hits = LD(v->halt_poll_hits);
	s.interrupts_posted = LD(r->interrupts_posted);
	s.interrupts_injected = LD(v->interrupts_injected);
	s.foreign_exits = LD(v->foreign_exits);
	s.halt_poll_ns = LD(vcpu->poll_ns);
	s.ack_rechecks = LD(r->ack_rechecks);
	s.acks_at_recheck = LD(r->acks_at_recheck);
	vcpureq__copy_out(out, size, &s, sizeof(s));
	return 0;
}

static const char *nr_name(unsigned int nr)
{
	switch (nr) {
	case 0: return "TLB_FLUSH";
	case 1: return "VM_DEAD";
	case 2: return "UNBLOCK";
	case 3: return "PAUSE";
	case 4: return "WORK";
	default: return NULL;
	}
}

static void dump_text(const struct vcpureq_vm *vm, FILE *f, unsigned int n)
{
	unsigned int i;

	fprintf(f, "vcpureq VM: %u vCPUs, kick signal %d\n", n, vm->kick_signal);
	for (i = 0; i < n; i++) {
		const struct vcpureq_vcpu *v = vm->vcpus[i];
		struct vcpureq_stats s;

		vcpureq_vcpu_stats(v, &s, sizeof(s));
		fprintf(f, "vCPU %u (id %lu):", i, v->id);
#define X(name) fprintf(f, " " #name "=%llu", (unsigned long long)s.name);
		STATS_FIELDS(X)
#undef X
		fputc('\n', f);
	}
	fprintf(f, "%-10s %12s %12s %12s %12s\n", "request", "made", "handled",
		"signals", "waits");
	for (i = 0; i <= VCPUREQ_REQUEST_NR_MAX + 1; i++) {
		const struct vcpureq__nr_stats *ns =
			i <= VCPUREQ_REQUEST_NR_MAX ? &vm->nr_stats[i] :
						      &vm->kick_stats;
		char name[24];

		if (!LD(ns->made) && !LD(ns->handled) && !LD(ns->signals) &&
		    !LD(ns->waits))
			continue;
		if (i > VCPUREQ_REQUEST_NR_MAX)
			snprintf(name, sizeof(name), "no-request");
		else if (nr_name(i))
			snprintf(name, sizeof(name), "%s", nr_name(i));
		else
			snprintf(name, sizeof(name), "ARCH(%u)",
				 i - VCPUREQ_REQUEST_ARCH_BASE);
		fprintf(f, "%-10s %12llu %12llu %12llu %12llu\n", name,
			LD(ns->made), LD(ns->handled), LD(ns->signals),
			LD(ns->waits));
	}
}

static void dump_json(const struct vcpureq_vm *vm, FILE *f, unsigned int n)
{
	unsigned int i;
	const char *sep = "";

	fprintf(f, "{\"vcpus\":[");
	for (i = 0; i < n; i++) {
		const struct vcpureq_vcpu *v = vm->vcpus[i];
		struct vcpureq_stats s;

		vcpureq_vcpu_stats(v, &s, sizeof(s));
		fprintf(f, "%s{\"index\":%u,\"id\":%lu", i ? "," : "", i, v->id);
#define X(name) fprintf(f, ",\"" #name "\":%llu", (unsigned long long)s.name);
		STATS_FIELDS(X)
#undef X
		fputc('}', f);
	}
	fprintf(f, "],\"requests\":[");
	for (i = 0; i <= VCPUREQ_REQUEST_NR_MAX + 1; i++) {
		const struct vcpureq__nr_stats *ns =
			i <= VCPUREQ_REQUEST_NR_MAX ? &vm->nr_stats[i] :
						      &vm->kick_stats;

		if (!LD(ns->made) && !LD(ns->handled) && !LD(ns->signals) &&
		    !LD(ns->waits))
			continue;
		if (i > VCPUREQ_REQUEST_NR_MAX)
			fprintf(f, "%s{\"nr\":null,\"name\":\"no-request\"", sep);
		else if (nr_name(i))
			fprintf(f, "%s{\"nr\":%u,\"name\":\"%s\"", sep, i, nr_name(i));
		else
			fprintf(f, "%s{\"nr\":%u,\"name\":\"ARCH(%u)\"", sep, i,
				i - VCPUREQ_REQUEST_ARCH_BASE);
		fprintf(f, ",\"made\":%llu,\"handled\":%llu,\"signals\":%llu,\"waits\":%llu}",
			LD(ns->made), LD(ns->handled), LD(ns->signals),
			LD(ns->waits));
		sep = ",";
	}
	fprintf(f, "]}\n");
}

int vcpureq_vm_dump_stats(const struct vcpureq_vm *vm, FILE *f,
			  enum vcpureq_dump_format format)
{
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if (!f)
		return vcpureq__err(-EINVAL, "f is NULL");
	if (format == VCPUREQ_DUMP_TEXT)
		dump_text(vm, f, vcpureq__nr_vcpus(vm));
	else if (format == VCPUREQ_DUMP_JSON)
		dump_json(vm, f, vcpureq__nr_vcpus(vm));
	else
		return vcpureq__err(-EINVAL, "unknown dump format");
	if (fflush(f) || ferror(f))
		return vcpureq__err(-EIO, "writing the counters failed");
	return 0;
}

/* The fields of the first struct vcpureq_request_stats (a caller's size
 * may not be smaller). */
#define REQ_STATS_SIZE_MIN \
	(offsetof(struct vcpureq_request_stats, waits) + sizeof(uint64_t))

int vcpureq_vm_request_stats(const struct vcpureq_vm *vm, unsigned int req,
			     struct vcpureq_request_stats *out, size_t size)
{
	const struct vcpureq__nr_stats *ns;
	struct vcpureq_request_stats s;
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if (!out)
		return vcpureq__err(-EINVAL, "out is NULL");
	if (size < REQ_STATS_SIZE_MIN)
		return vcpureq__err(-EINVAL, "size is below the first struct vcpureq_request_stats: pass sizeof(*out)");
	if (!(req & VCPUREQ_REQUEST_NO_ACTION) &&
	    (req & VCPUREQ_REQUEST_MASK) > VCPUREQ_REQUEST_NR_MAX)
		return vcpureq__errf(-EINVAL, "request number %u is above %u",
				     req & VCPUREQ_REQUEST_MASK,
				     VCPUREQ_REQUEST_NR_MAX);
	ns = req & VCPUREQ_REQUEST_NO_ACTION ? &vm->kick_stats :
					       &vm->nr_stats[req & VCPUREQ_REQUEST_MASK];
	memset(&s, 0, sizeof(s));
	s.made = LD(ns->made);
	s.handled = LD(ns->handled);
	s.signals = LD(ns->signals);
	s.waits = LD(ns->waits);
	vcpureq__copy_out(out, size, &s, sizeof(s));
	return 0;
}

#define ZERO(x) atomic_store_explicit(&(x), 0, memory_order_relaxed)

int vcpureq_vm_reset_stats(struct vcpureq_vm *vm)
{
	unsigned int i, n;
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	n = vcpureq__nr_vcpus(vm);
	for (i = 0; i < n; i++) {
		struct vcpureq_vcpu *v = vm->vcpus[i];

		ZERO(v->rstats.requests_made);
		ZERO(v->rstats.kicks);
		ZERO(v->rstats.signals_sent);
		ZERO(v->rstats.signals_coalesced);
		ZERO(v->rstats.wakeups);
		ZERO(v->rstats.acks_waited);
		ZERO(v->rstats.interrupts_posted);
		ZERO(v->rstats.ack_rechecks);
		ZERO(v->rstats.acks_at_recheck);
		ZERO(v->vstats.requests_handled);
		ZERO(v->vstats.entries);
		ZERO(v->vstats.entry_aborts);
		ZERO(v->vstats.exits);
		ZERO(v->vstats.kicked_exits);
		ZERO(v->vstats.spurious_exits);
		ZERO(v->vstats.blocks);
		ZERO(v->vstats.halt_poll_hits);
		ZERO(v->vstats.interrupts_injected);
		ZERO(v->vstats.foreign_exits);
		/* Not poll_ns: the halt-poll window is a state, not a count. */
	}
	for (i = 0; i <= VCPUREQ_REQUEST_NR_MAX; i++) {
		ZERO(vm->nr_stats[i].made);
		ZERO(vm->nr_stats[i].handled);
		ZERO(vm->nr_stats[i].signals);
		ZERO(vm->nr_stats[i].waits);
	}
	ZERO(vm->kick_stats.made);
	ZERO(vm->kick_stats.handled);
	ZERO(vm->kick_stats.signals);
	ZERO(vm->kick_stats.waits);
	return 0;
}
