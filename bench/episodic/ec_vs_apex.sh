#!/usr/bin/env bash
# Early data efficiency: episodic control (MFEC) against Ape-X DQN on MinAtar, the same
# 200K training frames each, every run a whole local cluster (`engram local` through
# bench/cluster/cluster_bench). Prints cluster_bench's table (final and best evaluation
# return, frames/s) and writes its JSON and the runs' learning curves (progress.csv,
# evaluations.csv) under OUT_DIR.
#   bench/episodic/ec_vs_apex.sh [OUT_DIR] [FRAMES]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/engram-ec-vs-apex}
frames=${2:-200000}
specs=deploy/experiments/breakout_ec.textproto,deploy/experiments/breakout_apex.textproto
specs+=,deploy/experiments/space_invaders_ec.textproto,deploy/experiments/space_invaders_apex.textproto
build/release/bench/cluster_bench --specs="$specs" --max_frames="$frames" --max_wall_time=30m \
  --out_dir="$out" --json="$out/ec_vs_apex.json"
