# The library: static, or shared with BUILD_SHARED_LIBS=ON.
include(GNUInstallDirs)

# include/vcpureq/version.h from include/vcpureq/version.h.in
set(VCPUREQ_GENERATED_INCLUDE ${PROJECT_BINARY_DIR}/include)
configure_file(${PROJECT_SOURCE_DIR}/include/vcpureq/version.h.in
               ${VCPUREQ_GENERATED_INCLUDE}/vcpureq/version.h @ONLY)

add_library(vcpureq ${VCPUREQ_SOURCES})
add_library(vcpureq::vcpureq ALIAS vcpureq)
target_include_directories(vcpureq PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<BUILD_INTERFACE:${VCPUREQ_GENERATED_INCLUDE}>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_options(vcpureq PRIVATE ${VCPUREQ_WARNINGS})
target_link_libraries(vcpureq PUBLIC Threads::Threads)

# Random sleeps at the race windows (src/race_sleep.c): the unit tier's
# library in make test-race-sleeps, never an installed one.
if(VCPUREQ_RACE_SLEEPS)
  target_sources(vcpureq PRIVATE ${PROJECT_SOURCE_DIR}/src/race_sleep.c)
  target_compile_definitions(vcpureq PRIVATE VCPUREQ_RACE_SLEEPS)
endif()

# USDT probes (VCPUREQ__USDT() in src/trace.h).  A failed check is not
# cached: installing the header and configuring again is enough.
if(VCPUREQ_USDT)
  include(CheckIncludeFile)
  check_include_file(sys/sdt.h VCPUREQ_HAVE_SYS_SDT_H)
  if(NOT VCPUREQ_HAVE_SYS_SDT_H)
    unset(VCPUREQ_HAVE_SYS_SDT_H CACHE)
    message(FATAL_ERROR "VCPUREQ_USDT=ON needs <sys/sdt.h>, which was not "
      "found: on Debian or Ubuntu, apt-get install systemtap-sdt-dev "
      "(elsewhere: the systemtap SDT header package, e.g. "
      "systemtap-sdt-devel), or configure with -DVCPUREQ_USDT=OFF.")
  endif()
  target_compile_definitions(vcpureq PRIVATE VCPUREQ_USDT)
endif()

# Only the public vcpureq_* functions are visible: the sources are compiled
# with hidden visibility but for the public header's declarations
# (cmake/visibility.h), and the shared library's version script makes every
# other global (the vcpureq__ internals) local as well.
target_compile_options(vcpureq PRIVATE -fvisibility=hidden
  -include ${PROJECT_SOURCE_DIR}/cmake/visibility.h)
# A SONAME per minor version while the major is 0 (the ABI may change
# between 0.x releases), per major version from 1.0 on.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(VCPUREQ_SOVERSION 0.${PROJECT_VERSION_MINOR})
else()
  set(VCPUREQ_SOVERSION ${PROJECT_VERSION_MAJOR})
endif()
set(VCPUREQ_MAP ${PROJECT_SOURCE_DIR}/src/vcpureq.map)
set_target_properties(vcpureq PROPERTIES
  VERSION ${PROJECT_VERSION}
  SOVERSION ${VCPUREQ_SOVERSION}
  LINK_DEPENDS ${VCPUREQ_MAP})
get_target_property(vcpureq_type vcpureq TYPE)
if(vcpureq_type STREQUAL SHARED_LIBRARY)
  target_link_options(vcpureq PRIVATE
    LINKER:--version-script=${VCPUREQ_MAP} LINKER:--no-undefined)
endif()
