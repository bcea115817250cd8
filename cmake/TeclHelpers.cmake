# The one way to declare TECL targets.
#
#   tecl_library(NAME SRCS <files> [DEPS <targets>] [TORCH])
#   tecl_binary(NAME SRCS <files> [DEPS <targets>] [TORCH])
#   tecl_test(NAME SRCS <files> [DEPS <targets>] [TORCH] [LABELS <labels>] [TIMEOUT <s>]
#             [RESOURCE_LOCK <name>] [RUNS <binary targets the test starts>])
#
# Tests are sized: a unit test (the default label) gets 60 s unless it says otherwise; every other
# label must give its TIMEOUT (a few times what it takes on a 2-core machine). Tests that load the
# whole machine (local clusters, multi-process groups, convergence) take RESOURCE_LOCK cpu_heavy,
# so ctest -j never runs two of them at once. Labels: unit, integration, e2e, deploy, slow;
# `scripts/test --fast` runs everything but e2e and slow. A build without LibTorch
# (TECL_WITHOUT_TORCH: the sanitized build) declares no TORCH test.
#   tecl_fuzzer(NAME [DEPS <targets>])    (TECL_FUZZ builds) fuzz/NAME.cc linked with libFuzzer's
#             main, into ${CMAKE_BINARY_DIR}/fuzz, part of the tecl_fuzzers target
#   tecl_proto_library(NAME PROTOS <files relative to proto/> [GRPC] [DEPS <targets>])
#
# TORCH links LibTorch and reuses one precompiled <torch/torch.h>, which turns a 20-second
# LibTorch translation unit into a few seconds. Include paths are rooted at the project root
# ("services/common/status.h") and at the generated proto folder ("tecl/v1/job.pb.h").
# Binaries land in ${CMAKE_BINARY_DIR}/bin.

set(TECL_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Winvalid-pch)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)

# The shared precompiled LibTorch header (built once, reused by every TORCH target).
set(TECL_PCH_DIR ${CMAKE_CURRENT_LIST_DIR})
function(_tecl_make_torch_pch)
  if(TARGET tecl_torch_pch)
    return()
  endif()
  add_library(tecl_torch_pch STATIC ${TECL_PCH_DIR}/torch_pch.cc)
  target_link_libraries(tecl_torch_pch PUBLIC Torch::Torch)
  target_compile_options(tecl_torch_pch PRIVATE ${TECL_WARNINGS})
  target_precompile_headers(tecl_torch_pch PRIVATE <torch/torch.h>)
endfunction()

function(_tecl_common target torch)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${target} PRIVATE ${TECL_WARNINGS})
  if(torch)
    _tecl_make_torch_pch()
    target_link_libraries(${target} PUBLIC Torch::Torch)
    target_precompile_headers(${target} REUSE_FROM tecl_torch_pch)
  endif()
endfunction()

function(tecl_library name)
  cmake_parse_arguments(ARG "TORCH" "" "SRCS;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SRCS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  _tecl_common(${name} ${ARG_TORCH})
endfunction()

function(tecl_binary name)
  cmake_parse_arguments(ARG "TORCH" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  _tecl_common(${name} ${ARG_TORCH})
endfunction()

function(tecl_test name)
  if(NOT TECL_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "TORCH" "TIMEOUT;RESOURCE_LOCK" "SRCS;DEPS;LABELS;RUNS" ${ARGN})
  if(ARG_TORCH AND TECL_WITHOUT_TORCH)
    return()
  endif()
  add_executable(${name} ${ARG_SRCS})
  if(ARG_RUNS)
    add_dependencies(${name} ${ARG_RUNS})
  endif()
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  _tecl_common(${name} ${ARG_TORCH})
  add_test(NAME ${name} COMMAND ${name} --gtest_color=no)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    if(NOT ARG_LABELS STREQUAL "unit")
      message(FATAL_ERROR "tecl_test(${name}): a ${ARG_LABELS} test gives its TIMEOUT")
    endif()
    set(ARG_TIMEOUT 60)
  endif()
  if(TECL_SANITIZE)
    # ASan + UBSan run the decoders and the coordinator about five to ten times slower.
    math(EXPR ARG_TIMEOUT "${ARG_TIMEOUT} * 10")
  endif()
  set_tests_properties(${name} PROPERTIES
    LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "TECL_BIN_DIR=${CMAKE_BINARY_DIR}/bin;TECL_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMP_NUM_THREADS=1")
  if(ARG_RESOURCE_LOCK)
    set_tests_properties(${name} PROPERTIES RESOURCE_LOCK ${ARG_RESOURCE_LOCK})
  endif()
endfunction()

function(tecl_fuzzer name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  add_executable(${name} ${name}.cc)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  _tecl_common(${name} OFF)
  add_dependencies(tecl_fuzzers ${name})
endfunction()

set(TECL_PROTO_OUT ${CMAKE_BINARY_DIR}/proto_gen)
function(tecl_proto_library name)
  cmake_parse_arguments(ARG "GRPC" "" "PROTOS;DEPS" ${ARGN})
  file(MAKE_DIRECTORY ${TECL_PROTO_OUT})
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    get_filename_component(dir ${proto} DIRECTORY)
    get_filename_component(stem ${proto} NAME_WE)
    set(base ${TECL_PROTO_OUT}/${dir}/${stem})
    set(outs ${base}.pb.cc ${base}.pb.h)
    set(plugin_args)
    if(ARG_GRPC)
      list(APPEND outs ${base}.grpc.pb.cc ${base}.grpc.pb.h)
      set(plugin_args --grpc_out=${TECL_PROTO_OUT} --plugin=protoc-gen-grpc=${TECL_GRPC_CPP_PLUGIN})
    endif()
    add_custom_command(
      OUTPUT ${outs}
      COMMAND ${TECL_PROTOC} -I${PROJECT_SOURCE_DIR}/proto --cpp_out=${TECL_PROTO_OUT} ${plugin_args}
              ${PROJECT_SOURCE_DIR}/proto/${proto}
      DEPENDS ${PROJECT_SOURCE_DIR}/proto/${proto} ${TECL_PROTOC}
      COMMENT "protoc ${proto}")
    list(APPEND srcs ${base}.pb.cc)
    if(ARG_GRPC)
      list(APPEND srcs ${base}.grpc.pb.cc)
    endif()
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} SYSTEM PUBLIC ${TECL_PROTO_OUT})
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf ${ARG_DEPS})
  if(ARG_GRPC)
    target_link_libraries(${name} PUBLIC gRPC::grpc++)
  endif()
endfunction()
