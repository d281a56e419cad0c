#include "replay_server/service.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/metrics.h"
#include "common/status.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/util/message_differencer.h"

namespace engram::replay {
namespace {

constexpr size_t kInsertArenaBlock = 1 << 20;
constexpr size_t kSampleArenaBlock = 1 << 20;

absl::Time DeadlineOf(const grpc::ServerContextBase& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
}

absl::Status TableRequired(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": table is required"));
}

// Calls attempt(d) with deadlines d at most `slice` ahead until it returns anything but
// DEADLINE_EXCEEDED or `deadline` passes, and returns that. The Table cannot see a
// cancelled call, so stop() is asked before every slice; once it is true the wait is
// abandoned and nullopt returned.
template <typename Attempt, typename Stop>
std::optional<absl::Status> WaitInSlices(absl::Time deadline, absl::Duration slice, Stop stop,
                                         Attempt attempt) {
  for (;;) {
    if (stop()) return std::nullopt;
    absl::Status status = attempt(std::min(deadline, absl::Now() + slice));
    if (status.code() != absl::StatusCode::kDeadlineExceeded || absl::Now() >= deadline) {
      return status;
    }
  }
}

// SampleRequest.rate_limiter_timeout as a duration; INVALID_ARGUMENT when negative or
// malformed.
absl::StatusOr<absl::Duration> RateLimiterTimeout(const v1::SampleRequest& request) {
  if (!request.has_rate_limiter_timeout()) return absl::ZeroDuration();
  const google::protobuf::Duration& d = request.rate_limiter_timeout();
  const absl::Duration timeout = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  if (timeout < absl::ZeroDuration() || d.nanos() <= -1000000000 || d.nanos() >= 1000000000 ||
      (d.seconds() > 0 && d.nanos() < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample: rate_limiter_timeout must be a duration >= 0, got ", d.seconds(),
                     "s ", d.nanos(), "ns"));
  }
  return timeout;
}

absl::Status ValidateCreditsAndBeta(const v1::SampleRequest& request) {
  if (request.credits() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample: credits must be >= 0, got ", request.credits()));
  }
  if (request.has_importance_beta() &&
      !(request.importance_beta() >= 0 && request.importance_beta() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample: importance_beta must be in [0, 1], got ", request.importance_beta()));
  }
  return absl::OkStatus();
}

}  // namespace

// Counts a call as running for its lifetime (calls_in_flight, AwaitNoCalls).
class ReplayServiceImpl::CallGuard {
 public:
  explicit CallGuard(ReplayServiceImpl* service) : service_(service) {
    absl::MutexLock lock(&service_->calls_mu_);
    ++service_->calls_;
  }
  ~CallGuard() {
    absl::MutexLock lock(&service_->calls_mu_);
    --service_->calls_;
  }
  CallGuard(const CallGuard&) = delete;
  CallGuard& operator=(const CallGuard&) = delete;

 private:
  ReplayServiceImpl* const service_;
};

