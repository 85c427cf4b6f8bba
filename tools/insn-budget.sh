#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The instruction budget (docs/performance.md, "Instruction budget"):
# tools/insn_budget.c run under valgrind --tool=callgrind, its parts'
# user-space instruction counts divided per operation, and each compared
# with the budget that docs/performance.md states.  Callgrind counts
# instructions, not time: the figures are the same on a quiet or a loaded
# machine, so a budget can fail CI where a timed test could not.
#
#   tools/insn-budget.sh BUILD_DIR [N]     (N operations per part, 20000)
# Exit 0 within budget, 1 over it (or a figure missing), 77 without
# valgrind or /dev/kvm (make insn-budget then passes, saying SKIP).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: insn-budget.sh BUILD_DIR [N]}
n=${2:-20000}
bin=$build/tools/insn-budget
doc=$root/docs/performance.md
command -v valgrind >/dev/null || { echo "SKIP: valgrind not found (apt-get install valgrind)"; exit 77; }
[ -x "$bin" ] || { echo "insn-budget: $bin not built (cmake --build $build --target insn-budget)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/insn-budget.XXXXXX")
trap 'rm -rf "$work"' EXIT
set +e
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" "$n" \
	> "$work/stdout" 2> "$work/stderr"
rc=$?
set -e
if [ "$rc" = 77 ]; then cat "$work/stdout"; exit 77; fi
if [ "$rc" != 0 ]; then
	cat "$work/stdout" "$work/stderr" >&2
	echo "insn-budget: the counting run failed (exit $rc)" >&2
	exit 1
fi
# Each dump: "desc: Trigger: Client Request: <part>" and "summary: <Ir>".
declare -A ir=()
for f in "$work"/cg.out.*; do
	part=$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")
	[ -n "$part" ] && ir[$part]=$(sed -n 's/^summary: //p' "$f")
done
for p in raw entry enter request check; do
	[ -n "${ir[$p]:-}" ] || { echo "insn-budget: no count for part $p" >&2; exit 1; }
done
per() { awk -v a="$1" -v n="$n" 'BEGIN { printf "%.1f", a / n }'; }
declare -A got=(
	[entry]=$(per $((ir[entry] - ir[raw])))
	[enter]=$(per $((ir[enter] - ir[raw])))
	[request]=$(per "${ir[request]}")
	[check]=$(per "${ir[check]}")
)
echo "insn-budget: $n operations per part; raw KVM_RUN loop $(per "${ir[raw]}") instructions per entry"
# Budgets: the rows of docs/performance.md's table whose first cell is
# `entry`, `enter`, `request` or `check`; the last cell is the budget.
status=0
for k in entry enter request check; do
	budget=$(awk -F'|' -v k="\`$k\`" '$2 ~ k { gsub(/[^0-9]/, "", $(NF-1)); print $(NF-1); exit }' "$doc")
	if [ -z "$budget" ]; then
		echo "insn-budget: docs/performance.md states no budget for \`$k\`" >&2
		status=1
		continue
	fi
	verdict=ok
	if awk -v g="${got[$k]}" -v b="$budget" 'BEGIN { exit !(g > b) }'; then
		verdict="OVER BUDGET"
		status=1
	fi
	printf 'insn-budget: %-8s %8s instructions per operation, budget %5s: %s\n' \
		"$k" "${got[$k]}" "$budget" "$verdict"
done
exit $status
