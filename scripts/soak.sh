#!/usr/bin/env bash
# Soak (not in CI): a local cluster under a kill -9 fault every 3 minutes for 30 minutes
# (replay shard in durable mode, learner, an actor, the episodic store, in turn), then a
# report of every process's memory over time, items lost (must be 0) and throughput before
# and after each fault. Builds the release tree first. Extra arguments go to the soak
# binary (`build/release/bench/soak --help`), e.g. scripts/soak.sh --duration=10m.
#   scripts/soak.sh                      # 30 minutes; results in bench/cluster/results/
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${ENGRAM_JOBS:-$(nproc)}"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs" --target soak
mkdir -p bench/cluster/results
exec build/release/bench/soak --json=bench/cluster/results/soak.json "$@"
