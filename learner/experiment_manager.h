#ifndef ENGRAM_LEARNER_EXPERIMENT_MANAGER_H_
#define ENGRAM_LEARNER_EXPERIMENT_MANAGER_H_

// The learner's experiments: the queue behind ExperimentService (Submit, List, Get, Cancel,
// Watch, results) and the actor pool behind ActorService (assignments and reports).
//
// A learner runs one experiment at a time, in submission order. Its main loop (the runner)
// takes the next queued experiment with Next(), trains it (ApexLearner), and reports the
// end with Ended(); meanwhile RPC threads submit, cancel and watch, and actors ask for work:
//
//   Submit -> QUEUED --Next/Started--> RUNNING --Ended--> SUCCEEDED | FAILED | CANCELLED
//                \--Cancel--> CANCELLED          \--Cancel: cancel_requested, then CANCELLED
//
// Every experiment has a directory <runs_dir>/<id> with progress.csv, evaluations.csv, its
// checkpoints (a relative checkpoint.directory is taken relative to it) and
// experiment.textproto, the last status with the resolved spec, rewritten at each change of
// state. A learner restarted on the same runs_dir reloads them: experiments that were
// RUNNING or QUEUED are queued again (the running one first, resuming from its checkpoint).
//
// Actors in pool mode call Assign(): while an experiment runs, each training actor gets a
// free slot (actor index) and keeps it while it reports; a slot whose actor has been silent
// for `actor_lease` goes to the next actor that asks. One evaluation slot per experiment.
//
// Thread-safe. Blocking calls (Next, WaitForChange) return on Shutdown().

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/client_limits.h"
#include "engram/v1/actor.grpc.pb.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "learner/run_state.h"
#include "prometheus/registry.h"

namespace engram::learner {

struct ExperimentManagerOptions {
  // The cluster's replay shards, in shard order. A submitted spec without
  // replay.num_shards gets this many; one with a different number is INVALID_ARGUMENT.
  std::vector<std::string> replay_addresses;
  // Parent of every experiment's directory.
  std::string runs_dir = "runs";
  // Reload experiments persisted under runs_dir at creation (server mode).
  bool reload = true;
  // Experiments waiting at most (RESOURCE_EXHAUSTED beyond).
  int max_queued = 100;
  // A training slot whose actor has not reported for this long is free again.
  absl::Duration actor_lease = absl::Seconds(30);
  // What Assign tells an actor to wait when there is no work.
  absl::Duration assignment_retry = absl::Seconds(1);
  // Whether this learner can run a resolved spec (algorithm, device); the error is
  // returned by Submit as is. Null accepts everything.
  std::function<absl::Status(const v1::ExperimentSpec&)> supports;
  // engram_experiments{state} and engram_actors_assigned{role}; may be null.
  prometheus::Registry* registry = nullptr;
};

class ExperimentManager {
 public:
  // UNAVAILABLE / DATA_LOSS when runs_dir cannot be created or a persisted experiment
  // cannot be read (the file is named).
  static absl::StatusOr<std::unique_ptr<ExperimentManager>> Create(
      ExperimentManagerOptions options);
  ~ExperimentManager();

