#!/usr/bin/env bash
# Meta-RL on the bandit task families: trains each experiment through the distributed loop
# (`engram local`: replay queue, learner, actors, evaluation actor), then evaluates the final
# checkpoint with frozen weights on 300 held-out instances against Thompson sampling, UCB1,
# the Gittins index and random (bench/meta_rl/meta_rl_eval): the regret tables (stdout, JSON)
# and per-trial regret curves (CSV), and for the two-step task the stay probabilities.
#   [FRAMES=N] bench/meta_rl/meta_rl_bench.sh [OUT_DIR] [WALL_TIME per experiment, e.g. 10m]
#                                            [SPEC...]
# Default specs: independent, dependent easy, dependent medium bandits and the two-step task.
# FRAMES caps each experiment's training frames as well (the actors run at the learner's pace,
# so frames / 1600 is about the learner's updates with the specs' 16 chunks of 100 steps).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/engram-meta-rl}
wall=${2:-10m}
shift $(( $# > 2 ? 2 : $# ))
specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  specs=(deploy/experiments/bandit_independent_meta_rl.textproto
         deploy/experiments/bandit_dependent_easy_meta_rl.textproto
         deploy/experiments/bandit_dependent_medium_meta_rl.textproto
         deploy/experiments/two_step_meta_rl.textproto)
fi
for bin in build/release/bin/engram build/release/bench/meta_rl_eval; do
  [ -x "$bin" ] || { echo "meta_rl_bench: $bin is missing: build the project first" >&2; exit 2; }
done
mkdir -p "$out"
for spec in "${specs[@]}"; do
  id=$(sed -n 's/^id: "\(.*\)"/\1/p' "$spec")
  run="$out/runs/$id"
  rm -rf "$run"
  echo "== $id: training for at most $wall ($spec)"
  build/release/bin/engram local "$spec" --max_wall_time="$wall" --run_dir="$run" \
    ${FRAMES:+--max_frames="$FRAMES"}
  checkpoint=$(ls -d "$run/$id"/checkpoints/ckpt-* | sort | tail -1)
  cp "$run/$id/progress.csv" "$out/${id}_progress.csv"
  cp "$run/$id/evaluations.csv" "$out/${id}_evaluations.csv"
  echo "== $id: held-out evaluation of $checkpoint"
  build/release/bench/meta_rl_eval --experiment="$spec" --checkpoint="$checkpoint" \
    --csv="$out/${id}_regret.csv" --json="$out/${id}_eval.json" | tee "$out/${id}_eval.txt"
done
echo "results in $out"
