#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The arm64 barrier check (tools/barrier-check.py, docs/verification.md):
# the library compiled for aarch64 as the release build is (-O2 -g, hidden
# visibility), then every barrier pair of docs/protocol.md looked for in
# its disassembly.  Then the same for every mutant whose diff says
# "Caught-by: arm64-barriers" or "Arm64-barriers: caught": each must FAIL
# the check (it weakens an order that x86-64 cannot tell apart).
#
#   tools/barrier-check.sh                  the library, then the mutants
#   tools/barrier-check.sh --mutant NAME    one mutant only (exit 0: caught)
#
# Needs gcc-aarch64-linux-gnu and binutils-aarch64-linux-gnu (Debian).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cc=${CROSS_CC:-aarch64-linux-gnu-gcc}
objdump=${CROSS_OBJDUMP:-aarch64-linux-gnu-objdump}
if ! command -v "$cc" >/dev/null || ! command -v "$objdump" >/dev/null; then
	echo "barrier-check: $cc or $objdump not found (apt-get install gcc-aarch64-linux-gnu)" >&2
	exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/barrier-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/include/vcpureq"
sed -e 's/@PROJECT_VERSION_MAJOR@/0/; s/@PROJECT_VERSION_MINOR@/0/' \
    -e 's/@PROJECT_VERSION_PATCH@/0/; s/@PROJECT_VERSION@/0.0.0/' \
    "$root/include/vcpureq/version.h.in" > "$work/include/vcpureq/version.h"

# Compile the tree @1 into $work/obj-@2; print the objects.
build() { # src_dir name
	local o="$work/obj-$2" f
	mkdir -p "$o"
	for f in "$1"/*.c; do
		# The KVM backend's architecture part: arm64's, not x86's.
		[ "$(basename "$f")" != kvm_x86.c ] || continue
		"$cc" -std=c11 -D_GNU_SOURCE -O2 -g -fvisibility=hidden \
			-include "$root/cmake/visibility.h" -I"$root/include" \
			-I"$work/include" -c "$f" -o "$o/$(basename "$f" .c).o"
	done
	echo "$o"/*.o
}

check_mutant() { # name: 0 if the check fails on it (caught)
	local m=$1 out
	"$root/tools/mutant-apply.sh" "$root/tests/mutants/$m.diff" "$root" "$work/mut-$m"
	# shellcheck disable=SC2046
	if out=$(python3 "$root/tools/barrier-check.py" --objdump "$objdump" \
		"$work/mut-$m/src" $(build "$work/mut-$m/src" "$m")); then
		echo "barrier-check: mutant $m SURVIVED: every order is still there"
		return 1
	fi
	echo "barrier-check: mutant $m caught: $(printf '%s\n' "$out" | grep -m1 MISSING | sed 's/^barrier-check: MISSING *//' | cut -c1-120)"
}

if [ "${1:-}" = "--mutant" ]; then
	check_mutant "$2"
	exit
fi

# shellcheck disable=SC2046
python3 "$root/tools/barrier-check.py" --objdump "$objdump" "$root/src" \
	$(build "$root/src" main)
mutants=$(grep -l -E '^(Caught-by: arm64-barriers|Arm64-barriers: caught)$' \
	"$root"/tests/mutants/*.diff | xargs -n1 basename | sed 's/\.diff$//')
caught=0 total=0
for m in $mutants; do
	total=$((total + 1))
	if check_mutant "$m"; then
		caught=$((caught + 1))
	fi
done
echo "barrier-check: mutants caught $caught of $total"
[ "$caught" = "$total" ]
