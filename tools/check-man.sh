#!/bin/sh
# SPDX-License-Identifier: MIT
# The man pages cannot drift from the header: every public function declared
# in HEADER (found by the C preprocessor, independently of tools/mkman.pl's
# parsing) must have a page in MANDIR/man3 (the build's tools/mkman.pl
# output) whose DESCRIPTION has text (a .so link is followed).
#   tools/check-man.sh HEADER INCLUDE_DIRS_COLON_SEPARATED MANDIR
set -u
header=$1 incs=$2 mandir=$3
CC=${CC:-cc}
fail=0

iflags=
old_ifs=$IFS; IFS=:
for d in $incs; do iflags="$iflags -I$d"; done
IFS=$old_ifs
# shellcheck disable=SC2086
funcs=$(printf '#include "%s"\n' "$header" | $CC -E -P $iflags -x c - |
	grep -oE '\bvcpureq_[a-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u)
if [ -z "$funcs" ]; then
	echo "check-man: FAIL: no public function found in $header"
	exit 1
fi
n=0
for f in $funcs; do
	n=$((n + 1))
	page=$mandir/man3/$f.3
	if [ ! -s "$page" ]; then
		echo "check-man: FAIL: $f: no page (no comment directly above its declaration?)"
		fail=1
		continue
	fi
	target=$(sed -n 's/^\.so man3\///p' "$page")
	[ -n "$target" ] && page=$mandir/man3/$target
	if ! grep -q "^\\.SH NAME" "$page" || ! grep -q "$f" "$page" ||
		! awk '/^\.SH DESCRIPTION/ { d = 1; next } /^\.SH/ { d = 0 }
			d && /[A-Za-z]/ && !/^\./ { t = 1 } END { exit !t }' "$page"; then
		echo "check-man: FAIL: $f: page $page is empty or does not name it"
		fail=1
	fi
done
if [ ! -s "$mandir/man3/vcpureq.3" ]; then
	echo "check-man: FAIL: no overview page vcpureq.3"
	fail=1
fi
if [ $fail -ne 0 ]; then
	exit 1
fi
echo "check-man: $n public functions, each with its page"
