#ifndef ENGRAM_EPISODIC_STORE_CLIENT_H_
#define ENGRAM_EPISODIC_STORE_CLIENT_H_

// The client actors use to reach the episodic store: one memory, batched writes, batched
// lookups for every action. Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) are retried
// with jittered backoff until the call's deadline; other errors are returned as they are.
//
// A store that is down must not stall an actor: once a call has failed transiently, the
// client is "unreachable" and calls fail at once with UNAVAILABLE (writes are dropped and
// counted) until a probe is due; a probe is one attempt with a short deadline
// (probe_timeout), and probes back off from initial_backoff to max_unreachable_backoff.
// The first success makes the client reachable again. A memory the store no longer has
// (it restarted without a snapshot) is created again and the call repeated once.
//
// Not thread-safe: one client per actor thread.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engram/v1/episodic.grpc.pb.h"
#include "grpcpp/channel.h"

namespace engram::episodic {

struct ClientOptions {
  // The memory's spec; created (idempotently) by Connect.
  v1::MemorySpec spec;
  // Writes buffered before a Write request goes out, >= 1.
  int write_batch = 1024;
  // How long one call (with its retries) may take.
  absl::Duration timeout = absl::Seconds(10);
  // How long Connect may wait for the store to come up and create the memory.
  absl::Duration connect_timeout = absl::Seconds(60);
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  // While unreachable: the deadline of a probe, and the longest wait between probes.
  absl::Duration probe_timeout = absl::Seconds(1);
  absl::Duration max_unreachable_backoff = absl::Seconds(10);
};

// Estimates for every action: estimates and counts are [n, num_actions], row-major.
struct ActionValues {
  int64_t n = 0;
  int num_actions = 0;
  std::vector<float> estimates;
  std::vector<int32_t> counts;
};

class EpisodicClient {
 public:
  // Creates the memory on the store (an identical one is reused; a different spec under
  // the same name is ALREADY_EXISTS). INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<EpisodicClient>> Connect(
      std::shared_ptr<grpc::Channel> channel, ClientOptions options);

  // Buffers one write (key: key_dim floats); sends a batch when write_batch are buffered.
  absl::Status Write(const float* key, int32_t action, float value);
  // Sends whatever is buffered.
  absl::Status Flush();
  // Buffered writes not yet acknowledged.
  int64_t buffered() const { return static_cast<int64_t>(actions_.size()); }
  // Writes dropped because the store was unreachable or refused them.
  int64_t dropped_writes() const { return dropped_writes_; }
  // Whether the last call failed transiently (calls fail fast until the next probe).
  bool unreachable() const { return failures_ > 0; }
  // Times the memory was created again after the store lost it.
  int64_t recreated() const { return recreated_; }

  // k-NN value estimates of n queries (n * key_dim floats) for every action; k = 0 means
  // the memory's default.
  absl::StatusOr<ActionValues> LookupAll(const float* queries, int64_t n, int k = 0);

 private:
  EpisodicClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options);
  // Runs `call` (one attempt, given its context) with retries on transient errors.
  template <typename Call>
  absl::Status Retry(Call call, absl::Duration timeout);
  // Retry, failing fast while unreachable, and re-creating a lost memory once.
  template <typename Call>
  absl::Status Guarded(Call call);
  absl::Status CreateMemory(absl::Duration timeout);

  ClientOptions options_;
  std::unique_ptr<v1::EpisodicStore::Stub> stub_;
  std::vector<float> keys_;
  std::vector<int32_t> actions_;
  std::vector<float> values_;
  int64_t failures_ = 0;  // consecutive transient failures
  absl::Time next_probe_ = absl::InfinitePast();
  absl::Status last_error_;
  int64_t dropped_writes_ = 0;
  int64_t recreated_ = 0;
  absl::BitGen rng_;
};

}  // namespace engram::episodic

#endif  // ENGRAM_EPISODIC_STORE_CLIENT_H_
