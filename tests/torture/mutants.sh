#!/usr/bin/env bash
# Mutation self-check: every mutant of the protocol (tests/mutants/) must
# be caught, by a unit-test case (the case, linked against the mutant
# library, fails), by ThreadSanitizer (a TSan build of a check
# reports the data race the mutant opens), by the torture test (it fails)
# or by the Spin model (the model variant with the same hole yields its
# counterexample).  Prints a table and the catch rate; exits non-zero if a
# mutant survives that is not documented as equivalent on x86-64
# (an "Equivalent:" line in its diff, with the reason printed).
#   mutants.sh BUILD_DIR/tests/torture MODEL_DIR [budget_seconds]
#   MUTANTS="relaxed_payload ..." mutants.sh ...   only these mutants
set -u
bin=$1
model=$2
budget=${3:-20}

# Without a usable /dev/kvm, the mutants whose check needs it (a KVM unit
# case, which then says SKIP, and the torture runs) are reported as not run
# here; the others (thread-backend cases, the model, TSan) still run.
kvm=1
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	kvm=0
	echo "mutants: /dev/kvm is absent or not accessible: the mutants a KVM case or the torture run catches are not run here"
fi

# Every mutant is a diff in tests/mutants/ (README there); its header says
# what catches it and how to run it:
#   Caught-by: unit <test file> <case> | torture | tsan <program> <case>
#              | arm64-barriers (tools/barrier-check.sh; not run here)
#   Model: <model/run.sh check that shows the same hole>
#   Torture-misses: <why the torture run may not see it on this machine>
#   Torture-budget: <seconds>   Torture-args: <args>   Kick: <mechanism>
# A mutant that nothing can catch on x86-64 would say "Equivalent: <why>"
# (none today): reported, not failed.
mdir=$(cd "$(dirname "$0")/../mutants" && pwd)
declare -A unit_check=() model_check=() why_torture_misses=() tsan_check=()
declare -A budget_of=() args_of=() kick_of=() equivalent=() arm64_only=()
unit_mutants=""
all_mutants=""
for d in "$mdir"/*.diff; do
	m=$(basename "$d" .diff)
	while IFS= read -r line; do
		case $line in
		'--- a/'*) break ;;
		'Caught-by: unit '*) unit_check[$m]=${line#Caught-by: unit } ;;
		'Caught-by: tsan '*) tsan_check[$m]=${line#Caught-by: tsan } ;;
		'Caught-by: arm64-barriers') arm64_only[$m]=1 ;;
		'Model: '*) model_check[$m]=${line#Model: } ;;
		'Torture-misses: '*) why_torture_misses[$m]=${line#Torture-misses: } ;;
		'Torture-budget: '*) budget_of[$m]=${line#Torture-budget: } ;;
		'Torture-args: '*) args_of[$m]=${line#Torture-args: } ;;
		'Kick: '*) kick_of[$m]=${line#Kick: } ;;
		'Equivalent: '*) equivalent[$m]=${line#Equivalent: } ;;
		esac
	done < "$d"
	if [ -n "${unit_check[$m]:-}" ]; then
		unit_mutants="$unit_mutants $m"
	else
		all_mutants="$all_mutants $m"
	fi
done
# The unit-test mutants first: seconds each.
mutants=${MUTANTS:-$unit_mutants $all_mutants}
for m in $mutants; do
	case " $unit_mutants $all_mutants " in
	*" $m "*) ;;
	*) echo "mutants: unknown mutant $m (known: $unit_mutants $all_mutants)"; exit 2 ;;
	esac
done

# Run a unit-test case against the mutant library: 0 caught (it fails or
# hangs), 1 not caught, 2 its program is missing, 3 the case said SKIP.  Sets unit_line (the
# first failed check, or what is missing).
run_unit() { # mutant
	local tf tcase out rc
	read -r tf tcase <<<"${unit_check[$1]}"
	if [ ! -x "$bin/$tf-mut-$1" ]; then
		unit_line="its program $tf-mut-$1 was not built"
		return 2
	fi
	out=$(timeout 30 "$bin/$tf-mut-$1" "$tcase" 2>&1)
	rc=$?
	if [ $rc -eq 77 ]; then
		unit_line=$(printf '%s\n' "$out" | grep -m1 SKIP | cut -c1-90)
		return 3
	fi
	[ $rc -ne 0 ] || return 1
	if [ $rc -eq 124 ]; then
		unit_line="hang (30 s)"
	else
		unit_line=$(printf '%s\n' "$out" | grep -m1 -E 'CHECK|failed' |
			sed -e 's@^.*/tests/@@' -e 's/ (errmsg.*//' | cut -c1-90)
		[ -n "$unit_line" ] || unit_line="the case failed (exit $rc)"
	fi
	return 0
}

