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

# The README's "Using it as a library" commands as written, run as root
# into /usr/local (sudo left out: root needs none; the apt-get line left
# out: the packages are here), then its pkg-config command, and the
# program run with no LD_LIBRARY_PATH: it must find the shared library the
# way every user's program does (the loader's cache).  Then uninstalled.
# Skipped if not root, or if a vcpureq is already in /usr/local (never
# overwrite or remove someone's install).
readme_block() { # heading, nth sh block after it (1-based)
	awk -v h="$1" -v want="$2" '
		$0 == h { in_sec = 1; next }
		in_sec && /^## / { exit }
		in_sec && /^```sh$/ { blk++; inb = (blk == want); next }
		inb && /^```$/ { exit }
		inb { print }' "$src/README.md"
}
if [ "$(id -u)" != 0 ]; then
	step "system install: skipped (not root): the README's commands need sudo"
elif ls /usr/local/lib/libvcpureq* /usr/local/include/vcpureq >/dev/null 2>&1; then
	step "system install: skipped: a vcpureq is already installed in /usr/local"
else
	step "system install: the README's library commands, as written, into /usr/local"
	cmds=$(readme_block "## Using it as a library" 1 | grep -v 'apt-get' |
		sed -e 's/#.*$//' -e 's/sudo //g' -e "s@build-lib@$work/build-lib@g")
	[ -n "$cmds" ] || { step "FAIL: no commands found under the README's library heading"; exit 1; }
	uninstall() {
		if [ -f "$work/build-lib/install_manifest.txt" ]; then
			xargs rm -f <"$work/build-lib/install_manifest.txt"
			rmdir /usr/local/include/vcpureq /usr/local/share/doc/vcpureq \
				/usr/local/lib/cmake/vcpureq 2>/dev/null || true
			ldconfig
		fi
	}
	trap uninstall EXIT
	printf '%s\n' "$cmds" | while IFS= read -r c; do
		[ -n "$(echo "$c" | tr -d ' ')" ] || continue
		step "  \$ $c"
		(cd "$src" && sh -c "$c") >"$work/system.log" 2>&1 ||
			{ cat "$work/system.log"; step "FAIL: the README's command failed: $c"; exit 1; }
	done
	build=$(readme_block "## Using it as a library" 2 | head -n 1 | sed -e 's/#.*$//' \
		-e "s@-o vmm vmm.c@-o $work/vmm-system $src/examples/minimal.c@")
	step "  \$ $build"
	(cd "$work" && sh -c "$build") ||
		{ step "FAIL: the README's pkg-config command failed: $build"; exit 1; }
	env -u LD_LIBRARY_PATH ldd "$work/vmm-system" | grep -q '/usr/local/lib/libvcpureq.so' ||
		{ env -u LD_LIBRARY_PATH ldd "$work/vmm-system"; step "FAIL: the program does not find /usr/local/lib/libvcpureq.so"; exit 1; }
	env -u LD_LIBRARY_PATH "$work/vmm-system" ||
		{ step "FAIL: the program built as the README says does not run"; exit 1; }
	n=$((n + 1))
	uninstall
	trap - EXIT
	[ ! -e /usr/local/include/vcpureq/vcpureq.h ] ||
		{ step "FAIL: uninstall left /usr/local/include/vcpureq"; exit 1; }
fi

echo "consumer-check: $n passed, 0 failed"
