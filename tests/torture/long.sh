#!/usr/bin/env bash
# Long torture: TORTURE_SECONDS (default 600) per run; LOOP=1 repeats with new seeds
# until a run fails.  Usage: long.sh path/to/torture [extra torture args]
set -u
bin=$1; shift
secs=${TORTURE_SECONDS:-600}
seed=${SEED:-$(date +%s)}
# Without a usable /dev/kvm (and no -b given), the thread backend: the
# same protocol, driven as long, rather than a SKIP.
if { [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; } && ! printf ' %s' "$@" | grep -q ' -b'; then
	echo "long.sh: /dev/kvm is absent or not accessible: the run uses the thread backend (-b thread)"
	set -- -b thread "$@"
fi
while :; do
	echo "== torture -t $secs -s $seed $*"
	"$bin" -t "$secs" -s "$seed" "$@" || { echo "FAILED with seed $seed"; exit 1; }
	[ "${LOOP:-0}" = 1 ] || exit 0
	seed=$((seed + 1))
done
