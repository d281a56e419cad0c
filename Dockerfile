# One image for every Engram process: engram_replay_server, engram_learner, engram_actor,
# engram_episodic_store and the `engram` command-line tool, all in /usr/local/bin. Built from
# Debian 12 packages only.
#
#   docker build -t engram:latest .                   # or: docker-compose build
#   docker build --build-arg JOBS=2 -t engram:latest . # fewer parallel compiles (LibTorch
#                                                      # translation units need ~1 GiB each)
#
# Debian's LibTorch is CPU only: in this image `--device=auto` picks the CPU. A learner on a
# GPU needs an image built against a CUDA LibTorch (-DTorch_DIR=..., see README.md).

# ---- build stage: the toolchain and -dev packages of scripts/install_deps.sh -------------
FROM debian:12 AS build

ENV DEBIAN_FRONTEND=noninteractive
# The script is the one list of build dependencies; copying it alone first keeps this layer
# cached while the sources change.
COPY scripts/install_deps.sh /tmp/install_deps.sh
RUN /tmp/install_deps.sh build && rm -rf /var/lib/apt/lists/* /tmp/install_deps.sh

WORKDIR /src
COPY . /src

# Empty: as many parallel jobs as the generator's default (all cores).
ARG JOBS=""
# ccache would only fill a cache that is thrown away with this stage.
ENV CCACHE_DISABLE=1
RUN cmake --preset release -DENGRAM_BUILD_TESTS=OFF -DENGRAM_BUILD_BENCH=OFF \
 && cmake --build --preset release -j ${JOBS} \
 && strip --strip-unneeded build/release/bin/engram build/release/bin/engram_replay_server \
          build/release/bin/engram_learner build/release/bin/engram_actor \
          build/release/bin/engram_episodic_store

# ---- runtime stage: the shared libraries the binaries link, nothing else ----------------
FROM debian:12

ENV DEBIAN_FRONTEND=noninteractive
# libtorch1.13: libtorch, libtorch_cpu, libc10; libgrpc++1.51 (with reflection) and
# libgrpc29 (libgpr); libprotobuf32; libabsl20220623; libprometheus-cpp-core1.0; libgomp1 for
# the episodic store (FAISS is linked statically but uses OpenMP, and BLAS for exact search);
# libopenblas0-pthread switches the system BLAS LibTorch calls to OpenBLAS (without it the
# reference BLAS makes linear layers ~20x slower).
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libtorch1.13 libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libprometheus-cpp-core1.0 libopenblas0-pthread libgomp1 \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /src/build/release/bin/engram /src/build/release/bin/engram_replay_server \
                  /src/build/release/bin/engram_learner /src/build/release/bin/engram_actor \
                  /src/build/release/bin/engram_episodic_store \
                  /usr/local/bin/

# A fixed uid/gid, so that Kubernetes' fsGroup and host-mounted directories can match it.
RUN groupadd --system --gid 10001 engram \
 && useradd --system --uid 10001 --gid engram --home-dir /var/lib/engram \
            --shell /usr/sbin/nologin engram \
 && mkdir -p /var/lib/engram/replay /var/lib/engram/runs \
 && chown -R engram:engram /var/lib/engram
# The experiment specs, read-only, at the same relative path as in the repository:
# `docker-compose exec learner engram submit deploy/experiments/breakout_apex.textproto`.
COPY deploy/experiments /var/lib/engram/deploy/experiments

# A named volume mounted on replay/ or runs/ starts as a copy of these (empty, engram-owned)
# directories, so the processes write to it without root. (No VOLUME instruction: it would
# give every actor container anonymous volumes it never uses.)
USER engram:engram
WORKDIR /var/lib/engram
# 7700 replay shard, 7800 learner (gRPC); 9100 /metrics of every process.
EXPOSE 7700 7800 9100
# Which process runs is the container's command, e.g. `engram_learner --address=...`.
CMD ["engram", "--help"]
