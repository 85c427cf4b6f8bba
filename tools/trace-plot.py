#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Draw one broadcast WAIT of a vcpureq trace as a timeline (PNG, gnuplot).

usage: trace-plot.py TRACE.json OUT.png [N]

Takes the N-th (default the first) broadcast WAIT request of the trace
(vcpureq_trace_write_json(), e.g. `vcpureq-demo --trace TRACE.json`) that
waited for two vCPUs or more, and draws, against time from its call:
  - one row per vCPU: its guest-mode instances (green), blocks (grey),
    parkings (blue), the exit that acknowledged the WAIT (the end of the
    instance), and where its thread handled the request (diamond);
  - the requester's row: the call and its WAIT (orange), each make (dot),
    each kick's decision, and each acknowledgement as it saw it;
  - arrows for the signals (requester to vCPU, at the kick) and for the
    acknowledgements (the vCPU's exit to the requester's "ack").
Writes a gnuplot script beside OUT.png (OUT.gp) and runs gnuplot on it.
"""
import json
import subprocess
import sys


def load(path):
    with open(path) as f:
        doc = json.load(f)
    evs = [e for e in doc["traceEvents"] if e["ph"] != "M"]
    for e in evs:
        e["t"] = float(e["ts"])
    return evs


def pick(evs, nth):
    """The nth broadcast WAIT with >= 2 targets: (begin, end, tid, wait)."""
    found = 0
    for i, e in enumerate(evs):
        if e["name"] != "broadcast" or e["ph"] != "B" or \
                "WAIT" not in e["args"].get("req", ""):
            continue
        tid, depth, wait = e["tid"], 0, None
        for f in evs[i + 1:]:
            if f["tid"] != tid:
                continue
            if f["name"] == "wait" and f["ph"] == "B":
                wait = f
            if f["ph"] == "B":
                depth += 1
            elif f["ph"] == "E":
                if depth == 0:
                    if wait and wait["args"].get("targets", 0) >= 2:
                        if found == nth:
                            return e, f, tid, wait
                        found += 1
                    break
                depth -= 1
    sys.exit("trace-plot: no broadcast WAIT with 2 or more targets in the "
             "trace")


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    evs = load(sys.argv[1])
    out = sys.argv[2]
    b, e, rtid, wait = pick(evs, int(sys.argv[3]) if len(sys.argv) == 4
                            else 0)
    req = b["args"]["req"]
    base = req.split("|")[0]
    t0 = b["t"]
    # The window: the call, and the handles of its request that follow.
    t1 = e["t"]
    vcpus = set()
    for f in evs:
        if f["t"] >= t0 and f["tid"] == rtid and f["t"] <= e["t"] and \
                "vcpu" in f.get("args", {}):
            vcpus.add(f["args"]["vcpu"])
    for f in evs:
        if f["t"] > t0 and f["name"].startswith("handle " + base) and \
                f["args"].get("vcpu") in vcpus:
            t1 = max(t1, f["t"])
            if len(vcpus) == sum(1 for g in evs if g["t"] > t0 and
                                 g["t"] <= t1 and g["name"].startswith(
                                     "handle " + base)):
                break
    span = t1 - t0
    lo, hi = t0 - 0.15 * span, t1 + 0.10 * span
    vl = sorted(vcpus)
    row = {v: i + 1 for i, v in enumerate(vl)}
    rrow = len(vl) + 1.4

    def x(t):
        return t - t0

    gp = []
    gp.append('set terminal pngcairo size 1200,%d font "Sans,10"' %
              (170 + 70 * len(vl)))
    gp.append('set output "%s"' % out)
    gp.append("set termoption noenhanced")
    gp.append('set title "vcpureq: a broadcast %s over %d vCPUs spinning in'
              ' the guest (real KVM, from vcpureq_trace_write_json())"' %
              (req, len(vl)))
    gp.append("set xlabel \"time since the call (µs)\"")
    gp.append("set xrange [%f:%f]" % (x(lo), x(hi)))
    gp.append("set yrange [0.3:%f]" % (rrow + 0.9))
    labels = ["\"vCPU %d\" %d" % (v, row[v]) for v in vl]
    labels.append("\"requester\" %f" % rrow)
    gp.append("set ytics (%s)" % ", ".join(labels))
    gp.append("set grid xtics")
    gp.append("unset key")
    gp.append("set style arrow 1 head filled size screen 0.008,20 lc "
              "rgb '#c0392b' lw 1.5")
    gp.append("set style arrow 2 head filled size screen 0.008,20 lc "
              "rgb '#2471a3' lw 1.2 dt 2")
    obj = 1

    def rect(a, z, y, h, color, label=None):
        nonlocal obj
        a, z = max(a, lo), min(z, hi)
        if z <= a:
            return
        gp.append("set object %d rect from %f,%f to %f,%f fc rgb '%s' "
                  "fs solid 0.55 noborder" % (obj, x(a), y - h, x(z), y + h,
                                              color))
        obj += 1
        if label:
            gp.append('set label "%s" at %f,%f center front font ",9"' %
                      (label, (x(a) + x(z)) / 2, y))

    def point(t, y, color, pt, text=None, dy=0.3):
        if not lo <= t <= hi:
            return
        gp.append("set label '' at %f,%f point pt %d ps 1.4 lc rgb '%s' "
                  "front" % (x(t), y, pt, color))
        if text:
            gp.append('set label "%s" at %f,%f center front font ",8"' %
                      (text, x(t), y + dy))

    # vCPU rows: slices from their B/E pairs.
    open_ = {}
    for f in evs:
        v = f.get("args", {}).get("vcpu")
        if v not in row or f["name"] not in ("guest", "block", "parked"):
            continue
        if f["tid"] == rtid:
            continue
        key = (v, f["name"])
        if f["ph"] == "B":
            open_[key] = f["t"]
        elif f["ph"] == "E" and key in open_:
            a = open_.pop(key)
            if f["t"] >= lo and a <= hi:
                color = {"guest": "#27ae60", "block": "#95a5a6",
                         "parked": "#2980b9"}[f["name"]]
                rect(a, f["t"], row[v], 0.22, color,
                     "in guest" if f["name"] == "guest" and
                     f["t"] - a > 0.12 * span else None)
    # Each exit of a vCPU in the window: a black bar.
    for f in evs:
        v = f.get("args", {}).get("vcpu")
        if v in row and f["tid"] != rtid and lo <= f["t"] <= hi and \
                ((f["name"] == "guest" and f["ph"] == "E") or
                 f["name"] == "entry aborted"):
            gp.append("set arrow from %f,%f to %f,%f nohead lc rgb 'black' "
                      "lw 2 front" % (x(f["t"]), row[v] - 0.3, x(f["t"]),
                                      row[v] + 0.3))
    for key, a in open_.items():
        if a <= hi and key[0] in row:
            rect(a, hi, row[key[0]], 0.22, "#27ae60")
    # The requester's row: the call and the WAIT.
    rect(b["t"], e["t"], rrow, 0.30, "#f5b041", "broadcast " + req)
    wend = next(f for f in evs if f["tid"] == rtid and f["name"] == "wait"
                and f["ph"] == "E" and f["t"] >= wait["t"])
    rect(wait["t"], wend["t"], rrow - 0.12, 0.12, "#e67e22")
    gp.append('set label "WAIT" at %f,%f left front font ",8"' %
              (x(wait["t"]), rrow - 0.42))
    for f in evs:
        if not (t0 <= f["t"] <= e["t"]) or f["tid"] != rtid:
            continue
        v = f.get("args", {}).get("vcpu")
        if f["name"].startswith("make "):
            point(f["t"], rrow + 0.12, "#7d3c98", 7)
        elif f["name"].startswith("kick: ") and v in row:
            if f["name"].startswith("kick: signal"):
                gp.append("set arrow from %f,%f to %f,%f as 1" %
                          (x(f["t"]), rrow - 0.3, x(f["t"]), row[v] + 0.25))
            point(f["t"], rrow + 0.45, "#c0392b", 9,
                  f["name"][6:] if v == vl[0] else None, 0.22)
        elif f["name"] == "ack" and v in row:
            # The exit that acknowledged: the vCPU's last exit before.
            ex = [g for g in evs if g.get("args", {}).get("vcpu") == v and
                  g["tid"] != rtid and g["t"] <= f["t"] and
                  ((g["name"] == "guest" and g["ph"] == "E") or
                   g["name"] == "entry aborted")]
            if ex:
                gp.append("set arrow from %f,%f to %f,%f as 2" %
                          (x(ex[-1]["t"]), row[v] + 0.25, x(f["t"]),
                           rrow - 0.3))
            point(f["t"], rrow - 0.3, "#2471a3", 5)
    for f in evs:
        v = f.get("args", {}).get("vcpu")
        if f["name"].startswith("handle " + base) and v in row and \
                t0 <= f["t"] <= hi:
            point(f["t"], row[v], "#7d3c98", 13, "handled", 0.35)
    gp.append("set label 'red arrows: the kick signals (one per vCPU);  "
              "black bars: exits from guest mode;  diamonds: the vCPU thread "
              "handled the request' at graph 0.0, graph -0.2 left "
              "font ',9'")
    gp.append("set label 'blue arrows: the exit that acknowledged the WAIT, "
              "to the moment the WAIT saw it (it checks the vCPUs one after "
              "another)' at graph 0.0, graph -0.26 left font ',9'")
    gp.append("set bmargin 7")
    gp.append("plot NaN")
    script = out.rsplit(".", 1)[0] + ".gp"
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", script], check=True)
    print("trace-plot: %s (%d vCPUs, %.1f µs from the call to its return)" %
          (out, len(vl), e["t"] - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
