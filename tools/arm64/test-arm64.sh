#!/bin/sh
# SPDX-License-Identifier: MIT
# make test-arm64: the KVM cases of the unit tier, torture (both kick
# mechanisms) and torture-ops, the examples and the demo on real arm64 KVM:
# Debian's arm64 kernel under qemu-system-aarch64 (TCG, EL2 emulated: KVM
# runs in the emulated machine), with the test programs cross-built static
# and packed with busybox into an initramfs.  A ctest-style summary at the end;
# non-zero on any failing case or if the VM did not reach the end.
#   ARM64_BUILD            work directory (build-arm64)
#   ARM64_TIMEOUT_SCALE    per-case timeout = CTest's x this (3)
#   ARM64_TORTURE_SECONDS  each torture run's budget (6; 15/7/6 on x86-64)
#   ARM64_RUN_SECONDS      the whole VM run's timeout (1500)
#   ARM64_THREAD=1         also the thread-backend cases
#   ARM64_CASES=regex      only the cases whose name matches
set -eu
. "$(dirname "$0")/../arm64/setup.sh"
. tools/emu/run.sh

echo "== cross-build (aarch64, static) in $work/build"
arm64_configure
emu_build "$work/build"

echo "== initramfs"
root=$work/root
emu_root "$root"
emu_cases "$work/build" "$root" "${ARM64_CASES:-}"
aarch64-linux-gnu-strip "$root"/t/*
cp "$work/cache/busybox" "$root/bin/busybox"
emu_pack "$root" "$work/initrd.cpio.gz"

echo "== boot: qemu-system-aarch64 (TCG), $(cat "$work/cache/kernel.name"), $(grep -c . "$root/cases") cases"
log=$work/console.log
t1=$(date +%s)
emu_boot "${ARM64_RUN_SECONDS:-1500}" "$log" qemu-system-aarch64 \
	-M virt,virtualization=on,gic-version=3,its=off \
	-cpu max,pauth=off,sve=off -smp 2 -m 1024 -nographic -no-reboot \
	-nic none -kernel "$work/cache/kernel" -initrd "$work/initrd.cpio.gz" \
	-append "console=ttyAMA0 panic=-1 rdinit=/init quiet"
t2=$(date +%s)
python3 tools/emu/summary.py "$log" "$root" "$((t2 - t1))" "$((t2 - t0))" "$src/build"
