#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn the mutant switches written in src/ into entries of tests/mutants/.

A new mutant is easiest to write where it lives: an
`#ifdef VCPUREQ_MUTANT_<NAME>` / `#ifndef ... #else ... #endif` at its
place in src/.  This tool moves each such switch out of src/ and into
tests/mutants/<name>.diff (a unified diff of the real file into the
mutant, made with unifdef), so that the protocol code reads without
mutants and every mutant is listed in one place.  An existing diff's
header (the lines before its first `---`) is kept; a new one gets a
header to fill in (Breaks:, Caught-by:, see tests/mutants/README.md).

    tools/mutant-extract.py            every switch left in src/
    tools/mutant-extract.py --check    exit 1 if src/ still has one

Needs unifdef (Debian: unifdef).
"""
import os
import re
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
src = os.path.join(root, "src")
out = os.path.join(root, "tests", "mutants")
SWITCH = re.compile(r"\bVCPUREQ_MUTANT_([A-Z0-9_]+)\b")


def unifdef(path, defs, undefs):
    args = ["unifdef", "-x", "2"] + ["-D" + d for d in defs] + ["-U" + u for u in undefs] + [path]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        sys.exit("mutant-extract: unifdef failed on %s: %s" % (path, r.stderr))
    return r.stdout


def main():
    files = {}
    for f in sorted(os.listdir(src)):
        if not f.endswith((".c", ".h")):
            continue
        names = sorted(set(SWITCH.findall(open(os.path.join(src, f)).read())))
        if names:
            files[f] = names
    if "--check" in sys.argv:
        for f, names in files.items():
            print("mutant-extract: src/%s still switches %s" % (f, " ".join(names)))
        sys.exit(1 if files else 0)
    mutants = {}
    for f, names in files.items():
        for n in names:
            mutants.setdefault(n, []).append(f)
    for n, fs in sorted(mutants.items()):
        diff = ""
        for f in fs:
            path = os.path.join(src, f)
            macros = ["VCPUREQ_MUTANT_" + m for m in files[f]]
            real = unifdef(path, [], macros)
            mut = unifdef(path, ["VCPUREQ_MUTANT_" + n], [m for m in macros if m != "VCPUREQ_MUTANT_" + n])
            a, b = "/tmp/mutant-extract.a", "/tmp/mutant-extract.b"
            open(a, "w").write(real)
            open(b, "w").write(mut)
            d = subprocess.run(["diff", "-u", "--label", "a/src/" + f, "--label", "b/src/" + f, a, b],
                               capture_output=True, text=True).stdout
            diff += d
        target = os.path.join(out, n.lower() + ".diff")
        header = "Mutant: %s\nBreaks: (what it breaks)\nCaught-by: (unit <test file> <case> | torture | tsan <program> <case>)\n\n" % n.lower()
        if os.path.exists(target):
            old = open(target).read()
            header = old[: old.find("--- a/")] if "--- a/" in old else old
        open(target, "w").write(header + diff)
        print("mutant-extract: %s -> tests/mutants/%s.diff (%s)" % (n, n.lower(), ", ".join(fs)))
    for f, names in files.items():
        path = os.path.join(src, f)
        real = unifdef(path, [], ["VCPUREQ_MUTANT_" + m for m in names])
        with open(path, "w") as fh:
            fh.write(real)


main()