  // ---- ExperimentService (see experiment.proto for the contract) ----------------------
  // `dir`: the experiment's directory; empty means <runs_dir>/<id>.
  absl::StatusOr<v1::SubmitExperimentResponse> Submit(const v1::SubmitExperimentRequest& request,
                                                      absl::string_view dir = "")
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ListExperimentsResponse> List(const v1::ListExperimentsRequest& request) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // With the resolved spec.
  absl::StatusOr<v1::ExperimentStatus> Get(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::ExperimentStatus> Cancel(absl::string_view id, absl::string_view reason)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until the experiment's state or cancel_requested differs from `seen`'s, until
  // `deadline`, or Shutdown (UNAVAILABLE). NOT_FOUND for an unknown id.
  absl::Status WaitForChange(absl::string_view id, const v1::ExperimentStatus& seen,
                             absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);
  // Result files that exist now, and the path of one of them.
  absl::StatusOr<std::vector<v1::ResultFile>> ListResults(absl::string_view id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> ResultPath(absl::string_view id, absl::string_view name) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- ActorService ---------------------------------------------------------------------
  absl::StatusOr<v1::GetAssignmentResponse> Assign(const v1::GetAssignmentRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Applies the report to its experiment's RunState. A known experiment that is not running
  // (queued, or ended in an earlier learner process) answers stop; an unknown id is
  // FAILED_PRECONDITION.
  absl::StatusOr<v1::ActorReportResponse> Report(const v1::ActorReportRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- the runner ---------------------------------------------------------------------
  struct Run {
    v1::ExperimentSpec spec;  // resolved
    std::string dir;          // the experiment's directory (created)
  };
  // Waits for the next queued experiment and returns it (still QUEUED until Started);
  // nullopt once `stop` is true or after Shutdown.
  std::optional<Run> Next(const std::atomic<bool>& stop) ABSL_LOCKS_EXCLUDED(mu_);
  // The experiment returned by Next runs, with `state`, from now on. False (and nothing
  // changes) when it was cancelled since Next: the runner skips it.
  bool Started(const std::string& id, std::shared_ptr<RunState> state) ABSL_LOCKS_EXCLUDED(mu_);
  // The run ended. If its RunState is terminal, the experiment takes that state; if Cancel
  // asked for the stop, it becomes CANCELLED (actors are told to stop); otherwise (the
  // process is stopping) it stays RUNNING on disk, to resume after a restart. A non-OK
  // `status` makes it FAILED with that error.
  void Ended(const std::string& id, const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  // True while Cancel asks the running experiment to stop, or after Shutdown: the runner
  // passes it to the training loop as its stop flag.
  const std::atomic<bool>& stop_running() const { return stop_running_; }

  // Submit answers UNAVAILABLE from now on; Next, WaitForChange and the running
  // experiment's training loop (stop_running) return. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Record {
    v1::ExperimentStatus status;  // state, times, spec; counters of terminal runs
    std::string dir;
    std::shared_ptr<RunState> state;  // from Started on
    std::string cancel_reason;
  };
  struct Slot {
    uint64_t incarnation = 0;
    std::string actor_name;
    absl::Time last_seen;
  };

  explicit ExperimentManager(ExperimentManagerOptions options);
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);
  v1::ExperimentStatus StatusLocked(const Record& record, bool with_spec) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistLocked(const Record& record) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStateLocked(Record& record, v1::ExperimentState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Record* FindLocked(absl::string_view id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ExperimentManagerOptions options_;
  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;  // any record's state, the queue, shutdown
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> queue_ ABSL_GUARDED_BY(mu_);    // QUEUED ids, next first
  std::string running_ ABSL_GUARDED_BY(mu_);               // id, or empty
  std::vector<Slot> training_slots_ ABSL_GUARDED_BY(mu_);  // of the running experiment
  Slot evaluation_slot_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> stop_running_{false};
  int64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;  // for generated ids
  std::map<v1::ExperimentState, prometheus::Gauge*> state_gauges_;
  prometheus::Gauge* training_assigned_ = nullptr;
  prometheus::Gauge* evaluation_assigned_ = nullptr;
};

// ExperimentService over an ExperimentManager.
class ExperimentServiceImpl final : public v1::ExperimentService::Service {
 public:
  // Submit and Cancel need a `submit` token when `authorizer` has tokens (common/auth.h).
  // Submits count against `client_limiter` (common/client_limits.h) when it is not null.
  explicit ExperimentServiceImpl(
      ExperimentManager* manager,
      std::shared_ptr<const Authorizer> authorizer = std::make_shared<const Authorizer>(),
      std::shared_ptr<ClientRateLimiter> client_limiter = nullptr)
      : manager_(manager),
        authorizer_(std::move(authorizer)),
        client_limiter_(std::move(client_limiter)) {}
  grpc::Status Submit(grpc::ServerContext* context, const v1::SubmitExperimentRequest* request,
                      v1::SubmitExperimentResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListExperimentsRequest* request,
                    v1::ListExperimentsResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetExperimentRequest* request,
                   v1::ExperimentStatus* response) override;
  grpc::Status Cancel(grpc::ServerContext* context, const v1::CancelExperimentRequest* request,
                      v1::ExperimentStatus* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchExperimentRequest* request,
                     grpc::ServerWriter<v1::ExperimentStatus>* writer) override;
  grpc::Status ListResults(grpc::ServerContext* context, const v1::ListResultsRequest* request,
                           v1::ListResultsResponse* response) override;
  grpc::Status ReadResult(grpc::ServerContext* context, const v1::ReadResultRequest* request,
                          grpc::ServerWriter<v1::ResultChunk>* writer) override;

 private:
  ExperimentManager* manager_;
  std::shared_ptr<const Authorizer> authorizer_;
  std::shared_ptr<ClientRateLimiter> client_limiter_;
};

// ActorService over an ExperimentManager.
class ActorServiceImpl final : public v1::ActorService::Service {
 public:
  explicit ActorServiceImpl(ExperimentManager* manager) : manager_(manager) {}
  grpc::Status GetAssignment(grpc::ServerContext* context, const v1::GetAssignmentRequest* request,
                             v1::GetAssignmentResponse* response) override;
  grpc::Status Report(grpc::ServerContext* context, const v1::ActorReportRequest* request,
                      v1::ActorReportResponse* response) override;

 private:
  ExperimentManager* manager_;
};

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_EXPERIMENT_MANAGER_H_