// ---- Sample stream ----------------------------------------------------------------------------
//
// Callbacks (OnReadDone, OnWriteDone, OnCancel) only update fields under mu_; the producer
// thread waits on mu_ conditions (absl::Mutex re-evaluates them whenever mu_ is released),
// so no explicit notification is needed. The producer is the only caller of Finish once it
// runs, and calls it only with no write outstanding; before it runs, OnReadDone does.
class ReplayServiceImpl::SampleStream final
    : public grpc::ServerBidiReactor<v1::SampleRequest, v1::SampleResponse> {
 public:
  SampleStream(ReplayServiceImpl* service, grpc::CallbackServerContext* context)
      : service_(service), call_(service), call_deadline_(DeadlineOf(*context)) {
    StartRead(&request_);
  }

  // The service tells a subscribed stream that its table was deleted or the server closed.
  // Called with the service's mu_ held.
  void TableClosed(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (table_status_.ok()) table_status_ = status;
  }

  void OnReadDone(bool ok) override {
    if (!started_) {
      // The first read happens before the producer exists: this thread owns Finish.
      if (!ok) {
        Finish(grpc::Status::OK);  // closed before asking for anything
        return;
      }
      absl::Status status = Open();
      if (!status.ok()) {
        service_->CountError("Sample", status);
        Finish(ToGrpc(status));
        return;
      }
      started_ = true;
      StartRead(&request_);  // before the producer exists, so never after its Finish
      producer_ = std::thread([this] { Produce(); });
      return;
    }
    if (!ok) {
      absl::MutexLock lock(&mu_);
      read_done_ = true;  // half-close (or cancellation): stop producing
      return;
    }
    absl::Status status = ValidateLater(request_);
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;  // the stream is ending: read no more
      if (!status.ok()) {
        if (error_.ok()) error_ = std::move(status);
        return;  // no further reads; the producer ends the stream
      }
      credits_ += request_.credits();
      if (request_.has_importance_beta()) beta_ = request_.importance_beta();
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_pending_ = false;
    write_ok_ = ok;
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

  void OnDone() override {
    if (producer_.joinable()) {
      // The producer's last act is Finish(); it touches nothing of this object after it.
      if (producer_.get_id() == std::this_thread::get_id()) {
        producer_.detach();
      } else {
        producer_.join();
      }
    }
    delete this;
  }

 private:
  // Validates the first request and subscribes to its table.
  absl::Status Open() {
    if (request_.table().empty()) {
      return absl::InvalidArgumentError("sample: table is required in the first request");
    }
    if (request_.batch_size() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample: batch_size must be >= 1, got ", request_.batch_size()));
    }
    ENGRAM_RETURN_IF_ERROR(ValidateCreditsAndBeta(request_));
    ENGRAM_ASSIGN_OR_RETURN(timeout_, RateLimiterTimeout(request_));
    ENGRAM_ASSIGN_OR_RETURN(entry_, service_->Subscribe(request_.table(), this));
    table_name_ = request_.table();
    batch_size_ = request_.batch_size();
    absl::MutexLock lock(&mu_);
    credits_ = request_.credits();
    beta_ = request_.has_importance_beta() ? request_.importance_beta() : 1.0;
    return absl::OkStatus();
  }

  absl::Status ValidateLater(const v1::SampleRequest& request) const {
    if (!request.table().empty() && request.table() != table_name_) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample: table cannot change on an open stream (opened on \"", table_name_,
                       "\", got \"", request.table(), "\")"));
    }
    if (request.batch_size() != 0 && request.batch_size() != batch_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample: batch_size cannot change on an open stream (opened with ",
                       batch_size_, ", got ", request.batch_size(), ")"));
    }
    return ValidateCreditsAndBeta(request);
  }

  // Why the stream must end now, if it must.
  std::optional<absl::Status> StopLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!error_.ok()) return error_;
    if (cancelled_) return absl::CancelledError("sample: the call was cancelled");
    if (!table_status_.ok()) return table_status_;
    if (read_done_) return absl::OkStatus();  // half-closed: batches not yet made are not sent
    return std::nullopt;
  }
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return credits_ > 0 || StopLocked().has_value();
  }
  bool WriteDoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !write_pending_; }

  void Produce() {
    const absl::Status status = ProduceBatches();
    service_->Unsubscribe(entry_, this);
    if (!status.ok()) service_->CountError("Sample", status);
    {
      absl::MutexLock lock(&mu_);
      finishing_ = true;
    }
    Finish(ToGrpc(status));
  }

  absl::Status ProduceBatches() {
    Table& table = *entry_->table;
    std::unique_ptr<char[]> arena_block(new char[kSampleArenaBlock]);
    google::protobuf::ArenaOptions arena_options;
    arena_options.initial_block = arena_block.get();
    arena_options.initial_block_size = kSampleArenaBlock;
    google::protobuf::Arena arena(arena_options);
    for (int64_t sequence = 0;; ++sequence) {
      // The previous batch's write is done: its message can go.
      arena.Reset();
      response_ = google::protobuf::Arena::CreateMessage<v1::SampleResponse>(&arena);
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &SampleStream::ReadyLocked));
        if (std::optional<absl::Status> stop = StopLocked()) return *stop;
      }
      const absl::Time start = absl::Now();
      const bool limited = timeout_ > absl::ZeroDuration() && start + timeout_ < call_deadline_;
      const absl::Time batch_deadline = limited ? start + timeout_ : call_deadline_;
      std::optional<absl::Status> sampled = WaitInSlices(
          batch_deadline, service_->options_.wait_slice,
          [this] {
            absl::MutexLock lock(&mu_);
            return StopLocked().has_value();
          },
          [&](absl::Time deadline) {
            double beta;
            {
              absl::MutexLock lock(&mu_);
              beta = beta_;  // a change received while waiting applies to this batch
            }
            return table.Sample(batch_size_, beta, deadline, response_);
          });
      if (!sampled.has_value()) {
        absl::MutexLock lock(&mu_);
        return *StopLocked();  // stop conditions never clear once set
      }
      const absl::Status& status = *sampled;
      if (status.code() == absl::StatusCode::kDeadlineExceeded && limited) {
        return absl::DeadlineExceededError(
            absl::StrCat("sample: rate_limiter_timeout (", absl::FormatDuration(timeout_),
                         ") passed waiting for a batch: ", status.message()));
      }
      ENGRAM_RETURN_IF_ERROR(status);
      if (entry_->sample_latency != nullptr) {
        entry_->sample_latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
      }
      response_->set_table(table_name_);
      response_->set_sequence(sequence);
      {
        absl::MutexLock lock(&mu_);
        --credits_;
        write_pending_ = true;
      }
      StartWrite(response_);
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &SampleStream::WriteDoneLocked));
      if (!write_ok_) return absl::CancelledError("sample: the client went away");
    }
  }

  ReplayServiceImpl* const service_;
  const CallGuard call_;  // until OnDone: the status has been sent
  const absl::Time call_deadline_;

  // Set by the first OnReadDone before the producer starts; read-only afterwards.
  bool started_ = false;
  std::shared_ptr<Entry> entry_;
  std::string table_name_;
  int batch_size_ = 0;
  absl::Duration timeout_ = absl::ZeroDuration();
  std::thread producer_;

  v1::SampleRequest request_;               // owned by the outstanding read
  v1::SampleResponse* response_ = nullptr;  // on the producer's arena; owned by the producer,
                                            // or by the outstanding write

  absl::Mutex mu_;
  int64_t credits_ ABSL_GUARDED_BY(mu_) = 0;
  double beta_ ABSL_GUARDED_BY(mu_) = 1.0;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = true;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // the producer is about to call Finish
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  absl::Status table_status_ ABSL_GUARDED_BY(mu_);
};

