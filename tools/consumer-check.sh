#!/bin/sh
# SPDX-License-Identifier: MIT
# Consume vcpureq as an outside program would: install it into a temporary
# prefix, shared and static in turn, then build the README's example
# (examples/minimal.c: a thread-backend VM, no /dev/kvm needed, exits 0 only
# if its request's payload reached the vCPU) once with pkg-config and once
# with find_package(vcpureq) (tests/consumer/), and run each.  Also checks
# that the shared library exports the public vcpureq_* symbols only, and
# that vcpureq.pc and version.h agree on the version.  Needs cmake, a C compiler, pkg-config and nm; no /dev/kvm.
#   tools/consumer-check.sh [WORKDIR]    (default: build-consumer)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$src/build-consumer}
CC=${CC:-cc}
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
n=0

step() { echo "consumer-check: $*"; }

for kind in shared static; do
	if [ $kind = shared ]; then shared=ON; else shared=OFF; fi
	prefix=$work/prefix-$kind
	step "$kind: build and install into $prefix"
	cmake -S "$src" -B "$work/build-$kind" -DBUILD_SHARED_LIBS=$shared \
		-DVCPUREQ_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release \
		-DCMAKE_INSTALL_PREFIX="$prefix" >"$work/$kind.configure.log"
	cmake --build "$work/build-$kind" -j2 >"$work/$kind.build.log"
	cmake --install "$work/build-$kind" >"$work/$kind.install.log"
	libdir=$(dirname "$(find "$prefix" -name vcpureq.pc)")/..
	for f in include/vcpureq/vcpureq.h include/vcpureq/version.h \
		share/man/man3/vcpureq.3 share/man/man3/vcpureq_make_request.3 \
		share/doc/vcpureq/LICENSE share/doc/vcpureq/README.md; do
		[ -s "$prefix/$f" ] || { step "FAIL: $f not installed"; exit 1; }
	done

	pcver=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --modversion vcpureq)
	grep -q "VCPUREQ_VERSION_STRING \"$pcver\"" "$prefix/include/vcpureq/version.h" ||
		{ step "FAIL: vcpureq.pc says $pcver, version.h does not"; exit 1; }

	if [ $kind = shared ]; then
		so=$(find "$prefix" -name 'libvcpureq.so.*.*' | head -n 1)
		soname=$(objdump -p "$so" | awk '/SONAME/ { print $2 }')
		step "shared: $so, SONAME $soname"
		[ -n "$soname" ] || { step "FAIL: no SONAME"; exit 1; }
		exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sed 's/@.*//')
		bad=$(printf '%s\n' "$exported" | grep -v '^vcpureq_[a-z]' || true)
		if [ -n "$bad" ]; then
			step "FAIL: exported beyond the public API: $(echo $bad)"
			exit 1
		fi
		step "shared: exports $(printf '%s\n' "$exported" | wc -l) symbols, all public vcpureq_*"
		pcflags=
	else
		pcflags=--static
	fi

	step "$kind: pkg-config build"
	# shellcheck disable=SC2046
	$CC -std=c11 -Wall -Wextra -Werror -pthread -o "$work/consumer-pc-$kind" \
		"$src/examples/minimal.c" \
		$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config $pcflags --cflags --libs vcpureq)
	if [ $kind = shared ]; then
		# the static archive is not there: it must be the shared library
		LD_LIBRARY_PATH="$libdir" ldd "$work/consumer-pc-$kind" | grep -q libvcpureq.so ||
			{ step "FAIL: not linked with libvcpureq.so"; exit 1; }
	fi
	LD_LIBRARY_PATH="$libdir" "$work/consumer-pc-$kind"
	n=$((n + 1))

	step "$kind: find_package build"
	cmake -S "$src/tests/consumer" -B "$work/consumer-cmake-$kind" \
		-DCMAKE_PREFIX_PATH="$prefix" >"$work/consumer-cmake-$kind.log"
	cmake --build "$work/consumer-cmake-$kind" >>"$work/consumer-cmake-$kind.log"
	LD_LIBRARY_PATH="$libdir" "$work/consumer-cmake-$kind/consumer"
	n=$((n + 1))
done

# add_subdirectory(): the library alone, none of the tests or tools.
step "add_subdirectory: a consumer's build gets the library alone"
mkdir -p "$work/sub"
cat >"$work/sub/CMakeLists.txt" <<EOT
cmake_minimum_required(VERSION 3.18)
project(sub LANGUAGES C)
add_subdirectory("$src" vcpureq)
add_executable(consumer "$src/examples/minimal.c")
target_link_libraries(consumer PRIVATE vcpureq::vcpureq)
EOT
cmake -S "$work/sub" -B "$work/sub/build" >"$work/sub.log"
targets=$(cmake --build "$work/sub/build" --target help | sed -n 's/^\.\.\. \([^ ]*\).*/\1/p' |
	grep -vE '^(all|clean|depend|edit_cache|rebuild_cache|install.*|list_install_components|test)$' |
	grep -vE '\.(o|i|s)$' | sort | tr '\n' ' ')
if [ "$targets" != "consumer vcpureq " ]; then
	step "FAIL: add_subdirectory() brings targets beyond the library: $targets"
	exit 1
fi
cmake --build "$work/sub/build" -j2 >>"$work/sub.log"
"$work/sub/build/consumer"
n=$((n + 1))

echo "consumer-check: $n passed, 0 failed"
