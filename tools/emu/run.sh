# SPDX-License-Identifier: MIT
# Sourced by tools/arm64/test-arm64.sh and tools/x86-emu/test-x86-emu.sh:
# the steps both emulated machines share.  Each runs from the source root.

# emu_build BUILD: the programs the emulated machine runs (every test
# program, torture, torture-ops, the examples, the demo), in the configured
# static tree BUILD.
emu_build() {
	_targets="torture torture-ops example-minimal example-kvm-vmm vcpureq-demo"
	for _f in tests/test_*.c; do _targets="$_targets $(basename "$_f" .c)"; done
	# shellcheck disable=SC2086
	cmake --build "$1" -j"${JOBS:-2}" --target $_targets >/dev/null
}

# emu_root ROOT: an empty initramfs tree.
emu_root() {
	rm -rf "$1"
	mkdir -p "$1/bin" "$1/t" "$1/proc" "$1/sys" "$1/dev" "$1/tmp" "$1/mod"
}

# emu_cases BUILD ROOT [REGEX]: ROOT/cases (and ROOT/t, ROOT/left-out) from
# BUILD's CTest registry (tools/emu/cases.py; settings EMU_*), only the
# cases whose name matches REGEX if one is given.
emu_cases() {
	(cd "$1" && ctest --show-only=json-v1) | python3 tools/emu/cases.py "$1" "$2"
	if [ -n "${3:-}" ]; then
		grep -E "^[^|]*($3)" "$2/cases" >"$2/cases.sel" || true
		mv "$2/cases.sel" "$2/cases"
	fi
}

# emu_pack ROOT INITRD: tools/emu/init as ROOT's /init, ROOT packed into
# the gzip'd cpio INITRD.
emu_pack() {
	cp tools/emu/init "$1/init"
	chmod +x "$1/init"
	(cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) >"$2"
}

# emu_boot SECONDS LOG QEMU-COMMAND...: run the machine (killed after
# SECONDS), its console into LOG, the init's @@ lines shown as they come.
# Never fails: the summary judges the log.
emu_boot() {
	_s=$1 _log=$2
	shift 2
	set +e
	timeout -s KILL "$_s" "$@" </dev/null |
		sed -u 's/\r$//' | tee "$_log" |
		sed -n --unbuffered 's/^@@\(BEGIN\|KVM\|CASE\|RETRY\|OUT\|END\)/\1/p'
	set -e
}
