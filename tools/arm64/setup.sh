# SPDX-License-Identifier: MIT
# Sourced by tools/arm64/test-arm64.sh and tools/linux-guest/test.sh: the
# work directory (ARM64_BUILD, default build-arm64: the download and the
# build are shared), the host packages, Debian's arm64 kernel and busybox,
# and the static aarch64 build tree configured.  Sets src, work, t0.
cd "$(dirname "$0")/../.."
src=$(pwd)
work=${ARM64_BUILD:-build-arm64}
mkdir -p "$work"
work=$(cd "$work" && pwd)
t0=$(date +%s)

tools/install-deps.sh arm64
tools/arm64/fetch.sh "$work/cache"

# The aarch64 build tree, static (the programs run from an initramfs).
arm64_configure() {
	cmake -S . -B "$work/build" -DVCPUREQ_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
		-DCMAKE_EXE_LINKER_FLAGS=-static >/dev/null
}
