# `cmake --install build [--prefix P]`: what a packager or an app needs to link Sipp.
#   lib/libsipp.so.0 (SONAME)      the library, exporting only SIPP_API symbols
#   lib/sipp/lib*.so*             the llama.cpp runtime it was built with, private to Sipp (kept
#                                 out of lib/ so it never shadows another llama.cpp install)
#   include/sipp.h                the whole public API
#   include/sipp_settings.h       the tables of the params structs (flags, env vars, keys)
#   lib/pkgconfig/sipp.pc         `pkg-config --cflags --libs sipp`
#   lib/cmake/Sipp/               `find_package(Sipp)` gives the target Sipp::sipp
#   bin/sipp, bin/sipp-gateway    the CLI and the gateway
# Everything finds its libraries through a relative run path, so the prefix can move.
set(SIPP_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/Sipp")
set(SIPP_INSTALL_PRIVATE_LIBDIR "${CMAKE_INSTALL_LIBDIR}/sipp")

# libsipp finds the private llama.cpp beside it; the binaries find both from bin/.
file(RELATIVE_PATH _bin_to_lib "/${CMAKE_INSTALL_BINDIR}" "/${CMAKE_INSTALL_LIBDIR}")
set_target_properties(sipp PROPERTIES INSTALL_RPATH "$ORIGIN/sipp")
set_target_properties(sipp_cli sipp_gateway_bin PROPERTIES
  INSTALL_RPATH "$ORIGIN/${_bin_to_lib};$ORIGIN/${_bin_to_lib}/sipp")

install(TARGETS sipp EXPORT SippTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/sipp.h ${PROJECT_SOURCE_DIR}/include/sipp_settings.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS sipp_cli sipp_gateway_bin RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The shared libraries of the llama.cpp build in the cache (libllama, libggml*, libllama-common,
# libmtmd for multimodal input): built by scripts/setup from the pinned release, never copied
# into this repository.
install(DIRECTORY "${SIPP_LLAMA_BIN}/" DESTINATION ${SIPP_INSTALL_PRIVATE_LIBDIR}
  FILES_MATCHING PATTERN "libllama.so*" PATTERN "libllama-common.so*" PATTERN "libggml*.so*"
  PATTERN "libmtmd.so*"
  PATTERN "*.dir" EXCLUDE)

install(EXPORT SippTargets NAMESPACE Sipp:: DESTINATION ${SIPP_INSTALL_CMAKEDIR}
  FILE SippTargets.cmake)
include(CMakePackageConfigHelpers)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/package/SippConfig.cmake.in
  ${CMAKE_BINARY_DIR}/package/SippConfig.cmake INSTALL_DESTINATION ${SIPP_INSTALL_CMAKEDIR})
# 0.x: a minor release may change the ABI, so only the same MAJOR.MINOR is compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/package/SippConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/package/SippConfig.cmake
  ${CMAKE_BINARY_DIR}/package/SippConfigVersion.cmake DESTINATION ${SIPP_INSTALL_CMAKEDIR})

# sipp.pc names the prefix relative to itself, so `--prefix` at install time is honoured.
file(RELATIVE_PATH SIPP_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" SIPP_PC_TO_PREFIX "${SIPP_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/package/sipp.pc.in ${CMAKE_BINARY_DIR}/package/sipp.pc
  @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/package/sipp.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The copied llama.cpp libraries still carry the run path of their build tree in the cache; point
# them at each other instead, so an install works where that cache does not exist.
string(CONFIGURE [[
  file(GLOB _sipp_private_libs LIST_DIRECTORIES false
    "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/@SIPP_INSTALL_PRIVATE_LIBDIR@/lib*.so*")
  foreach(_lib IN LISTS _sipp_private_libs)
    if(NOT IS_SYMLINK "${_lib}")
      file(READ_ELF "${_lib}" RUNPATH _runpath RPATH _rpath)
      if(_runpath OR _rpath)  # a library without one needs none
        file(RPATH_SET FILE "${_lib}" NEW_RPATH "$ORIGIN")
      endif()
    endif()
  endforeach()
]] _sipp_fix_rpath_code @ONLY)
install(CODE "${_sipp_fix_rpath_code}")
