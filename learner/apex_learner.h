#ifndef ENGRAM_LEARNER_APEX_LEARNER_H_
#define ENGRAM_LEARNER_APEX_LEARNER_H_

// The distributed learner's training loop, Ape-X's (Horgan et al. 2018) around learner/core's
// DqnLearner, and the same loop for meta-RL around MetaRlLearner (IMPALA-style: chunks from a
// sample-once FIFO queue, no priorities):
//
//   replay shards --ShardedSampler--> prefetch thread --queue--> Update (this thread)
//        ^                                                          |
//        +------------- priority thread <-- new priorities ---------+
//                                         publish weights every N updates -> ParameterService
//
// The prefetch thread turns merged batches into tensors (pinned when training on CUDA)
// ahead of time, so an update never waits on the network when data is ready. New
// priorities go back to the owning shards from their own thread. Weights are published
// to the in-process ParameterService (serialized once, pulled by every actor). The run's
// frames (from actors' reports) drive the importance-beta schedule, the evaluation
// schedule and the budget. Checkpoints (model, optimizer, counters) are written every
// checkpoint.interval and when the run ends or the process is asked to stop.
//
// Task sequences (apex_dqn or ewc with task_sequence): when the run's frames pass the end of
// a task's phase, the loop stops sampling, takes ewc.fisher_minibatches minibatches of the
// finished task's table (its actors still feed it), creates the next task's table
// ("<table>_t<k>") on every shard, tells the actors to switch (ActorReportResponse.
// task_index), consolidates (EWC: Fisher, anchor, penalty from then on), asks for an
// evaluation of every task seen so far, and resumes on the new table; the finished table is
// dropped 15 s later, once the actors have moved. The phase and the EWC terms are part of
// checkpoints (state.textproto's task_phase, ewc.pt).

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/server.h"
#include "engram/v1/experiment.pb.h"
#include "learner/parameter_service.h"
#include "learner/run_state.h"
#include "prometheus/registry.h"

namespace engram::learner {

struct ApexLearnerOptions {
  v1::ExperimentSpec spec;  // resolved, with apex_dqn or meta_rl
  // Every replay shard, in shard order.
  std::vector<std::string> replay_addresses;
  ChannelOptions channel;
  // "auto", "cpu", "cuda", "cuda:N"; empty means the spec's learner_device.
  std::string device;
  // Updates between weight publications, >= 1.
  int publish_every_updates = 20;
  // Merged batches converted ahead of the training step, >= 1.
  int prefetch_batches = 2;
  // Where progress.csv and evaluations.csv go (created); empty: no CSV.
  std::string output_dir;
  absl::Duration csv_interval = absl::Seconds(10);
  absl::Duration log_interval = absl::Seconds(10);
  // At the end of the budget: how long to wait for the final evaluation.
  absl::Duration final_evaluation_timeout = absl::Minutes(5);
};

// A checkpoint found on disk.
struct FoundCheckpoint {
  std::string path;  // the checkpoint directory
  RunCounters counters;
};

// The checkpoint to resume from: checkpoint.restore_from when set (it must exist), else
// the newest in checkpoint.directory, else none. INVALID_ARGUMENT when it belongs to a
// different algorithm or network than `resolved` describes; DATA_LOSS for unreadable
// state.
absl::StatusOr<std::optional<FoundCheckpoint>> FindCheckpoint(const v1::ExperimentSpec& resolved);

class ApexLearner {
 public:
  // Builds the networks on the device, restores `restore` if given, creates the replay
  // table on every shard (a fresh run first drops a same-named table an earlier run left;
  // a restored one keeps it), and publishes the first weights. `state` and
  // `parameters` must outlive the learner.
  static absl::StatusOr<std::unique_ptr<ApexLearner>> Create(
      ApexLearnerOptions options, RunState* state, ParameterServiceImpl* parameters,
      const std::optional<FoundCheckpoint>& restore, prometheus::Registry* registry);
  ~ApexLearner();

  // Trains until the budget is spent (then: training actors stopped, a final evaluation,
  // a final checkpoint, the run SUCCEEDED, every actor stopped; returns OK), or `stop`
  // becomes true (a checkpoint is written; actors are not stopped, so that a restarted
  // learner picks the run up; returns OK), or an error (run FAILED).
  absl::Status Run(const std::atomic<bool>& stop);

  // Deletes the run's table on every replay shard (best effort, logged): for a run that
  // has ended for good, so that its replay memory is freed for the next experiment.
  void DropReplayTables();

  // The device updates run on.
  std::string device() const;

 private:
  class Impl;
  explicit ApexLearner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_APEX_LEARNER_H_
