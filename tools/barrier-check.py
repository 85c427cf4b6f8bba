#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check that every barrier pair of docs/protocol.md compiles, on aarch64,
to instructions that give its order.

On x86-64 a relaxed load and an acquire load are the same `mov`, and a
relaxed RMW and a seq_cst one the same locked instruction: a missing
release or acquire cannot show up there, in a test or in emulation (QEMU's
TCG keeps the host's order).  On aarch64 they differ (`ldr` or `ldar`,
`str` or `stlr`, `__aarch64_ldadd8_relax` or `_rel`), so the compiled code
shows whether the order the protocol needs is there.  This reads the
disassembly of an aarch64 build with line tables (objdump -dl) and, for
every required order below, finds the instructions compiled from its
source statement (in every function it was inlined into) and checks that
one of them gives the order.

What it proves: the C11 orders the protocol names (docs/protocol.md,
"Barrier pairings", and the fences [R] [V] [S] [W] [E] [W'] [E']) are
written where the protocol needs them and the compiler kept them on
aarch64.  What it does not: that these orders are enough (the model and
the proofs in docs/verification.md argue that), nor anything about code
that runs on real arm64 hardware under contention (a real arm64 machine
would; this one has none).

    barrier-check.py [--objdump PROG] SRC_DIR LIBRARY_OR_OBJECTS...

