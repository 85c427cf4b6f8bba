#!/usr/bin/env bash
# Long torture: TORTURE_SECONDS (default 600) per run; LOOP=1 repeats with new seeds
# until a run fails.  Usage: long.sh path/to/torture [extra torture args]
set -u
bin=$1; shift
secs=${TORTURE_SECONDS:-600}
seed=${SEED:-$(date +%s)}
while :; do
	echo "== torture -t $secs -s $seed $*"
	"$bin" -t "$secs" -s "$seed" "$@" || { echo "FAILED with seed $seed"; exit 1; }
	[ "${LOOP:-0}" = 1 ] || exit 0
	seed=$((seed + 1))
done