# Run a TSan check: 0 caught (the control passes, the mutant reports a
# data race), 1 not caught, 2 the check is not built here.
run_tsan() { # mutant
	local prog tcase ctl out
	read -r prog tcase <<<"${tsan_check[$1]}"
	ctl=${prog%%-mut-*}
	[ -x "$bin/$prog" ] && [ -x "$bin/$ctl" ] || return 2
	if ! out=$(TSAN_OPTIONS=halt_on_error=1 "$bin/$ctl" "$tcase" 2>&1); then
		echo "mutants: the control $ctl $tcase fails on the real library:" >&2
		printf '%s\n' "$out" | tail -n 20 >&2
		return 1
	fi
	out=$(TSAN_OPTIONS=halt_on_error=1 timeout 120 "$bin/$prog" "$tcase" 2>&1)
	[ $? -ne 0 ] || return 1
	printf '%s\n' "$out" | grep -q 'ThreadSanitizer: data race' || return 1
	# where: the first frame of the report, e.g. "p_vcpu_main test_payload.c:68"
	tsan_line="data race at $(printf '%s\n' "$out" | grep -m1 ' #0 ' |
		sed -e 's/^ *#0 //' -e 's/ (.*//' -e 's@ /.*/@ @')"
	return 0
}

model_out=""
run_model() {
	if [ -z "$model_out" ]; then
		if command -v spin >/dev/null 2>&1 && [ -x "$model/run.sh" ]; then
			model_out=$(ONLY="^($(IFS='|'; echo "${model_check[*]}"))\$" \
				"$model/run.sh" 2>&1)
		else
			model_out="(spin or model/run.sh missing)"
		fi
	fi
}

# The unit cases run first, three at a time (a few wait out a 20 s bound
# of their own before they report the state they found): each leaves
# "rc<TAB>seconds<TAB>line" in $unit_res/<mutant>.
unit_res=$(mktemp -d "${TMPDIR:-/tmp}/vcpureq-mutants.XXXXXX")
trap 'rm -rf "$unit_res"' EXIT
pre_run_unit() { # mutant
	local t0 rc secs
	t0=$(date +%s.%N)
	unit_line=
	run_unit "$1"
	rc=$?
	secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	printf '%s\t%s\t%s\n' "$rc" "$secs" "$unit_line" > "$unit_res/$1.tmp"
	mv "$unit_res/$1.tmp" "$unit_res/$1"
}
jobs_running=0
for m in $mutants; do
	[ -n "${unit_check[$m]:-}" ] || continue
	pre_run_unit "$m" &
	jobs_running=$((jobs_running + 1))
	if [ $jobs_running -ge 3 ]; then
		wait -n
		jobs_running=$((jobs_running - 1))
	fi
done
wait

