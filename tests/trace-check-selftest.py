#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The trace checker can fail: a small trace that obeys the protocol passes
tools/trace-check.py, and each of its doctored copies, which breaks one rule,
fails with that rule's message.

usage: trace-check-selftest.py PATH/TO/trace-check.py
"""
import copy
import json
import os
import subprocess
import sys
import tempfile

PID, REQ, VCPU = 1, 10, 11


SEQ = {}


def ev(name, ph, tid, ts, **args):
    e = {"name": name, "ph": ph, "pid": PID, "tid": tid, "ts": "%.3f" % ts}
    SEQ[tid] = SEQ.get(tid, 0) + 1
    args["tseq"] = SEQ[tid]
    if ph == "X":
        e["dur"] = 0.001
    if ph == "i":
        e["s"] = "t"
    if args:
        e["args"] = args
    return e


def flow(ph, tid, ts, fid, cat="request"):
    e = {"name": cat, "ph": ph, "pid": PID, "tid": tid, "ts": "%.3f" % ts,
         "cat": cat, "id": fid}
    if ph == "f":
        e["bp"] = "e"
    return e


def good():
    """A requester's WAIT request to a vCPU in guest mode, then a pause,
    a resume and a run-on-vCPU item, as vcpureq records them."""
    v = {"vcpu": 0, "vcpu_id": 0}
    evs = [
        {"name": "thread_name", "ph": "M", "pid": PID, "tid": VCPU,
         "args": {"name": "vCPU 0 (id 0)"}},
        ev("guest", "B", VCPU, 1.0, **v),
        ev("request", "B", REQ, 2.0, req="ARCH(1)|WAIT", **v),
        ev("make ARCH(1)|WAIT", "X", REQ, 2.1, req=9, coalesced=False, **v),
        flow("s", REQ, 2.1, 1),
        ev("kick: signal", "i", REQ, 2.2, **v),
        ev("wait", "B", REQ, 2.3, targets=1, **v),
        ev("guest", "E", VCPU, 3.0, left="EXITING_GUEST_MODE", **v),
        ev("ack", "i", REQ, 3.1, **v),
        ev("wait", "E", REQ, 3.2, result=0, **v),
        ev("request", "E", REQ, 3.3, result=1, **v),
        ev("handle ARCH(1)|WAIT", "X", VCPU, 3.5, req=9, **v),
        flow("f", VCPU, 3.5, 1),
        ev("guest", "B", VCPU, 4.0, **v),
        ev("pause", "B", REQ, 5.0),
        ev("make PAUSE|NO_WAKEUP", "X", REQ, 5.1, req=3, coalesced=False,
           **v),
        ev("kick: signal", "i", REQ, 5.2, **v),
        ev("guest", "E", VCPU, 5.5, left="EXITING_GUEST_MODE", **v),
        ev("handle PAUSE|NO_WAKEUP", "X", VCPU, 5.6, req=3, **v),
        ev("parked", "B", VCPU, 5.7, **v),
        ev("parked", "i", REQ, 5.8, **v),
        ev("pause", "E", REQ, 5.9, result=0),
        ev("resume", "B", REQ, 7.0),
        ev("unpause", "i", REQ, 7.1, **v),
        ev("resume", "E", REQ, 7.2, result=0),
        ev("parked", "E", VCPU, 7.5, **v),
        ev("guest", "B", VCPU, 8.0, **v),
        ev("queue work", "X", REQ, 9.0, work=1, **v),
        flow("s", REQ, 9.0, 2, "work"),
        ev("make WORK", "X", REQ, 9.1, req=4, coalesced=False, **v),
        ev("kick: signal", "i", REQ, 9.2, **v),
        ev("guest", "E", VCPU, 9.5, left="EXITING_GUEST_MODE", **v),
        ev("handle WORK", "X", VCPU, 9.55, req=4, **v),
        ev("work", "B", VCPU, 9.6, work=1, **v),
        flow("f", VCPU, 9.6, 2, "work"),
        ev("work", "E", VCPU, 9.7, result=0, **v),
    ]
    return {"traceEvents": evs, "displayTimeUnit": "ns",
            "otherData": {"lost": 0}}


def started_running(doc):
    """The same trace started while the vCPU was in guest mode, already
    kicked, with the request's bit already set: the instance under way
    begins at the start (before_start, no tseq), its end says so, and
    neither the kick nor the make was recorded."""
    evs = doc["traceEvents"]
    b = evs[find(doc, "guest", "B")]
    b["args"]["before_start"] = True
    del b["args"]["tseq"]
    evs[find(doc, "guest", "E")]["args"]["began_before_start"] = True
    for name, ph in (("kick: signal", "i"), ("make ARCH(1)|WAIT", "X")):
        del evs[find(doc, name, ph)]
    doc["traceEvents"] = [e for e in evs
                          if not (e["ph"] in "sf" and e.get("id") == 1)]


def started_running_unmarked(doc):
    started_running(doc)
    i = find(doc, "guest", "E")
    del doc["traceEvents"][i]["args"]["began_before_start"]


def started_running_late_handle(doc):
    # A handle with no make after the vCPU's first recorded entry: not a
    # bit set before the start.
    started_running(doc)
    i = find(doc, "guest", "B", 1)
    e = doc["traceEvents"].pop(find(doc, "handle ARCH(1)|WAIT", "X"))
    del e["args"]["tseq"]  # only the request rule is broken
    e["ts"] = doc["traceEvents"][i - 1]["ts"]
    doc["traceEvents"].insert(i, e)


def late_bump(doc):
    """The WAIT's target left its instance by itself (1.5) just before the
    request (2.0), and its thread recorded nothing more until after the
    ack: the epoch bump that follows that leave came after the
    requester's snapshot, the requester then found a new instance
    (coalesced with another's kick) and took that bump as its ack, which
    is right (the new instance began after the bit was set)."""
    evs = doc["traceEvents"]
    e = evs[find(doc, "guest", "E")]
    e["ts"] = "1.500"
    e["args"]["left"] = "IN_GUEST_MODE"
    evs[find(doc, "kick: signal", "i")]["name"] = "kick: coalesced"


def late_bump_but_busy(doc):
    # The same, but the vCPU's thread recorded a block between its leave
    # and the call: that leave's bump came before the call, so it cannot
    # be the ack.
    late_bump(doc)
    i = find(doc, "guest", "E") + 1
    b = ev("block", "B", VCPU, 1.6, vcpu=0)
    e = ev("block", "E", VCPU, 1.7, vcpu=0, result=0)
    for x in (b, e):  # not numbered: only the ack rule is broken
        del x["args"]["tseq"]
    doc["traceEvents"][i:i] = [b, e]


def find(doc, name, ph, nth=0):
    hits = [i for i, e in enumerate(doc["traceEvents"])
            if e["name"] == name and e["ph"] == ph]
    return hits[nth]


def drop(name, ph, nth=0):
    def f(doc):
        del doc["traceEvents"][find(doc, name, ph, nth)]
    return f


def no_make(doc):
    i = find(doc, "make ARCH(1)|WAIT", "X")
    doc["traceEvents"][i]["args"]["coalesced"] = True


def entry_while_paused(doc):
    i = find(doc, "pause", "E")
    b = ev("guest", "B", VCPU, 6.0, vcpu=0)
    e = ev("guest", "E", VCPU, 6.1, vcpu=0, left="IN_GUEST_MODE")
    for x in (b, e):  # not numbered: only the pause rule is broken
        del x["args"]["tseq"]
    doc["traceEvents"].insert(i + 1, b)
    doc["traceEvents"].insert(i + 2, e)


def ts_back(doc):
    i = find(doc, "handle ARCH(1)|WAIT", "X")
    doc["traceEvents"][i]["ts"] = "0.500"


def exit_before_signal(doc):
    i = find(doc, "guest", "E")
    doc["traceEvents"][i]["args"]["left"] = "IN_GUEST_MODE"


def seq_swapped(doc):
    # Two events of the requester whose timestamps contradict the order
    # its thread recorded them in.
    i = find(doc, "kick: signal", "i")
    j = find(doc, "wait", "B")
    a, b = doc["traceEvents"][i]["args"], doc["traceEvents"][j]["args"]
    a["tseq"], b["tseq"] = b["tseq"], a["tseq"]


def lost(doc):
    doc["otherData"]["lost"] = 3


MUTATIONS = [
    ("a handle with no make that set the bit", no_make, "only 0 makes"),
    ("a signal with no exit from EXITING of its own", exit_before_signal,
     "has no exit from EXITING_GUEST_MODE of its own"),
    ("an exit from EXITING that no kick caused", drop("kick: signal", "i", 2),
     "with no kick that won the CAS"),
    ("a WAIT that returned without its ack", drop("ack", "i"),
     "returned without waiting"),
    ("an ack with no exit of its vCPU", drop("guest", "E"),
     "no exit of it between"),
    ("an ack whose exit's epoch bump came before the call",
     late_bump_but_busy, "no exit of it between"),
    ("a guest entry while paused", entry_while_paused, "while paused"),
    ("a track whose time goes back", ts_back, "before the track's previous"),
    ("timestamps out of the thread's order", seq_swapped,
     "out of its program order"),
    ("an E without its B", drop("wait", "B"), "E without its B"),
    ("a flow end without its start", drop("request", "s"),
     "without its start"),
    ("a work item run without being queued", drop("queue work", "X"),
     "without being queued"),
    ("a trace with lost events", lost, "events were lost"),
    ("an exit from EXITING with no recorded kick, not marked as begun "
     "before the start", started_running_unmarked,
     "with no kick that won the CAS"),
    ("in a trace started on a running VM, a handle with no make after the "
     "vCPU's first recorded entry", started_running_late_handle,
     "only 0 makes"),
]
# Doctored copies that obey the protocol and must pass.
GOOD_VARIANTS = [
    ("a trace started while the vCPU ran, kicked, with a request pending",
     started_running),
    ("an ack that is the bump of an exit just before the call", late_bump),
]


def run(checker, doc):
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    p = subprocess.run([sys.executable, checker, path], capture_output=True,
                       text=True)
    os.unlink(path)
    return p.returncode, p.stdout


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    checker = sys.argv[1]
    failed = 0
    rc, out = run(checker, good())
    if rc != 0:
        print("FAIL: the good trace fails:\n" + out)
        failed += 1
    else:
        print("PASS: the good trace passes")
    for what, mutate in GOOD_VARIANTS:
        doc = copy.deepcopy(good())
        mutate(doc)
        rc, out = run(checker, doc)
        if rc == 0:
            print("PASS: passes: %s" % what)
        else:
            print("FAIL: fails: %s:\n%s" % (what, out))
            failed += 1
    for what, mutate, msg in MUTATIONS:
        doc = copy.deepcopy(good())
        mutate(doc)
        rc, out = run(checker, doc)
        if rc == 1 and msg in out:
            print("PASS: caught %s" % what)
        else:
            print("FAIL: not caught: %s (exit %d, wanted %r):\n%s" %
                  (what, rc, msg, out))
            failed += 1
    print("%d passed, %d failed" %
          (len(MUTATIONS) + len(GOOD_VARIANTS) + 1 - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
