# install(): the library, its headers (with the generated version.h), the
# pkg-config file, the CMake package (find_package(vcpureq) ->
# vcpureq::vcpureq), the docs and the man pages.
include(CMakePackageConfigHelpers)
set(VCPUREQ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/vcpureq)

install(TARGETS vcpureq EXPORT vcpureqTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/vcpureq/vcpureq.h
              ${VCPUREQ_GENERATED_INCLUDE}/vcpureq/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vcpureq)

install(EXPORT vcpureqTargets NAMESPACE vcpureq::
        DESTINATION ${VCPUREQ_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/vcpureqConfig.cmake.in
  ${PROJECT_BINARY_DIR}/vcpureqConfig.cmake
  INSTALL_DESTINATION ${VCPUREQ_CMAKE_DIR})
# 0.x: a different minor version is not compatible (see the SOVERSION).
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(vcpureq_compat SameMinorVersion)
else()
  set(vcpureq_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vcpureqConfigVersion.cmake
  COMPATIBILITY ${vcpureq_compat})
install(FILES ${PROJECT_BINARY_DIR}/vcpureqConfig.cmake
              ${PROJECT_BINARY_DIR}/vcpureqConfigVersion.cmake
        DESTINATION ${VCPUREQ_CMAKE_DIR})

# vcpureq.pc, relocatable: its prefix is found from its own place, so
# `cmake --install <dir> --prefix <p>` gives a working file.
set(VCPUREQ_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(VCPUREQ_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH vcpureq_up /x/${VCPUREQ_PC_DIR} /x)
  string(REGEX REPLACE "/$" "" vcpureq_up "${vcpureq_up}")
  set(VCPUREQ_PC_PREFIX "\${pcfiledir}/${vcpureq_up}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/vcpureq.pc.in
               ${PROJECT_BINARY_DIR}/vcpureq.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/vcpureq.pc DESTINATION ${VCPUREQ_PC_DIR})

install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/LICENSE
              ${PROJECT_SOURCE_DIR}/CHANGELOG.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
if(VCPUREQ_PERL)
  install(DIRECTORY ${VCPUREQ_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR})
endif()
