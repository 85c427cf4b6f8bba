#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Build and run vcpureq-bench, then count the system calls of the
# "request to an awake vCPU outside guest mode" loop with strace -c.
#
#   bench/run.sh [--quick] [--build-dir DIR] [--out DIR] [--no-build]
#                [--no-strace] [--shield] [-- extra vcpureq-bench arguments]
#
# The report is printed and written to OUT/report.md (default OUT:
# BUILD/bench-run, or BUILD/bench-run-quick with --quick), rendered by
# bench/render.py from OUT/data.json.  The strace count is differential:
# the outside-guest-mode part run twice, with 1,000,000 and with 2,000,000
# requests per loop; everything else in those runs is identical, so the
# difference in the total number of system calls is what the extra
# requests themselves cost (0 is the target).  The two strace -c summaries
# are left in OUT and bench/render.py adds their counts to the report (the
# section appended last), also when it renders OUT again.
#
# --shield (root): run the benchmark in its own session whose autogroup
# has nice -10, so that CPU-bound processes of other sessions on a shared
# machine take less of its CPU time (the report says how much they took).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build"
out=""
quick=()
do_build=1
do_strace=1
shield=0
extra=()

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=(--quick) ;;
	--build-dir) build="$2"; shift ;;
	--out) out="$2"; shift ;;
	--no-build) do_build=0 ;;
	--no-strace) do_strace=0 ;;
	--shield) shield=1 ;;
	--) shift; extra=("$@"); break ;;
	-h|--help) sed -n '3,21p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$out" ] || out="$build/bench-run${quick:+-quick}"

if [ "$do_build" = 1 ]; then
	cmake -S "$root" -B "$build" -DVCPUREQ_WERROR=ON >/dev/null
	cmake --build "$build" --target vcpureq-bench -j"$(nproc)"
fi
bin="$build/bench/vcpureq-bench"
if [ ! -x "$bin" ]; then
	echo "run.sh: $bin not found (is add_subdirectory(bench) in CMakeLists.txt?)" >&2
	exit 1
fi
if ! command -v gnuplot >/dev/null 2>&1; then
	echo "run.sh: gnuplot not found: the plot will be skipped (apt-get install -y gnuplot-nox)" >&2
fi

mkdir -p "$out"
# A summary of an earlier run is not this run's.
rm -f "$out/strace-1000000.txt" "$out/strace-2000000.txt"
run=("$bin" "${quick[@]}" --out "$out" "${extra[@]}")
set +e
if [ "$shield" = 1 ]; then
	setsid -w bash -c 'echo -10 >/proc/self/autogroup 2>/dev/null || echo "run.sh: --shield: cannot set the autogroup nice" >&2; exec "$@"' bash "${run[@]}"
else
	"${run[@]}"
fi
rc=$?
set -e
if [ "$rc" = 77 ]; then
	echo "run.sh: SKIP (no /dev/kvm)"
	exit 77
fi
[ "$rc" = 0 ] || exit "$rc"

if [ "$do_strace" = 1 ]; then
	if ! command -v strace >/dev/null 2>&1; then
		echo "run.sh: strace not found: system calls not counted (apt-get install -y strace)" >&2
		exit 0
	fi
	# Two runs of the outside-guest-mode part that differ only in the
	# number of requests (1,000,000 or 2,000,000 per loop; each run has a
	# polling loop, a busy loop and a vcpureq_request() loop of a quarter
	# of that): same output, same setup, so the difference in system
	# calls is what the extra 2,250,000 requests cost.  The watchdog
	# thread's sleep loop depends on the duration: it is switched off.
	# --no-output: no data file, no renderer under strace.
	count_calls() {
		VCPUREQ_BENCH_NO_WATCHDOG=1 strace -f -c -o "$out/strace-$1.txt" \
			"$bin" --only outside --reps 1 --outside-requests "$1" --no-output >/dev/null 2>&1
		awk '$NF == "total" { print $4 }' "$out/strace-$1.txt"
	}
	if a=$(count_calls 1000000) && b=$(count_calls 2000000) && [ -n "$a" ] && [ -n "$b" ]; then
		"$bin" --render-only "$out" >/dev/null
		sed -n '/^## System calls of the requests to a vCPU outside guest mode/,$p' "$out/report.md"
	else
		rm -f "$out/strace-1000000.txt" "$out/strace-2000000.txt"
		echo "run.sh: strace could not count (ptrace not permitted?)" >&2
	fi
fi
echo "run.sh: report in $out/report.md"
