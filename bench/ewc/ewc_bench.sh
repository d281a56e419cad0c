#!/usr/bin/env bash
# Continual learning: one two-task sequence (task A, then task B) trained four ways through
# the distributed loop (`engram local`: replay, learner, actors, evaluation actor):
#   finetune  lambda = 0: plain DQN carried from A to B (the forgetting baseline);
#   ewc       EWC (Kirkpatrick et al. 2017) with the spec's lambda (EWC_LAMBDA overrides);
#   online    online EWC (Schwarz et al. 2018), lambda ONLINE_LAMBDA (default: the spec's);
#   alone     task B only, the same frames: what B's budget gives it without A.
# Evaluations cover every task seen so far; from their rows (evaluations.csv, one per task)
# the script reports, per variant: A's return at the switch (mean of the last 3 evaluations
# before the switch), A's return at the end (mean of the last 3), their ratio, B's
# return at the end and B's ratio to alone; a table on stdout, ewc_bench.md and
# ewc_bench.json in OUT_DIR, and every run's evaluations.csv (forgetting curves). The table
# covers every variant whose results are in OUT_DIR, so variants can be run (or rerun) apart.
#   bench/ewc/ewc_bench.sh [OUT_DIR] [SPEC] [VARIANT...]
# Default: /tmp/engram-ewc, deploy/experiments/cartpole_ewc.textproto, all four variants. The
# spec marks its task A with "# task A begin" / "# task A end" lines (removed for alone).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/engram-ewc}
spec=${2:-deploy/experiments/cartpole_ewc.textproto}
shift $(( $# > 2 ? 2 : $# ))
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(finetune ewc online alone)
bin=${ENGRAM_BIN_DIR:-build/release/bin}
[ -x "$bin/engram" ] || { echo "ewc_bench: $bin/engram is missing: build the project first" >&2; exit 2; }
grep -q "# task A begin" "$spec" || { echo "ewc_bench: $spec has no '# task A begin' line" >&2; exit 2; }
mkdir -p "$out"
id=$(sed -n 's/^id: "\(.*\)"/\1/p' "$spec")

# The spec of one variant, with its own id.
variant_spec() {
  local v=$1
  local edit="s/^id: .*/id: \"$id-$v\"/"
  case "$v" in
    finetune) edit="$edit; s/^  lambda: .*/  lambda: 0/; s/^  online: .*/  online: false/" ;;
    ewc) edit="$edit; s/^  online: .*/  online: false/${EWC_LAMBDA:+; s/^  lambda: .*/  lambda: $EWC_LAMBDA/}" ;;
    online) edit="$edit; s/^  online: .*/  online: true/${ONLINE_LAMBDA:+; s/^  lambda: .*/  lambda: $ONLINE_LAMBDA/}" ;;
    alone) edit="$edit; /# task A begin/,/# task A end/d; s/^  lambda: .*/  lambda: 0/" ;;
    *) echo "ewc_bench: unknown variant $v (finetune, ewc, online, alone)" >&2; exit 2 ;;
  esac
  sed -e "$edit" "$spec"
}

for v in "${variants[@]}"; do
  variant_spec "$v" > "$out/$v.textproto"
  run="$out/runs/$v"
  rm -rf "$run"
  echo "== $v: $(grep -E '^  (lambda|online):' "$out/$v.textproto" | tr -s ' ' | tr '\n' ' ')"
  "$bin/engram" local "$out/$v.textproto" --run_dir="$run" --bin_dir="$bin" | tail -n 14
  cp "$run/$id-$v/evaluations.csv" "$out/${v}_evaluations.csv"
  cp "$run/$id-$v/progress.csv" "$out/${v}_progress.csv"
done

# Summaries from evaluations.csv (evaluation,wall_time_s,frames,updates,episodes,mean_return,
# min_return,max_return,task,task_name): tab-separated
#   variant a_switch a_end b_end
summarize() {
  awk -F, -v variant="$1" '
    NR == 1 { next }
    { idx = $1; task = $9; value[idx, task] = $6; has[idx, task] = 1
      if (!(idx in seen)) { seen[idx] = 1; order[++n] = idx } }
    END {
      # The switch: the first evaluation with a task-1 row (none for a one-task run).
      sw = 0
      for (i = 1; i <= n; i++) if (has[order[i], 1]) { sw = i; break }
      a_switch = "-"; a_end = "-"; b_end = "-"
      last_task = (sw > 0) ? 1 : 0
      if (sw > 0) {
        # Before the switch only: the evaluation asked for at the switch may start late (the
        # evaluation actor finishes the one before first), with weights already trained on B.
        s = 0; c = 0
        for (i = sw - 1; i >= 1 && c < 3; i--) if (has[order[i], 0]) { s += value[order[i], 0]; c++ }
        a_switch = s / c
        s = 0; c = 0
        for (i = n; i >= 1 && c < 3; i--) if (has[order[i], 0]) { s += value[order[i], 0]; c++ }
        a_end = s / c
      }
      s = 0; c = 0
      for (i = n; i >= 1 && c < 3; i--) if (has[order[i], last_task]) { s += value[order[i], last_task]; c++ }
      b_end = s / c
      printf "%s\t%s\t%s\t%s\n", variant, a_switch, a_end, b_end
    }' "$2"
}

: > "$out/summary.tsv"
# Every variant with results in OUT_DIR (earlier invocations' too), in the usual order.
for v in finetune ewc online alone; do
  [ -f "$out/${v}_evaluations.csv" ] || continue
  summarize "$v" "$out/${v}_evaluations.csv" >> "$out/summary.tsv"
done
awk -F'\t' -v spec="$spec" -v json="$out/ewc_bench.json" -v md="$out/ewc_bench.md" '
  { v[NR] = $1; a0[NR] = $2; a1[NR] = $3; b[NR] = $4; if ($1 == "alone") alone = $4 }
  END {
    header = "| variant | A at the switch | A at the end | A kept | B at the end | B / alone |"
    rule = "|---------|----------------:|-------------:|-------:|-------------:|----------:|"
    print header; print rule; print header > md; print rule > md
    printf "{\"bench\": \"ewc_bench\", \"config\": {\"spec\": \"%s\"}, \"results\": [\n", spec > json
    sep = ""
    for (i = 1; i <= NR; i++) {
      kept = (a0[i] != "-" && a0[i] > 0) ? sprintf("%.0f%%", 100 * a1[i] / a0[i]) : "-"
      ratio = (alone != "" && alone > 0) ? sprintf("%.0f%%", 100 * b[i] / alone) : "-"
      row = sprintf("| %s | %s | %s | %s | %.1f | %s |", v[i],
                    a0[i] == "-" ? "-" : sprintf("%.1f", a0[i]),
                    a1[i] == "-" ? "-" : sprintf("%.1f", a1[i]), kept, b[i], ratio)
      print row; print row > md
      if (a0[i] != "-") {
        printf "%s  {\"name\": \"%s/a_at_switch\", \"value\": %s, \"unit\": \"return\"},\n", sep, v[i], a0[i] > json
        printf "  {\"name\": \"%s/a_at_end\", \"value\": %s, \"unit\": \"return\"}", v[i], a1[i] > json
        sep = ",\n"
      }
      printf "%s  {\"name\": \"%s/b_at_end\", \"value\": %s, \"unit\": \"return\"}", sep, v[i], b[i] > json
      sep = ",\n"
    }
    printf "\n]}\n" > json
  }' "$out/summary.tsv"
echo "results in $out (ewc_bench.md, ewc_bench.json, <variant>_evaluations.csv)"
