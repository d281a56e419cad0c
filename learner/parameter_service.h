#ifndef ENGRAM_LEARNER_PARAMETER_SERVICE_H_
#define ENGRAM_LEARNER_PARAMETER_SERVICE_H_

// engram.v1.ParameterService (contract: proto/engram/v1/parameters.proto): holds the latest
// weights of each experiment, published by the learner (in process through Publish(), or
// over RPC) and long-polled by actors (ParameterClient, parameter_client.h).
//
// Serialize once, serve many. Publish builds the complete GetParametersResponse of the new
// version (parameters with the assigned version and the server's publish_time, and
// latest_version) and serializes it once into a refcounted grpc::ByteBuffer. Every
// GetParameters that gets these weights is answered with a copy of that ByteBuffer: copies
// share the slice, so N actors cost one serialization and no copy of the bytes. Only small
// not_modified answers are serialized per call. Only the latest version is kept.
//
// Long-polls hold no thread. GetParameters is a raw callback method: a call that has to
// wait registers its reactor and returns. Each waiting call ends exactly once, by whichever
// comes first:
//   - a Publish of its experiment whose version differs from the call's known_version
//     (the new weights);
//   - its max_wait, clamped to Options::max_poll_wait, passing (not_modified), watched by
//     one timer thread that sleeps until the earliest deadline;
//   - its cancellation (client deadline, client cancel, server shutdown) (CANCELLED);
//   - Shutdown() (UNAVAILABLE).
// Every path takes the waiter out of the waiting sets under the service's mutex before it
// finishes the call, so the others see it gone.
//
// Experiments. Weights are kept per ParameterSet.experiment_id. A request with an empty
// experiment_id means the only experiment (INVALID_ARGUMENT naming `experiment_id` when
// there are several; with none published yet it waits like "nothing published"). An id
// nothing was published for: with Options::wait_for_unknown_experiments (the default) it
// is treated as an experiment with nothing published yet (GetParameters waits, GetVersion
// answers 0), because actors may start before the learner's first Publish; without it,
// NOT_FOUND.
//
// Thread-safe: every method may be called concurrently. The gRPC server must be shut down
// before the service is destroyed (no call in flight).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/v1/parameters.grpc.pb.h"
#include "engram/v1/parameters.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace engram::learner {

// Checks a ParameterSet as Publish does (version >= 0, content set, experiment_id
// non-empty, learner_updates and frames >= 0; named: non-empty list, names non-empty and
// unique, every tensor valid per ValidateTensor; serialized: a format and non-empty data).
// INVALID_ARGUMENT names the field, e.g. `parameters.named.tensors[3] ("fc.bias"): ...`.
absl::Status ValidateParameterSet(const v1::ParameterSet& set);

