#!/bin/sh
# SPDX-License-Identifier: MIT
# make test-x86-emu: the KVM cases of the unit tier, torture (both kick
# mechanisms) and torture-ops, the examples and the demo on x86-64 KVM for
# a machine without /dev/kvm: Debian's amd64 kernel under
# qemu-system-x86_64 (TCG, with the SVM extension emulated: kvm-amd loads
# and /dev/kvm exists in the emulated machine), the test programs built
# static and packed with busybox and the KVM modules into an initramfs.
# Functional only: every cycle is emulated, times are TCG's.  A ctest-style
# summary at the end; non-zero on any failing case or if the VM did not
# reach the end.
#   X86EMU_BUILD            work directory (build-x86-emu)
#   X86EMU_TIMEOUT_SCALE    per-case timeout = CTest's x this (3)
#   X86EMU_TORTURE_SECONDS  each torture run's budget (6; 15/7/6 on KVM)
#   X86EMU_RUN_SECONDS      the whole VM run's timeout (1800)
#   X86EMU_CASES=regex      only the cases whose name matches
#   X86EMU_EXCLUDE, X86EMU_RETRY  regexes (defaults below; empty: none)
set -eu
cd "$(dirname "$0")/../.."
src=$(pwd)
work=${X86EMU_BUILD:-build-x86-emu}
mkdir -p "$work"
work=$(cd "$work" && pwd)
t0=$(date +%s)
. tools/emu/run.sh

[ "$(uname -m)" = x86_64 ] || { echo "test-x86-emu: an x86-64 host is needed (uname -m: $(uname -m))" >&2; exit 1; }
tools/install-deps.sh x86-emu
tools/x86-emu/fetch.sh "$work/cache"

echo "== build (x86-64, static) in $work/build"
cmake -S . -B "$work/build" -DVCPUREQ_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_EXE_LINKER_FLAGS=-static >/dev/null
emu_build "$work/build"

echo "== initramfs"
root=$work/root
emu_root "$root"
export EMU_ARCH=x86-64 EMU_TARGET="make test-x86-emu"
export EMU_MACHINE="KVM in qemu-system-x86_64, TCG, SVM emulated"
export EMU_TIMEOUT_SCALE=${X86EMU_TIMEOUT_SCALE:-3}
export EMU_TORTURE_SECONDS=${X86EMU_TORTURE_SECONDS:-6}
export EMU_THREAD=0
# What this emulation cannot run, measured (2026-12-03, QEMU 7.2):
# - mailbox_racing_post_not_stranded: 50,000 two-thread busy-wait
#   handshakes; single-threaded TCG switches between the emulated CPUs
#   every 100 ms, so the case runs for hours (killed at 180 s).  Its
#   thread-backend twin runs in make test, and both run in make test-arm64.
# Multi-threaded TCG would switch at once, but with SVM emulated it froze
#   the emulated machine in one run of two (test_decision, a spinning vCPU
#   beside a halted one); hence -accel tcg,thread=single below.
export EMU_EXCLUDE=${X86EMU_EXCLUDE-'^test_edges\.mailbox_racing_post_not_stranded\.'}
export EMU_EXCLUDE_WHY="busy-wait handshakes between two threads, far too slow on single-threaded TCG"
# Retried once if it fails, and named in the summary: in one full run of
# two, irqchip_irq_line_wakes_guest counted 11 guest interrupts for 10
# KVM_IRQ_LINE edges (never seen on hardware KVM; an event re-injected
# by the emulated SVM is the likely cause).
export EMU_RETRY=${X86EMU_RETRY-'^test_vmm\.irqchip_irq_line_wakes_guest'}
emu_cases "$work/build" "$root" "${X86EMU_CASES:-}"
strip "$root"/t/*
cp "$work/cache/busybox" "$root/bin/busybox"
cp "$work/cache/mod/"* "$root/mod/"
emu_pack "$root" "$work/initrd.cpio.gz"

echo "== boot: qemu-system-x86_64 (TCG, SVM), $(cat "$work/cache/kernel.name"), $(grep -c . "$root/cases") cases"
log=$work/console.log
t1=$(date +%s)
emu_boot "${X86EMU_RUN_SECONDS:-1800}" "$log" qemu-system-x86_64 \
	-M q35 -accel tcg,thread=single -cpu max,+svm -smp 2 -m 1024 -nographic -no-reboot -nic none \
	-kernel "$work/cache/kernel" -initrd "$work/initrd.cpio.gz" \
	-append "console=ttyS0 panic=-1 rdinit=/init quiet"
t2=$(date +%s)
python3 tools/emu/summary.py "$log" "$root" "$((t2 - t1))" "$((t2 - t0))"
