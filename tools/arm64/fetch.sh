#!/bin/sh
# SPDX-License-Identifier: MIT
# The arm64 machine of `make test-arm64`: Debian's arm64 kernel and
# busybox-static, downloaded with apt-get (never installed) and unpacked
# into $1 (default build-arm64/cache).  Prints nothing when they are there.
#   $1/kernel   the kernel image (an arm64 Image; CONFIG_KVM=y)
#   $1/busybox  a static arm64 busybox
# Needs root for the one-time `dpkg --add-architecture arm64` + apt-get
# update (tools/install-deps.sh arm64 installs the host packages).
set -eu
cache=${1:-build-arm64/cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
[ -s "$cache/kernel" ] && [ -x "$cache/busybox" ] && exit 0

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	[ "$(id -u)" = 0 ] || {
		echo "fetch: run as root once: dpkg --add-architecture arm64 && apt-get update" >&2
		exit 1
	}
	echo "fetch: dpkg --add-architecture arm64; apt-get update"
	dpkg --add-architecture arm64
	apt-get update -qq
fi
# The exact kernel package: a glob in apt-get download is a pattern that
# fetches dozens of kernels.
kpkg=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9][^ :]*-arm64\).*/\1/p' | head -n1)
if [ -z "$kpkg" ]; then
	apt-get update -qq
	kpkg=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ :]*-arm64\).*/\1/p' | head -n1)
fi
[ -n "$kpkg" ] || { echo "fetch: cannot resolve linux-image-arm64:arm64 (apt-cache depends)" >&2; exit 1; }
echo "fetch: apt-get download $kpkg:arm64 busybox-static:arm64 into $cache"
(cd "$cache" && rm -f ./*.deb && apt-get download -qq "$kpkg:arm64" busybox-static:arm64)
rm -rf "$cache/x"
for d in "$cache"/*.deb; do dpkg-deb -x "$d" "$cache/x"; done
cp "$(ls "$cache"/x/boot/vmlinuz-*-arm64 | head -n1)" "$cache/kernel"
cp "$cache/x/bin/busybox" "$cache/busybox"
echo "$kpkg" >"$cache/kernel.name"
rm -rf "$cache/x" "$cache"/*.deb
