# The version is written in one place, include/sipp.h (SIPP_VERSION_MAJOR/MINOR/PATCH). This sets
# SIPP_VERSION from it for project(), and refuses to configure when a binding's package manifest
# says another version (those formats cannot read a C header, so they repeat it and are checked).
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../include/sipp.h" _lines
  REGEX "^#define SIPP_VERSION_(MAJOR|MINOR|PATCH) [0-9]+$")
set(SIPP_VERSION "")
foreach(_part MAJOR MINOR PATCH)
  string(REGEX MATCH "SIPP_VERSION_${_part} ([0-9]+)" _m "${_lines}")
  if(NOT _m)
    message(FATAL_ERROR "include/sipp.h has no SIPP_VERSION_${_part}")
  endif()
  list(APPEND SIPP_VERSION ${CMAKE_MATCH_1})
endforeach()
list(JOIN SIPP_VERSION "." SIPP_VERSION)

foreach(_manifest
    "bindings/node/package.json|\"version\": \"([0-9.]+)\""
    "bindings/rust/Cargo.toml|^version = \"([0-9.]+)\""
    "bindings/python/sipp/_version.py|__version__ = \"([0-9.]+)\""
    "web/package.json|\"version\": \"([0-9.]+)\"")
  string(REPLACE "|" ";" _manifest "${_manifest}")
  list(GET _manifest 0 _file)
  list(GET _manifest 1 _regex)
  file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../${_file}" _line REGEX "${_regex}" LIMIT_COUNT 1)
  string(REGEX MATCH "${_regex}" _m "${_line}")
  if(NOT CMAKE_MATCH_1 STREQUAL SIPP_VERSION)
    message(FATAL_ERROR "${_file} says version '${CMAKE_MATCH_1}', include/sipp.h says "
      "${SIPP_VERSION}: change both together")
  endif()
endforeach()
