# Man pages (section 3) generated from the public header's comments at build
# time (tools/mkman.pl, perl); installed with the library.  Checked by the
# man.check test (cmake/tests.cmake).
find_program(VCPUREQ_PERL perl)
set(VCPUREQ_MAN_DIR ${PROJECT_BINARY_DIR}/man)
if(VCPUREQ_PERL)
  set(VCPUREQ_MAN_STAMP ${VCPUREQ_MAN_DIR}/man3/vcpureq.3)
  add_custom_command(OUTPUT ${VCPUREQ_MAN_STAMP}
    COMMAND ${VCPUREQ_PERL} ${PROJECT_SOURCE_DIR}/tools/mkman.pl
            ${PROJECT_SOURCE_DIR}/include/vcpureq/vcpureq.h
            ${VCPUREQ_MAN_DIR} ${PROJECT_VERSION}
    DEPENDS ${PROJECT_SOURCE_DIR}/tools/mkman.pl
            ${PROJECT_SOURCE_DIR}/include/vcpureq/vcpureq.h
    COMMENT "Man pages from include/vcpureq/vcpureq.h"
    VERBATIM)
  add_custom_target(vcpureq_man ALL DEPENDS ${VCPUREQ_MAN_STAMP})
else()
  message(STATUS "vcpureq: perl not found: no man pages")
endif()
