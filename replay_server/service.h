#ifndef ENGRAM_REPLAY_SERVER_SERVICE_H_
#define ENGRAM_REPLAY_SERVER_SERVICE_H_

// engram.v1.ReplayService over a set of named Tables: the gRPC shell of one replay shard.
//
// Every rule of replay.proto (validation, error codes, credit-based sampling) is applied
// here; storage, sampling and rate limiting are the Table's (table.h).
//
// Threading:
//   - Unary RPCs and Insert use the synchronous API: each Insert stream occupies one gRPC
//     thread, which reads a request, stores it (blocking while the rate limiter holds
//     inserts back, so gRPC flow control pushes back on the client) and writes its ack.
//   - Sample uses the callback API. Reads arrive as callbacks (credits, beta changes,
//     half-close, cancellation) and never block; each stream has one producer thread that
//     waits for credits, blocks in Table::Sample and writes one batch at a time. The
//     callback API is needed because a stream must be able to end (NOT_FOUND, UNAVAILABLE,
//     DEADLINE_EXCEEDED) while a read is outstanding, which the synchronous API cannot do.
//   - Every rate-limiter wait is split into slices of Options::wait_slice, so a cancelled
//     call, a half-closed Sample stream or an error stops it within one slice; Close() and
//     DeleteTable wake waiters at once (Table::Close).
//
// Thread-safe: every method may be called concurrently.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/client_limits.h"
#include "engram/v1/replay.grpc.pb.h"
#include "engram/v1/replay.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "replay_server/table.h"
#include "replay_server/wal.h"

