#ifndef ENGRAM_REPLAY_SERVER_CLIENT_SAMPLER_H_
#define ENGRAM_REPLAY_SERVER_CLIENT_SAMPLER_H_

// Client side of ReplayService.Sample and UpdatePriorities for a learner: samples from S
// replay shards at once as if they were ONE prioritized table.
//
//   auto sampler = ShardedSampler::Create(shard_channels,
//                                         {.table = "replay", .batch_size = 32}).value();
//   while (training) {
//     ENGRAM_ASSIGN_OR_RETURN(ShardedSampler::Batch batch, sampler->Next(deadline));
//     ... loss weighted by batch.items[i].importance_weight() ...
//     sampler->UpdatePriorities(keys, new_priorities);   // routed to the owning shards
//   }

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engram/v1/replay.grpc.pb.h"
#include "engram/v1/replay.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace engram::replay {

struct ShardedSamplerOptions {
  // Table to sample, the same name on every shard. Required.
  std::string table;
  // Items per merged batch, >= 1; also the batch size of every shard's stream.
  int batch_size = 0;
  // Batches of credit each shard's stream keeps granted ahead of consumption, >= 1.
  int prefetch = 4;
  // Initial importance-sampling exponent in [0, 1]; change it with SetBeta.
  double importance_beta = 1.0;
  // Sent as SampleRequest.rate_limiter_timeout: how long one shard batch may wait for its
  // rate limiter before that stream ends with DEADLINE_EXCEEDED (then it reconnects).
  // Zero: no limit.
  absl::Duration rate_limiter_timeout = absl::ZeroDuration();
  // Reconnect backoff of each shard stream: min(max, initial * 2^(n-1)) for the n-th
  // consecutive failure, times a random factor in [0.5, 1.0). Reset by any batch.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Startup: Next merges nothing until EVERY shard has delivered a batch, or until this long
  // after Create when at least one has (see the class comment).
  absl::Duration startup_wait = absl::Seconds(10);
  // UpdatePriorities routes keys returned by the last this-many merged batches, >= 1.
  int key_memory_batches = 256;
  // Deadline of each UpdatePriorities RPC.
  absl::Duration update_timeout = absl::Seconds(10);
};

// Merges S credit-based Sample streams (one per shard) into batches distributed as one
// prioritized table holding the union of the shards' items.
//
// Streams. Each shard has a thread that owns its bidi Sample stream (plus a reader thread
// per stream): it grants `prefetch` batches of credit, then one more each time Next starts
// consuming another batch's worth of that shard's items (so at least prefetch * batch_size
// items are buffered or on their way), forwards SetBeta, and reconnects with backoff and
// jitter after any failure (a new stream asks for at least one batch). Received items are
// buffered per shard, each batch shuffled on arrival: a shard's batch is stratified, in
// sum-tree order; shuffled, every buffered item is marginally one draw from the shard's
// distribution. Prefetched items were drawn up to `prefetch` batches ago, so a priority
// update reaches the samples only after that shard's prefetched items are consumed.
//
// Merging. Shard s reports with every batch its table_size N_s and priority_total T_s
// (sum of priority^alpha). For a merged batch of B items Next draws, for each slot
// independently, shard s with probability T_s / sum T (latest known values), i.e. counts
// c ~ Multinomial(B, T / sum T), and takes the next item of that shard's buffer. An item
// with shard probability p_s(i) = priority_i^alpha / T_s(batch it came in) gets the global
// probability P(i) = p_s(i) * T_s(batch) / sum T = priority_i^alpha / sum T and the
// importance weight w_i = (sum N * P(i))^(-beta) / max_j w_j over the merged batch, beta the
// value of SetBeta when Next assembles the batch. A draw waits until every chosen shard has
// c_s items buffered; a draw that timed out is kept for the next call, so slow shards are
// not under-sampled. When every T_s is 0 (all priorities 0; the shards then sample
// uniformly) shards are weighted by N_s instead and P(i) = 1 / sum N. Uniform tables
// (T_s = N_s) merge into uniform sampling over the union. FIFO/LIFO tables have no such
// distribution: their batches are merged the same way, and the numbers mean little.
//
// Which shards take part. A shard counts (T_s = 0 otherwise) while its current stream has
// delivered a batch. So a shard that is down, reconnecting, or restarted empty drops out of
// the draws at once (its weight goes to the others) and rejoins with the first batch of its
// new stream, its older buffered items first: the learner keeps training, at the price of
// sampling only from the reachable shards meanwhile. A draw that needs more items of a
// shard than it has buffered when that shard drops out is redrawn.
//
// Startup. Shards that have not delivered anything yet (empty, below min_size_to_sample,
// rate-limited, unreachable) count as T_s = 0. To keep the first batches unbiased Next waits
// until every shard has delivered, but at most `startup_wait` after Create; after that it
// merges whatever shards have delivered (at least one), and late shards join as they report.
//
// Errors. Transient stream failures (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,
// CANCELLED, ABORTED, INTERNAL, UNKNOWN) only reconnect. Others (NOT_FOUND, INVALID_ARGUMENT,
// PERMISSION_DENIED, ...) are returned, once each, by the next Next, prefixed with the shard;
// that shard keeps retrying with backoff (the table may appear).
//
// Thread-safe: Next, UpdatePriorities, SetBeta and stats may be called concurrently. The
// destructor cancels every stream and joins every thread (Next must not be running).
class ShardedSampler {
 public:
  struct Batch {
    // batch_size items; probability and importance_weight are the global ones (see above),
    // times_sampled as the shard reported it.
    std::vector<v1::SampledItem> items;
    // shard[i]: index (into the channels given to Create) of the shard items[i] came from.
    std::vector<int> shard;
    // sum N_s and sum T_s over the shards that took part in this batch.
    int64_t total_size = 0;
    double priority_total = 0;
  };

