#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Draw the traced run of make test-linux-guest (PNG, gnuplot).

usage: plot-boot.py TRACE.json CONSOLE.log OUT.png [PAUSE]

TRACE.json: the vcpureq trace of examples/linux-vmm.c --test --trace
(build-arm64/linux-guest-trace.json); CONSOLE.log: the emulated machine's
console (build-arm64/linux-guest.log: the VMM's milestones and its clock
origin).  Two panels:
  - the whole run, against seconds from the VMM's start: per vCPU, its
    guest-mode instances (green: the vCPU in KVM_RUN, running or halted
    there) and its parkings (blue); the control thread's pauses (orange);
    the milestones (first console line, /init, the witness, poweroff);
  - one pause (PAUSE, default 5: a 1 s pause in the middle of the boot),
    zoomed: the vCPU rows with each exit from guest mode (black), the
    run-on-vCPU items run (purple) and the requests handled (diamonds);
    the control thread's pause call, the paused time and the resume; the
    requester's requests and the worker's queued items (they wait through
    the pause and are handled as the vCPUs leave their parking).
Writes a gnuplot script beside OUT.png (OUT.gp) and runs gnuplot on it.
"""
import json
import re
import subprocess
import sys


def main():
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    with open(sys.argv[2], errors="replace") as f:
        log = f.read()
    out = sys.argv[3]
    nth = int(sys.argv[4]) if len(sys.argv) == 5 else 5
    m = re.search(r"clock: \[0\.000\] is CLOCK_MONOTONIC ([0-9.]+) s", log)
    if not m:
        sys.exit("plot-boot: no clock origin in %s" % sys.argv[2])
    origin = float(m.group(1)) * 1e6  # µs, as the trace
    miles = []
    for m in re.finditer(r"^\[ *([0-9.]+)\] (milestone: (.*)|vCPU \d+: "
                         r"KVM_EXIT_SYSTEM_EVENT.*)$", log, re.M):
        text = m.group(3) or "poweroff (SYSTEM_EVENT)"
        text = text.replace("the guest kernel's first console line",
                            "first console line").replace(
                                "every vCPU loop ended", "loops ended")
        text = re.sub(r" \(.*\)$", "", text)
        if "loops ended" in text:
            continue
        miles.append((float(m.group(1)), text))

    evs = [e for e in doc["traceEvents"] if e["ph"] != "M"]
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    vtid = {}
    for tid, n in names.items():
        m = re.match(r"vCPU (\d+)", n)
        if m:
            vtid[tid] = int(m.group(1))
    ctl = next(e["tid"] for e in evs if e["name"] == "pause")
    # The requester makes requests (slices), the worker queues items.
    req = next((e["tid"] for e in evs if e["name"] == "request" and
                e["ph"] == "B" and e["tid"] not in vtid and
                e["tid"] != ctl), None)
    wrk = next((e["tid"] for e in evs if e["name"].startswith("queue") and
                e["tid"] not in vtid and e["tid"] != ctl), None)
    nv = len(vtid)

    def sec(t):
        return (t - origin) / 1e6

    # Slices per vCPU (events about a vCPU carry args.vcpu) and the pauses.
    slices = {v: [] for v in range(nv)}
    open_ = {}
    for e in evs:
        v = e.get("args", {}).get("vcpu")
        if e["tid"] in vtid and e["name"] in ("guest", "parked", "work"):
            key = (e["tid"], e["name"])
            if e["ph"] == "B":
                open_[key] = e["ts"]
            elif e["ph"] == "E" and key in open_:
                slices[vtid[e["tid"]]].append((e["name"], open_.pop(key),
                                               e["ts"]))
    pauses = []
    cur = None
    for e in evs:
        if e["tid"] != ctl:
            continue
        if e["name"] == "pause" and e["ph"] == "B":
            cur = [e["ts"], None, None, None]
        elif e["name"] == "pause" and e["ph"] == "E" and cur:
            cur[1] = e["ts"]
        elif e["name"] == "resume" and e["ph"] == "B" and cur:
            cur[2] = e["ts"]
        elif e["name"] == "resume" and e["ph"] == "E" and cur:
            cur[3] = e["ts"]
            pauses.append(cur)
            cur = None
    if nth >= len(pauses):
        sys.exit("plot-boot: only %d pauses in the trace" % len(pauses))
    end = max(e["ts"] for e in evs)

    gp = ['set terminal pngcairo size 1300,900 font "Sans,10"',
          'set output "%s"' % out, "set termoption noenhanced",
          "set multiplot layout 2,1 title \"vcpureq: examples/linux-vmm.c "
          "boots Debian's arm64 kernel on 2 vCPUs (KVM inside "
          "qemu-system-aarch64), paused %d times; from its trace\"" %
          len(pauses)]
    obj = [1]

    def rect(a, z, y, h, color):
        if z <= a:
            z = a + 1e-9
        gp.append("set object %d rect from %.6f,%.3f to %.6f,%.3f fc rgb "
                  "'%s' fs solid 0.6 noborder" % (obj[0], a, y - h, z,
                                                  y + h, color))
        obj[0] += 1

    colors = {"guest": "#27ae60", "parked": "#2980b9", "work": "#8e44ad"}
    crow = nv + 1

    # Panel 1: the whole run.
    gp.append("set lmargin 14")
    gp.append("set xlabel \"seconds since the VMM started\"")
    gp.append("set xrange [0:%f]" % (sec(end) * 1.01))
    gp.append("set yrange [0.3:%f]" % (crow + 1.2))
    gp.append("set ytics (%s)" % ", ".join(
        ["\"vCPU %d\" %d" % (v, v + 1) for v in range(nv)] +
        ["\"control\" %d" % crow]))
    gp.append("unset key")
    gp.append("set grid xtics")
    for v in range(nv):
        for name, a, z in slices[v]:
            if name != "work":
                rect(sec(a), sec(z), v + 1, 0.25 if name == "guest"
                     else 0.32, colors[name])
    for i, p in enumerate(pauses):
        rect(sec(p[1]), sec(p[2]), crow, 0.25, "#e67e22")
    span = sec(end) * 1.01
    for i, (t, text) in enumerate(miles):
        gp.append("set arrow from %f, graph 0 to %f, graph 1 nohead dt 2 "
                  "lc rgb '#555555'" % (t, t))
        right = t > 0.8 * span
        gp.append('set label "%s" at %f, %f %s front font ",8"' %
                  (text, t - 0.2 if right else t + 0.2,
                   crow + 0.45 + 0.22 * (i % 3), "right" if right
                   else "left"))
    p = pauses[nth]
    gp.append('set label "zoomed below" at %f,%f center front font ",8" '
              'tc rgb "#c0392b"' % ((sec(p[1]) + sec(p[2])) / 2,
                                    crow - 0.45))
    gp.append("set title \"the whole run: green, a vCPU in guest mode "
              "(KVM_RUN); blue, parked; orange, the control thread's "
              "pauses; dashed, milestones\"")
    gp.append("plot NaN")

    # Panel 2: one pause, zoomed (ms around it).
    for i in range(1, obj[0]):
        gp.append("unset object %d" % i)
    gp.append("unset arrow")
    gp.append("unset label")
    obj[0] = 1
    lo, hi = p[0] - 150e3, p[3] + 150e3
    rrow, wrow = crow + 1, crow + 2

    def ms(t):
        return (t - p[0]) / 1e3

    gp.append("set xlabel \"ms since the pause call (pause %d, %.0f ms "
              "paused)\"" % (nth, (p[2] - p[1]) / 1e3))
    gp.append("set xrange [%f:%f]" % (ms(lo), ms(hi)))
    gp.append("set yrange [0.3:%f]" % (wrow + 0.8))
    gp.append("set ytics (%s)" % ", ".join(
        ["\"vCPU %d\" %d" % (v, v + 1) for v in range(nv)] +
        ["\"control\" %d" % crow, "\"requester\" %d" % rrow,
         "\"worker\" %d" % wrow]))
    for v in range(nv):
        for name, a, z in slices[v]:
            if z >= lo and a <= hi:
                rect(ms(max(a, lo)), ms(min(z, hi)), v + 1,
                     {"guest": 0.25, "parked": 0.32, "work": 0.12}[name],
                     colors[name])
                if name == "guest" and z <= hi:
                    gp.append("set arrow from %f,%f to %f,%f nohead lc rgb "
                              "'black' lw 1 front" % (ms(z), v + 0.7, ms(z),
                                                      v + 1.3))
    rect(ms(p[0]), ms(p[1]), crow, 0.3, "#f5b041")
    rect(ms(p[1]), ms(p[2]), crow, 0.18, "#e67e22")
    rect(ms(p[2]), ms(p[3]), crow, 0.3, "#f5b041")
    gp.append('set label "pause()" at %f,%f right front font ",8"' %
              (ms(p[0]) - 2, crow + 0.45))
    gp.append('set label "paused: registers read (twice), run-on-vCPU '
              're-reads queued" at %f,%f center front font ",8"' %
              ((ms(p[1]) + ms(p[2])) / 2, crow + 0.45))
    gp.append('set label "resume()" at %f,%f left front font ",8"' %
              (ms(p[3]) + 2, crow + 0.45))
    for e in evs:
        if not lo <= e["ts"] <= hi:
            continue
        if e["name"].startswith("make") and e["tid"] == req:
            gp.append("set label '' at %f,%d point pt 7 ps 0.8 lc rgb "
                      "'#7d3c98' front" % (ms(e["ts"]), rrow))
        elif e["name"].startswith("queue") and e["tid"] == wrk:
            gp.append("set label '' at %f,%d point pt 5 ps 0.8 lc rgb "
                      "'#8e44ad' front" % (ms(e["ts"]), wrow))
        elif e["name"].startswith("handle") and e["tid"] in vtid and \
                e["name"] != "handle WORK":
            gp.append("set label '' at %f,%f point pt 13 ps 1.0 lc rgb "
                      "'#7d3c98' front" % (ms(e["ts"]), vtid[e["tid"]] + 1.4))
    gp.append("set title \"one pause, zoomed: black bars, exits from guest "
              "mode; purple, run-on-vCPU items run; diamonds, requests "
              "handled (dots: made by the requester; squares: items queued "
              "by the worker)\"")
    gp.append("plot NaN")
    gp.append("unset multiplot")
    script = out.rsplit(".", 1)[0] + ".gp"
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", script], check=True)
    print("plot-boot: %s (%d pauses, pause %d zoomed: %.0f ms)" %
          (out, len(pauses), nth, (p[2] - p[1]) / 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
