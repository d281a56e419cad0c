#ifndef ENGRAM_LEARNER_RUN_RECORDER_H_
#define ENGRAM_LEARNER_RUN_RECORDER_H_

// The learning curves of a run, shared by every algorithm's learner loop:
//   progress.csv     a row every csv_interval: wall time, frames, updates, episodes, train
//                    and eval return, rates, policy lag, replay size, loss;
//   evaluations.csv  a row per completed evaluation, and for a task sequence one per task
//                    the evaluation covered (the task columns say which): forgetting
//                    curves;
// and the final evaluation at the end of a budget. Files are appended to, so a resumed run
// continues them.
//
// Not thread-safe: the learner loop's thread only.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "learner/run_state.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"

namespace engram::learner {

class RunRecorder {
 public:
  // Opens the CSV files in `output_dir` (created); empty: no files, evaluations are only
  // logged. `eval_return` (may be null) gets each evaluation's mean; `task_eval_return`
  // (may be null) a gauge per task of a task sequence, labelled task="<name>".
  static absl::StatusOr<std::unique_ptr<RunRecorder>> Open(
      const std::string& output_dir, RunState* state, prometheus::Gauge* eval_return,
      prometheus::Family<prometheus::Gauge>* task_eval_return = nullptr);
  ~RunRecorder();

  // What the learner knows beyond the RunState.
  struct Extra {
    int64_t replay_size = 0;
    double loss = 0;
    double penalty = 0;  // EWC penalty of the latest update (0 without)
  };
  void WriteProgressRow(const Extra& extra);
  // Logs and writes every evaluation completed since the last call.
  void WriteEvaluationRows();
  // The budget is spent: asks the evaluation actor for a final evaluation and waits for it
  // (at most `timeout`, or until `stop`), then records it.
  void FinalEvaluation(absl::Duration timeout, const std::atomic<bool>& stop);

 private:
  RunRecorder(RunState* state, prometheus::Gauge* eval_return,
              prometheus::Family<prometheus::Gauge>* task_eval_return)
      : state_(state), eval_return_(eval_return), task_eval_return_(task_eval_return) {}

  void WriteEvaluationRow(int64_t index, const v1::ReturnSummary& summary, int task,
                          const std::string& task_name);

  RunState* const state_;
  prometheus::Gauge* const eval_return_;
  prometheus::Family<prometheus::Gauge>* const task_eval_return_;
  std::FILE* progress_ = nullptr;
  std::FILE* evaluations_ = nullptr;
};

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_RUN_RECORDER_H_
