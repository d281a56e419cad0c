#include "learner/run_state.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "learner/experiment_spec.h"

namespace engram::learner {
namespace {

constexpr absl::Duration kRateWindow = absl::Seconds(60);
constexpr size_t kTrainReturnWindow = 100;

google::protobuf::Timestamp ToProto(absl::Time time) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

}  // namespace

RunState::RunState(v1::ExperimentSpec resolved, const RunCounters& restored)
    : spec_(std::move(resolved)), started_(absl::Now()) {
  counters_ = restored;
  if (counters_.next_evaluation_frames == 0 && spec_.evaluation().every_frames() > 0) {
    counters_.next_evaluation_frames = spec_.evaluation().every_frames();
  }
  evaluations_completed_ = restored.evaluations_requested;
  evaluation_requested_frames_ = restored.frames;
  NoteEvaluationRequestLocked();
  SnapshotLocked(started_);
}

int RunState::CurrentTaskLocked() const {
  if (!spec_.has_task_sequence()) return 0;
  return counters_.task_phase % spec_.task_sequence().tasks_size();
}

void RunState::NoteEvaluationRequestLocked() {
  evaluation_task_ = CurrentTaskLocked();
  evaluation_tasks_ = spec_.has_task_sequence()
                          ? std::min(counters_.task_phase + 1, spec_.task_sequence().tasks_size())
                          : 1;
}

void RunState::SetTaskPhase(int phase) {
  absl::MutexLock lock(&mu_);
  counters_.task_phase = std::max(counters_.task_phase, phase);
}

int RunState::task_phase() const {
  absl::MutexLock lock(&mu_);
  return counters_.task_phase;
}

absl::StatusOr<v1::ActorReportResponse> RunState::ApplyReport(
    const v1::ActorReportRequest& request) {
  if (request.experiment_id() != spec_.id()) {
    return absl::FailedPreconditionError(absl::StrCat("experiment_id: this learner runs \"",
                                                      spec_.id(), "\", got \"",
                                                      request.experiment_id(), "\""));
  }
  if (request.role() != v1::ACTOR_ROLE_TRAINING && request.role() != v1::ACTOR_ROLE_EVALUATION) {
    return absl::InvalidArgumentError("role: must be ACTOR_ROLE_TRAINING or ACTOR_ROLE_EVALUATION");
  }
  if (request.incarnation() == 0) return absl::InvalidArgumentError("incarnation: must be != 0");
  if (request.sequence() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence: must be >= 1, got ", request.sequence()));
  }
  if (request.frames() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("frames: must be >= 0, got ", request.frames()));
  }
  if (request.role() == v1::ACTOR_ROLE_TRAINING &&
      (request.actor_index() < 0 || request.actor_index() >= spec_.actors().num_actors())) {
    return absl::InvalidArgumentError(absl::StrCat("actor_index: must be in [0, ",
                                                   spec_.actors().num_actors(), "), got ",
                                                   request.actor_index()));
  }
  const int tasks = spec_.has_task_sequence() ? spec_.task_sequence().tasks_size() : 1;
  for (int i = 0; i < request.episodes_size(); ++i) {
    const v1::EpisodeResult& episode = request.episodes(i);
    if (!std::isfinite(episode.episode_return()) || episode.length() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("episodes[", i, "]: return must be finite and length >= 1, got ",
                       episode.episode_return(), " and ", episode.length()));
    }
    if (episode.task_index() < 0 || episode.task_index() >= tasks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "episodes[", i, "].task_index: must be in [0, ", tasks, "), got ", episode.task_index()));
    }
  }
  absl::MutexLock lock(&mu_);
  auto [it, first_seen] = incarnations_.try_emplace(request.incarnation());
  Incarnation& incarnation = it->second;
  // An actor this process has not heard from may be mid-stream: this learner was restarted
  // from a checkpoint (which keeps no sequence numbers) while the actor ran on.
  if (first_seen) incarnation.applied = request.sequence() - 1;
  if (request.sequence() <= incarnation.applied) return ResponseLocked(request);  // a resend
  if (request.sequence() != incarnation.applied + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence: expected ", incarnation.applied + 1, ", got ", request.sequence()));
  }
  incarnation.applied = request.sequence();
  if (request.role() == v1::ACTOR_ROLE_TRAINING) {
    counters_.frames += request.frames();
    for (const v1::EpisodeResult& episode : request.episodes()) {
      train_returns_.push_back(episode.episode_return());
      if (train_returns_.size() > kTrainReturnWindow) train_returns_.pop_front();
      ++counters_.episodes;
    }
    if (request.episodes_size() > 0) train_window_end_frames_ = counters_.frames;
    const int64_t every = spec_.evaluation().every_frames();
    if (every > 0 && counters_.next_evaluation_frames > 0 &&
        counters_.frames >= counters_.next_evaluation_frames) {
      ++counters_.evaluations_requested;
      evaluation_requested_frames_ = counters_.frames;
      NoteEvaluationRequestLocked();
      // Skip evaluation points the run passed while one was due: the newest wins.
      while (counters_.next_evaluation_frames <= counters_.frames) {
        counters_.next_evaluation_frames += every;
      }
    }
  } else {
    evaluation_actor_seen_ = true;
    if (request.evaluation_complete() && request.evaluation_index() > evaluations_completed_ &&
        request.episodes_size() > 0) {
      const int64_t at_frames = request.evaluation_index() == counters_.evaluations_requested
                                    ? evaluation_requested_frames_
                                    : counters_.frames;
      // Per task (one task without a sequence), in task order.
      std::map<int, std::vector<double>> returns;
      for (const v1::EpisodeResult& episode : request.episodes()) {
        returns[episode.task_index()].push_back(episode.episode_return());
      }
      auto summarize = [at_frames](const std::vector<double>& values) {
        v1::ReturnSummary summary;
        double sum = 0, lo = std::numeric_limits<double>::infinity(), hi = -lo;
        for (double r : values) {
          sum += r;
          lo = std::min(lo, r);
          hi = std::max(hi, r);
        }
        summary.set_episodes(static_cast<int32_t>(values.size()));
        summary.set_mean(sum / values.size());
        summary.set_min(lo);
        summary.set_max(hi);
        summary.set_at_frames(at_frames);
        return summary;
      };
      new_task_returns_.clear();
      if (spec_.has_task_sequence()) {
        for (const auto& [task, values] : returns) {
          v1::TaskReturn entry;
          entry.set_task_index(task);
          entry.set_task(spec_.task_sequence().tasks(task).name());
          *entry.mutable_eval_return() = summarize(values);
          new_task_returns_.push_back(entry);
          auto& latest = counters_.task_eval_returns;
          auto it = std::find_if(latest.begin(), latest.end(),
                                 [task = task](const auto& t) { return t.task_index() >= task; });
          if (it != latest.end() && it->task_index() == task) {
            *it = entry;
          } else {
            latest.insert(it, entry);
          }
        }
      }
      const auto current = returns.find(evaluation_task_);
      if (current != returns.end()) {
        counters_.eval_return = summarize(current->second);
      } else {
        std::vector<double> all;
        for (const auto& [task, values] : returns)
          all.insert(all.end(), values.begin(), values.end());
        counters_.eval_return = summarize(all);
      }
      evaluations_completed_ = request.evaluation_index();
      new_evaluation_ = true;
    }
  }
  SnapshotLocked(absl::Now());
  return ResponseLocked(request);
}

