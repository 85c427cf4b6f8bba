#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The cases `make test-arm64` (and `make test-x86-emu`) run inside the
emulated machine, from the CTest registry of its static build (ctest
--show-only=json-v1 on stdin).  Settings: EMU_<NAME>, else ARM64_<NAME>.

Writes <root>/cases (one case a line: name, timeout, environment, program
and arguments, and "retry" or nothing, separated by '|') and copies the
programs into <root>/t.
Selected: the unit tier and the short torture runs (labels unit / torture,
not full) that run a test program of ours, and the demo.  Left out, and counted in
<root>/left-out: the thread-backend cases (no KVM in them; they run on
x86-64 in make test; ARM64_THREAD=1 adds them, about 3 minutes more), and
the checks that run a host tool (Perl, Python, the mutation self-check's
shell driver), and the cases EMU_EXCLUDE names.
"""
import json
import os
import re
import shutil
import sys

build, root = sys.argv[1], sys.argv[2]


def setting(name, default):
    return os.environ.get("EMU_" + name, os.environ.get("ARM64_" + name, default))


arch = setting("ARCH", "arm64")
# EMU_EXCLUDE: a regex of cases this machine cannot run (left out, and
# counted, with EMU_EXCLUDE_WHY); EMU_RETRY: a regex of cases run a second
# time if the first run fails (the summary names them).
exclude = re.compile(setting("EXCLUDE", "")) if setting("EXCLUDE", "") else None
retry = re.compile(setting("RETRY", "")) if setting("RETRY", "") else None
scale = float(setting("TIMEOUT_SCALE", "3"))
with_thread = setting("THREAD", "0") == "1"
# torture budgets under TCG (10-100x slower than hardware): -t in s.
torture_t = setting("TORTURE_SECONDS", "6")

tests = json.load(sys.stdin)["tests"]
os.makedirs(os.path.join(root, "t"), exist_ok=True)
lines, left = [], {"thread": 0, "host-tool": 0, "emulation": 0}
for t in tests:
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    labels = props.get("LABELS", [])
    if "full" in labels or not ({"unit", "torture"} & set(labels)):
        continue
    name, cmd = t["name"], t.get("command") or []
    env = props.get("ENVIRONMENT", [])
    if not cmd or not cmd[0].startswith(build):
        left["host-tool"] += 1
        continue
    thread = (name.endswith((".thread", ".thread-ownloop")) or
              ("-b" in cmd and "thread" in cmd))
    if thread and not with_thread:
        left["thread"] += 1
        continue
    if exclude and exclude.search(name):
        left["emulation"] += 1
        continue
    prog = os.path.basename(cmd[0])
    dst = os.path.join(root, "t", prog)
    if not os.path.exists(dst):
        shutil.copy2(cmd[0], dst)
    args = list(cmd[1:])
    if prog == "torture" and "-t" in args:
        args[args.index("-t") + 1] = torture_t
    if prog == "torture":
        # TCG and a loaded host: a WAIT may take seconds of process time.
        args += ["-B", setting("TORTURE_BOUND_MS", "30000")]
    timeout = int(float(props.get("TIMEOUT", 60)) * scale)
    # The cases' hang bounds grow with their timeout (harness.h).
    env = env + ["VCPUREQ_TEST_TIME_SCALE=%d" % max(1, int(scale))]
    lines.append("|".join([name, str(timeout), " ".join(env),
                           " ".join(["/t/" + prog] + args),
                           "retry" if retry and retry.search(name) else ""]))
# The demo (make demo: a 4-vCPU VM, every kind of request, its checks).
demo = os.path.join(build, "demo", "vcpureq-demo")
if os.path.exists(demo):
    shutil.copy2(demo, os.path.join(root, "t", "vcpureq-demo"))
    lines.append("demo|%d||/t/vcpureq-demo -n 4" % int(60 * scale))
with open(os.path.join(root, "cases"), "w") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(root, "left-out"), "w") as f:
    f.write("thread %d\nhost-tool %d\nemulation %d\n"
            % (left["thread"], left["host-tool"], left["emulation"]))
print("cases: %d to run on %s; left out: %d thread-backend, %d host-tool, %d the emulation cannot run"
      % (len(lines), arch, left["thread"], left["host-tool"], left["emulation"]))
