# syntax=docker/dockerfile:1.6
# TECL CPU image: tecl-coordinator, tecl-dataloader, tecl-worker (Gloo trainer), teclctl, tecl-synth,
# tecl-prepare, tecl-export
# on Debian 12, with Debian's LibTorch 1.13 (CPU). One image for every role; the Kubernetes
# manifests pick the binary with `command:`.
#
#   docker build -f deploy/docker/cpu.Dockerfile -t tecl:cpu .        (from the repository root)
#   docker run --rm -p 7070:7070 -p 9090:9090 tecl:cpu tecl-coordinator --state_dir=/var/lib/tecl/state
#
# Build stage: the same Debian packages as a development machine (scripts/setup), then CMake.
# Runtime stage: the runtime libraries only, a non-root user, a HEALTHCHECK on /healthz.
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# scripts/setup is the one list of build dependencies; copying it alone keeps this layer cached
# until the list changes.
COPY scripts/setup /src/scripts/setup
RUN /src/scripts/setup && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY proto/ proto/
COPY services/ services/
COPY tools/ tools/
ARG BUILD_TYPE=Release
ARG BUILD_JOBS=
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE} \
          -DTECL_BUILD_TESTS=OFF -DTECL_BUILD_BENCH=OFF -DTECL_WITH_CUDA=OFF \
 && cmake --build build ${BUILD_JOBS:+-j${BUILD_JOBS}} \
          --target tecl-coordinator tecl-dataloader tecl-worker teclctl tecl-synth tecl-prepare tecl-export \
 && mkdir -p /out/bin \
 && cp build/bin/tecl-coordinator build/bin/tecl-dataloader build/bin/tecl-worker \
       build/bin/teclctl build/bin/tecl-synth build/bin/tecl-prepare build/bin/tecl-export /out/bin/ \
 && strip --strip-debug /out/bin/*

FROM ${DEBIAN_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries of the binaries (the -dev packages of scripts/setup without headers and
# tools), curl for the HEALTHCHECK, sqlite3 for online backups of the coordinator's database,
# tini as PID 1 (forwards SIGTERM so that the services shut down gracefully).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libtorch1.13 libgloo0 \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libavformat59 libavcodec59 libswscale6 libavutil57 \
      libsqlite3-0 libcivetweb1 libyaml-cpp0.7 libssl3 \
      ca-certificates curl sqlite3 tini \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/ /usr/local/bin/
# Fails the build when a binary needs a library the list above does not provide.
RUN if ldd /usr/local/bin/tecl-* /usr/local/bin/teclctl | grep 'not found'; then \
      echo "runtime image: a shared library is missing (add its Debian package above)" >&2; exit 1; \
    fi
RUN groupadd --system --gid 10001 tecl \
 && useradd --system --uid 10001 --gid tecl --home-dir /var/lib/tecl --create-home \
      --shell /usr/sbin/nologin tecl \
 && mkdir -p /var/lib/tecl/state /data \
 && chown -R tecl:tecl /var/lib/tecl
USER 10001:10001
WORKDIR /var/lib/tecl
# Fixed metrics port in containers (the binaries default to a free port). The gRPC ports are the
# services' defaults: coordinator 7070, dataloader 7080.
ENV TECL_METRICS_LISTEN=0.0.0.0:9090
EXPOSE 7070 7080 9090
# Every TECL server answers GET /healthz on its metrics port. Kubernetes uses the gRPC health
# service instead (grpc: probes, see deploy/k8s).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${TECL_METRICS_LISTEN##*:}/healthz" >/dev/null || exit 1
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["tecl-coordinator", "--state_dir=/var/lib/tecl/state"]
