#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check a vcpureq trace (vcpureq_trace_write_json()) against its format and
the protocol.

usage: trace-check.py [--structure-only] [--quiet] TRACE.json

Structure (always):
  - the file is JSON with "traceEvents" and "otherData";
  - every event has the fields its phase needs; names are known;
  - per track (pid, tid): timestamps never go back, and they follow the
    thread's own order of recording (args "tseq"); B/E slices nest (an E
    closes the innermost open B of the same name);
  - every flow end ("f") has a start ("s") of the same id, no later.

A trace started on a running VM: a slice under way at the start (a guest
instance, a block, a parking, a call, a WAIT) begins at the start with
"before_start" and its end has "began_before_start".  What happened before
the start is unknown: such an instance may leave EXITING_GUEST_MODE with no
recorded kick (the kick came before the start), such a WAIT is not counted,
and per vCPU and request number one handle or clear before the vCPU's
first recorded guest entry may lack its make (the bit was set before the
start, or by a make under way at it).

Protocol (unless --structure-only; needs a trace with nothing lost):
  - requests: for every vCPU and request number, by any time t the handles
    and clears are no more than the makes before t that set the bit (each
    consumes what one such make began); so every handled request has a
    make before it on some thread;
  - signals: per vCPU, the kicks that won the IN -> EXITING CAS ("kick:
    signal", re-kicks, "kick: self") and the exits (guest end, aborted
    entry) that left EXITING_GUEST_MODE pair one to one, each kick before
    its exit: every signal is followed by an exit of that vCPU, and one
    guest-mode instance gets one signal at most;
  - WAIT: every "wait" slice ends after each acknowledgement it waited for
    (the "ack" instants inside it, as many as its "targets" when it
    succeeded), and each ack of a vCPU has an exit of that vCPU (guest end,
    aborted entry, end of a lockless walk) after its call began and no later
    than the ack, or else its last exit before the call with nothing
    recorded by its thread between that exit and the call (the exit's
    epoch bump, which follows its stamp, may then come after the call's
    snapshot and be the ack: the vCPU was out of guest mode at the
    request);
  - pause: between a pause that returned 0 and the resume that lets a vCPU
    go ("unpause"), no guest-mode instance of that vCPU begins; every vCPU a
    pause saw parked had parked (or was asleep in block, or unbound: then
    no guest instance was open);
  - work: every run-on-vCPU item that runs was queued before, and the items
    one thread queued to one vCPU run in the order queued.

