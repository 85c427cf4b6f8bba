#!/usr/bin/env bash
# Run every check of the vcpureq Promela models (see README.md).
#
#   model/run.sh            the default suite (about a minute on 2 cores)
#   FULL=1 model/run.sh     also the large configurations (tens of minutes,
#                           up to ~10 GB of memory per job)
#   JOBS=n                  parallel pan runs (default: min(2, cores))
#   KEEP=dir                keep each check's pan output and trail in dir
#   ONLY=regex              run only the checks whose name matches
#
# Needs only spin and a C compiler.  Prints one line per check:
#   model: <name>: PASS (states N, depth D, time T)
#   model: <name>: counterexample found as expected (<what>)
# and exits non-zero if a property that must hold fails, if an expected
# counterexample is not found, or if spin is missing.
set -u

case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
here=$(cd "$here" && pwd)
CC=${CC:-cc}
if ! command -v spin >/dev/null 2>&1; then
	echo "model: spin not found (apt-get install spin)" >&2
	exit 2
fi
if ! command -v "$CC" >/dev/null 2>&1; then
	echo "model: C compiler '$CC' not found" >&2
	exit 2
fi
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
JOBS=${JOBS:-$((ncpu < 2 ? ncpu : 2))}
FULL=${FULL:-0}
MEMLIM=${MEMLIM:-10000}  # MB per pan run

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vcpureq-model.XXXXXX")
cleanup() {
	local p
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the checks ----------------------------------------------------------
# check NAME MODEL "SPIN-DEFINES" EXPECT [WHAT]
#   MODEL   sc (vcpureq.pml) or tso (vcpureq_tso.pml)
#   EXPECT  pass, or an extended regex that pan's first error must match
#   WHAT    for counterexamples: what it shows
names=() models=() defs=() expects=() whats=() opts=()
check() {
	if [ -n "${ONLY:-}" ] && ! [[ $1 =~ $ONLY ]]; then return; fi
	names+=("$1") models+=("$2") defs+=("$3") expects+=("$4")
	whats+=("${5:-}") opts+=("${6:-}")
}

# Sequentially consistent model: all properties (a)-(g).
check sc-1v2r            sc  "-DNV=1 -DNR=2 -DVB=3 -DRB=1" pass
check sc-2v1r            sc  "-DNV=2 -DNR=1 -DVB=3 -DRB=1" pass
check sc-1v1r-seq        sc  "-DNV=1 -DNR=1 -DVB=4 -DRB=3" pass
check sc-thread-backend  sc  "-DTHREAD_BACKEND -DNV=1 -DNR=2 -DVB=3 -DRB=1" pass
check sc-1v1r-small      sc  "-DNV=1 -DNR=1 -DVB=2 -DRB=1" pass
check sc-snap-after-cas  sc  "-DSNAP_AFTER_CAS -DNV=1 -DNR=1 -DVB=2 -DRB=1" \
	"invalid end state" "hang: WAIT requester waits for an exit that already happened"
check sc-loads-reordered sc  "-DLOADS_REORDERED -DNV=1 -DNR=1 -DVB=2 -DRB=1" \
	"invalid end state" "hang: relaxed epoch load after the relaxed mode load (ARM64/POWER)"
check sc-1v1r-vb3        sc  "-DNV=1 -DNR=1 -DVB=3 -DRB=1" pass
check sc-wait-literal    sc  "-DWAIT_LITERAL -DNV=1 -DNR=1 -DVB=3 -DRB=1" \
	"assertion violated ok_b" "WAIT returns while an instance its mode read saw, begun after [R], runs"
check sc-guest-wait-one  sc  "-DGUEST_WAIT -DNV=2 -DNR=1 -DVB=2 -DRB=1" pass
check sc-guest-wait      sc  "-DGUEST_WAIT -DNV=2 -DNR=2 -DVB=2 -DRB=1" \
	"invalid end state" "deadlock: two guest callbacks WAIT for each other"
check sc-no-final-check  sc  "-DNO_FINAL_CHECK -DNV=1 -DNR=1 -DVB=2 -DRB=1 -DNO_WALK -DNO_BLOCK" \
	"assertion violated ok_a" "stranded: a request made before the publish, unseen, no kick"

# x86-TSO model: the store-buffering pairs, the sleeper, the epoch snapshot.
check tso-1v1r           tso "-DNR=1 -DRB=3 -DVB=4" pass
check tso-1v2r           tso "-DNR=2 -DRB=1 -DVB=3" pass
check tso-default        tso "" pass
check tso-x86            tso "-DX86_LOCKED_OR" pass
check tso-dekker         tso "-DNO_BLOCK -DKINDS=8" pass
check tso-no-vcpu-fence  tso "-DNO_VCPU_FENCE -DNO_BLOCK -DKINDS=8" \
	"assertion violated ok_a2?\\b" "(a) stranded request without [V]"
check tso-no-req-fence   tso "-DNO_REQ_FENCE -DNO_BLOCK -DKINDS=8" \
	"assertion violated ok_a2?\\b" "(a) stranded request without [R]"
check tso-no-req-fence-x86-dekker tso "-DNO_REQ_FENCE -DX86_LOCKED_OR -DNO_BLOCK -DKINDS=8" pass
check tso-no-req-fence-x86-wake   tso "-DNO_REQ_FENCE -DX86_LOCKED_OR" \
	"assertion violated ok_d" "(d) lost wake-up without [R], even with x86's locked OR"
check tso-no-sleep-fence tso "-DNO_SLEEP_FENCE" \
	"assertion violated ok_d" "(d) lost wake-up without [S]"
check tso-snap-after-cas tso "-DSNAP_AFTER_CAS" \
	"invalid end state" "hang: snapshot after the CAS"
check tso-snap-before-fence tso "-DSNAP_BEFORE_FENCE" \
	"assertion violated ok_b" "(b) snapshot before [R] (the design brief's first order)"
check tso-x86-noaction   tso "-DX86_LOCKED_OR -DKINDS=2 -DNO_BLOCK" pass
check tso-snap-before-fence-x86-noaction tso "-DSNAP_BEFORE_FENCE -DX86_LOCKED_OR -DKINDS=2 -DNO_BLOCK" \
	"assertion violated ok_b" "(b) OUTSIDE_GUEST_MODE with the snapshot before [R], even on x86"

# The large configurations: make test-full only.  sc-2v2r-run alone takes
# 6.4 GB (45 M states, uncompressed: 112 s); the default suite stays under
# 2 GB at its peak with its 2 jobs (README, "Tests").  sc-1v3r-run (7.6 M
# states, 31 s) moved here too, to keep make test under 5 minutes.
if [ "$FULL" != 0 ]; then
	check sc-2v2r-run        sc  "-DNV=2 -DNR=2 -DVB=1 -DRB=1 -DNO_WALK -DNO_BLOCK" pass "" big
	check sc-1v3r-run        sc  "-DNV=1 -DNR=3 -DVB=2 -DRB=1 -DKINDS=1 -DNO_WALK -DNO_BLOCK" pass
	check full-sc-2v2r        sc  "-DNV=2 -DNR=2 -DVB=1 -DRB=1" pass "" collapse
	check full-sc-1v2r-rb2    sc  "-DNV=1 -DNR=2 -DVB=2 -DRB=2" pass "" collapse
	check full-sc-2v2r-vb2-run sc "-DNV=2 -DNR=2 -DVB=2 -DRB=1 -DBCAST_ONLY -DKINDS=1 -DNO_WALK -DNO_BLOCK" pass "" collapse
	check full-tso-1v2r-rb2   tso "-DNR=2 -DRB=2 -DVB=3" pass "" collapse
fi

# ---- running them --------------------------------------------------------
run_one() { # index
	local i=$1 d="$tmp/$1" file out states depth secs err
	mkdir -p "$d"
	case ${models[$i]} in
	sc) file=vcpureq.pml ;;
	tso) file=vcpureq_tso.pml ;;
	esac
	cp "$here/$file" "$d/"
	# big: a large hash table up front; collapse: state compression
	# (about a third of the memory, a third slower)
	local cflags="-O2 -DSAFETY -DMEMLIM=$MEMLIM" hash=-w22
	case ${opts[$i]} in
	collapse) cflags="$cflags -DCOLLAPSE" hash=-w26 ;;
	big) cflags="$cflags -DNOCOMP" hash=-w26 ;;
	*) cflags="$cflags -DNOCOMP" ;;
	esac
	(
		cd "$d" || exit 1
		# shellcheck disable=SC2086
		spin ${defs[$i]} -a "$file" >spin.txt 2>&1 || exit 3
		# shellcheck disable=SC2086
		$CC $cflags -w -o pan pan.c >cc.txt 2>&1 || exit 4
		./pan -m1000000 $hash >pan.txt 2>&1
		exit 0
	)
	case $? in
	3) echo "model: ${names[$i]}: FAIL (spin: $(head -n 1 "$d/spin.txt"))"; return 1 ;;
	4) echo "model: ${names[$i]}: FAIL (cc: $(grep -m1 error "$d/cc.txt"))"; return 1 ;;
	esac
	out="$d/pan.txt"
	states=$(awk '/states, stored/ {print $1; exit}' "$out")
	depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | head -n 1)
	secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' "$out" | head -n 1)
	err=$(grep -m1 -E '^pan:[0-9]+: |^pan: reached -DMEMLIM|max search depth too small' "$out")
	if [ -n "${KEEP:-}" ]; then
		mkdir -p "$KEEP"
		cp "$out" "$KEEP/${names[$i]}.pan.txt"
		[ -f "$d/$file.trail" ] && cp "$d/$file.trail" "$KEEP/${names[$i]}.trail" &&
			cp "$d/$file" "$KEEP/${names[$i]}.pml" &&
			mv "$KEEP/${names[$i]}.trail" "$KEEP/${names[$i]}.pml.trail" &&
			echo "spin ${defs[$i]} -t -p -g ${names[$i]}.pml" >"$KEEP/${names[$i]}.replay"
	fi
	if [ "${expects[$i]}" = pass ]; then
		if [ -z "$err" ] && grep -q 'errors: 0' "$out" && ! grep -q 'Search not completed' "$out"; then
			echo "model: ${names[$i]}: PASS (states $states, depth $depth, time ${secs}s)"
			return 0
		fi
		echo "model: ${names[$i]}: FAIL (${err:-search incomplete}; states $states) [${defs[$i]}]"
		return 1
	fi
	if [ -n "$err" ] && echo "$err" | grep -qE "${expects[$i]}"; then
		# the counterexample must replay in spin's simulator
		# shellcheck disable=SC2086
		if (cd "$d" && spin ${defs[$i]} -t "$file" >replay.txt 2>&1) &&
			grep -qE "assertion violated|trail ends after" "$d/replay.txt"; then
			echo "model: ${names[$i]}: counterexample found as expected (${whats[$i]}; trail depth ${err##*depth }"
			return 0
		fi
		err="$err, but the trail does not replay"
	fi
	echo "model: ${names[$i]}: FAIL (expected a counterexample matching '${expects[$i]}', got: ${err:-none}) [${defs[$i]}]"
	return 1
}