v1::ActorReportResponse RunState::ResponseLocked(const v1::ActorReportRequest& request) const {
  v1::ActorReportResponse response;
  const bool training = request.role() == v1::ACTOR_ROLE_TRAINING;
  response.set_stop(stop_all_ || (training && stop_training_));
  if (!training && counters_.evaluations_requested > evaluations_completed_) {
    response.set_evaluation_index(counters_.evaluations_requested);
  }
  response.set_frames(counters_.frames);
  response.set_parameter_version(counters_.parameter_version);
  response.set_task_index(CurrentTaskLocked());
  response.set_evaluation_tasks(evaluation_tasks_);
  return response;
}

void RunState::SetUpdates(int64_t updates) {
  absl::MutexLock lock(&mu_);
  counters_.updates = updates;
}

void RunState::SetParameterVersion(int64_t version) {
  absl::MutexLock lock(&mu_);
  counters_.parameter_version = version;
}

void RunState::RecordSampled(int64_t items, double mean_lag, int64_t max_lag) {
  absl::MutexLock lock(&mu_);
  sampled_total_ += items;
  const absl::Time now = absl::Now();
  lags_.emplace_back(now, mean_lag, max_lag);
  while (!lags_.empty() && std::get<0>(lags_.front()) < now - kRateWindow) lags_.pop_front();
}

void RunState::RecordReplay(int64_t inserts_total, int64_t size) {
  absl::MutexLock lock(&mu_);
  inserted_total_ = inserts_total;
  replay_size_ = size;
}

int64_t RunState::RequestEvaluation() {
  absl::MutexLock lock(&mu_);
  ++counters_.evaluations_requested;
  evaluation_requested_frames_ = counters_.frames;
  NoteEvaluationRequestLocked();
  return counters_.evaluations_requested;
}

int64_t RunState::evaluations_completed() const {
  absl::MutexLock lock(&mu_);
  return evaluations_completed_;
}

bool RunState::has_evaluation_actor() const {
  absl::MutexLock lock(&mu_);
  return evaluation_actor_seen_;
}

void RunState::StopTraining() {
  absl::MutexLock lock(&mu_);
  stop_training_ = true;
}

void RunState::Finish(v1::ExperimentState state, std::string error) {
  absl::MutexLock lock(&mu_);
  stop_training_ = true;
  stop_all_ = true;
  state_ = state;
  error_ = std::move(error);
  end_time_ = absl::Now();
}

