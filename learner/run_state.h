#ifndef ENGRAM_LEARNER_RUN_STATE_H_
#define ENGRAM_LEARNER_RUN_STATE_H_

// The learner's view of one running experiment: counters the actors report (frames,
// episodes, returns), the learner's own (updates, parameter version, policy lag), the
// evaluation schedule, recent rates, and the lifecycle. It answers ActorService.Report and
// ExperimentService.Get for its experiment (through learner/experiment_manager.h), and is
// what checkpoints save.
//
// Thread-safe: RPC threads, the training loop and the monitor read and write it
// concurrently. Nothing here blocks beyond its mutex.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/v1/actor.grpc.pb.h"
#include "engram/v1/experiment.grpc.pb.h"

namespace engram::learner {

// What a checkpoint carries of a run besides the networks.
struct RunCounters {
  int64_t frames = 0;
  int64_t episodes = 0;
  int64_t updates = 0;
  int64_t parameter_version = 0;
  absl::Duration elapsed;  // RUNNING time before this process
  int64_t evaluations_requested = 0;
  int64_t next_evaluation_frames = 0;
  v1::ReturnSummary eval_return;
  // Task sequences: the phase the learner trains (TaskPhase::phase) and the latest
  // evaluation of each task evaluated so far, in task order.
  int task_phase = 0;
  std::vector<v1::TaskReturn> task_eval_returns;
};

// A completed evaluation (RunState::TakeNewEvaluation).
struct CompletedEvaluation {
  int64_t index = 0;
  // The episodes of the task that was current when the evaluation was requested (all of
  // them without a task sequence).
  v1::ReturnSummary summary;
  // Task sequences: one per task the evaluation covered, in task order; empty otherwise.
  std::vector<v1::TaskReturn> tasks;
};

class RunState {
 public:
  // `resolved`: the resolved spec. `restored`: counters from a checkpoint (zeros when
  // fresh). The run counts as RUNNING from construction.
  RunState(v1::ExperimentSpec resolved, const RunCounters& restored);

  // ---- actors -------------------------------------------------------------------------
  // Applies an actor's report once per (incarnation, sequence); see actor.proto.
  absl::StatusOr<v1::ActorReportResponse> ApplyReport(const v1::ActorReportRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- the learner --------------------------------------------------------------------
  void SetUpdates(int64_t updates) ABSL_LOCKS_EXCLUDED(mu_);
  void SetParameterVersion(int64_t version) ABSL_LOCKS_EXCLUDED(mu_);
  // Items of one sampled batch and their policy lag (learner version minus the version
  // that acted), mean and max over the batch.
  void RecordSampled(int64_t items, double mean_lag, int64_t max_lag) ABSL_LOCKS_EXCLUDED(mu_);
  // Replay totals over all shards (from ReplayService.Info).
  void RecordReplay(int64_t inserts_total, int64_t size) ABSL_LOCKS_EXCLUDED(mu_);
  // Task sequences: the learner trains phase `phase` now (TaskPhase; its task's replay table
  // exists). Training actors are told to act in its task, evaluations cover every task
  // seen so far. Phases only move forward.
  void SetTaskPhase(int phase) ABSL_LOCKS_EXCLUDED(mu_);
  int task_phase() const ABSL_LOCKS_EXCLUDED(mu_);
  // Asks evaluation actors for a new evaluation now; returns its index.
  int64_t RequestEvaluation() ABSL_LOCKS_EXCLUDED(mu_);
  // Evaluations completed so far (reported by an evaluation actor).
  int64_t evaluations_completed() const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether StopTraining or Finish was called (the budget is spent or the run is over).
  bool training_stopped() const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether any evaluation actor has reported since this process started.
  bool has_evaluation_actor() const ABSL_LOCKS_EXCLUDED(mu_);
  // Training actors are told to stop (the budget is spent); evaluation actors go on.
  void StopTraining() ABSL_LOCKS_EXCLUDED(mu_);
  // Every actor is told to stop; the run ends in `state` (a terminal state).
  void Finish(v1::ExperimentState state, std::string error = "") ABSL_LOCKS_EXCLUDED(mu_);
  void SetLastCheckpoint(std::string path) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether the budget (frames, wall time, or the task sequence's frames) is spent, and
  // which, e.g. "5000000 frames".
  std::optional<std::string> BudgetSpent() const ABSL_LOCKS_EXCLUDED(mu_);

  int64_t frames() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Duration elapsed() const ABSL_LOCKS_EXCLUDED(mu_);
  RunCounters counters() const ABSL_LOCKS_EXCLUDED(mu_);
  // Status with the resolved spec (ExperimentService.Get); rates over about a minute.
  v1::ExperimentStatus Status() const ABSL_LOCKS_EXCLUDED(mu_);
  // The latest completed evaluation, once per evaluation (for CSV rows); nullopt when none
  // completed since the last call.
  std::optional<CompletedEvaluation> TakeNewEvaluation() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Sample {
    absl::Time time;
    int64_t frames;
    int64_t updates;
    int64_t sampled;
    int64_t inserted;
  };
  struct Incarnation {
    int64_t applied = 0;  // highest applied sequence
  };

  // Appends a rate sample (at most one per second) and drops those older than the window.
  void SnapshotLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::ActorReportResponse ResponseLocked(const v1::ActorReportRequest& request) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records that an evaluation was requested now (the task it is for, the tasks it covers).
  void NoteEvaluationRequestLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int CurrentTaskLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const v1::ExperimentSpec spec_;
  const absl::Time started_;  // this process
  mutable absl::Mutex mu_;
  RunCounters counters_ ABSL_GUARDED_BY(mu_);
  v1::ExperimentState state_ ABSL_GUARDED_BY(mu_) = v1::EXPERIMENT_STATE_RUNNING;
  std::string error_ ABSL_GUARDED_BY(mu_);
  std::string last_checkpoint_ ABSL_GUARDED_BY(mu_);
  bool stop_training_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_all_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time end_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_map<uint64_t, Incarnation> incarnations_ ABSL_GUARDED_BY(mu_);
  std::deque<double> train_returns_ ABSL_GUARDED_BY(mu_);  // last 100
  int64_t train_window_end_frames_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evaluation_requested_frames_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evaluations_completed_ ABSL_GUARDED_BY(mu_) = 0;
  bool evaluation_actor_seen_ ABSL_GUARDED_BY(mu_) = false;
  bool new_evaluation_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::TaskReturn> new_task_returns_ ABSL_GUARDED_BY(mu_);  // of the new evaluation
  // The requested evaluation's task (whose return is eval_return) and how many tasks it
  // covers (0 .. evaluation_tasks_ - 1).
  int evaluation_task_ ABSL_GUARDED_BY(mu_) = 0;
  int evaluation_tasks_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t sampled_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t inserted_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t replay_size_ ABSL_GUARDED_BY(mu_) = 0;
  // Policy lag per sampled batch over the last minute: (time, mean, max).
  std::deque<std::tuple<absl::Time, double, int64_t>> lags_ ABSL_GUARDED_BY(mu_);
  mutable std::deque<Sample> samples_ ABSL_GUARDED_BY(mu_);  // one per second at most, last ~60 s
};

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_RUN_STATE_H_
