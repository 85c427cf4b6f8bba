# Everything but the library: built only for a top-level build or with
# VCPUREQ_BUILD_TESTS=ON (CMakeLists.txt).
enable_testing()

# Every public function of the header has its man page (cmake/man.cmake).
if(VCPUREQ_PERL)
  add_test(NAME man.check COMMAND ${PROJECT_SOURCE_DIR}/tools/check-man.sh
    ${PROJECT_SOURCE_DIR}/include/vcpureq/vcpureq.h
    "${PROJECT_SOURCE_DIR}/include:${VCPUREQ_GENERATED_INCLUDE}"
    ${VCPUREQ_MAN_DIR})
  set_tests_properties(man.check PROPERTIES LABELS unit TIMEOUT 60
                       ENVIRONMENT "CC=${CMAKE_C_COMPILER}")
endif()

# With VCPUREQ_USDT=ON: the library carries a USDT probe for every trace
# event of src/trace.h (readelf -n; `make usdt-check`, docs/usdt.md).
if(VCPUREQ_USDT)
  add_test(NAME usdt.library COMMAND ${PROJECT_SOURCE_DIR}/tools/usdt-check.sh
    $<TARGET_FILE:vcpureq> ${PROJECT_SOURCE_DIR}/src/trace.h)
  set_tests_properties(usdt.library PROPERTIES LABELS "unit;usdt" TIMEOUT 60)
endif()

# The test guests are x86 (tests/guest.S) or arm64 (tests/guest_arm64.S)
# code, behind the harness's per-architecture part (tests/harness_arch.h).
# On arm64 the tests, torture and examples are built (make test-arm64 runs
# them under real arm64 KVM); the bench and the tools stay x86-64 only.
set(VCPUREQ_ARCH_X86 OFF)
set(VCPUREQ_ARCH_ARM64 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(VCPUREQ_ARCH_X86 ON)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(VCPUREQ_ARCH_ARM64 ON)
else()
  message(STATUS "vcpureq: ${CMAKE_SYSTEM_PROCESSOR}: the tests, demo, "
                 "bench, tools and examples are not built (x86-64 and arm64 only)")
  return()
endif()

enable_language(ASM)
# The targets that compile against include/ directly (the harness objects,
# the torture tier's own copies of the library) need the generated
# vcpureq/version.h too.
include_directories(${VCPUREQ_GENERATED_INCLUDE})

add_subdirectory(tests)
add_subdirectory(examples)
add_subdirectory(demo)
if(NOT VCPUREQ_ARCH_X86)
  return()
endif()
add_subdirectory(tools)
add_subdirectory(bench)

# The Spin model of the protocol (model/README.md); needs `spin`.
# `model`: the default bound (make test); `model.full`: FULL=1, also the
# large configurations, among them 2 vCPUs x 2 requesters with every request
# kind, block and walk (17-22 min, up to 6.5 GB; make test-full).
add_test(NAME model COMMAND ${PROJECT_SOURCE_DIR}/model/run.sh)
set_tests_properties(model PROPERTIES TIMEOUT 600 LABELS model)
add_test(NAME model.full COMMAND ${PROJECT_SOURCE_DIR}/model/run.sh)
set_tests_properties(model.full PROPERTIES TIMEOUT 1800 LABELS full
                     ENVIRONMENT "FULL=1")