// ---- service ----------------------------------------------------------------------------------

ReplayServiceImpl::ReplayServiceImpl(Options options) : options_(std::move(options)) {
  if (options_.registry == nullptr) return;
  prometheus::Registry& registry = *options_.registry;
  insert_latency_ = &AddHistogram(registry, "replay_insert_latency_seconds",
                                  "Time to store one InsertRequest, rate-limiter waits included.");
  sample_latency_ = &AddHistogram(registry, "replay_sample_latency_seconds",
                                  "Time to draw one sampled batch, rate-limiter waits included.");
  rpc_errors_ = &AddCounter(registry, "rpc_errors_total", "Calls that ended with an error.");
  checkpoint_duration_ =
      &AddHistogram(registry, "replay_checkpoint_duration_seconds",
                    "Wall time of writing one replay checkpoint (snapshot, write, fsync).")
           .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100,
                                                            300, 1000});
  auto& checkpoints = AddCounter(registry, "replay_checkpoints_total", "Checkpoints, by result.");
  checkpoints_ok_ = &checkpoints.Add({{"result", "ok"}});
  checkpoints_failed_ = &checkpoints.Add({{"result", "error"}});
}

ReplayServiceImpl::~ReplayServiceImpl() {
  Close(absl::UnavailableError("replay service destroyed"));
}

