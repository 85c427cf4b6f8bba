#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Render the report of a vcpureq-bench run from its data.

    bench/render.py DIR [--quiet]

Reads DIR/data.json (written by vcpureq-bench, bench/data.c) and writes, into
DIR, report.md (also printed on stdout unless --quiet), the derived data files
and the plot. Every table and every figure of the report is computed here from
the samples; the C code measures and writes data only. Adding a table or a
plot means editing this file, not C. Python 3 standard library only; the plot
needs gnuplot (without it the report says so). `vcpureq-bench --out DIR` runs
this at the end of a run; `vcpureq-bench --render-only DIR` or this script
re-renders saved data without measuring again.

Schema of data.json (version 1). Times are nanoseconds; numbers that are not
defined (NaN) are null. "In the order taken" means sample k of one series was
taken next to sample k of its partner series (the pairs the report forms).

  schema        1
  machine       {cpus, model, kernel, kvm}: the machine the run measured
  options       {quick, reps, max_n, only, outside_requests, scale,
                 pause_cfgs, pause_samples, pause_impls, finish_poll}: the
                 command line after defaults (only, pause_cfgs, pause_impls:
                 bit sets, 0 = all; finish_poll 0 scaled, 1 fixed, 2 alt)
  seconds       wall time of the measurements
  load          {foreign_cpu_s, capacity_s}: CPU time other processes used
                 during the run, and the machine's CPU-seconds over that time
  figures       [{key, title, rep_p50_ns: [per repeat], samples_ns: [...]}]:
                 the floors and the library's one-vCPU figures; samples of all
                 repeats, each repeat's sorted. Keys: floor-signal,
                 floor-signal-drained, floor-io-exit, floor-futex,
                 floor-cacheline, kick, outside-polling, outside-busy,
                 outside-busy-vcpureq_request, entry-io-exit, entry-ratio
                 (per batch pair vcpureq / raw, a ratio), wake
  outside       [polling, busy]: {requests, signals_sent, wakeups, kicks,
                 requests_made, stime_ms, vcsw, ivcsw, syscalls (-1: not
                 counted), syscall_method}: the last repeat's counters
  requesters    [{repeat, k, r, requests_made, kicks, signals_sent,
                 signals_coalesced, handled, entries, kicked_exits,
                 spurious_exits, ms}]: K requesters, one row per repeat and K
  broadcast     {finish: "parked" (vcpureq timed until every vCPU parked, the
                 peers' finish line; absent in older data: until the WAIT's
                 acknowledgement), impls: [{name, source}] (0 is vcpureq, then the peers),
                 cells: [{n, impl, iterations, failures, rep_p50_ns,
                 latency_ns, signals, requester_cpu_ns}]}: cells that ran;
                 the three series per iteration in the order taken,
                 iteration k of every implementation at one N paired
  kickab        null or {entry_raw_ns, mechanisms: [{name,
                 syscalls_per_kick (null: no tracefs), kick_ns, entry_ns}]}
  trace         null or {ring_events, recorded, lost, entry_{raw,off,on}_ns,
                 kick_{raw,off,on}_ns, outside_{off,on}_ns, and the per-pair
                 entry_on_off, entry_off_raw, entry_on_minus_off_ns, the same
                 for kick_ and outside_ (outside: on_off, on_minus_off)}
  pause         {impls: [{name, source}], floor (the index of the scheduler
                 floor among impls, bench/resume_floor.c; absent in older
                 data), cells: [{n, mix, impls: [{skipped,
                 failures, samples: [{pause_ns, resume_ns, cycle_ns,
                 pause_signals, resume_signals, pause_cpu_ns, resume_cpu_ns,
                 failed, resume_timed_out, finish_poll, resume_call_ns,
                 wakes_done_ns, finish_polls, resume_ivcsw, resume_call_ivcsw,
                 cycle_pause_ns, cycle_wakes_done_ns}]}]}]}: configurations
                 that ran; sample k of every implementation paired

