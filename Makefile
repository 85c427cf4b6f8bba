# Thin driver over CMake/CTest for the README's commands.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
SAN = -DCMAKE_BUILD_TYPE=Debug -DVCPUREQ_SANITIZE

.PHONY: all demo test unit torture torture-long test-asan test-tsan bench clean

all:
	cmake -S . -B $(BUILD) -DVCPUREQ_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# The main job: a 4-vCPU VM on /dev/kvm (ARGS="-n 8" for more vCPUs).
demo: all
	$(BUILD)/demo/vcpureq-demo $(ARGS)

# The whole suite: unit and protocol tests on both backends, the demo's
# checks, the example, the Spin model, the short torture run with the
# mutation self-check, and the quick benchmark.
test: all
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -LE 'model|torture|bench'
	cd $(BUILD) && ctest --output-on-failure -L 'model|torture|bench'

# Fast tier only: unit and protocol tests, demo, example.
unit: all
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L unit

# Torture tier: short run + mutation self-check (under 3 minutes).
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
	cd build-asan && ctest --output-on-failure -j$(JOBS) -LE 'model|torture|bench'
	cd build-asan && ctest --output-on-failure -L 'torture|bench'
test-tsan:
	$(MAKE) all BUILD=build-tsan CMAKE_FLAGS="$(SAN)=thread"
	cd build-tsan && ctest --output-on-failure -j$(JOBS) -L unit

bench: all
	$(BUILD)/bench/vcpureq-bench --out $(BUILD)/bench-out

clean:
	rm -rf build build-asan build-tsan
