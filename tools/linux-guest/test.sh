#!/bin/sh
# SPDX-License-Identifier: MIT
# make test-linux-guest: examples/linux-vmm.c boots Debian's arm64 kernel
# as a KVM guest (2 vCPUs, in-kernel vGICv3, PSCI, a PL011) inside the
# emulated arm64 machine of make test-arm64 (qemu-system-aarch64, TCG, EL2
# emulated; the same kernel is the host's and the guest's), pausing and
# resuming it 22 times during and after its boot, with requests and
# run-on-vCPU items from other threads; the guest's witness
# (tools/linux-guest/witness.c) confirms the pauses; the trace of the whole
# run comes out on the console (gzip + base64) and must pass
# tools/trace-check.py.  Non-zero on any failure.
#   ARM64_BUILD               work directory (build-arm64, shared with
#                             make test-arm64: the download and the build)
#   LINUX_GUEST_RUN_SECONDS   the emulated machine's timeout (600)
set -eu
. "$(dirname "$0")/../arm64/setup.sh"
tools/install-deps.sh linux-guest

echo "== cross-build (aarch64, static): example-linux-vmm, the witness"
arm64_configure
cmake --build "$work/build" -j"${JOBS:-2}" --target example-linux-vmm >/dev/null
aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -Werror -pthread \
	-o "$work/witness" tools/linux-guest/witness.c

echo "== initramfs: the guest's (busybox, the witness), the machine's (busybox, the VMM, the kernel, the guest's initramfs)"
g=$work/root-guest
h=$work/root-linux
rm -rf "$g" "$h"
mkdir -p "$g/bin" "$g/proc" "$g/sys" "$g/dev" "$h/bin" "$h/proc" "$h/sys" "$h/dev" "$h/tmp"
cp "$work/cache/busybox" "$g/bin/busybox"
aarch64-linux-gnu-strip -o "$g/witness" "$work/witness"
cp tools/linux-guest/guest-init "$g/init"
(cd "$g" && find . | cpio -o -H newc --quiet | gzip -1) >"$h/guest.cpio.gz"
cp "$work/cache/busybox" "$h/bin/busybox"
aarch64-linux-gnu-strip -o "$h/linux-vmm" "$work/build/examples/example-linux-vmm"
cp "$work/cache/kernel" "$h/kernel"
cp tools/linux-guest/init "$h/init"
chmod +x "$g/init" "$h/init"
(cd "$h" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd-linux.cpio.gz"

echo "== boot: qemu-system-aarch64 (TCG), $(cat "$work/cache/kernel.name") as host and guest"
log=$work/linux-guest.log
trace=$work/linux-guest-trace.json
t1=$(date +%s)
set +e
timeout -s KILL "${LINUX_GUEST_RUN_SECONDS:-600}" qemu-system-aarch64 \
	-M virt,virtualization=on,gic-version=3,its=off \
	-cpu max,pauth=off,sve=off -smp 2 -m 1024 -nographic -no-reboot \
	-nic none -kernel "$work/cache/kernel" -initrd "$work/initrd-linux.cpio.gz" \
	-append "console=ttyAMA0 panic=-1 rdinit=/init quiet" </dev/null |
	sed -u 's/\r$//' | tee "$log" |
	sed -n --unbuffered '/^@@TRACE-BEGIN/,/^@@TRACE-END/!p'
set -e
t2=$(date +%s)

fail=0
rc=$(sed -n 's/^@@VMM \([0-9]*\)$/\1/p' "$log" | tail -n1)
if [ -z "$rc" ]; then
	echo "FAIL: the VMM did not finish (no @@VMM line; the machine's run took $((t2 - t1)) s)"
	fail=1
elif [ "$rc" = 77 ]; then
	echo "SKIP: linux-vmm found no /dev/kvm inside the emulated machine ($(grep -m1 '^SKIP' "$log"))"
	exit 77
elif [ "$rc" != 0 ]; then
	echo "FAIL: linux-vmm exited with $rc"
	fail=1
fi
if grep -q '^@@HOST-DMESG' "$log"; then
	echo "FAIL: the emulated machine's kernel (KVM's host) warned:"
	grep '^@@HOST-DMESG' "$log"
	fail=1
fi
rm -f "$trace"
if grep -q '^@@TRACE-END' "$log"; then
	sed -n '/^@@TRACE-BEGIN/,/^@@TRACE-END/p' "$log" | sed '1d;$d' |
		base64 -d | gunzip >"$trace" || { echo "FAIL: the trace did not decode"; fail=1; }
fi
if [ -s "$trace" ]; then
	echo "== tools/trace-check.py $trace"
	python3 tools/trace-check.py "$trace" || { echo "FAIL: trace-check.py"; fail=1; }
else
	echo "FAIL: no trace came out of the emulated machine"
	fail=1
fi
echo "== make test-linux-guest: $([ $fail = 0 ] && echo PASS || echo FAIL); emulated machine $((t2 - t1)) s, total $((t2 - t0)) s (console: $log)"
exit $fail