Derived files written next to it (for plotting elsewhere; the report does not
read them): samples-KEY.txt (one figure's samples), summary.csv (per figure),
broadcast.dat (the plot's data), broadcast.gp (the plot's script),
broadcast-samples.csv, requesters.csv, pause-samples.csv. If bench/run.sh left
strace-1000000.txt and strace-2000000.txt in DIR (newer than data.json), the
report ends with their system-call counts.
"""

import json
import math
import os
import shutil
import subprocess
import sys

NAN = float("nan")
PEERS_NOTE = " (re-implemented in bench/peers/)"


# ---- statistics (as the C code had them: same interpolation, same order) ----
def pct(values, p):
    """Percentile p in [0, 100], linear between closest ranks; NaN if empty."""
    v = sorted(values)
    n = len(v)
    if not n:
        return NAN
    pos = p / 100.0 * float(n - 1)
    i = int(pos)
    frac = pos - float(i)
    if i + 1 >= n:
        return v[n - 1]
    return v[i] + frac * (v[i + 1] - v[i])


def mean(values):
    if not values:
        return NAN
    s = 0.0
    for x in values:
        s += x
    return s / float(len(values))


def num(x):
    return NAN if x is None else float(x)


def nums(xs):
    return [num(x) for x in xs]


# ---- formatting ----
def fmt_t(ns):
    if math.isnan(ns):
        return "n/a"
    if ns < 1000:
        return "%.0f ns" % ns
    if ns < 1e6:
        return "%.1f µs" % (ns / 1e3)
    return "%.2f ms" % (ns / 1e6)


def fmt_ns(ns):
    """The pause/resume section's times: µs or ms."""
    if math.isnan(ns):
        return "n/a"
    if ns < 1e6:
        return "%.1f µs" % (ns / 1e3)
    return "%.2f ms" % (ns / 1e6)


def fmt_spread(rep_p50):
    if len(rep_p50) <= 1:
        return "(1 run)"
    return "%s – %s" % (fmt_t(min(rep_p50)), fmt_t(max(rep_p50)))


def fmt_ratio(r):
    if math.isnan(r) or math.isinf(r):
        return "n/a"
    return "%.2f×" % r


def yesno(met):
    return "**met**" if met else "**missed**"


def div(a, b):
    """a / b as C divides doubles (inf or NaN rather than an exception)."""
    if b == 0:
        return NAN if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def impl_list(impls, floor=None):
    return "".join("- **%s**: %s%s\n" % (m["name"], m["source"],
                                         PEERS_NOTE if i and i != floor else "")
                   for i, m in enumerate(impls))


# ---- the run's data ----
class Run:
    def __init__(self, d):
        self.d = d
        self.fig = {}
        for f in d["figures"]:
            self.fig[f["key"]] = {"title": f["title"], "rep": nums(f["rep_p50_ns"]),
                                  "all": nums(f["samples_ns"])}
        self.bc = {}
        for c in d["broadcast"]["cells"]:
            self.bc[(c["impl"], c["n"])] = {
                "seq": nums(c["latency_ns"]), "sig": nums(c["signals"]),
                "cpu": nums(c["requester_cpu_ns"]), "rep": nums(c["rep_p50_ns"]),
                "iters": c["iterations"], "failures": c["failures"]}
        self.bc_impls = d["broadcast"]["impls"]
        self.bc_n = sorted({n for (_, n) in self.bc})

    def has(self, key):
        return key in self.fig and len(self.fig[key]["all"]) > 0

    def p(self, key, q=50):
        return pct(self.fig[key]["all"], q)


def bc_best_peer(run, n):
    best, bi = math.inf, -1
    for i in range(1, len(run.bc_impls)):
        c = run.bc.get((i, n))
        if not c:
            continue
        v = pct(c["seq"], 50)
        if v < best:
            best, bi = v, i
    return bi


def bc_ratio_pct(run, n, pi, p):
    a, b = run.bc[(0, n)]["seq"], run.bc[(pi, n)]["seq"]
    return pct([x / y for x, y in zip(a, b) if y > 0], p)


def bc_min_peer_signals(run, n):
    m = math.inf
    for i in range(1, len(run.bc_impls)):
        c = run.bc.get((i, n))
        if c and mean(c["sig"]) < m:
            m = mean(c["sig"])
    return m


# ---- the report's sections ----
def header(run, out):
    d = run.d
    m = d["machine"]
    out.append("# vcpureq benchmark report\n\n")
    out.append("Machine: %d CPUs (%s), Linux %s, KVM module %s.\n"
               % (m["cpus"], m["model"], m["kernel"], m["kvm"]))
    out.append("Run: %s, %d repeat(s), %.0f s. Latencies are p50 / p90 / p99 over all samples of all repeats; "
               "\"spread\" is the lowest and highest per-repeat p50.\n"
               % ("--quick" if d["options"]["quick"] else "full", d["options"]["reps"],
                  num(d["seconds"])))
    if d["options"].get("guest") == "native":
        out.append("Guest: **native**, 64-bit code whose spin and exit loops run at CPL3 "
                   "(`tests/guest_native.S`), executed by the CPU where KVM emulates real-mode "
                   "and CPL0 code on some machines; its exits are MMIO stores; vCPUs 256 and up "
                   "run the real-mode programs.\n")
    else:
        out.append("Guest: real mode, the 16-bit programs of `tests/guest.S` (on a machine whose KVM "
                   "emulates real-mode code, a vCPU \"in the guest\" runs in KVM's instruction "
                   "emulator).\n")
    foreign, cap = num(d["load"]["foreign_cpu_s"]), num(d["load"]["capacity_s"])
    out.append("Other processes used %.1f CPU-seconds during the run (%.1f%% of the machine)%s.\n\n"
               % (foreign, 100 * foreign / cap if cap > 0 else 0,
                  ": the machine was not quiet, expect noisier figures"
                  if cap > 0 and foreign / cap > 0.05 else ""))


def fig_cols(run, key):
    f = run.fig[key]
    return "%s | %s | %s | %s" % (fmt_t(run.p(key)), fmt_t(run.p(key, 90)),
                                  fmt_t(run.p(key, 99)), fmt_spread(f["rep"]))


def floor_row(run, out, tg, title, key, floor, floor_key, target, what):
    r = div(run.p(key), run.p(floor_key))
    out.append("| %s | %s | %s | %s | %.2f× | ≤ %g× | %s |\n"
               % (title, fig_cols(run, key), floor, fmt_t(run.p(floor_key)), r, target,
                  yesno(r <= target)))
    tg.append((what, r <= target, "%.2f× (%s vs %s)"
               % (r, fmt_t(run.p(key)), fmt_t(run.p(floor_key)))))


def summary(run, out, tg):
    out.append("## Summary: each figure against its floor\n\n")
    out.append("| Figure | p50 | p90 | p99 | spread of p50 | Floor (same run) | Floor p50 | Ratio to floor | Target | Result |\n")
    out.append("|---|---|---|---|---|---|---|---|---|---|\n")
    if run.has("kick") and run.has("floor-signal"):
        floor_row(run, out, tg, "Request + kick → handler running (vCPU spinning in the guest)",
                  "kick", "raw signal → KVM_RUN -EINTR", "floor-signal", 1.05,
                  "kick latency p50 ≤ 1.05× raw signal floor")
    if run.has("entry-io-exit") and run.has("floor-io-exit"):
        ov = run.p("entry-ratio") - 1
        out.append("| Guest entry: I/O-exit loop through vcpureq_vcpu_run() | %s | raw KVM_RUN I/O-exit loop | %s | %+.2f%% (paired) | ≤ +1%% | %s |\n"
                   % (fig_cols(run, "entry-io-exit"), fmt_t(run.p("floor-io-exit")), ov * 100,
                      yesno(ov <= 0.01)))
        tg.append(("guest-entry overhead ≤ 1% over the raw loop (make insn-budget counts the instructions behind it)", ov <= 0.01,
                   "%+.2f%% (median of per-batch-pair ratios; p50 %s vs %s)"
                   % (ov * 100, fmt_t(run.p("entry-io-exit")), fmt_t(run.p("floor-io-exit")))))
    # Against the cache-line round trip (issue 19): with the vCPU polling,
    # each request's bit moves to the requester and back to the polling
    # vCPU, one round trip of that line, so the floor is 1x and the target
    # 2x (the fences and the mode's line on top); with the vCPU busy
    # elsewhere nothing crosses the cores and even 1x would be a bug.
    cache = run.p("floor-cacheline") if run.has("floor-cacheline") else NAN
    for i, key in enumerate(("outside-polling", "outside-busy")):
        ev = run.d["outside"][i]
        if not run.has(key):
            continue
        zero = ev["signals_sent"] == 0 and ev["wakeups"] == 0 and ev["syscalls"] <= 0
        limit = 1.0 if i else 2.0
        r = div(run.p(key), cache)
        met = not math.isnan(r) and r <= limit and zero
        out.append("| Request to an awake vCPU outside guest mode, %s (ns per make + kick) | %s | cache-line round trip | %s | %s | ≤ %g× the round trip, 0 syscalls | %s |\n"
                   % ("vCPU busy elsewhere" if i else "vCPU polling its requests",
                      fig_cols(run, key), fmt_t(cache), fmt_ratio(r), limit,
                      yesno(met)))
        value = "%s per request; signals %d, wake-ups %d, syscalls %s" % (
            fmt_t(run.p(key)), ev["signals_sent"], ev["wakeups"],
            "not counted in-process (see run.sh)" if ev["syscalls"] < 0 else "counted")
        if ev["syscalls"] >= 0:
            value += ": %d" % ev["syscalls"]
        value = "%s; %s the cache-line round trip (%s)" % (value, fmt_ratio(r), fmt_t(cache))
        tg.append(("request to an awake vCPU outside guest mode ≤ %g× the cache-line round trip, zero syscalls (vCPU %s)"
                   % (limit, "busy elsewhere" if i else "polling"), met, value))
    if run.has("outside-busy-vcpureq_request"):
        key = "outside-busy-vcpureq_request"
        out.append("| (information) the same, vCPU busy elsewhere, with the one-call vcpureq_request() | %s | cache-line round trip | %s | %s | — | — |\n"
                   % (fig_cols(run, key), fmt_t(cache), fmt_ratio(div(run.p(key), cache))))
    if run.has("wake") and run.has("floor-futex"):
        floor_row(run, out, tg, "Wake: request → vcpureq_vcpu_block() returns", "wake",
                  "raw futex wake → woken thread running", "floor-futex", 1.2,
                  "wake latency p50 ≤ 1.2× raw futex floor")
    for n in run.bc_n:
        v = run.bc.get((0, n))
        bp = bc_best_peer(run, n)
        if not v or bp < 0:
            continue
        vp, pp = pct(v["seq"], 50), pct(run.bc[(bp, n)]["seq"], 50)
        vs, ps = mean(v["sig"]), bc_min_peer_signals(run, n)
        r50 = bc_ratio_pct(run, n, bp, 50)
        out.append("| Broadcast WAIT %s vs the peers' pause, N = %d (signals/pause: %.1f, fewest of any peer %.1f) | %s | %s | %s | %s | best peer: %s | %s | %.2f× the best peer (paired-ratio median, p25–p75 %.2f–%.2f) | ≤ best peer, signals ≤ every peer | %s |\n"
                   % ("until every vCPU parked" if parked_finish(run) else "acknowledgement",
                      n, vs, ps, fmt_t(vp), fmt_t(pct(v["seq"], 90)), fmt_t(pct(v["seq"], 99)),
                      fmt_spread(v["rep"]), run.bc_impls[bp]["name"], fmt_t(pp), r50,
                      bc_ratio_pct(run, n, bp, 25), bc_ratio_pct(run, n, bp, 75),
                      yesno(r50 <= 1 and vs <= ps)))
    out.append("\n")


def kickab(run, out):
    ab = run.d.get("kickab")
    if not ab:
        return
    raw = pct(nums(ab["entry_raw_ns"]), 50)
    out.append("## Kick mechanisms side by side\n\n")
    out.append("Two VMs, one per mechanism, sampled alternately in the same run. Kick: make + kick of a spinning vCPU until its handler runs. "
               "System calls: on the vCPU thread, per kick (its KVM_RUN re-entry included). Entry: one I/O-exit round trip through "
               "vcpureq_vcpu_run(), blocks alternated with the raw KVM_RUN loop (raw p50 %.0f ns).\n\n" % raw)
    out.append("| Mechanism | kick p50 | kick p90 | kick p99 | syscalls per kick | entry p50 | entry vs raw |\n")
    out.append("|---|---|---|---|---|---|---|\n")
    for m in ab["mechanisms"]:
        kick, entry = nums(m["kick_ns"]), nums(m["entry_ns"])
        sc = m["syscalls_per_kick"]
        e50 = pct(entry, 50)
        out.append("| %s | %.1f µs | %.1f µs | %.1f µs | %s | %.0f ns | %+.1f%% |\n"
                   % (m["name"], pct(kick, 50) / 1000, pct(kick, 90) / 1000, pct(kick, 99) / 1000,
                      "n/a (no tracefs)" if sc is None else "%.2f" % sc, e50,
                      100 * (e50 / raw - 1) if raw > 0 else 0))
    out.append("\n")


def trace(run, out):
    tc = run.d.get("trace")
    if not tc:
        return

    def s(name):
        return nums(tc[name])

    def ratio(r, d=None):
        r = s(r)
        t = "**%+.2f%%** (p25–p75 %+.2f%% – %+.2f%%)" % (
            100 * (pct(r, 50) - 1), 100 * (pct(r, 25) - 1), 100 * (pct(r, 75) - 1))
        if d:
            t += "; paired Δ %+.0f ns" % pct(s(d), 50)
        return t

    def row(what, name, r=None):
        v = s(name)
        out.append("| %s | %.0f ns | %.0f ns | %d | %s |\n"
                   % (what, pct(v, 50), pct(v, 90), len(v), r or "—"))

    out.append("## Trace cost (issue 11)\n\n")
    out.append("The trace is always compiled in; off (the default) each traced step costs one relaxed load and a predicted branch. "
               "One VM, one vCPU; trace off and on alternated sample by sample (vcpureq_trace_start() / _stop() between samples, "
               "rings of %d events overwriting). Ratios: median of the per-pair ratios (on / off, off / raw) with their p25–p75; paired Δ: median of the per-pair differences on − off.\n\n"
               % tc["ring_events"])
    out.append("| Measurement | p50 | p90 | samples | paired ratio |\n|---|---|---|---|---|\n")
    row("Guest entry, I/O-exit round trip: raw KVM_RUN loop (floor)", "entry_raw_ns")
    row("Guest entry via vcpureq_vcpu_run(), trace compiled in, off", "entry_off_ns",
        ratio("entry_off_raw"))
    row("Guest entry via vcpureq_vcpu_run(), trace on", "entry_on_ns",
        ratio("entry_on_off", "entry_on_minus_off_ns"))
    row("Kick: raw signal → KVM_RUN -EINTR (floor)", "kick_raw_ns")
    row("Kick: request + kick → handler running, trace compiled in, off", "kick_off_ns",
        ratio("kick_off_raw"))
    row("Kick: request + kick → handler running, trace on", "kick_on_ns",
        ratio("kick_on_off", "kick_on_minus_off_ns"))
    row("(information) make + kick, vCPU outside guest mode (no signal), trace off", "outside_off_ns")
    row("(information) make + kick, vCPU outside guest mode (no signal), trace on", "outside_on_ns",
        ratio("outside_on_off", "outside_on_minus_off_ns"))
    out.append("\nEntry and kick rows: the off row's ratio is off / raw (the library's whole overhead over the floor, trace compiled in), "
               "the on row's is on / off. Outside rows: on / off. The last start recorded %d events, %d of them overwritten.\n\n"
               % (tc["recorded"], tc["lost"]))


def floors(run, out):
    out.append("## Floors (measured in this run)\n\n")
    out.append("| Floor | p50 | p90 | p99 | spread of p50 | samples |\n|---|---|---|---|---|---|\n")
    for key in ("floor-signal", "floor-signal-drained", "floor-io-exit", "floor-futex",
                "floor-cacheline"):
        if not run.has(key):
            continue
        out.append("| %s%s | %s | %d |\n"
                   % (run.fig[key]["title"],
                      " (information)" if key == "floor-signal-drained" else "",
                      fig_cols(run, key), len(run.fig[key]["all"])))
    out.append("\n")


def outside(run, out):
    evs = run.d["outside"]
    if not any(ev["requests"] for ev in evs):
        return
    out.append("## Requests to an awake vCPU outside guest mode: the system-call evidence\n\n")
    out.append("Requester loop of vcpureq_make_request() + vcpureq_vcpu_kick(), last repeat. "
               "Counters are the library's; system time and context switches are the requester thread's getrusage(RUSAGE_THREAD).\n\n")
    out.append("| vCPU thread | requests | kicks | signals_sent | wakeups | requester system time | voluntary / involuntary context switches | syscalls |\n")
    out.append("|---|---|---|---|---|---|---|---|\n")
    for i, ev in enumerate(evs):
        if not ev["requests"]:
            continue
        out.append("| %s | %d | %d | %d | %d | %.1f ms | %d / %d | %s%s |\n"
                   % ("busy elsewhere" if i else "polling its requests", ev["requests"],
                      ev["kicks"], ev["signals_sent"], ev["wakeups"], num(ev["stime_ms"]),
                      ev["vcsw"], ev["ivcsw"], ev["syscall_method"],
                      ": %d" % ev["syscalls"] if ev["syscalls"] >= 0 else ""))
    out.append("\n")


KREQ_SUM = ("requests_made", "kicks", "signals_sent", "signals_coalesced", "handled",
            "entries", "kicked_exits", "spurious_exits")


def requesters(run, out):
    rows = run.d["requesters"]
    if not rows:
        return
    reps = sorted({x["repeat"] for x in rows})
    ks = []
    for x in rows:
        if x["k"] not in ks:
            ks.append(x["k"])
    out.append("## K requester threads, one vCPU spinning in the guest\n\n")
    out.append("Each requester makes R requests, each with a kick (vcpureq_make_request() + vcpureq_vcpu_kick()), no pause between them. "
               "Counters summed over %d repeat(s); a peer that signals on every kick would send one signal per kick.\n\n"
               % len(reps))
    out.append("| K | R each | requests_made | kicks | signals_sent | signals_coalesced | handled | guest entries | kicked exits | spurious exits | signals per kick | signals per repeat | wall time per request (all K threads) |\n")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for k in ks:
        xs = [x for x in rows if x["k"] == k]
        t = {c: sum(x[c] for x in xs) for c in KREQ_SUM}
        ms = 0.0
        for x in xs:
            ms += num(x["ms"])
        out.append("| %d | %d | %s | %.4f | %s | %s |\n"
                   % (k, xs[-1]["r"], " | ".join("%d" % t[c] for c in KREQ_SUM),
                      t["signals_sent"] / t["kicks"] if t["kicks"] else 0.0,
                      " / ".join("%d" % x["signals_sent"] for x in xs),
                      fmt_t(ms * 1e6 / t["requests_made"] if t["requests_made"] else NAN)))
    out.append("\n")


def parked_finish(run):
    """Whether vcpureq's broadcast was timed until every vCPU parked (the
    peers' finish line), as since the "finish" member; before, until the
    WAIT's acknowledgement."""
    return run.d["broadcast"].get("finish") == "parked"


def broadcast(run, out, tg, plot_note):
    if not run.bc:
        return
    out.append("## Broadcast WAIT: N vCPUs spinning in the guest, oversubscribed on the cores\n\n")
    out.append("Job: every vCPU leaves guest mode and acknowledges, and stays out (the peers' pause). "
               "Each iteration starts the N vCPU threads, waits until every one has run guest code, then times one pause "
               "from the call to its return; signals and requester CPU time (getrusage RUSAGE_THREAD) are per pause. ")
    if parked_finish(run):
        out.append("One finish line: vcpureq's WAIT request parks each vCPU in its handler, and the requester waits "
                   "until every handler has parked, as every peer returns once all are parked. ")
    else:
        out.append("Not one finish line (a run before the broadcast part waited for parked): vcpureq's WAIT returns at each vCPU's exit-epoch bump, before its handler has parked the vCPU, "
                   "while every peer returns once all are parked (a bias in vcpureq's favour; the pause/resume section compares vcpureq_pause(), which returns at parked). ")
    out.append("The four are interleaved iteration by iteration; \"paired\" is the median (p25–p75) of the per-iteration ratios vcpureq / peer. "
               "Implementations:\n\n")
    out.append(impl_list(run.bc_impls))
    out.append("\n| N | implementation | p50 | p90 | p99 | spread of p50 | signals/pause mean (min–max) | requester CPU/pause | iterations | p50 / best peer | vcpureq / this peer, paired |\n")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|\n")
    for n in run.bc_n:
        bp = bc_best_peer(run, n)
        best = pct(run.bc[(bp, n)]["seq"], 50) if bp >= 0 else NAN
        for i, im in enumerate(run.bc_impls):
            c = run.bc.get((i, n))
            if not c:
                continue
            lp = pct(c["seq"], 50)
            pr = "—"
            if i and (0, n) in run.bc:
                pr = "%.2f× (%.2f–%.2f)" % (bc_ratio_pct(run, n, i, 50),
                                            bc_ratio_pct(run, n, i, 25),
                                            bc_ratio_pct(run, n, i, 75))
            out.append("| %d | %s%s | %s | %s | %s | %s | %.1f (%.0f–%.0f) | %s | %d | %.2f× | %s |\n"
                       % (n, im["name"], " (FAILED to stop every vCPU)" if c["failures"] else "",
                          fmt_t(lp), fmt_t(pct(c["seq"], 90)), fmt_t(pct(c["seq"], 99)),
                          fmt_spread(c["rep"]), mean(c["sig"]), pct(c["sig"], 0),
                          pct(c["sig"], 100), fmt_t(mean(c["cpu"])), c["iters"], div(lp, best),
                          pr))
    out.append("\n")
    for n in run.bc_n:
        v = run.bc.get((0, n))
        bp = bc_best_peer(run, n)
        if not v or bp < 0:
            continue
        vs, ps = mean(v["sig"]), bc_min_peer_signals(run, n)
        r50 = bc_ratio_pct(run, n, bp, 50)
        tg.append(("broadcast WAIT until every vCPU parked vs the peers' pause: signals ≤ every peer's, latency ≤ the best peer's"
                   if parked_finish(run) else
                   "broadcast WAIT acknowledgement (not parked) vs the peers' pause: signals ≤ every peer's, latency ≤ the best peer's",
                   r50 <= 1 and vs <= ps,
                   "N = %d: %s vs %s (%s), paired %.2f× (p25–p75 %.2f–%.2f); signals %.1f vs fewest %.1f"
                   % (n, fmt_t(pct(v["seq"], 50)), fmt_t(pct(run.bc[(bp, n)]["seq"], 50)),
                      run.bc_impls[bp]["name"], r50, bc_ratio_pct(run, n, bp, 25),
                      bc_ratio_pct(run, n, bp, 75), vs, ps)))
    out.append("%s\n\n" % plot_note)


# ---- pause and resume ----
Q_TITLE = ("Pause", "Resume", "Pause + resume cycle")
Q_FIELD = ("pause_ns", "resume_ns", "cycle_ns")


class PauseCell:
    """One configuration (N, mix) of the pause part. @floor: the index of
    the scheduler floor's implementation (bench/resume_floor.c), None in
    data from before it was measured."""

    def __init__(self, c, floor=None):
        self.n, self.mix, self.floor = c["n"], c["mix"], floor
        self.skipped = [m["skipped"] for m in c["impls"]]
        self.failures = [m["failures"] for m in c["impls"]]
        self.s = [[{k: num(v) if k != "finish_poll" else v for k, v in x.items()}
                   for x in m["samples"]] for m in c["impls"]]
        self.ns = len(self.s[0]) if self.s else 0

    def impl_pct(self, ii, q, p):
        return pct([x[Q_FIELD[q]] for x in self.s[ii] if not math.isnan(x[Q_FIELD[q]])], p)

    def impl_mean(self, ii, field):
        return mean([x[field] for x in self.s[ii]])

    def ratio_pct(self, pi, q, p):
        f = Q_FIELD[q]
        return pct([a[f] / b[f] for a, b in zip(self.s[0], self.s[pi])
                    if b[f] > 0 and not math.isnan(a[f])], p)

    def peers(self):
        return [i for i in range(1, len(self.s)) if i != self.floor]

    def floor_ran(self):
        return self.floor is not None and not self.skipped[self.floor]

    def best_peer(self, q):
        best, bi = math.inf, 1
        for i in self.peers():
            v = self.impl_pct(i, q, 50)
            if v < best:
                best, bi = v, i
        return bi

    def timeouts(self, ii):
        return sum(1 for x in self.s[ii] if x["resume_timed_out"])

    def name(self):
        if self.mix:
            return "%d mixed (⅓ spin, ⅓ I/O, ⅓ halted)" % self.n
        return "%d" % self.n

    def verdict(self, q, names):
        """Issue 19's target for quantity @q, as (text, met or None when
        it cannot be judged, value): pause at most 0.9x the best peer;
        resume and cycle at most 1.1x the scheduler floor and at most every
        peer's (paired-ratio medians)."""
        bp = self.best_peer(q)
        m = self.ratio_pct(bp, q, 50)
        vs_peer = "%.2f× %s" % (m, short_name(names[bp]))
        if q == 0:
            return ("≤ 0.9× the best peer", None if math.isnan(m) else m <= 0.9, vs_peer)
        if not self.floor_ran():
            return ("≤ 1.1× the floor, ≤ every peer", None,
                    vs_peer + "; floor not measured")
        f = self.ratio_pct(self.floor, q, 50)
        if math.isnan(f) or math.isnan(m):
            return ("≤ 1.1× the floor, ≤ every peer", None, "%s; %.2f× the floor" % (vs_peer, f))
        return ("≤ 1.1× the floor, ≤ every peer", f <= 1.1 and m <= 1.0,
                "%.2f× the floor, %s" % (f, vs_peer))


def short_name(name):
    return name.split(" ")[0].rstrip(":")


def verdict_text(met):
    return "not judged" if met is None else yesno(met)


def q_table(cells, names, out, q):
    nimpl = len(names)
    out.append("#### %s\n\n" % Q_TITLE[q])
    out.append("| N | samples |")
    for i in range(nimpl):
        out.append(" %s p50 |" % (short_name(names[i]) if i else "vcpureq"))
    for i in range(1, nimpl):
        out.append(" vcpureq / %s: median of paired ratios (p25–p75) |" % short_name(names[i]))
    out.append(" target | result |\n|---|---|" + "---|" * (nimpl * 2 - 1 + 2) + "\n")
    for c in cells:
        if not c.ns:
            continue
        out.append("| %s | %d |" % (c.name(), c.ns))
        for i in range(nimpl):
            late = q != 0 and c.timeouts(i)
            if c.skipped[i]:
                out.append(" not run |")
            elif math.isnan(c.impl_pct(i, q, 50)):
                out.append(" not measured (resume not finished in time) |")
            else:
                out.append(" %s%s%s |" % (
                    "≥ " if late else "", fmt_ns(c.impl_pct(i, q, 50)),
                    " (FAILED to park every vCPU)" if c.failures[i] else
                    " (not every vCPU back in time: lower bound; cycle not measured)" if late else ""))
        for i in range(1, nimpl):
            r = c.ratio_pct(i, q, 50)
            if math.isnan(r):
                out.append(" n/a |")
            else:
                out.append(" %s%.2f× (%.2f–%.2f) |" % (
                    "≤ " if q != 0 and c.timeouts(i) else "", r, c.ratio_pct(i, q, 25),
                    c.ratio_pct(i, q, 75)))
        what, met, value = c.verdict(q, names)
        out.append(" %s | %s: %s |\n" % (what, verdict_text(met), value))
    out.append("\n")


def pause(run, out):
    pr = run.d["pause"]
    floor = pr.get("floor")
    cells = [PauseCell(c, floor) for c in pr["cells"]]
    if not cells:
        return
    names = [m["name"] for m in pr["impls"]]
    out.append("## Pause and resume: vcpureq against the peers, interleaved\n\n")
    out.append("Each sample runs the %s implementations one after the other (order rotated from sample to sample) on the same VM, vCPU fds and guest: "
               "start the vCPU threads, wait until all run guest code, then time a pause (until the call returns: every implementation returns once every vCPU is parked), "
               "a resume (until the call has returned and every vCPU that was running has run guest code again: its guest counter moved; halted vCPUs stay halted and are not waited for) "
               "and a pause + resume cycle. Ratios are vcpureq / other per sample, then the median and p25–p75 of those ratios.%s Implementations:\n\n"
               % ("five" if floor is not None else "four",
                  " The floor is not a VMM: plain threads stand in for the vCPUs (no KVM_RUN), a pause is a flag they poll "
                  "and a resume one FUTEX_WAKE of all of them, so its resume and cycle are what the scheduler alone costs "
                  "(every thread must get a CPU once); its pause is no floor of anything a VMM can do and has no target."
                  if floor is not None else ""))
    out.append(impl_list(pr["impls"], floor))
    out.append("\n")
    for q in range(3):
        q_table(cells, names, out, q)
    out.append("#### Signals and requester CPU (means per call)\n\n")
    out.append("| N | implementation | signals per pause | requester CPU per pause | signals per resume | requester CPU per resume (the call alone) |\n")
    out.append("|---|---|---|---|---|---|\n")
    for c in cells:
        if not c.ns:
            continue
        for i, nm in enumerate(names):
            out.append("| %s | %s | %.1f | %s | %.1f | %s |\n" % (
                c.name(), nm, c.impl_mean(i, "pause_signals"),
                fmt_ns(c.impl_mean(i, "pause_cpu_ns")), c.impl_mean(i, "resume_signals"),
                fmt_ns(c.impl_mean(i, "resume_cpu_ns"))))
    out.append("\n#### Targets (issue 19; reported, not asserted)\n\n")
    for c in cells:
        if not c.ns:
            continue
        a = c.name()
        for q in range(3):
            what, met, value = c.verdict(q, names)
            bp = c.best_peer(q)
            out.append("- %s, N = %s: %s: %s — %s (vs %s: p25–p75 %.2f–%.2f)\n"
                       % (Q_TITLE[q], a, what, verdict_text(met), value,
                          short_name(names[bp]), c.ratio_pct(bp, q, 25),
                          c.ratio_pct(bp, q, 75)))
        vs = c.impl_mean(0, "pause_signals")
        out.append("- Signals per pause = N, N = %s: %s — %.1f\n" % (
            a, "**met**" if vs == c.n else
            "**met** (fewer: halted vCPUs need none)" if vs < c.n else "**missed**", vs))
        vc, minc, bi = c.impl_mean(0, "pause_cpu_ns"), math.inf, 0
        for i in c.peers():
            if c.impl_mean(i, "pause_cpu_ns") < minc:
                minc, bi = c.impl_mean(i, "pause_cpu_ns"), i
        out.append("- Requester CPU per pause the lowest of all, N = %s: %s — %s vs %s (%s)\n"
                   % (a, yesno(vc <= minc), fmt_ns(vc), fmt_ns(minc), names[bi]))
    out.append("\n")


def targets(out, tg):
    out.append("## Targets (reported, not asserted)\n\n")
    for what, met, value in tg:
        out.append("- %s: %s — %s\n" % (what, yesno(met), value))
    if not tg:
        out.append("- (no target measured in this run)\n")
    out.append("\n")


def strace_calls(path):
    """The number of calls on the total line of an strace -c summary."""
    with open(path) as f:
        for line in f:
            w = line.split()
            if w and w[-1] == "total" and len(w) >= 4:
                return int(w[3])
    return None


def strace(d, out):
    """bench/run.sh's differential count (its two strace -c summaries)."""
    files = [os.path.join(d, "strace-%d.txt" % r) for r in (1000000, 2000000)]
    if not all(os.path.exists(p) for p in files):
        return
    # Counted after this data was written, else an earlier run's.
    if min(os.path.getmtime(p) for p in files) < os.path.getmtime(os.path.join(d, "data.json")):
        return
    a, b = (strace_calls(p) for p in files)
    if a is None or b is None:
        return
    out.append("\n## System calls of the requests to a vCPU outside guest mode (strace -f -c, whole process)\n\n")
    out.append("| requests per loop | requests in the run | system calls of the run | strace summary |\n")
    out.append("|---|---|---|---|\n")
    out.append("| 1000000 | 2250000 | %d | strace-1000000.txt |\n" % a)
    out.append("| 2000000 | 4500000 | %d | strace-2000000.txt |\n" % b)
    out.append("| difference | 2250000 | %d | |\n\n" % (b - a))


# ---- derived files and the plot ----
def write(d, name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


def data_files(run, d):
    for key, f in run.fig.items():
        if f["all"]:
            write(d, "samples-%s.txt" % key,
                  "# %s (ns), %d samples over %d repeat(s)\n" % (f["title"], len(f["all"]), len(f["rep"]))
                  + "".join("%.1f\n" % x for x in f["all"]))
    rows = ["key,title,samples,p50_ns,p90_ns,p99_ns,rep_p50_min_ns,rep_p50_max_ns\n"]
    for key, f in run.fig.items():
        if f["all"]:
            lo = min(f["rep"]) if f["rep"] else NAN
            hi = max(f["rep"]) if f["rep"] else NAN
            rows.append("%s,\"%s\",%d,%.1f,%.1f,%.1f,%.1f,%.1f\n" % (
                key, f["title"], len(f["all"]), run.p(key), run.p(key, 90), run.p(key, 99), lo, hi))
    write(d, "summary.csv", "".join(rows))

    impls = run.bc_impls
    t = ["# N" + "".join("  p50_ms[%d] signals[%d]" % (i, i) for i in range(len(impls))),
         "\n# implementations:" + "".join(" [%d] %s;" % (i, m["name"]) for i, m in enumerate(impls)),
         "\n"]
    for n in run.bc_n:
        t.append("%d" % n)
        for i in range(len(impls)):
            c = run.bc.get((i, n))
            t.append(" %.4f %.2f" % (pct(c["seq"], 50) / 1e6, mean(c["sig"])) if c else " NaN NaN")
        t.append("\n")
    write(d, "broadcast.dat", "".join(t))

    t = ["implementation,N,iteration,latency_ns,signals,requester_cpu_ns\n"]
    for n in run.bc_n:
        for i, m in enumerate(impls):
            c = run.bc.get((i, n))
            for k, x in enumerate(c["seq"] if c else []):
                t.append("\"%s\",%d,%d,%.0f,%.0f,%.0f\n" % (m["name"], n, k, x, c["sig"][k],
                                                           c["cpu"][k]))
    write(d, "broadcast-samples.csv", "".join(t))

    t = ["repeat,K,R,requests_made,kicks,signals_sent,signals_coalesced,handled,entries,kicked_exits,spurious_exits,ms\n"]
    for x in run.d["requesters"]:
        t.append("%d,%d,%d,%s,%.3f\n" % (x["repeat"], x["k"], x["r"],
                                         ",".join("%d" % x[c] for c in KREQ_SUM), num(x["ms"])))
    write(d, "requesters.csv", "".join(t))

    cols = ("pause_ns", "resume_ns", "cycle_ns", "pause_signals", "resume_signals", "pause_cpu_ns",
            "resume_cpu_ns", "failed", "resume_timed_out", "resume_call_ns", "wakes_done_ns",
            "finish_polls", "resume_ivcsw", "resume_call_ivcsw", "finish_poll", "cycle_pause_ns",
            "cycle_wakes_done_ns")
    t = ["N,mix,sample,implementation," + ",".join(cols) + "\n"]
    names = [m["name"] for m in run.d["pause"]["impls"]]
    for c in run.d["pause"]["cells"]:
        for k in range(len(c["impls"][0]["samples"]) if c["impls"] else 0):
            for i, m in enumerate(c["impls"]):
                x = m["samples"][k]
                vals = []
                for col in cols:
                    v = x[col]
                    vals.append(v if col == "finish_poll" else "%d" % v if col in ("failed", "resume_timed_out")
                                else "nan" if v is None else "%.0f" % v)
                t.append("%d,%d,%d,\"%s\",%s\n" % (c["n"], c["mix"], k, names[i], ",".join(vals)))
    write(d, "pause-samples.csv", "".join(t))


def plot(run, d):
    """The broadcast plot (gnuplot); returns the report's line about it."""
    if not shutil.which("gnuplot"):
        return ("Plot skipped: gnuplot is not installed (apt-get install -y gnuplot-nox); the data is in %s/broadcast.dat." % d)
    names = [m["name"] for m in run.bc_impls]
    gp = ["# Generated by bench/render.py: broadcast latency and signals against N.",
          "set datafile separator whitespace", "set termoption noenhanced",
          "set logscale x 2", "set logscale y", "set grid", "set key top left",
          "set xlabel 'N (vCPUs spinning in the guest, 2 cores)'",
          "set multiplot layout 1,2 title 'Broadcast WAIT (pause every vCPU): vcpureq vs peers'",
          "set ylabel 'latency p50 (ms)'",
          "plot " + ", ".join("'broadcast.dat' using 1:%d with linespoints lw 2 title '%s'" % (2 + i * 2, nm)
                              for i, nm in enumerate(names)),
          "set ylabel 'signals per pause (mean)'",
          "set title 'vcpureq, cloud-hypervisor and kvmtool overlap (one signal per vCPU)'",
          "plot " + ", ".join("'broadcast.dat' using 1:%d with linespoints lw 2 title '%s'" % (3 + i * 2, nm)
                              for i, nm in enumerate(names)),
          "unset multiplot", ""]
    write(d, "broadcast.gp", "\n".join(gp))
    made = None
    with open(os.path.join(d, "gnuplot.log"), "w") as log:
        for term, name in (("pngcairo size 1400,560", "broadcast.png"),
                           ("png size 1400,560", "broadcast.png"),
                           ("svg size 1400,560", "broadcast.svg")):
            r = subprocess.run(["gnuplot", "-e", "set terminal %s; set output '%s'" % (term, name),
                                "broadcast.gp"], cwd=d, stdout=log, stderr=log)
            if r.returncode == 0:
                made = name
                break
    if not made:
        return ("Plot skipped: gnuplot failed (see %s/gnuplot.log); the data is in %s/broadcast.dat." % (d, d))
    return ("Plot of broadcast latency and signals against N: %s/%s (data: broadcast.dat)." % (d, made))


def render(d):
    path = os.path.join(d, "data.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit("render.py: cannot read %s: %s" % (path, e))
    if data.get("schema") != 1:
        raise SystemExit("render.py: %s: schema %r, this renderer reads schema 1"
                         % (path, data.get("schema")))
    run = Run(data)
    data_files(run, d)
    plot_note = plot(run, d) if run.bc else ""
    out, tg = [], []
    header(run, out)
    summary(run, out, tg)
    kickab(run, out)
    trace(run, out)
    floors(run, out)
    outside(run, out)
    requesters(run, out)
    broadcast(run, out, tg, plot_note)
    pause(run, out)
    targets(out, tg)
    strace(d, out)
    text = "".join(out)
    write(d, "report.md", text)
    return text


def main(argv):
    args = [a for a in argv[1:] if a != "--quiet"]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: bench/render.py DIR [--quiet]   (DIR holds data.json)\n")
        return 2
    text = render(args[0])
    if "--quiet" not in argv:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
