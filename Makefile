# Thin driver over CMake/CTest for the README's commands.
# bash with pipefail: a test's failure is not hidden by the progress filter.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
SAN = -DCMAKE_BUILD_TYPE=Debug -DVCPUREQ_SANITIZE
# The progress lines of the long ctest steps (ctest -V prints everything;
# all of it is in <build>/Testing/Temporary/LastTest.log, named on failure).
PROGRESS = grep -E --line-buffered '^[0-9]+/[0-9]+ Test|model: |mutants: |SURVIVED|torture: |% tests passed|tests failed|Total Test time|still running|FAIL'
# Budget of the torture run of test-full (s); make test's is 20 s.
FULL_TORTURE_SECONDS ?= 180

.PHONY: all configure demo deps test test-full unit unit-soak torture torture-long \
	test-asan test-tsan test-race-sleeps bench consumer-check cross barrier-check insn-budget usdt-check trace-picture \
	rust-test rust-bench test-arm64 clean

configure:
	cmake -S . -B $(BUILD) -DVCPUREQ_WERROR=ON $(CMAKE_FLAGS) >/dev/null

# The mutant builds too (not in CMake's default build, which stays short:
# tests/torture/CMakeLists.txt), built here beside the rest so that make
# test's torture phase finds them made.
all: configure
	cmake --build $(BUILD) -j$(JOBS) --target all mutants

# The main job: a 4-vCPU VM on /dev/kvm (ARGS="-n 8" for more vCPUs).
# Builds the demo alone: needs only a C compiler and CMake.
demo: configure
	cmake --build $(BUILD) -j$(JOBS) --target vcpureq-demo
	$(BUILD)/demo/vcpureq-demo $(ARGS)

# What the tests need beyond compiler and CMake (spin, gnuplot-nox, python3,
# pkg-config): installed with apt-get as root, else the command is printed.
deps:
	@tools/install-deps.sh test

# Every tier, in under 5 minutes here (README): the Spin model at its
# default bound (about 2 min, 2 pan jobs) beside the unit and protocol
# tests on both backends, the man-page check, the demo's checks and the
# examples; then one at a time: the short torture runs, the mutation
# self-check and the quick benchmark.
test: deps all
	@echo "== the Spin model (default bound, about 2 min) beside unit, protocol (both backends), man pages, demo, examples"
	cd $(BUILD) && HEARTBEAT_SECONDS=20 $(CURDIR)/tools/with-heartbeat.sh "make test" \
		ctest --output-on-failure -j3 -LE 'torture|bench|full'
	@echo "== one at a time: torture (15 s + 7 s + 6 x 6 s + ops), mutants (about 1 min), quick bench"
	cd $(BUILD) && HEARTBEAT_SECONDS=20 $(CURDIR)/tools/with-heartbeat.sh "make test" \
		ctest --output-on-failure -V -L 'torture|bench' -LE full \
		| $(PROGRESS) || { echo "full output: $(BUILD)/Testing/Temporary/LastTest.log"; false; }

# The long tier (CI runs it too): the exhaustive model (FULL=1, 17-22
# minutes and up to 6.5 GB) and a torture run of FULL_TORTURE_SECONDS.
test-full: deps all
	cd $(BUILD) && $(CURDIR)/tools/with-heartbeat.sh test-full ctest --output-on-failure -V -L full \
		| $(PROGRESS) || { echo "full output: $(BUILD)/Testing/Temporary/LastTest.log"; false; }
	TORTURE_SECONDS=$(FULL_TORTURE_SECONDS) tools/with-heartbeat.sh test-full \
		tests/torture/long.sh $(BUILD)/tests/torture/torture

# Fast tier only: unit and protocol tests, man pages, demo, example.
unit: all
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L unit

# The fast tier SOAK_RUNS times in a row under a CPU hog of SOAK_HOG busy
# threads; stops at the first failure (tools/unit-soak.sh).
SOAK_RUNS ?= 20
SOAK_HOG ?= 4
unit-soak: all
	tools/unit-soak.sh $(BUILD) $(SOAK_RUNS) $(SOAK_HOG)

