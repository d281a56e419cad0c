#ifndef ENGRAM_ACTOR_REPORTER_H_
#define ENGRAM_ACTOR_REPORTER_H_

// An actor's progress reports to its learner (engram.v1.ActorService.Report): frames,
// finished episodes, the policy version it acts with, and evaluation results; and the
// learner's answers (stop, which evaluation to run).
//
//   auto reporter = ProgressReporter::Create(learner_channel, {.experiment_id = "x",
//                                            .actor_index = 3}).value();
//   reporter->AddFrames(16);
//   reporter->AddEpisode(result);
//   if (reporter->last_response().stop()) ...
//   reporter->Flush(absl::Now() + absl::Seconds(10));   // before exiting

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/v1/actor.grpc.pb.h"
#include "grpcpp/channel.h"

namespace engram::actor {

// A random non-zero incarnation (what reports carry when ReporterOptions::incarnation is 0).
uint64_t DrawIncarnation();

struct ReporterOptions {
  std::string experiment_id;  // required
  int actor_index = 0;        // >= 0
  v1::ActorRole role = v1::ACTOR_ROLE_TRAINING;
  // Time between reports (a report is sent even when there is nothing new: its answer
  // tells the actor what to do).
  absl::Duration interval = absl::Seconds(1);
  // Deadline of each Report RPC.
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Retry backoff after a failed report: min(max, initial * 2^(n-1)), jittered by a
  // factor in [0.5, 1).
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // The incarnation the reports carry; 0 draws a random one. A pool actor passes the one it
  // was assigned its slot with (a fresh one per assignment: sequences restart at 1).
  uint64_t incarnation = 0;
};

// Sends reports from a background thread. Exactly-once delivery: a report is numbered
// (incarnation, sequence) and resent unchanged until the learner acknowledges it, while
// new frames and episodes accumulate for the next one; the learner applies each number
// once. Thread-safe. The destructor stops the thread; what was not acknowledged is lost
// (call Flush first).
class ProgressReporter {
 public:
  struct Stats {
    int64_t reports_acknowledged = 0;
    int64_t failures = 0;  // failed Report RPCs (each retried)
    absl::Status last_error;
  };

  // INVALID_ARGUMENT names a bad option. Starts the thread; the first report goes out at
  // once.
  static absl::StatusOr<std::unique_ptr<ProgressReporter>> Create(
      std::shared_ptr<grpc::ChannelInterface> channel, ReporterOptions options);
  ~ProgressReporter();

  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  void AddFrames(int64_t frames) ABSL_LOCKS_EXCLUDED(mu_);
  void AddEpisode(v1::EpisodeResult episode) ABSL_LOCKS_EXCLUDED(mu_);
  void SetPolicyVersion(int64_t version) ABSL_LOCKS_EXCLUDED(mu_);
  // Evaluation actors: every episode of evaluation `index`, reported together as complete.
  void CompleteEvaluation(int64_t index, std::vector<v1::EpisodeResult> episodes)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Sends what has accumulated now and blocks until the learner acknowledged it (and
  // everything before it), or `deadline` (DEADLINE_EXCEEDED with the last RPC error).
  absl::Status Flush(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // The learner's latest answer; default (all zero) before the first.
  v1::ActorReportResponse last_response() const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the learner's latest answer says the run is over. Lock-free: the actor polls
  // it every step.
  bool stop_requested() const { return stop_requested_.load(std::memory_order_relaxed); }
  // Whether at least one report was acknowledged.
  bool connected() const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until the latest answer changes from `seen` (compared by value) or `timeout`
  // passes; returns the latest answer either way.
  v1::ActorReportResponse WaitForResponseChange(const v1::ActorReportResponse& seen,
                                                absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  ProgressReporter(std::shared_ptr<grpc::ChannelInterface> channel, ReporterOptions options);
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // Moves what accumulated into a new numbered report.
  void BuildPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ReporterOptions options_;
  const std::unique_ptr<v1::ActorService::Stub> stub_;
  const uint64_t incarnation_;

  mutable absl::Mutex mu_;
  v1::ActorReportRequest accumulated_ ABSL_GUARDED_BY(mu_);  // not yet in a report
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  v1::ActorReportRequest pending_ ABSL_GUARDED_BY(mu_);  // sent, not acknowledged
  int64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t acknowledged_ ABSL_GUARDED_BY(mu_) = 0;  // highest acknowledged sequence
  int64_t flush_target_ ABSL_GUARDED_BY(mu_) = 0;  // a report up to this must be sent now
  int64_t policy_version_ ABSL_GUARDED_BY(mu_) = 0;
  v1::ActorReportResponse response_ ABSL_GUARDED_BY(mu_);
  int failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stop_requested_{false};
  std::thread thread_;
};

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_REPORTER_H_
