#!/usr/bin/env bash
# The learner's CUDA check, for a GPU machine that has only a CUDA LibTorch (from its
# PyTorch install) and no gRPC: builds learner/core and the learner benchmark with
# -DENGRAM_WITH_GRPC=OFF against that LibTorch, runs the core tests if GoogleTest is
# there, and reports updates/s on CUDA and CPU.
#   scripts/gpu_check.sh [OUT_DIR]     (results: OUT_DIR/learner_cuda.json, learner_cpu.json)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/engram-gpu}}"
mkdir -p "$out"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
echo "== device"; nvidia-smi -L || true
echo "== torch: $torch_prefix"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build/gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DENGRAM_WITH_GRPC=OFF \
  -DTorch_DIR="$torch_prefix/Torch" > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
jobs=$(nproc)
cmake --build build/gpu --target learner_bench -j "$jobs" > "$out/build.log" 2>&1 || { tail -60 "$out/build.log"; exit 1; }
# The core tests need GoogleTest built with the same C++ ABI as this LibTorch; try them.
if cmake --build build/gpu --target dqn_test networks_test -j "$jobs" > "$out/build_tests.log" 2>&1; then
  build/gpu/learner/dqn_test --gtest_brief=1 2>&1 | tail -5 || true
  build/gpu/learner/networks_test --gtest_brief=1 2>&1 | tail -5 || true
else
  echo "(core tests not built here: see build_tests.log)"; tail -5 "$out/build_tests.log"
fi
echo "== learner_bench cuda"
build/gpu/bench/learner_bench --device=cuda --seconds=5 --json="$out/learner_cuda.json"
echo "== learner_bench cpu"
build/gpu/bench/learner_bench --device=cpu --seconds=3 --json="$out/learner_cpu.json"
