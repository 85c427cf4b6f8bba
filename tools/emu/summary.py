#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The ctest-style summary of `make test-arm64` (`make test-x86-emu`) from
the VM's console log
(tools/emu/init's @@ lines).  Exit 1 if a case failed or did not run
(the VM stopped or timed out before @@END)."""
import json
import os
import re
import subprocess
import sys

log, root, vm_s, all_s = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
x86_build = sys.argv[5] if len(sys.argv) > 5 else ""
# EMU_ARCH: arm64 (the default) or x86-64; EMU_MACHINE: what ran it.
arch = os.environ.get("EMU_ARCH", "arm64")
machine = os.environ.get("EMU_MACHINE", "real KVM in qemu-system-aarch64, TCG")
target = os.environ.get("EMU_TARGET", "make test-arm64")
names = [l.split("|", 1)[0] for l in open(os.path.join(root, "cases")) if l.strip()]
left = dict(l.split() for l in open(os.path.join(root, "left-out")))
res, skips, ms, retried, ended = {}, {}, {}, {}, False
for line in open(log, errors="replace"):
    m = re.match(r"@@CASE (\S+) (\d+) (-?\d+)", line)
    if m:
        res[m.group(1)] = int(m.group(2))
        ms[m.group(1)] = int(m.group(3))
    m = re.match(r"@@RETRY (\S+) (\d+)", line)
    if m:
        retried[m.group(1)] = int(m.group(2))
    m = re.match(r"@@SKIP (\S+) (.*)", line)
    if m:
        skips[m.group(1)] = m.group(2).strip()
    if line.startswith("@@END"):
        ended = True
passed = [n for n in names if res.get(n) == 0]
skipped = [n for n in names if res.get(n) == 77]
failed = [n for n in names if n in res and res[n] not in (0, 77)]
missing = [n for n in names if n not in res]
x86_only = [n for n in skipped if "x86-only" in skips.get(n, "")]
no_python = [n for n in skipped if "python3" in skips.get(n, "")]

x86_count = None
if x86_build and os.path.exists(os.path.join(x86_build, "CTestTestfile.cmake")):
    try:
        out = subprocess.run(["ctest", "--show-only=json-v1"], cwd=x86_build,
                             capture_output=True, text=True, check=True).stdout
        x86_count = 0
        for t in json.loads(out)["tests"]:
            labels = {p["name"]: p["value"] for p in t.get("properties", [])}.get("LABELS", [])
            if "full" not in labels and {"unit", "torture"} & set(labels):
                x86_count += 1
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass

print()
for n in skipped:
    print("  SKIP   %s: %s" % (n, skips.get(n, "")))
for n in failed:
    rc = res[n]
    print("  FAILED %s (exit %d%s)" % (n, rc, ", killed by the timeout" if rc in (137, 124) else ""))
for n in missing:
    print("  NOT RUN %s" % n)
for n, rc in sorted(retried.items()):
    print("  RETRIED %s: failed (exit %d), then %s on its second run" %
          (n, rc, "passed" if res.get(n) == 0 else "failed again"))
slow = sorted(ms.items(), key=lambda kv: -kv[1])[:5]
print("slowest: " + ", ".join("%s %.1f s" % (n, v / 1000.0) for n, v in slow))
total = len(names)
print("\n%s (%s): %d%% tests passed, %d failed, %d not run, out of %d"
      % (arch, machine, 100 * len(passed) // max(total, 1), len(failed), len(missing), total))
print("  passed %d, skipped %d (x86-only by nature: %d; the trace checker, host Python, absent in the VM: %d), failed %d" %
      (len(passed), len(skipped), len(x86_only), len(no_python), len(failed)))
print("  ran on %s: %d cases; not run here: %s thread-backend, %s host-tool checks"
      % (arch, len(passed) + len(failed), left.get("thread", "?"), left.get("host-tool", "?")))
if int(left.get("emulation", 0)):
    print("  left out, as this emulation cannot run them: %s (%s)"
          % (left["emulation"], os.environ.get("EMU_EXCLUDE_WHY", "")))
if x86_count is not None:
    print("  on x86-64 the same tiers (make test: unit + short torture) register %d cases" % x86_count)
print("Total Test time (VM run) = %s s; %s %s s" % (vm_s, target, all_s))
if not ended:
    print("the VM did not reach the end of the run (@@END): crashed or timed out")
sys.exit(0 if ended and not failed and not missing else 1)