# Torture tier: short run + mutation self-check.
torture: all
	cd $(BUILD) && ctest --output-on-failure -L torture

# As long as asked: make torture-long TORTURE_SECONDS=3600 [LOOP=1]
torture-long: all
	tests/torture/long.sh $(BUILD)/tests/torture/torture

# Sanitizer builds (CI runs both).  ASan+UBSan: the whole suite, the model
# aside (it runs Spin's pan programs, which contain none of our code: an
# ASan build of the library changes nothing in them).  TSan: the unit tier
# (protocol tests on both backends).
test-asan:
	$(MAKE) all BUILD=build-asan CMAKE_FLAGS="$(SAN)=address,undefined"
	cd build-asan && ctest --output-on-failure -j$(JOBS) -LE 'model|torture|bench|full'
	cd build-asan && ctest --output-on-failure -L 'torture|bench' -LE full
test-tsan:
	$(MAKE) all BUILD=build-tsan CMAKE_FLAGS="$(SAN)=thread"
	cd build-tsan && ctest --output-on-failure -j$(JOBS) -L unit

# The unit tier against a library that sleeps at random at its race
# windows (src/race_sleep.c: one hook in 8, up to RACE_SLEEP_US us): the
# protocol and every test must hold whatever the delays.  CMake's default
# build only (no mutants).  mailbox_racing_post_not_stranded is left out:
# its 50,000 busy-wait handshakes each meet several sleeps (minutes).
RACE_SLEEP_US ?= 1000
test-race-sleeps:
	cmake -S . -B build-race-sleeps -DVCPUREQ_WERROR=ON -DVCPUREQ_RACE_SLEEPS=ON >/dev/null
	cmake --build build-race-sleeps -j$(JOBS) >/dev/null
	cd build-race-sleeps && VCPUREQ_RACE_SLEEP_US=$(RACE_SLEEP_US) \
		ctest --output-on-failure -j$(JOBS) -L unit -E '^test_edges\.mailbox_racing_post_not_stranded'

# Install into temporary prefixes (shared and static), build an outside
# program with pkg-config and with find_package(vcpureq), run it.
consumer-check:
	tools/consumer-check.sh build-consumer

# The library cross-compiled for aarch64 (gcc-aarch64-linux-gnu), static
# and shared; the example run under qemu-aarch64 (qemu-user).
cross:
	set -e; for kind in static shared; do \
		shared=OFF; [ $$kind = static ] || shared=ON; \
		cmake -S . -B build-aarch64-$$kind -DVCPUREQ_WERROR=ON \
			-DBUILD_SHARED_LIBS=$$shared -DVCPUREQ_BUILD_TESTS=OFF \
			-DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null; \
		cmake --build build-aarch64-$$kind -j$(JOBS) >/dev/null; \
	done
	readelf -h build-aarch64-static/libvcpureq.a | grep 'Machine:.*AArch64' >/dev/null
	readelf -h build-aarch64-shared/libvcpureq.so | grep 'Machine:.*AArch64' >/dev/null
	@echo "cross: libvcpureq.a and libvcpureq.so built for aarch64"
	@# The README's example (thread backend) on aarch64 under qemu-user:
	@# functional only (the x86 host's memory order, not aarch64's).
	@# Linked static: a dynamic one goes through the loader of
	@# /usr/aarch64-linux-gnu, and once the arm64 tiers have installed
	@# Debian's libc6:arm64 (libfdt-dev:arm64 for make test-linux-guest)
	@# qemu-user hangs in it (a plain pthread_create() program too).
	aarch64-linux-gnu-gcc -std=c11 -D_GNU_SOURCE -O2 -pthread -static -Iinclude \
		-Ibuild-aarch64-static/include -o build-aarch64-static/minimal \
		examples/minimal.c build-aarch64-static/libvcpureq.a
	timeout 300 qemu-aarch64 build-aarch64-static/minimal

