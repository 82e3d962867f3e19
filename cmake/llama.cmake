# Imports the llama.cpp build that scripts/setup made in the cache (never a copy in this repo).
#   SIPP_LLAMA_SRC    the llama.cpp source tree (headers)
#   SIPP_LLAMA_BUILD  its CMake build tree (shared libraries in bin/)
set(SIPP_LLAMA_SRC "" CACHE PATH "llama.cpp source tree (set by scripts/setup)")
set(SIPP_LLAMA_BUILD "" CACHE PATH "llama.cpp build tree (set by scripts/setup)")
if(NOT EXISTS "${SIPP_LLAMA_SRC}/include/llama.h" OR NOT EXISTS "${SIPP_LLAMA_BUILD}/bin/libllama.so")
  message(FATAL_ERROR "llama.cpp not found: run scripts/setup (it builds llama.cpp and configures Sipp)")
endif()

set(_llama_bin "${SIPP_LLAMA_BUILD}/bin")
foreach(_lib llama ggml ggml-base llama-common)
  add_library(llama::${_lib} SHARED IMPORTED)
  set_target_properties(llama::${_lib} PROPERTIES IMPORTED_LOCATION "${_llama_bin}/lib${_lib}.so")
endforeach()
set_target_properties(llama::llama PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${SIPP_LLAMA_SRC}/include;${SIPP_LLAMA_SRC}/ggml/include"
  INTERFACE_LINK_LIBRARIES "llama::ggml;llama::ggml-base")
set_target_properties(llama::ggml-base PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${SIPP_LLAMA_SRC}/ggml/include")
set_target_properties(llama::llama-common PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${SIPP_LLAMA_SRC}/common;${SIPP_LLAMA_SRC}/vendor"
  INTERFACE_LINK_LIBRARIES "llama::llama")
# Binaries find the cached llama.cpp libraries through their run path.
set(CMAKE_BUILD_RPATH "${_llama_bin};${CMAKE_BINARY_DIR}/lib")
set(SIPP_LLAMA_BIN "${_llama_bin}")
# llama.cpp's multimodal library (tools/mtmd): images and audio in (src/engine/media.c). A cache
# built before Sipp used it lacks it: scripts/setup adds it; without it media is unsupported.
if(EXISTS "${_llama_bin}/libmtmd.so")
  add_library(llama::mtmd SHARED IMPORTED)
  set_target_properties(llama::mtmd PROPERTIES IMPORTED_LOCATION "${_llama_bin}/libmtmd.so"
    INTERFACE_INCLUDE_DIRECTORIES "${SIPP_LLAMA_SRC}/tools/mtmd"
    INTERFACE_COMPILE_DEFINITIONS SIPP_HAVE_MTMD
    INTERFACE_LINK_LIBRARIES "llama::llama")
  set(SIPP_HAVE_MTMD ON)
else()
  message(WARNING "libmtmd.so is missing from ${_llama_bin}: multimodal requests will be unsupported (run scripts/setup)")
  set(SIPP_HAVE_MTMD OFF)
endif()