namespace engram::replay {

// Writes a checkpoint of `tables` (sorted by name) and says where. Called by Checkpoint()
// with no other checkpoint in progress; it may block for as long as writing takes.
using CheckpointFn = std::function<absl::StatusOr<v1::ReplayCheckpointResponse>(
    const std::vector<std::shared_ptr<Table>>& tables)>;

class ReplayServiceImpl final
    : public v1::ReplayService::WithCallbackMethod_Sample<v1::ReplayService::Service> {
 public:
  struct Options {
    // Reported by Info (the process's --shard_index).
    int32_t shard_index = 0;
    // Most items one InsertRequest may carry; more is RESOURCE_EXHAUSTED.
    int max_insert_batch = 4096;
    // Where the engram_replay_* and engram_rpc_errors_total series go; not owned, must
    // outlive the service. Null: no metrics.
    prometheus::Registry* registry = nullptr;
    // Empty: the server has no --checkpoint_dir and Checkpoint is FAILED_PRECONDITION.
    CheckpointFn checkpoint;
    // Longest single wait for the rate limiter before cancellation is checked again.
    absl::Duration wait_slice = absl::Milliseconds(100);
    // CreateTable, DeleteTable and Checkpoint need an `admin` token when it has tokens
    // (common/auth.h).
    std::shared_ptr<const Authorizer> authorizer = std::make_shared<const Authorizer>();
    // Per-client request rate limit on InsertRequests and UpdatePriorities
    // (common/client_limits.h); null: none.
    std::shared_ptr<ClientRateLimiter> client_limiter;
  };

  explicit ReplayServiceImpl(Options options);
  // The gRPC server using this service must be shut down first (no call in flight).
  ~ReplayServiceImpl() override;

  ReplayServiceImpl(const ReplayServiceImpl&) = delete;
  ReplayServiceImpl& operator=(const ReplayServiceImpl&) = delete;

  // ---- in-process API (main.cc, tests) ----

  // CreateTable without RPC: true if created, false if an identical table existed.
  // INVALID_ARGUMENT (bad spec), ALREADY_EXISTS (same name, different spec), or the
  // Close() status after Close().
  absl::StatusOr<bool> CreateTableFromSpec(const v1::TableSpec& spec) ABSL_LOCKS_EXCLUDED(mu_);
  // Serves an existing table (one restored from a checkpoint). ALREADY_EXISTS when a table
  // of that name is served already.
  absl::Status AdoptTable(std::unique_ptr<Table> table) ABSL_LOCKS_EXCLUDED(mu_);
  // The metrics a table named `name` is created with (empty without a registry); pass it to
  // LoadCheckpoint so restored tables export the same series.
  TableMetrics MetricsFor(const std::string& name);
  // The served tables, sorted by name (still all of them after Close()).
  std::vector<std::shared_ptr<Table>> Tables() const ABSL_LOCKS_EXCLUDED(mu_);
  // Writes a checkpoint through Options::checkpoint. FAILED_PRECONDITION without one.
  // While another checkpoint is being written: RESOURCE_EXHAUSTED, or with
  // `wait_for_running` waits for it to finish and then writes a new one (the final
  // checkpoint at shutdown, which must not miss later changes). Works after Close().
  // Blocks while writing.
  absl::StatusOr<v1::ReplayCheckpointResponse> CheckpointNow(bool wait_for_running = false)
      ABSL_LOCKS_EXCLUDED(mu_, checkpoint_mu_);
  // Durable mode: from now on every insert request, table creation and deletion is appended
  // to `wal` (not owned; must outlive the service) and synced before it is acknowledged
  // (wal.h). Call before serving, after replaying the log into the service.
  void AttachLog(WriteAheadLog* wal) { wal_ = wal; }
  // Recovery: applies one record of the write-ahead log (ReplayWal's callback). Inserts
  // bypass the rate limiter; a table an insert names must exist (NOT_FOUND otherwise);
  // deleting a missing table is a no-op. DATA_LOSS for a payload that does not parse.
  absl::Status ApplyLogRecord(WalRecord type, absl::string_view payload) ABSL_LOCKS_EXCLUDED(mu_);
  // DeleteTable without RPC: returns the items the table held. NOT_FOUND, INVALID_ARGUMENT
  // for an empty name, the Close() status after Close(), INTERNAL when the log fails.
  absl::StatusOr<int64_t> DeleteTableNamed(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // Shutdown: closes every table with `status` (UNAVAILABLE), so blocked inserts and
  // samples return it at once and idle Sample streams end with it; later CreateTable,
  // DeleteTable, Insert and Sample calls fail with it. Info, ListTables and Checkpoint
  // keep working. Idempotent (the first status stays).
  void Close(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // Calls of this service now running (unary calls, and streams until their status is
  // sent).
  int64_t calls_in_flight() const ABSL_LOCKS_EXCLUDED(calls_mu_);
  // Blocks until no call is running or `deadline` passes; true when none is. For draining:
  // grpc::Server::Shutdown(grace) also waits out the grace for idle client connections,
  // so a server waits for its calls here and then shuts down with a short grace.
  bool AwaitNoCalls(absl::Time deadline) ABSL_LOCKS_EXCLUDED(calls_mu_);

  // ---- RPCs (contract: replay.proto) ----

  grpc::Status CreateTable(grpc::ServerContext* context, const v1::CreateTableRequest* request,
                           v1::CreateTableResponse* response) override;
  grpc::Status DeleteTable(grpc::ServerContext* context, const v1::DeleteTableRequest* request,
                           v1::DeleteTableResponse* response) override;
  grpc::Status ListTables(grpc::ServerContext* context, const v1::ListTablesRequest* request,
                          v1::ListTablesResponse* response) override;
  grpc::Status Insert(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::InsertResponse, v1::InsertRequest>* stream) override;
  grpc::ServerBidiReactor<v1::SampleRequest, v1::SampleResponse>* Sample(
      grpc::CallbackServerContext* context) override;
  grpc::Status UpdatePriorities(grpc::ServerContext* context,
                                const v1::UpdatePrioritiesRequest* request,
                                v1::UpdatePrioritiesResponse* response) override;
  grpc::Status Info(grpc::ServerContext* context, const v1::ReplayInfoRequest* request,
                    v1::ReplayInfoResponse* response) override;
  grpc::Status Checkpoint(grpc::ServerContext* context, const v1::ReplayCheckpointRequest* request,
                          v1::ReplayCheckpointResponse* response) override;

 private:
  class SampleStream;
  class CallGuard;

  // One served table and its per-table series.
  struct Entry {
    std::shared_ptr<Table> table;
    prometheus::Histogram* insert_latency = nullptr;
    prometheus::Histogram* sample_latency = nullptr;
    // Sample streams on this table, told when it is closed. Guarded by the service's mu_.
    absl::flat_hash_set<SampleStream*> streams;
  };

  absl::Status AddLocked(std::shared_ptr<Table> table) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends a create-table record in durable mode (a log that failed once stays failed, so
  // a table whose record failed is never acknowledged by a retry either).
  absl::Status LogTableSpec(const v1::TableSpec& spec) ABSL_LOCKS_EXCLUDED(mu_);
  // NOT_FOUND `table "x" not found`; INVALID_ARGUMENT for an empty name.
  absl::StatusOr<std::shared_ptr<Entry>> Find(const std::string& name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // For Sample streams: finds the table and registers `stream` to be told when it closes.
  absl::StatusOr<std::shared_ptr<Entry>> Subscribe(const std::string& name, SampleStream* stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Unsubscribe(const std::shared_ptr<Entry>& entry, SampleStream* stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Counts a failed call in engram_rpc_errors_total and converts the status.
  grpc::Status Fail(const char* method, const absl::Status& status);
  void CountError(const char* method, const absl::Status& status);

  const Options options_;
  WriteAheadLog* wal_ = nullptr;  // set before serving (AttachLog)

  prometheus::Family<prometheus::Histogram>* insert_latency_ = nullptr;
  prometheus::Family<prometheus::Histogram>* sample_latency_ = nullptr;
  prometheus::Family<prometheus::Counter>* rpc_errors_ = nullptr;
  prometheus::Histogram* checkpoint_duration_ = nullptr;
  prometheus::Counter* checkpoints_ok_ = nullptr;
  prometheus::Counter* checkpoints_failed_ = nullptr;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> tables_ ABSL_GUARDED_BY(mu_);
  absl::Status closed_ ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex calls_mu_;
  int64_t calls_ ABSL_GUARDED_BY(calls_mu_) = 0;

  absl::Mutex checkpoint_mu_;
  bool checkpoint_in_progress_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
};

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_SERVICE_H_
