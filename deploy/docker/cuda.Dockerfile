# syntax=docker/dockerfile:1.6
# TECL CUDA image: the same seven binaries as cpu.Dockerfile, with a CUDA LibTorch and the NCCL
# all-reduce path, for GPU trainers (the coordinator and dataloaders may use either image).
#
#   docker build -f deploy/docker/cuda.Dockerfile -t tecl:cuda .       (from the repository root)
#
# Base: NVIDIA's CUDA images on Ubuntu 24.04, whose gRPC 1.51, Protobuf 3.21 and Abseil 20220623
# are the versions Debian 12 ships; FFmpeg (6.1 there), SQLite, civetweb and yaml-cpp also come
# from apt. NCCL (libnccl-dev / libnccl2) and the CUDA runtime come from the CUDA images.
# LibTorch comes from PyTorch's CUDA build, in one of two ways (build arguments):
#   LIBTORCH_SOURCE=zip    (default) a libtorch zip, cxx11 ABI, from LIBTORCH_URL
#   LIBTORCH_SOURCE=wheel  a PyTorch wheel (TORCH_WHEEL, from TORCH_INDEX_URL) in a virtual
#                          environment; its cmake prefix (torch.utils.cmake_prefix_path) is used.
#                          The wheel must use the cxx11 ABI (PyTorch >= 2.7), like gRPC from apt.
# The CUDA version of the base images and of LibTorch must match (CUDA_VERSION, LIBTORCH_URL).
ARG CUDA_VERSION=12.6.3
ARG UBUNTU_VERSION=24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
ENV DEBIAN_FRONTEND=noninteractive
# The service dependencies of scripts/setup minus Debian's CPU LibTorch (libtorch-dev), plus what
# fetching LibTorch needs. Test and benchmark packages are left out (TECL_BUILD_TESTS=OFF).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build ccache pkg-config git ca-certificates curl unzip \
      python3 python3-venv \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev \
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev \
      libsqlite3-dev libcivetweb-dev libyaml-cpp-dev \
 && apt-get clean && rm -rf /var/lib/apt/lists/*

ARG LIBTORCH_SOURCE=zip
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu126/libtorch-cxx11-abi-shared-with-deps-2.6.0%2Bcu126.zip
ARG TORCH_WHEEL=torch==2.7.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# /opt/tecl-torch/prefix holds the CMake prefix of the LibTorch in use. The runtime stage copies
# /opt/tecl-torch to the same path, so the binaries' RPATH into it stays valid.
RUN set -eu; mkdir -p /opt/tecl-torch; \
    case "${LIBTORCH_SOURCE}" in \
      zip) curl -fsSL "${LIBTORCH_URL}" -o /tmp/libtorch.zip; \
           unzip -q /tmp/libtorch.zip -d /opt/tecl-torch; rm /tmp/libtorch.zip; \
           echo /opt/tecl-torch/libtorch > /opt/tecl-torch/prefix ;; \
      wheel) python3 -m venv /opt/tecl-torch/venv; \
           /opt/tecl-torch/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "${TORCH_WHEEL}"; \
           /opt/tecl-torch/venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)' \
             > /opt/tecl-torch/prefix ;; \
      *) echo "LIBTORCH_SOURCE must be zip or wheel, not '${LIBTORCH_SOURCE}'" >&2; exit 1 ;; \
    esac; \
    test -f "$(cat /opt/tecl-torch/prefix)/share/cmake/Torch/TorchConfig.cmake" \
      || test -f "$(cat /opt/tecl-torch/prefix)/Torch/TorchConfig.cmake"

WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY proto/ proto/
COPY services/ services/
COPY tools/ tools/
ARG BUILD_TYPE=Release
ARG BUILD_JOBS=
# GPU architectures LibTorch's CMake compiles for when no GPU is visible at build time
# (8.0 A100, 8.6 A10/RTX 30, 8.9 L4/L40, 9.0 H100).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE} \
          -DCMAKE_PREFIX_PATH="$(cat /opt/tecl-torch/prefix)" \
          -DTECL_BUILD_TESTS=OFF -DTECL_BUILD_BENCH=OFF -DTECL_WITH_CUDA=ON \
 && cmake --build build ${BUILD_JOBS:+-j${BUILD_JOBS}} \
          --target tecl-coordinator tecl-dataloader tecl-worker teclctl tecl-synth tecl-prepare tecl-export \
 && mkdir -p /out/bin \
 && cp build/bin/tecl-coordinator build/bin/tecl-dataloader build/bin/tecl-worker \
       build/bin/teclctl build/bin/tecl-synth build/bin/tecl-prepare build/bin/tecl-export /out/bin/ \
 && strip --strip-debug /out/bin/*
# The Ubuntu packages that own the shared libraries the binaries load (gRPC, FFmpeg, ...), for
# the runtime stage. CUDA, NCCL and cuDNN come from the runtime base image; LibTorch from
# /opt/tecl-torch.
RUN for binary in /out/bin/*; do ldd "${binary}"; done \
      | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u \
      | while read -r lib; do \
          dpkg -S "${lib}" 2>/dev/null || dpkg -S "$(readlink -f "${lib}")" 2>/dev/null || true; \
        done \
      | cut -d: -f1 | sort -u \
      | grep -Ev '^(cuda-|libcuda|libnccl|libcublas|libcudnn|libnv|libc6|libgcc-s1|libstdc\+\+6)' \
      > /out/runtime-packages.txt \
 && cat /out/runtime-packages.txt

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
      ca-certificates curl sqlite3 tini \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
COPY --from=build /opt/tecl-torch/ /opt/tecl-torch/
COPY --from=build /out/bin/ /usr/local/bin/
# Fails the build when a binary needs a library that is not in the image.
RUN if ldd /usr/local/bin/tecl-* /usr/local/bin/teclctl | grep 'not found'; then \
      echo "runtime image: a shared library is missing" >&2; exit 1; \
    fi
# Ubuntu 24.04 images have a user 1000 (ubuntu); TECL runs as its own system user.
RUN groupadd --system --gid 10001 tecl \
 && useradd --system --uid 10001 --gid tecl --home-dir /var/lib/tecl --create-home \
      --shell /usr/sbin/nologin tecl \
 && mkdir -p /var/lib/tecl/state /data \
 && chown -R tecl:tecl /var/lib/tecl
USER 10001:10001
WORKDIR /var/lib/tecl
ENV TECL_METRICS_LISTEN=0.0.0.0:9090
EXPOSE 7070 7080 9090
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${TECL_METRICS_LISTEN##*:}/healthz" >/dev/null || exit 1
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["tecl-worker"]
