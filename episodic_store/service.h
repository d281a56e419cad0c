#ifndef ENGRAM_EPISODIC_STORE_SERVICE_H_
#define ENGRAM_EPISODIC_STORE_SERVICE_H_

// engram.v1.EpisodicStore over named Memories (episodic_store/memory.h): the gRPC shell of
// the episodic store. Every rule of episodic.proto (validation with the field named,
// all-or-nothing writes, error codes) is applied here or in Memory.
//
// Snapshots: Snapshot() writes every memory into a new directory
// <snapshot_dir>/snapshot-<UTC time>-<n>/ (one file per memory, written to a temporary
// directory and renamed, so a snapshot directory is always complete), keeps the newest
// `snapshot_keep`, and RestoreLatest()/Restore() load one at start.
//
// Thread-safe: calls on different memories run in parallel; a memory serializes its own.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/auth.h"
#include "common/client_limits.h"
#include "engram/v1/episodic.grpc.pb.h"
#include "episodic_store/memory.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace engram::episodic {

class EpisodicStoreServiceImpl final : public v1::EpisodicStore::Service {
 public:
  struct Options {
    // Most rows (writes or queries) one request may carry; more is RESOURCE_EXHAUSTED.
    int64_t max_batch = 16384;
    // Bytes of keys all memories may hold together (capacity x actions x key_dim x 4, twice
    // that for approximate memories); CreateMemory beyond it is RESOURCE_EXHAUSTED.
    int64_t max_memory_bytes = int64_t{8} << 30;
    // Empty: Snapshot is FAILED_PRECONDITION.
    std::string snapshot_dir;
    int snapshot_keep = 3;
    // The index of INDEX_KIND_APPROXIMATE memories.
    IndexOptions index;
    // DeleteMemory and Snapshot need an `admin` token when it has tokens (common/auth.h).
    std::shared_ptr<const Authorizer> authorizer = std::make_shared<const Authorizer>();
    // Per-client request rate limit on Write and Lookup (common/client_limits.h); null: none.
    std::shared_ptr<ClientRateLimiter> client_limiter;
    // engram_episodic_* series; not owned. Null: no metrics.
    prometheus::Registry* registry = nullptr;
  };

  explicit EpisodicStoreServiceImpl(Options options);

  // ---- in-process API (main.cc, tests) ----
  absl::StatusOr<bool> CreateMemoryFromSpec(const v1::MemorySpec& spec) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::SnapshotResponse> SnapshotNow() ABSL_LOCKS_EXCLUDED(mu_);
  // Loads every memory of a snapshot directory, replacing none that exist (the server
  // starts empty). DATA_LOSS names a damaged file.
  absl::Status Restore(const std::string& snapshot_path) ABSL_LOCKS_EXCLUDED(mu_);
  // The newest complete snapshot under snapshot_dir, or "" when there is none.
  std::string LatestSnapshot() const;
  // Memory sizes into the gauges (the process calls it periodically).
  void UpdateGauges() ABSL_LOCKS_EXCLUDED(mu_);

  // ---- RPCs ----
  grpc::Status CreateMemory(grpc::ServerContext* context, const v1::CreateMemoryRequest* request,
                            v1::CreateMemoryResponse* response) override;
  grpc::Status DeleteMemory(grpc::ServerContext* context, const v1::DeleteMemoryRequest* request,
                            v1::DeleteMemoryResponse* response) override;
  grpc::Status Write(grpc::ServerContext* context, const v1::WriteRequest* request,
                     v1::WriteResponse* response) override;
  grpc::Status Lookup(grpc::ServerContext* context, const v1::LookupRequest* request,
                      v1::LookupResponse* response) override;
  grpc::Status Info(grpc::ServerContext* context, const v1::MemoryInfoRequest* request,
                    v1::MemoryInfoResponse* response) override;
  grpc::Status Snapshot(grpc::ServerContext* context, const v1::SnapshotRequest* request,
                        v1::SnapshotResponse* response) override;

 private:
  std::shared_ptr<Memory> Find(const std::string& name) const ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::shared_ptr<Memory>> FindOrNotFound(const std::string& name) const;
  int64_t BytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Memory>> memories_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> snapshotting_{false};
  std::atomic<int64_t> snapshots_taken_{0};
  // Metrics (null without a registry).
  prometheus::Family<prometheus::Gauge>* entries_ = nullptr;
  prometheus::Counter* writes_ = nullptr;
  prometheus::Counter* inserts_ = nullptr;
  prometheus::Counter* evictions_ = nullptr;
  prometheus::Counter* lookups_ = nullptr;
  prometheus::Histogram* lookup_seconds_ = nullptr;
  prometheus::Histogram* write_seconds_ = nullptr;
};

}  // namespace engram::episodic

#endif  // ENGRAM_EPISODIC_STORE_SERVICE_H_
