#!/bin/sh
# SPDX-License-Identifier: MIT
# Check that a file built with -DVCPUREQ_USDT=ON (libvcpureq.a / .so, or a
# program linked with it) carries a USDT probe (a stapsdt ELF note) of
# provider "vcpureq" for every trace event of src/trace.h, and no other.
#   tools/usdt-check.sh FILE [src/trace.h]
# Needs readelf (binutils); no /dev/kvm, no tracer.
set -eu
file=$1
hdr=${2:-$(dirname "$0")/../src/trace.h}
[ -r "$file" ] || { echo "usdt-check: cannot read $file" >&2; exit 1; }

# The event names: the X(name) entries of VCPUREQ__TRACE_EVENTS(X).
want=$(sed -n '/^#define VCPUREQ__TRACE_EVENTS(X)/,/^$/p' "$hdr" |
	grep -o 'X([a-z_]*)' | sed 's/^X(//; s/)$//' | sort -u)
[ -n "$want" ] || { echo "usdt-check: no events found in $hdr" >&2; exit 1; }

# readelf -n: "Provider: vcpureq" then "Name: enter" per note (one note per
# probe site: the same name may come several times).
have=$(LC_ALL=C readelf -n "$file" |
	awk '/^ *Provider: /{p=$2} /^ *Name: /{ if (p == "vcpureq") print $2; p="" }' |
	sort -u)
sites=$(LC_ALL=C readelf -n "$file" | grep -c '^ *Provider: vcpureq$' || true)

missing=$(printf '%s\n' "$want" | grep -vxF -e "$have" || true)
[ -n "$have" ] || missing=$want
extra=$(printf '%s\n' "$have" | grep -vxF -e "$want" || true)
nwant=$(printf '%s\n' "$want" | wc -l)
nhave=$(printf '%s\n' "$have" | grep -c . || true)
if [ -n "$missing" ] || [ -n "$extra" ]; then
	[ -z "$missing" ] || echo "usdt-check: $file: no probe for:" $missing >&2
	[ -z "$extra" ] || echo "usdt-check: $file: probes not in $hdr:" $extra >&2
	exit 1
fi
echo "usdt-check: $file: $nhave of $nwant vcpureq probes present ($sites probe sites)"
