#ifndef ENGRAM_EPISODIC_STORE_MEMORY_H_
#define ENGRAM_EPISODIC_STORE_MEMORY_H_

// One episodic memory (engram.v1.MemorySpec): for each action, up to capacity_per_action
// (key, value) pairs in slots of a k-NN index (episodic_store/knn_index.h), with
// least-recently-used eviction (used = written, or returned as a neighbour).
//
// Write applies the spec's update rule to keys already stored (MFEC: keep the max; NEC:
// move toward the written value by nec_alpha) and inserts the others, evicting the action's
// least recently used key when it is full. Lookup answers k-NN queries per action with
// distances, values and the kernel's value estimate (MFEC's exact match returns the stored
// value). Both validate everything first and change nothing on bad input.
//
// Thread-safe: one reader-writer mutex per memory. Lookups search under the shared lock
// (in parallel with each other; a second mutex serializes only their recency updates);
// writes hold it exclusively.

#include <cstdint>
#include <istream>
#include <memory>
#include <ostream>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engram/v1/episodic.pb.h"
#include "episodic_store/knn_index.h"

namespace engram::episodic {

// INVALID_ARGUMENT naming the first bad field of a spec, as `spec.<field>: ...`.
absl::Status ValidateMemorySpec(const v1::MemorySpec& spec);

// Answers of a Lookup over N queries and M action columns, k neighbours each, row-major
// [N, M, k] (distances, values, neighbour keys [N, M, k, D] when asked) and [N, M]
// (counts, estimates).
struct LookupResult {
  int64_t n = 0;
  int m = 0;
  int k = 0;
  std::vector<float> distances;
  std::vector<float> values;
  std::vector<int32_t> counts;
  std::vector<float> estimates;
  std::vector<float> keys;
};

struct WriteResult {
  int64_t inserted = 0;
  int64_t updated = 0;
  int64_t evicted = 0;
};

class Memory {
 public:
  // INVALID_ARGUMENT for a bad spec. Allocates the indices (capacity is reserved as keys
  // arrive, except by HNSW, which allocates its graph up front). index_options picks and
  // tunes the approximate index.
  static absl::StatusOr<std::unique_ptr<Memory>> Create(const v1::MemorySpec& spec,
                                                        const IndexOptions& index_options = {});

  // keys: n * key_dim floats; actions, values: n each. All-or-nothing: INVALID_ARGUMENT
  // (naming `actions[i]` or `values[i]`, or a non-finite key as `keys[i]`) stores nothing.
  absl::StatusOr<WriteResult> Write(const float* keys, int64_t n, const int32_t* actions,
                                    const float* values) ABSL_LOCKS_EXCLUDED(mu_);

  // queries: n * key_dim floats. `actions` empty: every query for every action (M =
  // num_actions); else n actions, one column each (M = 1). k = 0 means default_k.
  absl::StatusOr<LookupResult> Lookup(const float* queries, int64_t n,
                                      const std::vector<int32_t>& actions, int k, bool return_keys)
      ABSL_LOCKS_EXCLUDED(mu_);

  const v1::MemorySpec& spec() const { return spec_; }
  // Keys per action, and the counters of MemoryInfo.
  v1::MemoryInfo Info() const ABSL_LOCKS_EXCLUDED(mu_);

  // Every action's keys, values and recency order (oldest first), and the counters.
  absl::Status Save(std::ostream& out) const ABSL_LOCKS_EXCLUDED(mu_);
  // A memory as saved (the spec comes from the snapshot); DATA_LOSS for a damaged stream.
  static absl::StatusOr<std::unique_ptr<Memory>> Load(std::istream& in,
                                                      const IndexOptions& index_options = {});

 private:
  struct Action {
    std::unique_ptr<KnnIndex> index;
    std::vector<float> values;
    // Recency: a doubly linked list over slots, most recent at head.
    std::vector<int64_t> prev, next;
    int64_t head = -1, tail = -1;
    // Exact keys (exact_match_distance == 0): key hash -> slot.
    absl::flat_hash_map<uint64_t, int64_t> by_hash;
  };

  Memory(v1::MemorySpec spec, const IndexOptions& index_options);
  int64_t FindExactLocked(const Action& action, const float* key, uint64_t hash) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void TouchLocked(Action& action, int64_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(recency_mu_);
  void UnlinkLocked(Action& action, int64_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(recency_mu_);
  // Stores (key, value) in the action: update rule on an existing key, else insert (with
  // eviction when full).
  void WriteOneLocked(Action& action, const float* key, float value, WriteResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, recency_mu_);

  const v1::MemorySpec spec_;
  const int dim_;
  const double nec_alpha_;
  const double kernel_delta_;
  const double exact_match_distance_;
  mutable absl::Mutex mu_;
  // The recency lists (Action::prev/next/head/tail) and lookups_total_: Lookups update them
  // while sharing mu_; everything else holds mu_ exclusively as well.
  mutable absl::Mutex recency_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::vector<Action> actions_ ABSL_GUARDED_BY(mu_);
  int64_t writes_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t inserts_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evictions_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t lookups_total_ ABSL_GUARDED_BY(recency_mu_) = 0;
};

}  // namespace engram::episodic

#endif  // ENGRAM_EPISODIC_STORE_MEMORY_H_