class ParameterServiceImpl final
    : public v1::ParameterService::WithRawCallbackMethod_GetParameters<
          v1::ParameterService::WithRawCallbackMethod_Publish<
              v1::ParameterService::WithCallbackMethod_GetVersion<v1::ParameterService::Service>>> {
 public:
  struct Options {
    // Longest a GetParameters waits (its max_wait is clamped to this); > 0.
    absl::Duration max_poll_wait = absl::Seconds(30);
    // Most GetParameters calls waiting at once; one more is RESOURCE_EXHAUSTED.
    int max_waiters = 4096;
    // See the file comment: unknown experiment ids wait (true) or are NOT_FOUND (false).
    bool wait_for_unknown_experiments = true;
    // Largest serialized GetParametersResponse Publish accepts (RESOURCE_EXHAUSTED above):
    // the server's and the actors' max_message_bytes, or no actor could receive it.
    int64_t max_response_bytes = 64 << 20;
  };

  // `registry` (not owned, may be null: no metrics) gets engram_parameter_publishes_total,
  // engram_parameter_version{experiment}, engram_parameter_requests_total{result=
  // "sent"|"not_modified"|"error"} (GetParameters answers; cancelled calls are errors),
  // engram_parameter_waiters and engram_parameter_bytes_sent_total (GetParameters response
  // bytes). CHECK-fails on options out of range (max_poll_wait <= 0, max_waiters < 0).
  explicit ParameterServiceImpl(Options options, prometheus::Registry* registry = nullptr);
  // Default options, no metrics.
  ParameterServiceImpl();
  // Calls Shutdown(). The gRPC server must be shut down first.
  ~ParameterServiceImpl() override;

  ParameterServiceImpl(const ParameterServiceImpl&) = delete;
  ParameterServiceImpl& operator=(const ParameterServiceImpl&) = delete;

  // ---- in-process API (the learner) ----

  // Makes `set` the current version of set.experiment_id, wakes its waiting GetParameters
  // and returns the version: set.version, or latest + 1 when it is 0. INVALID_ARGUMENT as
  // ValidateParameterSet; FAILED_PRECONDITION when a non-zero version is not greater than
  // the current one; RESOURCE_EXHAUSTED above Options::max_response_bytes; UNAVAILABLE
  // after Shutdown(). publish_time is set here (server clock). Blocks while it serializes
  // (once per version); concurrent Publish calls are serialized.
  absl::StatusOr<int64_t> Publish(v1::ParameterSet set) ABSL_LOCKS_EXCLUDED(publish_mu_, mu_);

  // Finishes every waiting GetParameters with UNAVAILABLE and makes every later call (and
  // Publish) UNAVAILABLE; stops the timer thread. Call it before shutting the server down,
  // so waiting actors are not held for the server's grace period. Idempotent; blocks until
  // the timer thread has exited.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_, timer_join_mu_);

  // GetParameters calls now waiting (tests; also the engram_parameter_waiters gauge).
  int num_waiters() const ABSL_LOCKS_EXCLUDED(mu_);

  // ---- RPCs (contract: parameters.proto) ----

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetParameters(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* context,
                                       const v1::GetVersionRequest* request,
                                       v1::GetVersionResponse* response) override;

 private:
  class Poll;

  enum class Result { kSent, kNotModified, kError };

  // The latest version of one experiment.
  struct Experiment {
    int64_t version = 0;
    absl::Time publish_time;
    int64_t learner_updates = 0;
    // GetParametersResponse{parameters, latest_version = version}, serialized once.
    grpc::ByteBuffer response;
    prometheus::Gauge* version_gauge = nullptr;
  };

  // A GetParameters answer decided under mu_ and delivered (Finish) after releasing it.
  struct Completion {
    Poll* poll = nullptr;
    grpc::Status status;
    grpc::ByteBuffer payload;
    Result result = Result::kError;
  };

  // What a request's experiment_id names: the experiment (null when nothing has been
  // published for it) and the id its waiters are filed under ("" for an empty id while
  // there is no experiment). INVALID_ARGUMENT / NOT_FOUND per the file comment.
  struct Resolved {
    const Experiment* experiment = nullptr;
    std::string key;
  };
  absl::StatusOr<Resolved> ResolveLocked(const std::string& experiment_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Decides a GetParameters call: an immediate answer, or nullopt when `poll` now waits
  // (registered in waiting_ and deadlines_).
  std::optional<Completion> BeginPoll(grpc::CallbackServerContext* context, Poll* poll,
                                      const grpc::ByteBuffer& request) ABSL_LOCKS_EXCLUDED(mu_);
  // Takes `poll` out of the waiting sets (it must be in them).
  void RemoveWaiterLocked(Poll* poll) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A not_modified answer for a call that waited on `key`.
  Completion NotModifiedLocked(Poll* poll, const std::string& key) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OnCancel of a call: finishes it with CANCELLED if it is still waiting.
  void CancelPoll(Poll* poll) ABSL_LOCKS_EXCLUDED(mu_);
  // Finishes the calls (outside mu_) and counts them.
  void Deliver(std::vector<Completion> completions) ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateWaitersGaugeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TimerLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;

  prometheus::Counter* publishes_ = nullptr;
  prometheus::Family<prometheus::Gauge>* version_family_ = nullptr;
  prometheus::Counter* sent_ = nullptr;
  prometheus::Counter* not_modified_ = nullptr;
  prometheus::Counter* errors_ = nullptr;
  prometheus::Gauge* waiters_gauge_ = nullptr;
  prometheus::Counter* bytes_sent_ = nullptr;

  // Held for a whole Publish (ordering: publish_mu_, then mu_), so a version can be
  // assigned and serialized without holding mu_, which every GetParameters takes.
  absl::Mutex publish_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Experiment> experiments_ ABSL_GUARDED_BY(mu_);
  // Waiting calls by the key they wait on ("" = empty experiment_id, nothing published).
  absl::flat_hash_map<std::string, absl::flat_hash_set<Poll*>> waiting_ ABSL_GUARDED_BY(mu_);
  // Every waiting call by deadline (what the timer thread watches); its size is the
  // number of waiters.
  std::set<std::pair<absl::Time, Poll*>> deadlines_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar timer_cv_;

  absl::Mutex timer_join_mu_;
  std::thread timer_ ABSL_GUARDED_BY(timer_join_mu_);
};

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_PARAMETER_SERVICE_H_