  struct ShardStats {
    int64_t batches_received = 0;
    int64_t items_consumed = 0;  // taken into merged batches
    int64_t buffered_items = 0;
    int64_t reconnects = 0;
    int64_t table_size = 0;     // latest N_s (0 before the first batch)
    double priority_total = 0;  // latest T_s
    bool streaming = false;     // the current stream has delivered a batch
    absl::Status last_error;
  };
  struct Stats {
    int64_t batches_returned = 0;
    int64_t priority_updates_sent = 0;  // keys sent in UpdatePriorities RPCs
    int64_t unknown_keys = 0;           // keys UpdatePriorities could not route
    std::vector<ShardStats> shards;
  };

  // One channel per shard, in shard order. INVALID_ARGUMENT names a bad option. Starts
  // every shard's stream at once.
  static absl::StatusOr<std::unique_ptr<ShardedSampler>> Create(
      std::vector<std::shared_ptr<grpc::ChannelInterface>> shards, ShardedSamplerOptions options);
  ~ShardedSampler();

  ShardedSampler(const ShardedSampler&) = delete;
  ShardedSampler& operator=(const ShardedSampler&) = delete;

  // Blocks until a merged batch is ready (see the class comment) or `deadline`
  // (DEADLINE_EXCEEDED, saying what each shard lacks). Returns a pending non-transient
  // shard error instead, once.
  absl::StatusOr<Batch> Next(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Sets priorities[i] for keys[i], routing each key to the shard that produced it, as
  // remembered for the items of the last key_memory_batches merged batches; one RPC per
  // shard, all in parallel, each with update_timeout. INVALID_ARGUMENT (nothing sent) when
  // the lengths differ or a priority is negative or not finite (naming the index). Keys not
  // remembered are not sent: NOT_FOUND counting them (the others were sent and applied).
  // An RPC failure returns its status prefixed with the shard (other shards' updates stand).
  // Keys evicted on their shard meanwhile are not errors (the server counts them missing).
  absl::Status UpdatePriorities(absl::Span<const uint64_t> keys,
                                absl::Span<const double> priorities) ABSL_LOCKS_EXCLUDED(mu_);

  // Importance exponent for the weights of batches Next assembles from now on; also sent to
  // every shard's stream. INVALID_ARGUMENT outside [0, 1].
  absl::Status SetBeta(double beta) ABSL_LOCKS_EXCLUDED(mu_);
  double beta() const ABSL_LOCKS_EXCLUDED(mu_);

  int num_shards() const { return static_cast<int>(shards_.size()); }
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const ShardedSamplerOptions& options() const { return options_; }

 private:
  // One sampled item waiting in a shard's buffer, with the totals of the batch it came in.
  struct Buffered {
    v1::SampledItem item;
    int64_t table_size = 0;
    double priority_total = 0;
  };

  struct Shard {
    int index = 0;
    std::unique_ptr<v1::ReplayService::Stub> stub;
    std::thread thread;

    // Guarded by the sampler's mu_ (thread annotations cannot name it from here).
    std::deque<Buffered> buffer;
    bool known = false;      // delivered at least one batch, ever
    bool streaming = false;  // the current stream delivered at least one batch
    int64_t table_size = 0;
    double priority_total = 0;
    int64_t batches_received = 0;
    int64_t items_consumed = 0;
    // Credit: batches received before the current stream + credits granted on it.
    int64_t credit_base = 0;
    int64_t credits_granted = 0;
    double beta_sent = -1;
    bool stream_ended = false;
    grpc::ClientContext* context = nullptr;
    absl::Status pending_error;  // for Next, once
    absl::Status last_error;
    int failed_attempts = 0;
    int64_t reconnects = 0;
  };

  ShardedSampler(std::vector<std::shared_ptr<grpc::ChannelInterface>> channels,
                 ShardedSamplerOptions options);

  void RunShard(Shard* shard) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status RunShardStream(Shard* shard) ABSL_LOCKS_EXCLUDED(mu_);
  void ReadBatches(Shard* shard,
                   grpc::ClientReaderWriter<v1::SampleRequest, v1::SampleResponse>* stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Credits the shard's current stream should grant now.
  int64_t CreditsDueLocked(const Shard& shard) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TakesPartLocked(const Shard& shard) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The draw weight of every shard (T_s, or N_s when all T_s are 0; 0 for shards not taking
  // part); returns their sum. `by_size` tells which of the two was used.
  double DrawWeightsLocked(std::vector<double>* weights, bool* by_size) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool StartupDoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status TakePendingErrorLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Batch AssembleLocked(const std::vector<int>& assignment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberKeysLocked(const Batch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DescribeShardsLocked(const std::vector<int>* counts) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ShardedSamplerOptions options_;
  const absl::Time created_;
  std::vector<std::unique_ptr<Shard>> shards_;  // fixed after construction

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  double beta_ ABSL_GUARDED_BY(mu_);
  // The shard of each slot of a draw that is still waiting for items (empty: none).
  std::vector<int> pending_draw_ ABSL_GUARDED_BY(mu_);
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  int64_t batches_returned_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t priority_updates_sent_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t unknown_keys_ ABSL_GUARDED_BY(mu_) = 0;
  // key -> (shard, number of the last merged batch that returned it), for routing updates.
  absl::flat_hash_map<uint64_t, std::pair<int, int64_t>> key_shard_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<int64_t, std::vector<uint64_t>>> recent_keys_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_CLIENT_SAMPLER_H_
