#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The unit tier N times in a row under a CPU hog of H busy threads (the
# machine shared with other work, as CI's often is): stops at the first
# failing run, naming it and its failed cases; exits non-zero then.
#   tools/unit-soak.sh BUILD_DIR [RUNS (20)] [HOG_THREADS (4)]
set -u
build=$1 runs=${2:-20} hog=${3:-4}
[ -d "$build" ] || { echo "unit-soak: no build directory $build" >&2; exit 2; }
pids=()
stop_hog() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap stop_hog EXIT
for ((i = 0; i < hog; i++)); do
	( while :; do :; done ) &
	pids+=($!)
done
start=$(date +%s)
for ((r = 1; r <= runs; r++)); do
	t0=$(date +%s)
	if ! out=$(cd "$build" && ctest -j2 -L unit --output-on-failure 2>&1); then
		printf '%s\n' "$out" | grep -E '\*\*\*Failed|\*\*\*Timeout|CHECK.*failed|Exception' | head -n 20
		echo "unit-soak: run $r of $runs FAILED under a $hog-thread CPU hog (after $(( $(date +%s) - start )) s)"
		exit 1
	fi
	n=$(printf '%s\n' "$out" | sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\)/\1/p')
	echo "unit-soak: run $r of $runs passed ($n cases, $(( $(date +%s) - t0 )) s)"
done
echo "unit-soak: $runs runs in a row passed under a $hog-thread CPU hog ($(( $(date +%s) - start )) s)"