Exit 0 if every order is found, 1 if one is missing (each listed), 2 on
bad input.
"""
import os
import re
import subprocess
import sys

# (id, what pairs with what, file, function, statement regex, order).
# Order: "full" (dmb ish), "release", "acquire", "acq_rel" (a seq_cst
# read-modify-write: both).  The regex finds the statement's first line
# inside the function (every match counts).
REQUIRED = [
    ("payload-make", "release OR of the request bit / acquire of test and check",
     "request.c", "vcpureq__set_request", r"atomic_fetch_or_explicit\(&vcpu->requests", "release"),
    ("payload-test", "acquire of test_request / release OR of make",
     "request.c", "vcpureq_test_request", r"atomic_load_explicit\(&vcpu->requests", "acquire"),
    ("payload-check", "seq_cst clear of check_request / the next make's release",
     "request.c", "take_bit", r"atomic_fetch_and_explicit\(&vcpu->requests", "acq_rel"),
    ("epoch-bump", "release epoch bump at exit / acquire epoch load in wait_ack()",
     "vcpu_mode.c", "vcpureq__exit_guest_mode", r"atomic_fetch_add_explicit\(&vcpu->exit_epoch", "release"),
    ("epoch-wait", "acquire epoch load in wait_ack() / release bump at exit",
     "make_request.c", "wait_ack", r"atomic_load_explicit\(&vcpu->exit_epoch", "acquire"),
    ("epoch-snapshot", "acquire epoch snapshot before the mode read (kick)",
     "kick.c", "vcpureq__kick_after_fence", r"atomic_load_explicit\(&vcpu->exit_epoch", "acquire"),
    ("outside-store", "release store of OUTSIDE / acquire mode load of a kick",
     "vcpu_mode.c", "vcpureq__exit_guest_mode", r"atomic_exchange_explicit\(&vcpu->mode", "release"),
    ("outside-load", "acquire mode load of a kick / release store of OUTSIDE",
     "kick.c", "vcpureq__kick_after_fence", r"old = atomic_load_explicit\(&vcpu->mode", "acquire"),
    ("wake-hint-store", "release of wake_hint / acquire exchange in block and entry",
     "request.c", "set_wake_hint", r"atomic_store_explicit\(&vcpu->wake_hint", "release"),
    ("wake-hint-block", "acquire exchange of wake_hint in block / its release",
     "block.c", "check_block", r"atomic_exchange_explicit\(&vcpu->wake_hint", "acquire"),
    ("wake-hint-entry", "acquire exchange of wake_hint at entry / its release",
     "run.c", "process_requests", r"atomic_exchange_explicit\(&vcpu->wake_hint", "acquire"),
    ("on-post", "release of ON / acquire exchange of ON in the sync",
     "mailbox.c", "vcpureq_post_interrupt", r"atomic_fetch_or_explicit\(&vcpu->pir_on", "release"),
    ("on-sync", "acquire exchange of ON / release of ON",
     "mailbox.c", "vcpureq__mailbox_sync", r"atomic_exchange_explicit\(&vcpu->pir_on", "acquire"),
    ("kick-inflight", "seq_cst kick_inflight++ before the CAS / unbind's fence",
     "kick.c", "kick_in_guest", r"atomic_fetch_add_explicit\(&vcpu->kick_inflight", "acq_rel"),
    ("park-bump", "release park-epoch bump / acquire load of the pauser",
     "park.h", "vcpureq__park_notify", r"atomic_fetch_add_explicit\(&vcpu->park_epoch", "release"),
    ("park-wait", "acquire park-epoch load of the pauser / release bump",
     "pause.c", "wait_parked", r"atomic_load_explicit\(&v->park_epoch", "acquire"),
    ("parked-store", "release store of parked / acquire load in parked()",
     "pause.c", "vcpureq__park_if_paused", r"atomic_store_explicit\(&vcpu->parked, 1", "release"),
    ("parked-load", "acquire load in parked() / release store of parked",
     "pause.c", "parked", r"atomic_load_explicit\(&v->parked", "acquire"),
    ("resume", "release decrement of the pause count / acquire load of the parked vCPU",
     "pause.c", "take_pause", r"atomic_compare_exchange_weak_explicit\(", "release"),
    ("park-resume", "acquire load of the pause word / resume's release",
     "pause.c", "vcpureq__park_if_paused", r"atomic_load_explicit\(&vcpu->pause_word", "acquire"),
    ("work-notify", "release WORK bit after a push / the parked thread's acquire clear",
     "park.h", "vcpureq__park_work_notify", r"atomic_fetch_or_explicit\(&vcpu->pause_word", "release"),
    ("work-parked", "acquire clear of the WORK bit by a parked thread / the pusher's release",
     "pause.c", "vcpureq__park_if_paused", r"atomic_fetch_and_explicit\(&vcpu->pause_word", "acquire"),
]
# Every full fence of the protocol, wherever it is written: [R], [V], [S]
# (VCPUREQ__MB_*) and the others (vcpureq__smp_mb(): [W], [E], [W'], [E']).
FENCE = re.compile(r"\b(VCPUREQ__MB_[RVS]|vcpureq__smp_mb)\(\)\s*;")

LSE = re.compile(r"^(ldadd|ldclr|ldeor|ldset|ldsmax|ldsmin|ldumax|ldumin|swp|cas)(a|al|l)?(b|h)?$")
HELPER = re.compile(r"<__aarch64_[a-z]+[0-9]+_(relax|acq|rel|acq_rel)>")


def orders_of(mnem, ops):
    """The orders one instruction gives: a subset of {acquire, release, full}."""
    if mnem == "dmb":
        if ops.startswith(("ish", "sy")) and not ops.startswith(("ishst", "ishld")):
            return {"full", "acquire", "release"}
        if ops.startswith("ishld"):
            return {"acquire"}
        return set()
    if mnem.startswith(("ldar", "ldapr", "ldaxr", "ldaxp")):
        return {"acquire"}
    if mnem.startswith(("stlr", "stlxr", "stlur", "stlxp")):
        return {"release"}
    m = LSE.match(mnem)
    if m:
        return {"a": {"acquire"}, "al": {"acquire", "release"}, "l": {"release"}}.get(m.group(2), set())
    if mnem == "bl":
        h = HELPER.search(ops)
        if h:
            return {"relax": set(), "acq": {"acquire"}, "rel": {"release"},
                    "acq_rel": {"acquire", "release"}}[h.group(1)]
    return set()


def disassemble(objdump, files):
    """[(function, basename, line, mnemonic, operands)] of every instruction."""
    out = subprocess.run([objdump, "-d", "-l", "--no-show-raw-insn"] + files,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit("barrier-check: %s failed: %s" % (objdump, out.stderr.strip()))
    insns, func, loc = [], None, (None, 0)
    for line in out.stdout.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            func, loc = m.group(1), (None, 0)
            continue
        m = re.match(r"^(/\S+|\S+\.[ch]):(\d+)", line)
        if m:
            loc = (os.path.basename(m.group(1)), int(m.group(2)))
            continue
        m = re.match(r"^\s+[0-9a-f]+:\s+(\S+)\s*(.*)$", line)
        if m and func:
            insns.append((func, loc[0], loc[1], m.group(1), m.group(2)))
    return insns


def function_range(lines, name):
    """1-based (first, last) lines of function @name's definition, or None."""
    start = None
    for i, l in enumerate(lines):
        if start is None:
            if re.match(r"^[A-Za-z_].*[\s*]" + re.escape(name) + r"\(", l) and not l.rstrip().endswith(";"):
                start = i
        elif l.startswith("}"):
            return start + 1, i + 1
    return None


