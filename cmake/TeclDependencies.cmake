# Finds every third-party dependency and exposes each as one target:
#   Torch::Torch (LibTorch with c10d), OpenSSL::Crypto (libcrypto: SHA-256 of checkpoints),
#   tecl::cuda_nccl (when TECL_HAVE_NCCL),
#   and outside TECL_CORE_ONLY: gRPC::grpc++, protobuf::libprotobuf, absl::*, tecl::ffmpeg,
#   SQLite::SQLite3, tecl::civetweb, yaml-cpp, GTest::gtest(_main), GTest::gmock,
#   benchmark::benchmark.
# All of them come from the OS package manager (scripts/setup installs them).

# LibTorch ----------------------------------------------------------------------------------------
find_package(Torch REQUIRED)
if(NOT TARGET Torch::Torch)
  add_library(Torch::Torch INTERFACE IMPORTED)
  target_link_libraries(Torch::Torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(Torch::Torch INTERFACE ${TORCH_INCLUDE_DIRS})
  if(TORCH_CXX_FLAGS)
    separate_arguments(_tecl_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
    target_compile_options(Torch::Torch INTERFACE ${_tecl_torch_flags})
  endif()
endif()
# Whether this LibTorch was built with CUDA (the GPU machine's PyTorch) or not (Debian's).
if(TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA OR USE_CUDA)
  set(TECL_TORCH_HAS_CUDA ON)
else()
  set(TECL_TORCH_HAS_CUDA OFF)
endif()

# OpenSSL's libcrypto (the core's SHA-256; gRPC links it too) ------------------------------------
find_package(OpenSSL REQUIRED COMPONENTS Crypto)

# CUDA runtime + NCCL -----------------------------------------------------------------------------
set(TECL_HAVE_NCCL OFF)
if(NOT TECL_WITH_CUDA STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  # TECL_CUDA_ROOT: a folder with include/ and lib/ of the CUDA runtime and NCCL (bench/gpu/run
  # points it at the ones PyTorch ships) searched first.
  set(_tecl_cuda_hints ${TECL_CUDA_ROOT} /usr/local/cuda)
  if(CUDAToolkit_FOUND)
    list(APPEND _tecl_cuda_hints ${CUDAToolkit_LIBRARY_ROOT})
  endif()
  find_path(TECL_NCCL_INCLUDE_DIR nccl.h HINTS ${_tecl_cuda_hints} ENV NCCL_ROOT PATH_SUFFIXES include)
  find_path(TECL_CUDART_INCLUDE_DIR cuda_runtime_api.h HINTS ${_tecl_cuda_hints} PATH_SUFFIXES include)
  find_library(TECL_NCCL_LIBRARY nccl HINTS ${_tecl_cuda_hints} ENV NCCL_ROOT PATH_SUFFIXES lib64 lib)
  find_library(TECL_CUDART_LIBRARY cudart HINTS ${_tecl_cuda_hints} PATH_SUFFIXES lib64 lib)
  if(TECL_NCCL_INCLUDE_DIR AND TECL_CUDART_INCLUDE_DIR AND TECL_NCCL_LIBRARY AND TECL_CUDART_LIBRARY)
    set(TECL_HAVE_NCCL ON)
    add_library(tecl::cuda_nccl INTERFACE IMPORTED)
    target_include_directories(tecl::cuda_nccl SYSTEM INTERFACE
      ${TECL_NCCL_INCLUDE_DIR} ${TECL_CUDART_INCLUDE_DIR})
    target_link_libraries(tecl::cuda_nccl INTERFACE ${TECL_NCCL_LIBRARY} ${TECL_CUDART_LIBRARY})
    target_compile_definitions(tecl::cuda_nccl INTERFACE TECL_HAVE_NCCL=1 TECL_HAVE_CUDART=1)
    message(STATUS "tecl: NCCL path ON (${TECL_NCCL_LIBRARY}); LibTorch CUDA: ${TECL_TORCH_HAS_CUDA}")
  elseif(TECL_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "TECL_WITH_CUDA=ON but nccl.h/libnccl/libcudart were not found; "
                        "install CUDA and NCCL or set -DTECL_WITH_CUDA=OFF")
  else()
    message(STATUS "tecl: NCCL path OFF (nccl.h or libcudart not found)")
  endif()
endif()

# Tests and benchmarks (optional in core-only builds, where the GPU image may lack them) -----------
if(TECL_BUILD_TESTS)
  if(TECL_CORE_ONLY)
    find_package(GTest QUIET)
    if(NOT GTest_FOUND AND TECL_GTEST_SOURCE_DIR)
      # GoogleTest's sources brought along (bench/gpu/run --stage-deps copies them): built here,
      # with this build's flags (LibTorch's C++ ABI included).
      set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
      add_subdirectory(${TECL_GTEST_SOURCE_DIR} ${CMAKE_BINARY_DIR}/_googletest EXCLUDE_FROM_ALL)
      foreach(_t gtest gtest_main gmock gmock_main)
        if(NOT TARGET GTest::${_t})
          add_library(GTest::${_t} ALIAS ${_t})
        endif()
      endforeach()
      set(GTest_FOUND ON)
    endif()
    if(NOT GTest_FOUND)
      message(STATUS "tecl: GoogleTest not found; core-only build without unit tests "
                     "(set TECL_GTEST_SOURCE_DIR to its sources)")
      set(TECL_BUILD_TESTS OFF)
    endif()
  else()
    find_package(GTest REQUIRED)
  endif()
endif()
if(TECL_BUILD_BENCH AND NOT TECL_CORE_ONLY)
  find_package(benchmark REQUIRED)
endif()

if(TECL_CORE_ONLY)
  return()
endif()

# Service dependencies ----------------------------------------------------------------------------
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
# civetweb's CMake package references its server binary (another package); use the library alone.
find_path(TECL_CIVETWEB_INCLUDE_DIR civetweb.h REQUIRED)
find_library(TECL_CIVETWEB_LIBRARY civetweb REQUIRED)
add_library(tecl::civetweb INTERFACE IMPORTED)
target_include_directories(tecl::civetweb INTERFACE ${TECL_CIVETWEB_INCLUDE_DIR})
target_link_libraries(tecl::civetweb INTERFACE ${TECL_CIVETWEB_LIBRARY})
find_package(yaml-cpp REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(TECL_FFMPEG REQUIRED IMPORTED_TARGET libavformat libavcodec libswscale libavutil)
add_library(tecl::ffmpeg ALIAS PkgConfig::TECL_FFMPEG)
find_program(TECL_PROTOC protoc REQUIRED)
find_program(TECL_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
if(NOT TARGET yaml-cpp::yaml-cpp)
  add_library(yaml-cpp::yaml-cpp INTERFACE IMPORTED)
  target_link_libraries(yaml-cpp::yaml-cpp INTERFACE yaml-cpp)
endif()
