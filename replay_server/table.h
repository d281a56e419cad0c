#ifndef ENGRAM_REPLAY_SERVER_TABLE_H_
#define ENGRAM_REPLAY_SERVER_TABLE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/v1/replay.pb.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "replay_server/frame_store.h"
#include "replay_server/min_tree.h"
#include "replay_server/rate_limiter.h"
#include "replay_server/sum_tree.h"

namespace engram::replay {

// Prometheus series of one table (label table="<name>"). Null pointers mean "not
// exported" (unit tests).
struct TableMetrics {
  prometheus::Gauge* items = nullptr;
  prometheus::Gauge* bytes = nullptr;
  prometheus::Counter* inserts = nullptr;
  prometheus::Counter* duplicate_inserts = nullptr;
  prometheus::Counter* samples = nullptr;
  prometheus::Counter* evictions = nullptr;    // removed to make room
  prometheus::Counter* sampled_out = nullptr;  // removed at max_times_sampled
  prometheus::Counter* deletions = nullptr;    // removed by delete_keys
  prometheus::Counter* priority_updates = nullptr;
  prometheus::Counter* insert_blocked_seconds = nullptr;
  prometheus::Counter* sample_blocked_seconds = nullptr;

  // Registers (or finds) the engram_replay_* families in `registry` and returns the series
  // for `table`.
  static TableMetrics Create(prometheus::Registry& registry, const std::string& table);
};

// Counters of a table, for Info and checkpoints.
struct TableCounters {
  int64_t inserts = 0;            // items stored (duplicates excluded)
  int64_t duplicate_inserts = 0;  // items acknowledged as duplicates of a live key
  int64_t samples = 0;            // items returned by Sample (one per batch slot)
  int64_t removals = 0;           // evictions + sampled out + deleted
  int64_t priority_updates = 0;
  double insert_wait_seconds = 0;
  double sample_wait_seconds = 0;
  // The rate limiter's own counts (it does not count items recovered from the write-ahead
  // log, see InsertRecovered); -1 when unknown (an older checkpoint): then inserts and
  // samples above stand for them.
  int64_t limiter_inserts = -1;
  int64_t limiter_samples = -1;
};

// One replay table: items (key, priority, payload, times sampled) with a selector, a
// remover, a capacity, a max-times-sampled limit and a rate limiter (engram.v1.TableSpec).
//
// Storage: a fixed array of max_size slots allocated once; a key -> slot hash map; a sum
// tree of priority^alpha for prioritized sampling; an insertion-order queue for FIFO
// removal and FIFO/LIFO selection; a min tree of (priority, age) for lowest-priority
// removal. Observations of transitions live in a deduplicating FrameStore (about one copy
// of each distinct observation); the rest of a payload is kept serialized in its slot,
// whose buffer is reused, so a full table inserts without heap churn.
//
// Memory per item, measured by bench/replay/table_bench (200K MinAtar n-step transitions,
// 10x10x10 uint8 observations, n = 3, full prioritized table): 1032 bytes of payload (one
// 1000-byte observation per item, since each frame is shared by two transitions, plus the
// serialized remainder) and 1353 bytes of resident memory in all (slots, key index, sum
// tree, insertion order, frame index).
//
// Complexity: Insert, UpdatePriorities and removal O(log n) per item; Sample O(B log n).
//
// Thread-safe: every method may be called concurrently. Insert and Sample block (on the
// table's mutex condition) while the rate limiter holds them back, until `deadline`.
// The most items one Sample may return (a larger batch would be refused by the message
// size anyway, after sampling it; fuzzing found a batch of 590M items allocating 4.7 GB).
inline constexpr int kMaxSampleBatch = 16384;

class Table {
 public:
  // INVALID_ARGUMENT naming the offending `spec.<field>`.
  static absl::StatusOr<std::unique_ptr<Table>> Create(const v1::TableSpec& spec,
                                                       TableMetrics metrics = {});
  ~Table();

  const v1::TableSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name(); }

  // Checks the items without storing anything: INVALID_ARGUMENT naming the item, its key
  // and the field (`insert item 3 (key 17): observation shape [10,10,4] does not match
  // table "t" signature [10,10,10]`). Thread-safe, takes no lock.
  absl::Status Validate(const google::protobuf::RepeatedPtrField<v1::Item>& items) const;

  // Validates all `items`; on any error stores none. Then waits until the rate limiter
  // admits inserts (DEADLINE_EXCEEDED at `deadline`, nothing stored) and stores them all,
  // evicting by the remover when full. A key already in the table is acknowledged and not
  // stored again. The payload tensors of `items` may be moved out (the caller's request is
  // consumed). Returns the number of newly stored items. After Close(): its status.
  absl::StatusOr<int> Insert(google::protobuf::RepeatedPtrField<v1::Item>* items,
                             absl::Time deadline);
  // Recovery from the write-ahead log (wal.h): Insert without the rate limiter, also after
  // Close. The items count in Info's inserts but not in the limiter, whose counts come from
  // the checkpoint: the samples that balanced these inserts before the crash are not in the
  // log, and counting the inserts alone would hold new inserts back until the learner had
  // sampled them all again (samples_per_insert times).
  absl::StatusOr<int> InsertRecovered(google::protobuf::RepeatedPtrField<v1::Item>* items);

