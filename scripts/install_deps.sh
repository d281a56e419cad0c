#!/usr/bin/env bash
# Installs exactly the Debian 12 packages Engram needs to build, test and run.
# Idempotent: safe to run again; apt-get skips what is already installed.
#   scripts/install_deps.sh            build + test + run dependencies
#   scripts/install_deps.sh build      only what building the binaries needs (the Dockerfile)
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # RPC and messages
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # base library; zlib (checksums of replay checkpoints, the replay log, learner checkpoints)
  libabsl-dev zlib1g-dev
  # tensors and autograd (CPU build), and a fast BLAS for it
  libtorch-dev libopenblas0-pthread
  # metrics
  prometheus-cpp-dev
  # the episodic store's k-NN indices: FAISS (exact search; static library, needs OpenMP and
  # BLAS) and hnswlib (approximate, header-only)
  libfaiss-dev libhnswlib-dev
)
if [ "${1:-all}" != "build" ]; then
  packages+=(
    # tests and benchmarks; the cluster-definition tests (YAML, compose, a real Prometheus);
    # openssl makes the TLS tests' certificates
    libgtest-dev libgmock-dev libbenchmark-dev libyaml-cpp-dev docker-compose prometheus openssl
  )
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}"