Exits 0 if every check passed, 1 with the failures listed, 2 for bad usage.
"""
import json
import sys
from collections import defaultdict

KNOWN_PREFIXES = ("guest", "lockless walk", "block", "parked", "work",
                  "request", "broadcast", "kick", "post_interrupt",
                  "make_request", "make ", "handle ", "clear ",
                  "entry aborted", "kick: ", "wait", "ack", "pause",
                  "resume", "unpause", "queue work", "process_name",
                  "thread_name", "thread_sort_index")
LEAVES = ("guest", "entry aborted", "lockless walk")


class Checker:
    def __init__(self, quiet):
        self.errors = []
        self.quiet = quiet
        self.counts = defaultdict(int)

    def fail(self, msg):
        self.errors.append(msg)

    def structure(self, doc):
        if not isinstance(doc, dict) or "traceEvents" not in doc or \
                "otherData" not in doc:
            self.fail("not a vcpureq trace: no traceEvents/otherData")
            return None
        evs = doc["traceEvents"]
        last = {}
        tseq = {}
        stacks = defaultdict(list)
        flow_s = {}
        for n, e in enumerate(evs):
            where = "event %d (%s)" % (n, e.get("name"))
            for f in ("name", "ph", "pid"):
                if f not in e:
                    self.fail("%s: no %r" % (where, f))
                    return None
            if not e["name"].startswith(KNOWN_PREFIXES):
                self.fail("%s: unknown name" % where)
            ph = e["ph"]
            if ph == "M":
                continue
            for f in ("tid", "ts"):
                if f not in e:
                    self.fail("%s: no %r" % (where, f))
                    return None
            track = (e["pid"], e["tid"])
            ts = float(e["ts"])
            if track in last and ts < last[track]:
                self.fail("%s: ts %.3f before the track's previous %.3f" %
                          (where, ts, last[track]))
            last[track] = ts
            # The recording thread numbers its events: in time order they
            # must come in that order (flows carry no args).
            seq = e.get("args", {}).get("tseq")
            if seq is not None:
                if track in tseq and seq <= tseq[track]:
                    self.fail("%s: the thread's event %d comes after its "
                              "event %d: timestamps out of its program "
                              "order" % (where, seq, tseq[track]))
                tseq[track] = seq
            if ph == "B":
                stacks[track].append(e["name"])
            elif ph == "E":
                if not stacks[track] or stacks[track][-1] != e["name"]:
                    self.fail("%s: E without its B (open: %s)" %
                              (where, stacks[track][-3:]))
                else:
                    stacks[track].pop()
            elif ph == "X":
                if "dur" not in e:
                    self.fail("%s: X without dur" % where)
            elif ph == "i":
                pass
            elif ph == "s":
                flow_s[(e.get("cat"), e["id"])] = ts
            elif ph == "f":
                key = (e.get("cat"), e["id"])
                if key not in flow_s:
                    self.fail("%s: flow end %s without its start" %
                              (where, key))
                elif flow_s[key] > ts:
                    self.fail("%s: flow %s ends before it starts" %
                              (where, key))
            else:
                self.fail("%s: unknown phase %r" % (where, ph))
            self.counts["events"] += 1
        self.counts["tracks"] = len(last)
        return evs

    def protocol(self, doc, evs):
        od = doc["otherData"]
        if od.get("lost", 0):
            self.fail("%d events were lost: the protocol checks need a "
                      "complete trace (a larger ring_events)" % od["lost"])
            return
        ev = [e for e in evs if e["ph"] != "M"]
        for e in ev:
            e["t"] = float(e["ts"])
        # Per vCPU: the leave events (exits) in time order.
        leaves = defaultdict(list)  # vcpu -> [(t, left, began before start)]
        for e in ev:
            a = e.get("args", {})
            if e["name"] in LEAVES and (e["ph"] == "E" or
                                        e["name"] == "entry aborted"):
                leaves[a.get("vcpu")].append(
                    (e["t"], a.get("left"),
                     bool(a.get("began_before_start"))))
        # Per vCPU: the times of every event its own thread recorded for
        # it (the thread that recorded its leaves), in time order.
        vtid = defaultdict(set)
        for e in ev:
            if e["name"] in LEAVES and e["ph"] in ("E", "i"):
                vtid[e.get("args", {}).get("vcpu")].add(e["tid"])
        own = defaultdict(list)
        for e in ev:
            v = e.get("args", {}).get("vcpu")
            if v in vtid and e["tid"] in vtid[v]:
                own[v].append(e["t"])
        for v in own:
            own[v].sort()
        self.requests(ev)
        self.signals(ev, leaves)
        self.waits(ev, leaves, own)
        self.pauses(ev)
        self.work(ev)

    def requests(self, ev):
        # Per vCPU and number the bit goes set, clear, set, clear...: each
        # handle or clear consumes the instance one make began (a make that
        # found the bit clear: not "coalesced"), and that make is stamped
        # before its set, the handle after its clear.  So by any time t the
        # handles and clears of a pair are no more than its new makes
        # before t.
        new = defaultdict(int)
        used = defaultdict(int)
        # Per vCPU: no recorded guest entry yet.  Until its first, one
        # consumption per number may be of a bit set before the start.
        entered = set()
        early = set()
        for e in ev:  # file order is time order
            a = e.get("args", {})
            if e["name"] == "guest" and e["ph"] == "B" and \
                    not a.get("before_start"):
                entered.add(a.get("vcpu"))
            if e["ph"] != "X":
                continue
            key = (a.get("vcpu"), a.get("req"))
            if e["name"].startswith("make "):
                self.counts["makes"] += 1
                if not a.get("coalesced"):
                    new[key] += 1
            elif e["name"].startswith(("handle ", "clear ")):
                self.counts["handles"] += 1
                used[key] += 1
                if used[key] > new[key] and key[0] not in entered and \
                        key not in early:
                    early.add(key)  # set before the start
                    new[key] += 1
                if used[key] > new[key]:
                    self.fail("%s of vCPU %s at %.3f: %d handles and clears "
                              "of request %s by then, but only %d makes "
                              "before it set the bit" %
                              (e["name"], key[0], e["t"], used[key], key[1],
                               new[key]))

    def signals(self, ev, leaves):
        # Only the requester that wins a guest-mode instance's IN -> EXITING
        # CAS signals it ("kick: signal", a waiter's re-kick) or, from the
        # vCPU's own thread, makes it exit ("kick: self"); that instance
        # ends leaving EXITING_GUEST_MODE, after the win (stamped before
        # the CAS).  So, per vCPU, the wins and the exits from EXITING pair
        # one to one, each win before its exit: no exit from EXITING
        # without a win before it, no win without its own exit after it.
        wins = ("kick: signal", "kick: signal (re-kick)", "kick: self")
        per = defaultdict(list)  # vcpu -> [(t, kind)]
        for e in ev:
            a = e.get("args", {})
            if e["ph"] == "i" and e["name"] in wins + ("kick: failed",):
                per[a.get("vcpu")].append(
                    (e["t"], "failed" if e["name"] == "kick: failed"
                     else "win"))
                if e["name"].startswith("kick: signal"):
                    self.counts["signals"] += 1
        for v, ls in leaves.items():
            per[v].extend((t, "pre-exit" if pre else "exit")
                          for t, left, pre in ls
                          if left == "EXITING_GUEST_MODE")
        for v, xs in per.items():
            xs.sort(key=lambda x: (x[0], not x[1].endswith("exit")))
            won = failed = exits = 0
            for t, kind in xs:  # forward: every exit has its cause
                if kind == "win":
                    won += 1
                elif kind == "failed":
                    failed += 1  # a lost signal: its instance may still
                    # have left EXITING before the CAS back to IN
                elif kind == "pre-exit" and exits >= won + failed:
                    # An instance under way at the start, kicked before
                    # it: its win was not recorded.
                    won += 1
                    exits += 1
                else:
                    exits += 1
                    if exits > won + failed:
                        self.fail("vCPU %s left EXITING_GUEST_MODE at %.3f "
                                  "with no kick that won the CAS before it"
                                  % (v, t))
                        exits = won + failed
            need = avail = 0
            for t, kind in reversed(xs):  # backward: every win its exit
                if kind.endswith("exit"):
                    avail += 1
                elif kind == "win":
                    need += 1
                    if need > avail:
                        self.fail("kick of vCPU %s at %.3f (signal or self) "
                                  "has no exit from EXITING_GUEST_MODE of "
                                  "its own after it" % (v, t))
                        need = avail

    @staticmethod
    def bump_may_follow(leaves, own, v, since):
        """True if vCPU @v's last exit before @since may have bumped its
        exit epoch after @since.  The leave is stamped before the bump
        (vcpureq__exit_guest_mode()), and the thread records nothing between
        the two; so if the vCPU's thread recorded nothing after that leave
        until @since, the bump may be later than a WAIT's epoch snapshot
        taken after @since, and that exit's bump is then the WAIT's ack (the
        vCPU was out of guest mode at the request: its next entry sees the
        bit)."""
        before = [t for t, _, _ in leaves[v] if t < since]
        if not before:
            return False
        last = max(before)
        nxt = [t for t in own[v] if t > last]
        return not nxt or min(nxt) > since

    def waits(self, ev, leaves, own):
        open_ = defaultdict(list)  # track -> stack of [event, acks]
        calls = defaultdict(list)  # track -> stack of [begin, WAIT?, kicked]
        for e in ev:
            tr = (e["pid"], e["tid"])
            n, ph = e["name"], e["ph"]
            if n in ("request", "broadcast") and ph == "B":
                calls[tr].append([e["t"], "WAIT" in e["args"].get("req", ""),
                                  set(), set()])
            elif n in ("request", "broadcast") and ph == "E":
                if not calls[tr]:
                    continue
                t0, wait, kicked, acked = calls[tr].pop()
                if wait and e["args"].get("result", -1) >= 0 and \
                        kicked - acked:
                    self.fail("WAIT call at %.3f returned without waiting "
                              "for vCPU(s) %s that it found in guest mode" %
                              (t0, sorted(kicked - acked)))
            elif n.startswith("kick: ") and ph == "i" and calls[tr]:
                # A WAIT waits for every target it found in guest mode or
                # in a walk (kick_after_fence()): signalled, coalesced with
                # a signal on its way, or reading.
                if n in ("kick: signal", "kick: coalesced", "kick: reading"):
                    calls[tr][-1][2].add(e["args"].get("vcpu"))
            elif n == "wait" and ph == "B":
                open_[tr].append([e, []])
            elif n == "ack" and ph == "i":
                if not open_[tr]:
                    self.fail("ack at %.3f outside a wait" % e["t"])
                    continue
                open_[tr][-1][1].append(e)
                v = e["args"].get("vcpu")
                since = calls[tr][-1][0] if calls[tr] else \
                    open_[tr][-1][0]["t"]
                if not any(since <= t <= e["t"] for t, _, _ in leaves[v]) \
                        and not self.bump_may_follow(leaves, own, v, since):
                    self.fail("ack of vCPU %s at %.3f: no exit of it between "
                              "its call (%.3f) and the ack" %
                              (v, e["t"], since))
            elif n == "wait" and ph == "E":
                if not open_[tr]:
                    continue  # the structure check reported it
                b, acks = open_[tr].pop()
                self.counts["waits"] += 1
                res = e["args"].get("result")
                want = b["args"].get("targets")
                if res == 0 and len(acks) != want and \
                        not b["args"].get("before_start"):
                    self.fail("wait at %.3f returned 0 with %d acks of %s "
                              "targets" % (b["t"], len(acks), want))
                for a in acks:
                    if a["t"] > e["t"]:
                        self.fail("wait ended at %.3f before its ack at %.3f"
                                  % (e["t"], a["t"]))
                if calls[tr]:
                    calls[tr][-1][3].update(a["args"].get("vcpu")
                                            for a in acks)

    def pauses(self, ev):
        # vCPU-side state: open "parked"/"block" slices and guest slices.
        state = defaultdict(lambda: {"parked": False, "block": False,
                                     "guest": False})
        held = {}  # vcpu -> time the pause that holds it returned
        pause_targets = defaultdict(list)  # track -> [vcpus seen parked]
        for e in ev:
            n, ph, a = e["name"], e["ph"], e.get("args", {})
            v = a.get("vcpu")
            tr = (e["pid"], e["tid"])
            if n in ("parked", "block", "guest") and ph in ("B", "E"):
                state[v][n] = ph == "B"
                if n == "guest" and ph == "B" and v in held:
                    self.fail("vCPU %s entered the guest at %.3f while "
                              "paused (pause returned at %.3f)" %
                              (v, e["t"], held[v]))
            elif n == "parked" and ph == "i":
                self.counts["parked_seen"] += 1
                # Parked, asleep in block, or unbound (not traced): in
                # every case no guest-mode instance is open.
                if state[v]["guest"]:
                    self.fail("pause saw vCPU %s parked at %.3f while it was "
                              "in a guest-mode instance" % (v, e["t"]))
                pause_targets[tr].append(v)
            elif n == "pause" and ph == "B":
                pause_targets[tr] = []
            elif n == "pause" and ph == "E":
                self.counts["pauses"] += 1
                if a.get("result") == 0:
                    for pv in pause_targets[tr]:
                        held[pv] = e["t"]
            elif n == "unpause" and ph == "i":
                held.pop(v, None)

    def work(self, ev):
        queued = {}  # id -> (tid, vcpu)
        order = defaultdict(list)  # (tid, vcpu) -> ids in queue order
        for e in ev:
            a = e.get("args", {})
            if e["name"] == "queue work" and a.get("work"):
                queued[a["work"]] = (e["tid"], a.get("vcpu"))
                order[(e["tid"], a.get("vcpu"))].append(a["work"])
            elif e["name"] == "work" and e["ph"] == "B" and a.get("work"):
                self.counts["work"] += 1
                w = a["work"]
                if w not in queued:
                    self.fail("work item %d ran at %.3f without being queued"
                              " before" % (w, e["t"]))
                    continue
                q = order[queued[w]]
                if q and q[0] != w:
                    self.fail("work item %d ran before item %d that the same"
                              " thread queued to vCPU %s earlier" %
                              (w, q[0], queued[w][1]))
                if w in q:
                    q.remove(w)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    opts = [a for a in argv[1:] if a.startswith("--")]
    if len(args) != 1 or set(opts) - {"--structure-only", "--quiet"}:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    c = Checker("--quiet" in opts)
    try:
        with open(args[0]) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print("trace-check: %s: %s" % (args[0], e))
        return 1
    evs = c.structure(doc)
    if evs is not None and "--structure-only" not in opts and not c.errors:
        c.protocol(doc, evs)
    summary = ", ".join("%s %d" % kv for kv in sorted(c.counts.items()))
    if c.errors:
        for m in c.errors[:20]:
            print("trace-check: FAIL: %s" % m)
        if len(c.errors) > 20:
            print("trace-check: ... and %d more" % (len(c.errors) - 20))
        print("trace-check: %s: %s" % (args[0], summary))
        return 1
    if not c.quiet:
        print("trace-check: %s: OK (%s)" % (args[0], summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