def statements(lines, first, last, regex):
    """Line ranges (1-based) of the statements matching @regex in [first, last]."""
    found = []
    for i in range(first - 1, last):
        if re.search(regex, lines[i]):
            j = i
            while j < last - 1 and ";" not in lines[j] and j - i < 6:
                j += 1
            found.append((i + 1, j + 1))
    return found


def check(name, what, insns, fname, spans, need):
    """True if every function holding code of @spans has an instruction giving @need."""
    want = {"acq_rel": {"acquire", "release"}}.get(need, {need})
    per_func = {}
    for func, f, line, mnem, ops in insns:
        if f == fname and any(a <= line <= b for a, b in spans):
            per_func.setdefault(func, []).append((mnem, ops))
    if not per_func:
        print("barrier-check: MISSING %-16s %s: no instruction compiled from %s:%s" %
              (name, what, fname, ",".join("%d-%d" % s for s in spans)))
        return False
    ok = True
    for func, code in sorted(per_func.items()):
        got = set()
        for mnem, ops in code:
            got |= orders_of(mnem, ops)
        if not want <= got:
            ok = False
            print("barrier-check: MISSING %-16s %s: in %s, %s:%s compiles to %s (no %s)" %
                  (name, what, func, fname, ",".join("%d-%d" % s for s in spans),
                   "; ".join("%s %s" % c for c in code)[:160], need))
    if ok:
        print("barrier-check: ok      %-16s %s (%d function%s)" %
              (name, need, len(per_func), "" if len(per_func) == 1 else "s"))
    return ok


def main():
    args = sys.argv[1:]
    objdump = "aarch64-linux-gnu-objdump"
    if args[:1] == ["--objdump"]:
        objdump, args = args[1], args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    src, files = args[0], args[1:]
    insns = disassemble(objdump, files)
    if not insns:
        print("barrier-check: no instructions in %s" % " ".join(files), file=sys.stderr)
        sys.exit(2)
    ok = True
    for name, what, fname, func, regex, need in REQUIRED:
        path = os.path.join(src, fname)
        lines = open(path).read().split("\n")
        r = function_range(lines, func)
        if not r:
            print("barrier-check: %s: function %s not found in %s" % (name, func, path), file=sys.stderr)
            sys.exit(2)
        spans = statements(lines, r[0], r[1], regex)
        if not spans:
            print("barrier-check: %s: no statement /%s/ in %s of %s" % (name, regex, func, path), file=sys.stderr)
            sys.exit(2)
        ok &= check(name, what, insns, fname, spans, need)
    nfences = 0
    for fname in sorted(os.listdir(src)):
        if not fname.endswith((".c", ".h")):
            continue
        lines = open(os.path.join(src, fname)).read().split("\n")
        for i, l in enumerate(lines):
            if FENCE.search(l) and not l.lstrip().startswith(("#", "*", "/*")):
                nfences += 1
                tag = re.search(r"\[[A-Z]'?\]", l)
                ok &= check("fence%s" % (" " + tag.group(0) if tag else ""), "full fence",
                            insns, fname, [(i + 1, i + 1)], "full")
    print("barrier-check: %d pair orders and %d fences: %s" %
          (len(REQUIRED), nfences, "all compiled to their order" if ok else "MISSING ORDERS"))
    sys.exit(0 if ok else 1)


main()
