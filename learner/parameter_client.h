#ifndef ENGRAM_LEARNER_PARAMETER_CLIENT_H_
#define ENGRAM_LEARNER_PARAMETER_CLIENT_H_

// Client side of ParameterService.GetParameters: what an actor uses to hold the newest
// weights of its experiment.
//
//   auto client = ParameterClient::Create(channel, {.experiment_id = "breakout",
//                                                    .client_id = "actor-3"}).value();
//   // At start: block for the first weights.
//   ENGRAM_ASSIGN_OR_RETURN(auto params, client->WaitForVersionOtherThan(
//                                            0, absl::Now() + absl::Minutes(5)));
//   ...
//   // Every K steps: take whatever is newest (never blocks).
//   if (client->latest_version() != policy_version) Load(*client->Latest());
//
// The channel must accept messages as large as the weights (common/server.h
// CreateChannel allows 64 MiB by default).

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/v1/parameters.grpc.pb.h"
#include "engram/v1/parameters.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace engram::learner {

struct ParameterClientOptions {
  // Experiment whose weights to follow; empty: the server's only experiment.
  std::string experiment_id;
  // GetParametersRequest.client_id (logs, per-client metrics); may be empty.
  std::string client_id;
  // GetParametersRequest.max_wait of each long-poll, > 0. The server clamps it to its
  // --max_poll_wait.
  absl::Duration max_wait = absl::Seconds(10);
  // Each call's deadline is max_wait plus this (time to transfer the weights), > 0.
  absl::Duration transfer_timeout = absl::Seconds(30);
  // Backoff after a failed call: the n-th consecutive failure waits
  // min(max_backoff, initial_backoff * 2^(n-1)) scaled by a random factor in [0.5, 1.0)
  // (jitter, so that actors do not retry in lockstep). Reset by any successful call.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
};

// Follows the latest weights of one experiment. A background thread long-polls
// GetParameters with known_version = the newest version received (0 before any), one call
// at a time, for the client's whole life; every answer with weights replaces Latest().
// A server that restarts with older-numbered weights is followed too (the server answers
// whenever its version differs from ours).
//
// Errors never stop the thread: every failed call (UNAVAILABLE, DEADLINE_EXCEEDED,
// RESOURCE_EXHAUSTED, but also NOT_FOUND or INVALID_ARGUMENT, which a server reconfigured
// or a learner that has not published yet may answer) is counted, kept as
// Stats::last_error, and retried after a jittered backoff. WaitForVersionOtherThan reports
// the last error when it times out.
//
// Thread-safe: every method may be called concurrently. The destructor cancels the call in
// flight (ClientContext::TryCancel) and joins the thread.
class ParameterClient {
 public:
  struct Stats {
    int64_t polls = 0;               // GetParameters calls completed (any outcome)
    int64_t received = 0;            // answers with weights
    int64_t not_modified = 0;        // answers without
    int64_t errors = 0;              // failed calls
    int64_t consecutive_errors = 0;  // failed calls since the last successful one
    absl::Status last_error;         // the most recent failure (OK if none yet)
  };

  // INVALID_ARGUMENT names the offending option. Starts polling at once.
  static absl::StatusOr<std::unique_ptr<ParameterClient>> Create(
      std::shared_ptr<grpc::ChannelInterface> channel, ParameterClientOptions options);
  ~ParameterClient();

  ParameterClient(const ParameterClient&) = delete;
  ParameterClient& operator=(const ParameterClient&) = delete;

  // The newest weights received; nullptr before any. Never blocks on the network.
  std::shared_ptr<const v1::ParameterSet> Latest() const ABSL_LOCKS_EXCLUDED(mu_);
  // Latest()->version(), or 0 before any.
  int64_t latest_version() const ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until weights whose version differs from `version` have been received (at once
  // if Latest() already has them; `version` 0 waits for the first weights) and returns
  // them. DEADLINE_EXCEEDED at `deadline`, saying what the last failed call was;
  // CANCELLED if the client is being destroyed.
  absl::StatusOr<std::shared_ptr<const v1::ParameterSet>> WaitForVersionOtherThan(
      int64_t version, absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const ParameterClientOptions& options() const { return options_; }

 private:
  ParameterClient(std::shared_ptr<grpc::ChannelInterface> channel, ParameterClientOptions options);

  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Duration NextBackoffLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ParameterClientOptions options_;
  const std::unique_ptr<v1::ParameterService::Stub> stub_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const v1::ParameterSet> latest_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // of the call in flight
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;  // started last in the constructor, joined in the destructor
};

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_PARAMETER_CLIENT_H_
