#ifndef ENGRAM_LEARNER_EPISODIC_CONTROL_RUN_H_
#define ENGRAM_LEARNER_EPISODIC_CONTROL_RUN_H_

// The learner's part in an episodic_control experiment: nothing to train (the actors act on
// and write to the episodic store), so it keeps the run's books: frames and returns from the
// actors' reports, the evaluation schedule, the budget, progress.csv and evaluations.csv,
// and at the end of the budget the final evaluation and the end of the run.

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "learner/run_state.h"
#include "prometheus/registry.h"

namespace engram::learner {

struct EpisodicControlRunOptions {
  std::string output_dir;  // CSV files; empty: none
  absl::Duration csv_interval = absl::Seconds(10);
  absl::Duration log_interval = absl::Seconds(10);
  absl::Duration final_evaluation_timeout = absl::Minutes(5);
  prometheus::Registry* registry = nullptr;  // engram_learner_{frames,train_return,eval_return}
};

// Runs until the budget is spent (final evaluation, run SUCCEEDED, OK) or `stop` (OK, the
// run stays RUNNING).
absl::Status RunEpisodicControl(const EpisodicControlRunOptions& options, RunState* state,
                                const std::atomic<bool>& stop);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_EPISODIC_CONTROL_RUN_H_
