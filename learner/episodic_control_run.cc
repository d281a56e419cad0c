#include "learner/episodic_control_run.h"

#include <memory>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "learner/run_recorder.h"

namespace engram::learner {
namespace {

std::string Mean(const v1::ReturnSummary& r) {
  return r.episodes() > 0 ? absl::StrFormat("%.2f", r.mean()) : std::string("-");
}

}  // namespace

absl::Status RunEpisodicControl(const EpisodicControlRunOptions& options, RunState* state,
                                const std::atomic<bool>& stop) {
  prometheus::Gauge* frames = nullptr;
  prometheus::Gauge* train_return = nullptr;
  prometheus::Gauge* eval_return = nullptr;
  if (options.registry != nullptr) {
    frames = &AddGauge(*options.registry, "learner_frames",
                       "Training frames of the run, all actors (from their reports).")
                  .Add({});
    train_return = &AddGauge(*options.registry, "learner_train_return",
                             "Mean return of the last 100 training episodes.")
                        .Add({});
    eval_return =
        &AddGauge(*options.registry, "learner_eval_return", "Mean return of the latest evaluation.")
             .Add({});
  }
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<RunRecorder> recorder,
                          RunRecorder::Open(options.output_dir, state, eval_return));
  Log("episodic control: the actors act on and write to the episodic store; keeping the books");
  absl::Time next_log = absl::Now() + options.log_interval;
  absl::Time next_csv = absl::Now() + options.csv_interval;
  std::optional<std::string> spent;
  while (!stop.load()) {
    if ((spent = state->BudgetSpent())) break;
    absl::SleepFor(absl::Milliseconds(200));
    recorder->WriteEvaluationRows();
    const absl::Time now = absl::Now();
    if (now >= next_csv) {
      recorder->WriteProgressRow({});
      next_csv = now + options.csv_interval;
    }
    if (now >= next_log) {
      const v1::ExperimentStatus status = state->Status();
      if (frames != nullptr) frames->Set(static_cast<double>(status.frames()));
      if (train_return != nullptr && status.train_return().episodes() > 0) {
        train_return->Set(status.train_return().mean());
      }
      Log(absl::StrFormat("%d frames (%.0f/s), %d episodes, train return %s, eval return %s",
                          status.frames(), status.throughput().frames_per_second(),
                          status.episodes(), Mean(status.train_return()),
                          Mean(status.eval_return())));
      next_log = now + options.log_interval;
    }
  }
  if (!spent.has_value()) {
    recorder->WriteProgressRow({});
    return absl::OkStatus();
  }
  Log(absl::StrCat("budget reached (", *spent, "): stopping training actors"));
  state->StopTraining();
  recorder->FinalEvaluation(options.final_evaluation_timeout, stop);
  recorder->WriteProgressRow({});
  state->Finish(v1::EXPERIMENT_STATE_SUCCEEDED);
  const v1::ExperimentStatus status = state->Status();
  Log(absl::StrFormat("run %s finished: %d frames, %d episodes, train return %s, eval return %s",
                      status.id(), status.frames(), status.episodes(), Mean(status.train_return()),
                      Mean(status.eval_return())));
  return absl::OkStatus();
}

}  // namespace engram::learner
