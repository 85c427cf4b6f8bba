#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Rust crate's tests (bindings/rust), both ways of linking the C library:
#   1. cargo test --offline: build.rs builds the library of this tree with
#      CMake (static, in the cargo target dir); runs tests/abi.rs (the
#      hand-written FFI against the header), tests/protocol.rs (every case
#      on KVM with real guest code and on the thread backend), tests/api.rs,
#      the doc tests (the compile_fail ones included) and the example VMM
#      (examples/vmm.rs, a test of its own);
#   2. cargo run --offline --example vmm, as a user would run it;
#   3. the pkg-config way: the library installed (shared) into a prefix
#      under BUILD, then cargo test --offline with VCPUREQ_USE_PKG_CONFIG=1;
#      checks that the test binary loads that prefix's libvcpureq.so.
# First cargo fmt --check and cargo clippy, where the toolchain has them.
# Warnings are errors (RUSTFLAGS=-Dwarnings).  No crates registry needed.
# Without cargo (Rust >= 1.79) it says SKIP and why.
#   tools/rust-test.sh [BUILD]          (default: build)
#   tools/rust-test.sh BUILD bench [N]  examples/bench.rs instead (release):
#                                       the crate against the C API
#                                       called directly, N samples
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
mkdir -p "$build"
build=$(cd "$build" && pwd)

cargo=$(command -v cargo 2>/dev/null || true)
for c in "${HOME:-/root}/.cargo/bin/cargo" /root/.cargo/bin/cargo; do
	[ -n "$cargo" ] || { [ -x "$c" ] && cargo=$c; } || true
done
if [ -z "$cargo" ]; then
	echo "rust-test: SKIP: cargo not found (on PATH, ~/.cargo/bin): the crate needs Rust >= 1.79 (rustup; Debian 12's cargo is 1.63, too old)"
	exit 0
fi
PATH=$(dirname "$cargo"):$PATH
export PATH
ver=$(rustc --version | awk '{ print $2 }')
case $ver in
0.* | 1.[0-9].* | 1.[0-6][0-9].* | 1.7[0-8].*)
	echo "rust-test: SKIP: rustc $ver is older than 1.79 (the crate's rust-version)"
	exit 0 ;;
esac
export RUSTFLAGS="-D warnings"
cd "$src/bindings/rust"

step() { echo "rust-test: $*"; }
skips=0
# cargo test, its output kept to count the SKIP lines of the KVM tests.
cargo_test() {
	local log=$build/rust-test.log
	"$cargo" test --offline 2>&1 | tee "$log"
	local n
	n=$(grep -o 'SKIP: ' "$log" | wc -l || true)
	skips=$((skips + n))
}

if [ "${2:-}" = bench ]; then
	step "cargo run --release --offline --example bench"
	CARGO_TARGET_DIR=$build/rust-target "$cargo" run --release --offline --example bench -- "${3:-2000}"
	exit
fi

if "$cargo" fmt --version >/dev/null 2>&1; then
	step "cargo fmt --check"
	"$cargo" fmt --check
else
	step "note: no rustfmt component: format not checked"
fi
if "$cargo" clippy --version >/dev/null 2>&1; then
	step "cargo clippy --offline --all-targets (warnings are errors)"
	CARGO_TARGET_DIR=$build/rust-target "$cargo" clippy --offline --all-targets -q
else
	step "note: no clippy component: lints not checked"
fi

step "rustc $ver; cargo test --offline (C library built by build.rs through CMake)"
CARGO_TARGET_DIR=$build/rust-target cargo_test

step "cargo run --offline --example vmm"
rc=0
CARGO_TARGET_DIR=$build/rust-target "$cargo" run --offline --example vmm || rc=$?
case $rc in
0) ;;
77) step "SKIP: the example VMM (it said why above)" ;;
*) step "FAIL: the example VMM exited $rc"; exit 1 ;;
esac

prefix=$build/rust-prefix
step "pkg-config: installing the shared library into $prefix"
cmake -S "$src" -B "$build/rust-prefix-build" -DBUILD_SHARED_LIBS=ON \
	-DVCPUREQ_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release \
	-DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
cmake --build "$build/rust-prefix-build" -j2 >/dev/null
cmake --install "$build/rust-prefix-build" >/dev/null
pc=$(dirname "$(find "$prefix" -name vcpureq.pc -print -quit)")
step "pkg-config: cargo test --offline with VCPUREQ_USE_PKG_CONFIG=1, PKG_CONFIG_PATH=$pc"
PKG_CONFIG_PATH=$pc VCPUREQ_USE_PKG_CONFIG=1 CARGO_TARGET_DIR=$build/rust-target-pkgconfig \
	cargo_test
bin=$(find "$build/rust-target-pkgconfig/debug/deps" -maxdepth 1 -type f -name 'protocol-*' -perm -u+x -print -quit)
deps=$(ldd "$bin")
if ! printf '%s\n' "$deps" | grep "libvcpureq.so.* => $prefix/" >/dev/null; then
	step "FAIL: $bin does not load libvcpureq.so from $prefix:"
	printf '%s\n' "$deps"
	exit 1
fi
step "pkg-config: the tests ran against $(printf '%s\n' "$deps" | awk '/libvcpureq/ { print $3 }')"
if [ "$skips" -gt 0 ]; then
	step "passed, with $skips tests SKIPPED (their SKIP lines above say why: /dev/kvm)"
else
	step "passed (no test skipped)"
fi