# User-space instructions per guest entry and per request, counted by
# callgrind and held to the budget docs/performance.md states.
insn-budget: all
	@# 77: SKIP (no valgrind, or no usable /dev/kvm: the reason printed).
	tools/insn-budget.sh $(BUILD) || [ $$? -eq 77 ]

# The arm64 barrier check (docs/verification.md): every barrier pair of
# docs/protocol.md found, with its order, in the aarch64 disassembly of the
# library; and every relaxed-order mutant (tests/mutants/) failing it.
barrier-check:
	tools/barrier-check.sh

# The KVM cases of the unit tier, torture (both kick mechanisms),
# torture-ops, the examples and the demo on real arm64 KVM: Debian's arm64 kernel
# under qemu-system-aarch64, the tests cross-built static in an initramfs
# (tools/arm64/test-arm64.sh; installs and downloads what it lacks into
# build-arm64/).  ARM64_CASES=regex for some cases only.
test-arm64:
	tools/arm64/test-arm64.sh

# The same cases on x86-64 KVM for a machine without /dev/kvm: Debian's
# amd64 kernel under qemu-system-x86_64 with SVM emulated, KVM loaded in
# it (tools/x86-emu/test-x86-emu.sh; installs and downloads what it lacks
# into build-x86-emu/).  Functional only.  X86EMU_CASES=regex for some.
.PHONY: test-x86-emu
test-x86-emu:
	tools/x86-emu/test-x86-emu.sh

# examples/linux-vmm.c boots Debian's arm64 kernel as a KVM guest inside
# the same emulated arm64 machine, pauses and resumes it 22 times during
# and after its boot (the guest's witness confirms each pause), and its
# whole-run trace must pass tools/trace-check.py (tools/linux-guest/test.sh;
# shares build-arm64/ with test-arm64).  About 1.5 min.
.PHONY: test-linux-guest
test-linux-guest:
	tools/linux-guest/test.sh

# The library with USDT probes (-DVCPUREQ_USDT=ON; <sys/sdt.h> from
# systemtap-sdt-dev): every trace event has its stapsdt note, in the
# library and in the demo linked with it (readelf -n; docs/usdt.md).
usdt-check:
	cmake -S . -B build-usdt -DVCPUREQ_WERROR=ON -DVCPUREQ_USDT=ON >/dev/null
	cmake --build build-usdt -j$(JOBS) --target vcpureq vcpureq-demo >/dev/null
	cd build-usdt && ctest --output-on-failure -L usdt

bench: all
	$(BUILD)/bench/vcpureq-bench --out $(BUILD)/bench-out

# The Rust crate (bindings/rust, README "Rust"): cargo test --offline with
# the library built by build.rs through CMake, the example VMM run, then
# cargo test again against an installed libvcpureq found with pkg-config
# (tools/rust-test.sh; cargo fmt and clippy first; 75 s from empty on a
# busy machine, the target dirs in $(BUILD)).
rust-test:
	tools/rust-test.sh $(BUILD)

# The crate against the C API called directly, same run: kick latency and
# guest-entry overhead (bindings/rust/examples/bench.rs).
rust-bench:
	tools/rust-test.sh $(BUILD) bench

# docs/img/trace-broadcast-wait.png: the demo traced (4 vCPUs), checked
# against the protocol, and its first broadcast WAIT drawn (docs/trace.md).
trace-picture: deps all
	$(BUILD)/demo/vcpureq-demo -n 4 -r 300 -t $(BUILD)/trace-demo.json >/dev/null
	python3 tools/trace-check.py $(BUILD)/trace-demo.json
	python3 tools/trace-plot.py $(BUILD)/trace-demo.json docs/img/trace-broadcast-wait.png
	rm -f docs/img/trace-broadcast-wait.gp

clean:
	rm -rf build build-asan build-tsan build-consumer build-aarch64-static build-aarch64-shared \
		build-usdt bindings/rust/target build-arm64 build-x86-emu
