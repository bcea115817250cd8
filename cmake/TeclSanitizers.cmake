# Sanitized builds and the libFuzzer harnesses, each in a build folder of its own (the normal
# build and its ccache entries are untouched):
#
#   TECL_SANITIZE=address,undefined   every translation unit with those sanitizers; UB aborts.
#   TECL_FUZZ=ON                      (clang) also coverage for libFuzzer, and the harnesses of
#                                     fuzz/; implies TECL_SANITIZE=address,undefined.
#
# Both build the services without LibTorch (common, client, coordinator, dataloader, the trainer's
# plain-C++ sealed files) and, with TECL_BUILD_TESTS, their unit tests; LibTorch targets stay out
# of `all` and LibTorch tests are not declared (TECL_WITHOUT_TORCH). System libraries (Abseil,
# Protobuf, gRPC, FFmpeg, yaml-cpp) are not instrumented.
# scripts/fuzz and `scripts/test --sanitize-and-fuzz` configure build-fuzz this way.
if(TECL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TECL_FUZZ=ON needs clang (libFuzzer): configure a build folder of its "
                        "own with -DCMAKE_CXX_COMPILER=clang++ (scripts/fuzz does)")
  endif()
  if(NOT TECL_SANITIZE)
    set(TECL_SANITIZE "address,undefined")
  endif()
endif()

set(TECL_WITHOUT_TORCH OFF)
if(TECL_SANITIZE)
  if(TECL_CORE_ONLY)
    message(FATAL_ERROR "TECL_SANITIZE and TECL_CORE_ONLY exclude each other: a sanitized build "
                        "is the services without LibTorch")
  endif()
  set(TECL_WITHOUT_TORCH ON)
  set(TECL_BUILD_BENCH OFF)
  add_compile_options(-fsanitize=${TECL_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${TECL_SANITIZE})
  if(TECL_FUZZ)
    # Coverage for libFuzzer in every TECL object; the harnesses link the fuzzer's main itself.
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
  message(STATUS "tecl: sanitized build (${TECL_SANITIZE}) without LibTorch targets")
endif()