start=$(date +%s)
n=${#names[@]}
printed=0 failed=0
print_ready() {
	while [ $printed -lt $n ] && [ -f "$tmp/res.$printed" ]; do
		cat "$tmp/res.$printed"
		[ "$(cat "$tmp/rc.$printed")" = 0 ] || failed=1
		printed=$((printed + 1))
	done
}
# Start the biggest checks first so that two cores stay busy.
order=()
for ((i = 0; i < n; i++)); do [ -n "${opts[$i]}" ] && order+=("$i"); done
for ((i = 0; i < n; i++)); do [ -n "${opts[$i]}" ] || order+=("$i"); done
running=0
for i in "${order[@]}"; do
	while [ $running -ge "$JOBS" ]; do
		wait -n
		running=$((running - 1))
		print_ready
	done
	( run_one "$i" >"$tmp/res.$i.tmp"; echo $? >"$tmp/rc.$i"; mv "$tmp/res.$i.tmp" "$tmp/res.$i" ) &
	running=$((running + 1))
done
while [ $running -gt 0 ]; do
	wait -n
	running=$((running - 1))
	print_ready
done
wait
print_ready
end=$(date +%s)
if [ $failed = 0 ]; then
	echo "model: all $n checks as expected ($((end - start)) s, $JOBS jobs)"
else
	echo "model: SOME CHECKS FAILED ($((end - start)) s)"
	exit 1
fi
