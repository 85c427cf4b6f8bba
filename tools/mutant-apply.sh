#!/bin/sh
# SPDX-License-Identifier: MIT
# Make the source tree of one mutant: a copy of src/ with the mutant's diff
# applied (tests/mutants/README.md).  Called by the build
# (tests/torture/CMakeLists.txt); by hand: tools/mutant-apply.sh DIFF ROOT OUT
# leaves OUT/src.  The diff must apply exactly (no fuzz): a mutant whose
# place in src/ changed fails here, loudly, rather than mutate another line.
set -eu
diff=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") root=$2 out=$3
rm -rf "$out/src"
mkdir -p "$out"
cp -R "$root/src" "$out/src"
if ! log=$(patch -p1 -s -F0 --no-backup-if-mismatch -d "$out" -i "$diff" 2>&1); then
	printf '%s\n' "$log" >&2
	echo "mutant-apply: $(basename "$diff") no longer applies to src/: the code at its place changed." >&2
	echo "mutant-apply: rewrite it as an #ifdef VCPUREQ_MUTANT_<NAME> in src/ and run tools/mutant-extract.py (tests/mutants/README.md)." >&2
	exit 1
fi
