#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian packages a tier needs, if missing, and say which.
#   tools/install-deps.sh test   what `make test` needs: build-essential,
#                                cmake, spin (the model), gnuplot-nox (the
#                                bench plot), pkg-config, python3 (the
#                                trace checker, the bench report),
#                                valgrind (callgrind.h for the instruction
#                                budget tool, and callgrind to run it)
#   tools/install-deps.sh ci     also what .ci/run needs: the aarch64 cross
#                                compiler, qemu-user to run its output,
#                                binutils (nm, objdump, readelf),
#                                systemtap-sdt-dev (sys/sdt.h: make
#                                usdt-check)
#   tools/install-deps.sh arm64  what `make test-arm64` needs on the host:
#                                the aarch64 cross compiler and libc (its
#                                linux/kvm.h), qemu-system-arm, cpio,
#                                python3 (the arm64 kernel and busybox are
#                                downloaded by tools/arm64/fetch.sh)
#   tools/install-deps.sh x86-emu  what `make test-x86-emu` needs on the
#                                host: the C toolchain, qemu-system-x86,
#                                cpio, python3 (the amd64 kernel and
#                                busybox are downloaded by
#                                tools/x86-emu/fetch.sh)
#   tools/install-deps.sh linux-guest  make test-linux-guest: the arm64
#                                tier and libfdt-dev:arm64 (the VMM's
#                                device tree; after fetch.sh has added
#                                the arm64 architecture)
# As root it runs apt-get (apt-get update first, once); otherwise it prints
# the exact command to run and exits 1 if something is missing.
set -eu
tier=${1:-test}
pkgs="build-essential cmake spin gnuplot-nox pkg-config python3 valgrind"
case $tier in
test) ;;
arm64) pkgs="cmake python3 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm cpio" ;;
x86-emu) pkgs="build-essential cmake python3 qemu-system-x86 cpio" ;;
linux-guest) pkgs="cmake python3 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm cpio libfdt-dev:arm64" ;;
ci) pkgs="$pkgs linux-libc-dev binutils gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user systemtap-sdt-dev" ;;
*) echo "install-deps: unknown tier '$tier' (test, ci, arm64, x86-emu or linux-guest)" >&2; exit 2 ;;
esac

missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -z "$missing" ]; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing:$missing; this is not a Debian-like system: install their equivalents" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing:$missing" >&2
	echo "install-deps: run: sudo apt-get install -y$missing   (then run make again)" >&2
	exit 1
fi
echo "install-deps: installing$missing (apt-get, as root)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $missing >/dev/null
echo "install-deps: done"