TableMetrics ReplayServiceImpl::MetricsFor(const std::string& name) {
  if (options_.registry == nullptr) return {};
  return TableMetrics::Create(*options_.registry, name);
}

absl::Status ReplayServiceImpl::AddLocked(std::shared_ptr<Table> table) {
  const std::string& name = table->name();
  if (tables_.count(name) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("table \"", name, "\" already exists"));
  }
  auto entry = std::make_shared<Entry>();
  if (insert_latency_ != nullptr) {
    entry->insert_latency = &insert_latency_->Add({{"table", name}}, LatencyBuckets());
    entry->sample_latency = &sample_latency_->Add({{"table", name}}, LatencyBuckets());
  }
  entry->table = std::move(table);
  tables_.emplace(name, std::move(entry));
  return absl::OkStatus();
}

absl::StatusOr<bool> ReplayServiceImpl::CreateTableFromSpec(const v1::TableSpec& spec) {
  // Returns the answer when a table of that name exists (nullopt when it does not).
  const auto existing =
      [this, &spec]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> std::optional<absl::StatusOr<bool>> {
    if (!closed_.ok()) return closed_;
    auto it = tables_.find(spec.name());
    if (it == tables_.end()) return std::nullopt;
    google::protobuf::util::MessageDifferencer differencer;
    std::string diff;
    differencer.ReportDifferencesToString(&diff);
    if (differencer.Compare(it->second->table->spec(), spec)) return false;
    absl::StripTrailingAsciiWhitespace(&diff);
    return absl::AlreadyExistsError(absl::StrCat("table \"", spec.name(),
                                                 "\" already exists with a different spec (",
                                                 absl::StrReplaceAll(diff, {{"\n", "; "}}), ")"));
  };
  {
    absl::MutexLock lock(&mu_);
    if (auto answer = existing()) return *answer;
  }
  // Validated before any series is registered, so a bad name never becomes a label value.
  ENGRAM_RETURN_IF_ERROR(ValidateTableSpec(spec));
  // Allocating a large table takes a while; other calls need not wait for it.
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<Table> table,
                          Table::Create(spec, MetricsFor(spec.name())));
  {
    absl::MutexLock lock(&mu_);
    if (auto answer = existing()) return *answer;  // created concurrently
    ENGRAM_RETURN_IF_ERROR(AddLocked(std::move(table)));
  }
  ENGRAM_RETURN_IF_ERROR(LogTableSpec(spec));
  return true;
}

absl::Status ReplayServiceImpl::LogTableSpec(const v1::TableSpec& spec) {
  if (wal_ == nullptr) return absl::OkStatus();
  return wal_->Append(WalRecord::kCreateTable, spec.SerializeAsString());
}

absl::Status ReplayServiceImpl::ApplyLogRecord(WalRecord type, absl::string_view payload) {
  switch (type) {
    case WalRecord::kInsert: {
      v1::InsertRequest request;
      if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return absl::DataLossError("insert record does not parse");
      }
      ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, Find(request.table()));
      return entry->table->InsertRecovered(request.mutable_items()).status();
    }
    case WalRecord::kCreateTable: {
      v1::TableSpec spec;
      if (!spec.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return absl::DataLossError("create-table record does not parse");
      }
      return CreateTableFromSpec(spec).status();
    }
    case WalRecord::kDeleteTable: {
      absl::StatusOr<int64_t> deleted = DeleteTableNamed(std::string(payload));
      return absl::IsNotFound(deleted.status()) ? absl::OkStatus() : deleted.status();
    }
  }
  return absl::DataLossError(absl::StrCat("unknown record type ", static_cast<int>(type)));
}

