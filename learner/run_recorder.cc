#include "learner/run_recorder.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/process.h"

namespace engram::learner {
namespace {

namespace fs = std::filesystem;

std::string CsvReturn(const v1::ReturnSummary& r) {
  return r.episodes() > 0 ? absl::StrFormat("%.4f", r.mean()) : std::string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunRecorder>> RunRecorder::Open(
    const std::string& output_dir, RunState* state, prometheus::Gauge* eval_return,
    prometheus::Family<prometheus::Gauge>* task_eval_return) {
  std::unique_ptr<RunRecorder> recorder(new RunRecorder(state, eval_return, task_eval_return));
  if (output_dir.empty()) return recorder;
  std::error_code error;
  fs::create_directories(output_dir, error);
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("output_dir: cannot create \"", output_dir, "\": ", error.message()));
  }
  auto open = [&](const char* name, const char* header) -> std::FILE* {
    const std::string path = (fs::path(output_dir) / name).string();
    const bool fresh = !fs::exists(path) || fs::file_size(path) == 0;
    std::FILE* file = std::fopen(path.c_str(), "a");
    if (file != nullptr && fresh) std::fputs(header, file);
    return file;
  };
  recorder->progress_ =
      open("progress.csv",
           "wall_time_s,frames,updates,episodes,train_return,eval_return,frames_per_s,"
           "updates_per_s,sampled_per_s,inserted_per_s,policy_lag,replay_size,loss,penalty\n");
  recorder->evaluations_ =
      open("evaluations.csv",
           "evaluation,wall_time_s,frames,updates,episodes,mean_return,min_return,max_return,"
           "task,task_name\n");
  if (recorder->progress_ == nullptr || recorder->evaluations_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("output_dir: cannot write CSV files in \"",
                                                   output_dir, "\": ", std::strerror(errno)));
  }
  return recorder;
}

RunRecorder::~RunRecorder() {
  if (progress_ != nullptr) std::fclose(progress_);
  if (evaluations_ != nullptr) std::fclose(evaluations_);
}

void RunRecorder::WriteProgressRow(const Extra& extra) {
  if (progress_ == nullptr) return;
  const v1::ExperimentStatus status = state_->Status();
  std::fprintf(progress_, "%.1f,%lld,%lld,%lld,%s,%s,%.1f,%.2f,%.1f,%.1f,%.2f,%lld,%.6g,%.6g\n",
               absl::ToDoubleSeconds(state_->elapsed()), static_cast<long long>(status.frames()),
               static_cast<long long>(status.learner_updates()),
               static_cast<long long>(status.episodes()), CsvReturn(status.train_return()).c_str(),
               CsvReturn(status.eval_return()).c_str(), status.throughput().frames_per_second(),
               status.throughput().learner_updates_per_second(),
               status.throughput().sampled_items_per_second(),
               status.throughput().inserted_items_per_second(), status.policy_lag().mean_versions(),
               static_cast<long long>(extra.replay_size), extra.loss, extra.penalty);
  std::fflush(progress_);
}

void RunRecorder::WriteEvaluationRows() {
  while (std::optional<CompletedEvaluation> evaluation = state_->TakeNewEvaluation()) {
    const v1::ReturnSummary& summary = evaluation->summary;
    if (eval_return_ != nullptr) eval_return_->Set(summary.mean());
    Log(absl::StrFormat(
        "evaluation %d at %d frames: mean return %.2f (min %.2f, max %.2f, %d episodes)",
        evaluation->index, summary.at_frames(), summary.mean(), summary.min(), summary.max(),
        summary.episodes()));
    if (evaluation->tasks.empty()) {
      WriteEvaluationRow(evaluation->index, summary, 0, "");
      continue;
    }
    std::string by_task;
    for (const v1::TaskReturn& task : evaluation->tasks) {
      absl::StrAppendFormat(&by_task, "%s%s %.2f", by_task.empty() ? "" : ", ", task.task(),
                            task.eval_return().mean());
      if (task_eval_return_ != nullptr) {
        task_eval_return_->Add({{"task", task.task()}}).Set(task.eval_return().mean());
      }
      WriteEvaluationRow(evaluation->index, task.eval_return(), task.task_index(), task.task());
    }
    Log(absl::StrCat("evaluation ", evaluation->index, " by task: ", by_task));
  }
}

void RunRecorder::WriteEvaluationRow(int64_t index, const v1::ReturnSummary& summary, int task,
                                     const std::string& task_name) {
  if (evaluations_ == nullptr) return;
  std::fprintf(evaluations_, "%lld,%.1f,%lld,%lld,%d,%.4f,%.4f,%.4f,%d,%s\n",
               static_cast<long long>(index), absl::ToDoubleSeconds(state_->elapsed()),
               static_cast<long long>(summary.at_frames()),
               static_cast<long long>(state_->counters().updates), summary.episodes(),
               summary.mean(), summary.min(), summary.max(), task, task_name.c_str());
  std::fflush(evaluations_);
}

void RunRecorder::FinalEvaluation(absl::Duration timeout, const std::atomic<bool>& stop) {
  if (!state_->has_evaluation_actor()) {
    Log("no evaluation actor reported; no final evaluation");
    return;
  }
  const int64_t index = state_->RequestEvaluation();
  Log(absl::StrCat("final evaluation ", index, " requested"));
  const absl::Time give_up = absl::Now() + timeout;
  while (state_->evaluations_completed() < index && absl::Now() < give_up && !stop.load()) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (state_->evaluations_completed() < index) {
    Log("the final evaluation did not complete; the run ends without it");
  }
  WriteEvaluationRows();
}

}  // namespace engram::learner