void RunState::SetLastCheckpoint(std::string path) {
  absl::MutexLock lock(&mu_);
  last_checkpoint_ = std::move(path);
}

std::optional<std::string> RunState::BudgetSpent() const {
  absl::MutexLock lock(&mu_);
  const v1::BudgetSpec& budget = spec_.budget();
  if (budget.total_frames() > 0 && counters_.frames >= budget.total_frames()) {
    return absl::StrCat(budget.total_frames(), " frames");
  }
  if (spec_.has_task_sequence()) {
    const TaskPhase phase = TaskPhaseAt(spec_, counters_.frames);
    if (phase.sequence_done) {
      return absl::StrCat("the task sequence's ", phase.end_frames, " frames");
    }
  }
  if (budget.has_max_wall_time()) {
    const absl::Duration limit = absl::Seconds(budget.max_wall_time().seconds()) +
                                 absl::Nanoseconds(budget.max_wall_time().nanos());
    if (limit > absl::ZeroDuration() && counters_.elapsed + (absl::Now() - started_) >= limit) {
      return absl::StrCat(absl::FormatDuration(limit), " of wall time");
    }
  }
  return std::nullopt;
}

int64_t RunState::frames() const {
  absl::MutexLock lock(&mu_);
  return counters_.frames;
}

absl::Duration RunState::elapsed() const {
  absl::MutexLock lock(&mu_);
  return counters_.elapsed + (absl::Now() - started_);
}

RunCounters RunState::counters() const {
  absl::MutexLock lock(&mu_);
  RunCounters counters = counters_;
  counters.elapsed = counters_.elapsed + (absl::Now() - started_);
  return counters;
}

void RunState::SnapshotLocked(absl::Time now) const {
  if (!samples_.empty() && now - samples_.back().time < absl::Seconds(1)) return;
  samples_.push_back({now, counters_.frames, counters_.updates, sampled_total_, inserted_total_});
  while (samples_.size() > 2 && samples_[1].time <= now - kRateWindow) samples_.pop_front();
}

v1::ExperimentStatus RunState::Status() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  SnapshotLocked(now);
  v1::ExperimentStatus status;
  status.set_id(spec_.id());
  status.set_name(spec_.name());
  status.set_state(state_);
  *status.mutable_spec() = spec_;
  status.set_frames(counters_.frames);
  status.set_learner_updates(counters_.updates);
  status.set_episodes(counters_.episodes);
  if (!train_returns_.empty()) {
    v1::ReturnSummary* train = status.mutable_train_return();
    double sum = 0, lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (double r : train_returns_) {
      sum += r;
      lo = std::min(lo, r);
      hi = std::max(hi, r);
    }
    train->set_episodes(static_cast<int32_t>(train_returns_.size()));
    train->set_mean(sum / train_returns_.size());
    train->set_min(lo);
    train->set_max(hi);
    train->set_at_frames(train_window_end_frames_);
  }
  if (counters_.eval_return.episodes() > 0) *status.mutable_eval_return() = counters_.eval_return;
  status.set_task_index(CurrentTaskLocked());
  for (const v1::TaskReturn& task : counters_.task_eval_returns)
    *status.add_task_eval_returns() = task;
  // Rates between the oldest snapshot of the window and now.
  const Sample& first = samples_.front();
  const double seconds = absl::ToDoubleSeconds(now - first.time);
  if (seconds >= 0.5) {
    v1::Throughput* rates = status.mutable_throughput();
    rates->set_frames_per_second((counters_.frames - first.frames) / seconds);
    rates->set_learner_updates_per_second((counters_.updates - first.updates) / seconds);
    rates->set_sampled_items_per_second((sampled_total_ - first.sampled) / seconds);
    rates->set_inserted_items_per_second((inserted_total_ - first.inserted) / seconds);
  }
  if (!lags_.empty()) {
    double sum = 0;
    int64_t max = 0;
    for (const auto& [time, mean, hi] : lags_) {
      sum += mean;
      max = std::max(max, hi);
    }
    status.mutable_policy_lag()->set_mean_versions(sum / lags_.size());
    status.mutable_policy_lag()->set_max_versions(max);
  }
  status.set_parameter_version(counters_.parameter_version);
  status.set_error_message(error_);
  status.set_last_checkpoint(last_checkpoint_);
  *status.mutable_start_time() = ToProto(started_ - counters_.elapsed);
  *status.mutable_create_time() = status.start_time();
  if (end_time_ != absl::InfinitePast()) *status.mutable_end_time() = ToProto(end_time_);
  *status.mutable_update_time() = ToProto(now);
  return status;
}

bool RunState::training_stopped() const {
  absl::MutexLock lock(&mu_);
  return stop_training_;
}

std::optional<CompletedEvaluation> RunState::TakeNewEvaluation() {
  absl::MutexLock lock(&mu_);
  if (!new_evaluation_) return std::nullopt;
  new_evaluation_ = false;
  return CompletedEvaluation{evaluations_completed_, counters_.eval_return, new_task_returns_};
}

}  // namespace engram::learner