absl::StatusOr<int64_t> ReplayServiceImpl::DeleteTableNamed(const std::string& name) {
  std::shared_ptr<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    if (!closed_.ok()) return closed_;
    auto it = tables_.find(name);
    if (it == tables_.end()) {
      return name.empty() ? absl::InvalidArgumentError("delete: name is required")
                          : absl::NotFoundError(absl::StrCat("table \"", name, "\" not found"));
    }
    // Logged first: a deletion that is not durable does not happen.
    if (wal_ != nullptr) ENGRAM_RETURN_IF_ERROR(wal_->Append(WalRecord::kDeleteTable, name));
    entry = std::move(it->second);
    tables_.erase(it);
    const absl::Status deleted =
        absl::NotFoundError(absl::StrCat("table \"", name, "\" was deleted"));
    entry->table->Close(deleted);
    for (SampleStream* stream : entry->streams) stream->TableClosed(deleted);
  }
  // Closed: nothing is added or removed any more, so this is what the table held.
  return entry->table->size();
}

absl::Status ReplayServiceImpl::AdoptTable(std::unique_ptr<Table> table) {
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return closed_;
  return AddLocked(std::move(table));
}

std::vector<std::shared_ptr<Table>> ReplayServiceImpl::Tables() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Table>> tables;
  tables.reserve(tables_.size());
  for (const auto& [name, entry] : tables_) tables.push_back(entry->table);
  return tables;
}

absl::StatusOr<std::shared_ptr<ReplayServiceImpl::Entry>> ReplayServiceImpl::Find(
    const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = tables_.find(name);
  if (it == tables_.end()) {
    if (name.empty()) return absl::InvalidArgumentError("table is required");
    return absl::NotFoundError(absl::StrCat("table \"", name, "\" not found"));
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<ReplayServiceImpl::Entry>> ReplayServiceImpl::Subscribe(
    const std::string& name, SampleStream* stream) {
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return closed_;
  auto it = tables_.find(name);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("table \"", name, "\" not found"));
  }
  it->second->streams.insert(stream);
  return it->second;
}

void ReplayServiceImpl::Unsubscribe(const std::shared_ptr<Entry>& entry, SampleStream* stream) {
  absl::MutexLock lock(&mu_);
  entry->streams.erase(stream);
}

void ReplayServiceImpl::Close(absl::Status status) {
  if (status.ok()) status = absl::UnavailableError("the replay server is shutting down");
  absl::MutexLock lock(&mu_);
  if (closed_.ok()) closed_ = std::move(status);
  for (auto& [name, entry] : tables_) {
    entry->table->Close(closed_);
    for (SampleStream* stream : entry->streams) stream->TableClosed(closed_);
  }
}

int64_t ReplayServiceImpl::calls_in_flight() const {
  absl::MutexLock lock(&calls_mu_);
  return calls_;
}

bool ReplayServiceImpl::AwaitNoCalls(absl::Time deadline) {
  absl::MutexLock lock(&calls_mu_);
  const auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls_mu_) { return calls_ == 0; };
  return calls_mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
}

void ReplayServiceImpl::CountError(const char* method, const absl::Status& status) {
  if (rpc_errors_ == nullptr || status.ok()) return;
  rpc_errors_
      ->Add({{"method", absl::StrCat("ReplayService/", method)},
             {"code", absl::StatusCodeToString(status.code())}})
      .Increment();
}

grpc::Status ReplayServiceImpl::Fail(const char* method, const absl::Status& status) {
  CountError(method, status);
  return ToGrpc(status);
}

