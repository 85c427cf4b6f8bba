#!/bin/sh
# SPDX-License-Identifier: MIT
# The x86-64 machine of `make test-x86-emu`: Debian's amd64 kernel, its KVM
# modules and busybox-static, downloaded with apt-get (never installed) and
# unpacked into $1 (default build-x86-emu/cache).  Prints nothing when they
# are there.
#   $1/kernel   the kernel image (bzImage; KVM is a module in Debian's)
#   $1/mod/     irqbypass, ccp, kvm, kvm-amd .ko and their load order
#   $1/busybox  a static x86-64 busybox
set -eu
cache=${1:-build-x86-emu/cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
[ -s "$cache/kernel" ] && [ -x "$cache/busybox" ] && [ -s "$cache/mod/order" ] && exit 0

# The exact kernel package: a glob in apt-get download is a pattern that
# fetches dozens of kernels.
resolve() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ :]*-amd64\).*/\1/p' | head -n1
}
kpkg=$(resolve)
if [ -z "$kpkg" ]; then
	apt-get update -qq
	kpkg=$(resolve)
fi
[ -n "$kpkg" ] || { echo "fetch: cannot resolve linux-image-amd64 (apt-cache depends)" >&2; exit 1; }
echo "fetch: apt-get download $kpkg busybox-static into $cache"
# apt-get download writes into the current directory as user _apt when it
# can: a directory only root may write to makes it warn, not fail.
(cd "$cache" && rm -f ./*.deb && apt-get download -qq "$kpkg" busybox-static 2>&1 |
	grep -v 'Download is performed unsandboxed' || true)
ls "$cache"/linux-image-*.deb "$cache"/busybox-static*.deb >/dev/null
rm -rf "$cache/x" "$cache/mod"
for d in "$cache"/*.deb; do dpkg-deb -x "$d" "$cache/x"; done
cp "$(ls "$cache"/x/boot/vmlinuz-*-amd64 | head -n1)" "$cache/kernel"
cp "$cache/x/bin/busybox" "$cache/busybox"
# KVM and what it needs (kvm: irqbypass; kvm-amd: kvm, ccp), in load order.
# The emulated CPU is an AMD one with SVM (test-x86-emu.sh), so kvm-amd.
mkdir -p "$cache/mod"
: >"$cache/mod/order"
for m in virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
	f=$(ls "$cache"/x/lib/modules/*/kernel/$m.ko* | head -n1)
	case $f in
	*.ko) cp "$f" "$cache/mod/" ;;
	*.ko.xz) xz -dc "$f" >"$cache/mod/$(basename "$m").ko" ;;
	*) echo "fetch: $m.ko not in $kpkg" >&2; exit 1 ;;
	esac
	basename "$m" >>"$cache/mod/order"
done
echo "$kpkg" >"$cache/kernel.name"
rm -rf "$cache/x" "$cache"/*.deb