survivors=0
caught=0
total=0
# Each row is printed as soon as its mutant is decided (make test shows
# the lines that start with "mutants: "), and kept in mutants.md.
# "caught" is the good outcome: the check failed against the mutant.
row() { # printf-format args...
	local line
	# shellcheck disable=SC2059
	line=$(printf "$@")
	printf '%s\n' "$line" >> mutants.md
	printf 'mutants: %s\n' "$line"
}
echo "mutants: $(echo $mutants | wc -w) mutants, a row each as it is decided"
: > mutants.md
row '| mutant | caught by (the check that failed against it: the good outcome) | after |'
row '|---|---|---|'
for m in $mutants; do
	total=$((total + 1))
	if [ -n "${unit_check[$m]:-}" ]; then
		IFS=$'\t' read -r urc secs unit_line < "$unit_res/$m"
		if [ "$urc" = 0 ]; then
			row '| %s | unit: %s (%s) | %s s |' "$m" "${unit_check[$m]}" \
				"$unit_line" "$secs"
			caught=$((caught + 1))
			continue
		fi
		if [ "$urc" = 3 ]; then
			row '| %s | not run here: %s (%s) | |' "$m" "${unit_check[$m]}" "$unit_line"
			total=$((total - 1))
			continue
		fi
		if [ "$urc" = 2 ]; then
			row '| %s | SURVIVED: %s | |' "$m" "$unit_line"
			survivors=$((survivors + 1))
			continue
		fi
		if [ -n "${equivalent[$m]:-}" ]; then
			row '| %s | equivalent on x86-64: %s | |' "$m" "${equivalent[$m]}"
			continue
		fi
		row '| %s | SURVIVED (%s passed) | |' "$m" "${unit_check[$m]}"
		survivors=$((survivors + 1))
		continue
	fi
	if [ -n "${arm64_only[$m]:-}" ]; then
		# An order x86-64 cannot tell apart: only the aarch64
		# disassembly shows it (make barrier-check, run by CI).
		row '| %s | not run here: the arm64 barrier check catches it (make barrier-check) | |' "$m"
		total=$((total - 1))
		continue
	fi
	if [ -n "${tsan_check[$m]:-}" ]; then
		run_tsan "$m"
		case $? in
		0) row '| %s | tsan: %s (%s) | first round |' "$m" \
			"$tsan_line" "${tsan_check[$m]}"
		   caught=$((caught + 1))
		   continue ;;
		2) row '| %s | not run: its TSan check is not built here (ASan build, or no TSan); the plain build checks it | |' \
			"$m"
		   total=$((total - 1))
		   continue ;;
		esac
		# not caught by TSan: the torture test and the model may still
	fi
	# A mutant the torture run is known to miss on x86 (the store-buffer
	# windows): its model check first, and the torture run only if the
	# model did not catch it (saves make test about 30 s).
	check=${model_check[$m]:-}
	if [ -n "$check" ] && [ -n "${why_torture_misses[$m]:-}" ]; then
		run_model
		line=$(printf '%s\n' "$model_out" | grep -E "model: $check:" | head -1)
		if printf '%s' "$line" | grep -q 'counterexample found as expected'; then
			row '| %s | model: %s (torture not run: %s) | exhaustive |' \
				"$m" "$check" "${why_torture_misses[$m]}"
			caught=$((caught + 1))
			continue
		fi
	fi
	if [ $kvm = 0 ]; then
		line=
		if [ -n "$check" ]; then
			run_model
			line=$(printf '%s\n' "$model_out" | grep -E "model: $check:" | head -1)
		fi
		if printf '%s' "$line" | grep -q 'counterexample found as expected'; then
			row '| %s | model: %s (torture not run: no /dev/kvm) | exhaustive |' "$m" "$check"
			caught=$((caught + 1))
		else
			row '| %s | not run here: the torture run needs /dev/kvm | |' "$m"
			total=$((total - 1))
		fi
		continue
	fi
	mb=${budget_of[$m]:-$budget}
	echo "mutants: $m: torture, up to $mb s"
	t0=$(date +%s.%N)
	out=$(VCPUREQ_TEST_KICK=${kick_of[$m]:-} timeout $((mb + 30)) \
		"$bin/torture-mut-$m" -t "$mb" ${args_of[$m]:-} 2>&1)
	rc=$?
	t1=$(date +%s.%N)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		what=$(printf '%s\n' "$out" | grep -oE '(stranded|lost_wakeups|payload_regress|wait_early|wait_hang|poisoned_reads|alive_after_dead|lost_interrupts) [1-9][0-9]*' | head -3 | tr '\n' ' ')
		[ $rc -eq 124 ] && what="timeout (hang)"
		row '| %s | torture%s: %s| %s s |' "$m" \
			"${args_of[$m]:+ ${args_of[$m]}}" "$what" "$secs"
		caught=$((caught + 1))
		continue
	fi
	check=${model_check[$m]:-}
	if [ -n "$check" ]; then
		run_model
		line=$(printf '%s\n' "$model_out" | grep -E "model: $check:" | head -1)
		if printf '%s' "$line" | grep -q 'counterexample found as expected'; then
			row '| %s | model: %s (torture survived %s s: %s) | exhaustive |' \
				"$m" "$check" "$mb" \
				"${why_torture_misses[$m]:-the window was not hit in this run}"
			caught=$((caught + 1))
			continue
		fi
	fi
	if [ -n "${equivalent[$m]:-}" ]; then
		row '| %s | equivalent on x86-64: %s | %s s |' "$m" "${equivalent[$m]}" "$secs"
		continue
	fi
	row '| %s | SURVIVED | %s s |' "$m" "$secs"
	survivors=$((survivors + 1))
done
echo "mutants: caught $caught of $total"
if [ $total -eq 0 ]; then
	echo "SKIP: no mutant could be checked here"
	exit 77
fi
if [ $survivors -ne 0 ]; then
	echo "mutants: $survivors survived"
	exit 1
fi
echo "mutants: all caught (or documented equivalent)"
