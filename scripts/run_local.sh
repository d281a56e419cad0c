#!/usr/bin/env bash
# Builds Engram (release preset) and runs a whole local cluster from an experiment spec:
# replay shards, learner, training actors and an evaluation actor on loopback, with live
# progress and a summary table at the end (the README's main command).
#
#   scripts/run_local.sh deploy/experiments/breakout_apex.textproto           # 10 minutes
#   scripts/run_local.sh deploy/experiments/cartpole_apex.textproto --max_wall_time=3m
#   scripts/run_local.sh SPEC --max_wall_time=0                                # the spec's budget
#
# Flags after the spec go to `engram local` (see build/release/bin/engram --help). Without
# --max_wall_time the run stops after 10 minutes. Ctrl-C stops it cleanly (the learner
# writes a checkpoint when the spec enables them).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
  echo "usage: scripts/run_local.sh SPEC.textproto [engram local flags]" >&2
  exit 2
fi
spec="$1"
shift
jobs="${ENGRAM_JOBS:-$(nproc)}"
echo "== build (release, -j$jobs)"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs" --target engram engram_replay_server engram_learner \
  engram_actor
wall=(--max_wall_time=10m)
for arg in "$@"; do
  [[ "$arg" == --max_wall_time=* ]] && wall=()
done
echo "== engram local $spec ${wall[*]} $*"
exec build/release/bin/engram local "$spec" "${wall[@]}" "$@"