absl::StatusOr<v1::ReplayCheckpointResponse> ReplayServiceImpl::CheckpointNow(
    bool wait_for_running) {
  if (!options_.checkpoint) {
    return absl::FailedPreconditionError(
        "checkpoint: this server has no --checkpoint_dir to write checkpoints to");
  }
  {
    absl::MutexLock lock(&checkpoint_mu_);
    if (wait_for_running) {
      const auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(checkpoint_mu_) {
        return !checkpoint_in_progress_;
      };
      checkpoint_mu_.Await(absl::Condition(&idle));
    }
    if (checkpoint_in_progress_) {
      return absl::ResourceExhaustedError(
          "checkpoint: another checkpoint is being written; retry when it is done");
    }
    checkpoint_in_progress_ = true;
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::ReplayCheckpointResponse> result = options_.checkpoint(Tables());
  if (checkpoint_duration_ != nullptr) {
    checkpoint_duration_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    (result.ok() ? checkpoints_ok_ : checkpoints_failed_)->Increment();
  }
  absl::MutexLock lock(&checkpoint_mu_);
  checkpoint_in_progress_ = false;
  return result;
}

// ---- RPCs ---------------------------------------------------------------------------------------

grpc::Status ReplayServiceImpl::CreateTable(grpc::ServerContext* context,
                                            const v1::CreateTableRequest* request,
                                            v1::CreateTableResponse* response) {
  const CallGuard call(this);
  if (grpc::Status allowed =
          options_.authorizer->Check(*context, Role::kAdmin, "ReplayService.CreateTable");
      !allowed.ok()) {
    return allowed;
  }
  absl::StatusOr<bool> created = CreateTableFromSpec(request->spec());
  if (!created.ok()) return Fail("CreateTable", created.status());
  response->set_created(*created);
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::DeleteTable(grpc::ServerContext* context,
                                            const v1::DeleteTableRequest* request,
                                            v1::DeleteTableResponse* response) {
  const CallGuard call(this);
  if (grpc::Status allowed =
          options_.authorizer->Check(*context, Role::kAdmin, "ReplayService.DeleteTable");
      !allowed.ok()) {
    return allowed;
  }
  absl::StatusOr<int64_t> removed = DeleteTableNamed(request->name());
  if (!removed.ok()) return Fail("DeleteTable", removed.status());
  response->set_items_removed(*removed);
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::ListTables(grpc::ServerContext*, const v1::ListTablesRequest*,
                                           v1::ListTablesResponse* response) {
  const CallGuard call(this);
  for (const std::shared_ptr<Table>& table : Tables()) *response->add_tables() = table->spec();
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::Insert(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::InsertResponse, v1::InsertRequest>* stream) {
  const CallGuard call(this);
  const absl::Time deadline = DeadlineOf(*context);
  const auto cancelled = [context] { return context->IsCancelled(); };
  // Each request is parsed into a message on an arena that is reset per request: no
  // per-item allocations of messages (only string buffers), no destructors.
  std::unique_ptr<char[]> arena_block(new char[kInsertArenaBlock]);
  google::protobuf::ArenaOptions arena_options;
  arena_options.initial_block = arena_block.get();
  arena_options.initial_block_size = kInsertArenaBlock;
  google::protobuf::Arena arena(arena_options);
  v1::InsertResponse response;
  std::string record;  // the request as logged (durable mode)
  while (true) {
    arena.Reset();
    v1::InsertRequest& request = *google::protobuf::Arena::CreateMessage<v1::InsertRequest>(&arena);
    if (!stream->Read(&request)) break;
    if (absl::Status admitted =
            AdmitClient(options_.client_limiter.get(), *context, "ReplayService.Insert");
        !admitted.ok()) {
      return Fail("Insert", admitted);
    }
    if (request.table().empty()) return Fail("Insert", TableRequired("insert"));
    absl::StatusOr<std::shared_ptr<Entry>> entry = Find(request.table());
    if (!entry.ok()) return Fail("Insert", entry.status());
    if (request.items_size() > options_.max_insert_batch) {
      return Fail("Insert", absl::ResourceExhaustedError(absl::StrCat(
                                "insert: ", request.items_size(),
                                " items in one request exceed the server's --max_insert_batch=",
                                options_.max_insert_batch, "; send smaller requests")));
    }
    response.set_table(request.table());
    response.mutable_keys()->Clear();
    response.mutable_keys()->Reserve(request.items_size());
    for (const v1::Item& item : request.items()) response.add_keys(item.key());

    const absl::Time start = absl::Now();
    // Serialized before Table::Insert, which moves the payloads out of the request.
    if (wal_ != nullptr) request.SerializeToString(&record);
    Table& table = *(*entry)->table;
    std::optional<absl::Status> stored =
        WaitInSlices(deadline, options_.wait_slice, cancelled, [&](absl::Time slice_deadline) {
          return table.Insert(request.mutable_items(), slice_deadline).status();
        });
    if (!stored.has_value()) {
      return Fail("Insert", absl::CancelledError(
                                "insert: the call was cancelled while the rate limiter waited"));
    }
    if (!stored->ok()) return Fail("Insert", *stored);
    // Applied first, then logged (see wal.h): the ack below means the items are on disk.
    // Duplicates are logged too, so that a request resent after a failed log write is.
    if (wal_ != nullptr) {
      if (absl::Status logged = wal_->Append(WalRecord::kInsert, record); !logged.ok()) {
        return Fail("Insert", logged);
      }
    }
    if ((*entry)->insert_latency != nullptr) {
      (*entry)->insert_latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    }
    if (!stream->Write(response)) {
      return Fail("Insert", absl::CancelledError("insert: the client went away"));
    }
  }
  return grpc::Status::OK;
}

grpc::ServerBidiReactor<v1::SampleRequest, v1::SampleResponse>* ReplayServiceImpl::Sample(
    grpc::CallbackServerContext* context) {
  return new SampleStream(this, context);
}

grpc::Status ReplayServiceImpl::UpdatePriorities(grpc::ServerContext* context,
                                                 const v1::UpdatePrioritiesRequest* request,
                                                 v1::UpdatePrioritiesResponse* response) {
  const CallGuard call(this);
  if (absl::Status admitted =
          AdmitClient(options_.client_limiter.get(), *context, "ReplayService.UpdatePriorities");
      !admitted.ok()) {
    return Fail("UpdatePriorities", admitted);
  }
  if (request->table().empty()) return Fail("UpdatePriorities", TableRequired("update"));
  absl::StatusOr<std::shared_ptr<Entry>> entry = Find(request->table());
  if (!entry.ok()) return Fail("UpdatePriorities", entry.status());
  absl::StatusOr<v1::UpdatePrioritiesResponse> result = (*entry)->table->UpdatePriorities(*request);
  if (!result.ok()) return Fail("UpdatePriorities", result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::Info(grpc::ServerContext*, const v1::ReplayInfoRequest* request,
                                     v1::ReplayInfoResponse* response) {
  const CallGuard call(this);
  std::vector<std::shared_ptr<Table>> tables;
  if (request->tables().empty()) {
    tables = Tables();
  } else {
    std::vector<std::string> names(request->tables().begin(), request->tables().end());
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    for (const std::string& name : names) {
      absl::StatusOr<std::shared_ptr<Entry>> entry = Find(name);
      if (!entry.ok()) return Fail("Info", entry.status());
      tables.push_back((*entry)->table);
    }
  }
  for (const std::shared_ptr<Table>& table : tables) *response->add_tables() = table->Info();
  response->set_shard_index(options_.shard_index);
  SetTimestamp(absl::Now(), response->mutable_time());
  return grpc::Status::OK;
}

grpc::Status ReplayServiceImpl::Checkpoint(grpc::ServerContext* context,
                                           const v1::ReplayCheckpointRequest*,
                                           v1::ReplayCheckpointResponse* response) {
  const CallGuard call(this);
  if (grpc::Status allowed =
          options_.authorizer->Check(*context, Role::kAdmin, "ReplayService.Checkpoint");
      !allowed.ok()) {
    return allowed;
  }
  absl::StatusOr<v1::ReplayCheckpointResponse> result = CheckpointNow();
  if (!result.ok()) return Fail("Checkpoint", result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace engram::replay