  // Waits until the rate limiter allows a batch (DEADLINE_EXCEEDED at `deadline`), then
  // fills `out` with `batch_size` items, their probabilities, importance weights
  // ((N P(i))^-beta normalised by the batch maximum), table_size and priority_total.
  // Items reaching max_times_sampled are removed. `out->table` and `sequence` are left
  // to the caller. INVALID_ARGUMENT for batch_size outside [1, kMaxSampleBatch], a batch
  // the rate limiter could deadlock on, or beta outside [0, 1]. After Close(): its status.
  absl::Status Sample(int batch_size, double beta, absl::Time deadline, v1::SampleResponse* out);

  // Validates the whole request first (lengths, priorities finite and >= 0; INVALID_ARGUMENT
  // naming the index), then applies it. Keys not in the table are counted as missing.
  absl::StatusOr<v1::UpdatePrioritiesResponse> UpdatePriorities(
      const v1::UpdatePrioritiesRequest& request);

  v1::TableInfo Info() const;
  int64_t size() const;
  // Bytes of stored payload (frames + serialized remainders).
  int64_t payload_bytes() const;

  // Wakes every waiting Insert/Sample with `status` and makes later calls fail with it
  // (NOT_FOUND when the table is deleted, UNAVAILABLE when the server stops).
  void Close(absl::Status status);

  // Checkpoints: calls `fn` for every item, oldest first, with the table locked (inserts
  // and samples wait), so the items and `counters` form one consistent state.
  void Export(const std::function<void(const v1::Item& item, int32_t times_sampled)>& fn,
              TableCounters* counters) const;
  // Restores one exported item into this table (used on an empty table before serving;
  // bypasses the rate limiter). INVALID_ARGUMENT as Insert's validation; ALREADY_EXISTS for
  // a key already present.
  absl::Status Restore(v1::Item item, int32_t times_sampled);
  void RestoreCounters(const TableCounters& counters);

 private:
  struct Slot {
    uint64_t key = 0;
    uint64_t seq = 0;     // insertion order (age); 0 = free slot
    double priority = 0;  // as given, before the exponent
    int32_t times_sampled = 0;
    bool is_chunk = false;
    uint32_t observation = FrameStore::kNoFrame;
    uint32_t next_observation = FrameStore::kNoFrame;
    std::string rest;  // the payload serialized without the frames' data
  };

  Table(v1::TableSpec spec, RateLimiter limiter, TableMetrics metrics);

  absl::Status ValidateItem(int index, const v1::Item& item) const;
  bool WithoutReplacement() const;
  int64_t SizeNeededToSample(int batch_size) const;
  double SelectorWeight(double priority) const;

  uint32_t StoreLocked(v1::Item* item, int32_t times_sampled) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores the items whose keys are new (validated already); returns how many.
  int StoreBatchLocked(google::protobuf::RepeatedPtrField<v1::Item>* items, bool count_in_limiter)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t VictimLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetPriorityLocked(uint32_t slot, double priority) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillItemLocked(uint32_t slot, v1::Item* out) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Picks one live slot by the selector (with replacement); for FIFO/LIFO use the order.
  uint32_t DrawLocked(double* probability) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PickOrderedLocked(int n, bool newest_first, std::vector<uint32_t>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompactOrderLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const v1::TableSpec spec_;
  const TableMetrics metrics_;

  mutable absl::Mutex mu_;
  absl::Status closed_ ABSL_GUARDED_BY(mu_);
  RateLimiter limiter_ ABSL_GUARDED_BY(mu_);
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, uint32_t> by_key_ ABSL_GUARDED_BY(mu_);
  // Live slots, densely packed (uniform sampling); live_pos_[slot] = index in live_.
  std::vector<uint32_t> live_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> live_pos_ ABSL_GUARDED_BY(mu_);
  // (seq, slot) in insertion order; entries whose slot no longer has that seq are stale
  // and skipped (removed lazily, compacted when they dominate).
  std::deque<std::pair<uint64_t, uint32_t>> order_ ABSL_GUARDED_BY(mu_);
  SumTree priorities_ ABSL_GUARDED_BY(mu_);               // priority^alpha (prioritized selector)
  std::unique_ptr<MinTree> lowest_ ABSL_GUARDED_BY(mu_);  // lowest-priority remover only
  FrameStore frames_ ABSL_GUARDED_BY(mu_);
  int64_t rest_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  TableCounters counters_ ABSL_GUARDED_BY(mu_);
  int waiting_inserts_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_samples_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  // Recent (time, inserts, samples) points for Info's rates, about one per second.
  mutable std::deque<std::tuple<absl::Time, int64_t, int64_t>> rate_points_ ABSL_GUARDED_BY(mu_);
};

// INVALID_ARGUMENT naming `spec.<field>` for a spec Table::Create would reject.
absl::Status ValidateTableSpec(const v1::TableSpec& spec);

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_TABLE_H_
