#include "replay_server/client/writer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/check.h"
#include "common/status.h"
#include "common/status_macros.h"

namespace engram::replay {
namespace {

uint32_t DrawProcessId() {
  // A fresh, non-deterministically seeded generator: every process gets its own id.
  absl::BitGen gen;
  return absl::Uniform<uint32_t>(absl::IntervalClosed, gen, 1, 0xffffffffu);
}

enum class Failure {
  kTransient,        // reconnect with backoff, resend everything
  kRequestRejected,  // the first unacknowledged request is bad: drop it, reconnect now
  kPersistent,       // tell the caller, keep everything, retry with backoff
};

Failure Classify(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
      return Failure::kRequestRejected;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kUnimplemented:
      return Failure::kPersistent;
    default:
      // UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED, CANCELLED (by the
      // server: we only cancel when stopping), and INTERNAL/UNKNOWN/DATA_LOSS, which gRPC
      // also uses for broken transports. Retrying cannot store anything twice.
      return Failure::kTransient;
  }
}

// `insert request to table "t" (3 items, first key 17)`, for error messages.
std::string DescribeInsertRequest(const v1::InsertRequest& request) {
  return absl::StrCat("insert request to table \"", request.table(), "\" (", request.items_size(),
                      " items, first key ", request.items_size() > 0 ? request.items(0).key() : 0,
                      ")");
}

}  // namespace

// ---- KeyGenerator ---------------------------------------------------------------------------

KeyGenerator::KeyGenerator() : KeyGenerator(DrawProcessId()) {}

KeyGenerator::KeyGenerator(uint32_t process_id) : process_id_(process_id) {
  ENGRAM_CHECK(process_id != 0) << "KeyGenerator process id must be non-zero";
}

uint64_t KeyGenerator::Next() {
  const uint64_t n = counter_.fetch_add(1, std::memory_order_relaxed);
  return (static_cast<uint64_t>(process_id_) << 32) | (n & 0xffffffffu);
}

// ---- ReplayWriter ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ReplayWriter>> ReplayWriter::Create(
    std::shared_ptr<grpc::ChannelInterface> channel, ReplayWriterOptions options) {
  if (channel == nullptr) return absl::InvalidArgumentError("channel: must not be null");
  if (options.table.empty()) return absl::InvalidArgumentError("table: must not be empty");
  if (options.max_items_per_request < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_items_per_request: must be >= 1, got ", options.max_items_per_request));
  }
  if (options.max_unacked_requests < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_unacked_requests: must be >= 1, got ", options.max_unacked_requests));
  }
  ENGRAM_RETURN_IF_ERROR(ValidateBackoff(options.initial_backoff, options.max_backoff));
  if (options.stream_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("stream_deadline: must be > 0, got ",
                                                   absl::FormatDuration(options.stream_deadline)));
  }
  return std::unique_ptr<ReplayWriter>(new ReplayWriter(std::move(channel), std::move(options)));
}

ReplayWriter::ReplayWriter(std::shared_ptr<grpc::ChannelInterface> channel,
                           ReplayWriterOptions options)
    : options_(std::move(options)), stub_(v1::ReplayService::NewStub(std::move(channel))) {
  partial_.set_table(options_.table);
  absl::MutexLock lock(&join_mu_);
  thread_ = std::thread([this] { Run(); });
}

ReplayWriter::~ReplayWriter() {
  {
    absl::MutexLock lock(&mu_);
    StopLocked();
  }
  Join();
}

void ReplayWriter::Join() {
  absl::MutexLock lock(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

void ReplayWriter::StopLocked() {
  stopping_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

absl::Status ReplayWriter::Append(v1::Item item, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat("writer for table \"", options_.table,
                                                      "\" is closed; item key ", item.key(),
                                                      " not appended"));
  }
  if (item.key() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("item.key: must be non-zero (table \"",
                                                   options_.table, "\"); item not appended"));
  }
  // Room is needed only when this item seals the request; a partial request never waits.
  if (partial_.items_size() + 1 >= options_.max_items_per_request) {
    const auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(unacked_.size()) < options_.max_unacked_requests || closed_ ||
             stopping_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&has_room), deadline)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "table \"", options_.table, "\": ", unacked_.size(),
          " insert requests unacknowledged (max_unacked_requests ", options_.max_unacked_requests,
          ")", last_stream_error_.ok() ? "" : "; last stream error: ",
          last_stream_error_.ok() ? "" : last_stream_error_.ToString(), "; item key ", item.key(),
          " not appended"));
    }
    if (closed_ || stopping_) {
      return absl::FailedPreconditionError(absl::StrCat("writer for table \"", options_.table,
                                                        "\" was closed while waiting; item key ",
                                                        item.key(), " not appended"));
    }
  }
  *partial_.add_items() = std::move(item);
  ++stats_.items_appended;
  if (partial_.items_size() >= options_.max_items_per_request) SealLocked();
  return TakeErrorLocked();
}

void ReplayWriter::SealLocked() {
  if (partial_.items_size() == 0) return;
  Pending pending;
  pending.request = std::make_shared<const v1::InsertRequest>(std::move(partial_));
  pending.seq = ++last_sealed_;
  unacked_.push_back(std::move(pending));
  partial_ = v1::InsertRequest();
  partial_.set_table(options_.table);
}

absl::Status ReplayWriter::Flush(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("writer for table \"", options_.table, "\" is closed"));
  }
  return FlushLocked(deadline);
}

absl::Status ReplayWriter::FlushLocked(absl::Time deadline) {
  SealLocked();
  const int64_t target = last_sealed_;
  const auto settled = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_through_ >= target || stopping_;
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&settled), deadline)) {
    int64_t items = 0;
    for (const Pending& p : unacked_) items += p.request->items_size();
    return absl::DeadlineExceededError(
        absl::StrCat("table \"", options_.table, "\": ", unacked_.size(), " insert requests (",
                     items, " items) still unacknowledged at the deadline",
                     last_stream_error_.ok() ? "" : "; last stream error: ",
                     last_stream_error_.ok() ? "" : last_stream_error_.ToString()));
  }
  if (done_through_ < target) {
    return absl::CancelledError(
        absl::StrCat("writer for table \"", options_.table, "\" is shutting down"));
  }
  return TakeErrorLocked();
}

absl::Status ReplayWriter::Close(absl::Time deadline) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::OkStatus();
    status = FlushLocked(deadline);
    closed_ = true;
    closing_ = true;
    if (status.ok() || !absl::IsDeadlineExceeded(status)) {
      if (!mu_.AwaitWithDeadline(absl::Condition(&finished_), deadline)) {
        status = absl::DeadlineExceededError(
            absl::StrCat("table \"", options_.table,
                         "\": the insert stream did not finish before the deadline"));
      } else if (status.ok()) {
        status = close_status_;
        if (status.ok()) status = TakeErrorLocked();
      }
    }
    StopLocked();
  }
  Join();
  return status;
}

ReplayWriter::Stats ReplayWriter::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = stats_;
  stats.unacked_requests = static_cast<int64_t>(unacked_.size());
  stats.unacked_items = partial_.items_size();
  for (const Pending& p : unacked_) stats.unacked_items += p.request->items_size();
  return stats;
}

void ReplayWriter::RecordErrorLocked(absl::Status error) {
  if (error_.ok()) {
    error_ = std::move(error);
  } else {
    ++more_errors_;
  }
}

absl::Status ReplayWriter::TakeErrorLocked() {
  if (error_.ok()) return absl::OkStatus();
  absl::Status error = std::move(error_);
  if (more_errors_ > 0) {
    error = absl::Status(
        error.code(), absl::StrCat(error.message(), " (and ", more_errors_, " more errors since)"));
  }
  error_ = absl::OkStatus();
  more_errors_ = 0;
  return error;
}

absl::Duration ReplayWriter::NextBackoffLocked() {
  ++failed_attempts_;
  return JitteredBackoff(failed_attempts_, options_.initial_backoff, options_.max_backoff, rng_);
}

void ReplayWriter::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Streams open lazily: an idle writer holds no stream and makes no connection attempts.
      mu_.Await(absl::Condition(
          +[](ReplayWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->stopping_ || w->closing_ || !w->unacked_.empty();
          },
          this));
      if (stopping_ || (closing_ && unacked_.empty())) break;
    }
    const absl::Status status = RunStream();
    absl::MutexLock lock(&mu_);
    if (stopping_) break;
    if (status.ok() && closing_ && unacked_.empty()) break;
    if (HandleStreamEnd(status)) {
      const absl::Duration backoff = NextBackoffLocked();
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](ReplayWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
                                 return w->stopping_ || (w->closing_ && w->unacked_.empty());
                               },
                               this),
                           backoff);
    }
  }
  absl::MutexLock lock(&mu_);
  finished_ = true;
}

absl::Status ReplayWriter::RunStream() {
  grpc::ClientContext context;
  if (options_.stream_deadline != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.stream_deadline));
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("writer stopping");
    context_ = &context;
    sent_on_stream_ = 0;
    stream_ended_ = false;
    protocol_error_ = absl::OkStatus();
    if (ever_connected_) ++stats_.reconnects;
    ever_connected_ = true;
  }
  std::unique_ptr<grpc::ClientReaderWriter<v1::InsertRequest, v1::InsertResponse>> stream =
      stub_->Insert(&context);
  std::thread reader([this, &stream] { ReadAcks(stream.get()); });

  bool half_close = false;
  while (true) {
    std::shared_ptr<const v1::InsertRequest> request;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ReplayWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->stopping_ || w->stream_ended_ || w->sent_on_stream_ < w->unacked_.size() ||
                   (w->closing_ && w->unacked_.empty());
          },
          this));
      if (stopping_ || stream_ended_) break;
      if (sent_on_stream_ == unacked_.size()) {
        half_close = true;  // closing, and everything is acknowledged
        break;
      }
      Pending& pending = unacked_[sent_on_stream_++];
      if (pending.written) ++stats_.requests_resent;
      pending.written = true;
      ++stats_.requests_sent;
      request = pending.request;
    }
    // A failed Write means the call is over; the reader collects the acks sent before the
    // end and then the status, so the stream is not cancelled here (that would replace the
    // server's status by CANCELLED).
    if (!stream->Write(*request)) break;
  }
  if (half_close) stream->WritesDone();
  reader.join();
  absl::Status status = FromGrpc(stream->Finish());
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
  if (!protocol_error_.ok()) status = protocol_error_;
  return status;
}

void ReplayWriter::ReadAcks(
    grpc::ClientReaderWriter<v1::InsertRequest, v1::InsertResponse>* stream) {
  v1::InsertResponse response;
  while (stream->Read(&response)) {
    absl::MutexLock lock(&mu_);
    if (!protocol_error_.ok()) continue;  // cancelled; drain
    const v1::InsertRequest* expected =
        sent_on_stream_ > 0 ? unacked_.front().request.get() : nullptr;
    bool matches = expected != nullptr && expected->items_size() == response.keys_size();
    for (int i = 0; matches && i < response.keys_size(); ++i) {
      matches = expected->items(i).key() == response.keys(i);
    }
    if (!matches) {
      // Acks must follow requests one to one; anything else is a server bug. Resending on a
      // new stream is still safe (idempotent keys), so treat it like a broken stream.
      protocol_error_ = absl::InternalError(absl::StrCat(
          "table \"", options_.table, "\": acknowledgement of ", response.keys_size(),
          " keys (first ", response.keys_size() > 0 ? response.keys(0) : 0,
          ") does not match the oldest unacknowledged request",
          expected == nullptr ? std::string(" (none was sent)")
                              : absl::StrCat(" (", DescribeInsertRequest(*expected), ")")));
      if (context_ != nullptr) context_->TryCancel();
      continue;
    }
    stats_.items_acknowledged += response.keys_size();
    done_through_ = unacked_.front().seq;
    unacked_.pop_front();
    --sent_on_stream_;
    failed_attempts_ = 0;
  }
  absl::MutexLock lock(&mu_);
  stream_ended_ = true;
}

bool ReplayWriter::HandleStreamEnd(const absl::Status& status) {
  if (status.ok()) {
    // The server ended the stream although we did not half-close (or did, with requests
    // still queued): reconnect, politely.
    last_stream_error_ = absl::UnavailableError("server ended the insert stream early");
    return true;
  }
  last_stream_error_ = status;
  switch (Classify(status.code())) {
    case Failure::kTransient:
      return true;
    case Failure::kRequestRejected: {
      if (sent_on_stream_ == 0) {
        // Nothing of ours was refused (the stream failed before any request was read).
        RecordErrorLocked(
            absl::Status(status.code(), absl::StrCat("insert stream to table \"", options_.table,
                                                     "\" failed: ", status.message())));
        return true;
      }
      const Pending& failed = unacked_.front();
      RecordErrorLocked(absl::Status(
          status.code(), absl::StrCat("earlier ", DescribeInsertRequest(*failed.request),
                                      " was rejected and dropped: ", status.message())));
      stats_.items_dropped += failed.request->items_size();
      done_through_ = failed.seq;
      unacked_.pop_front();
      // The rest of the queue is probably fine: resend it at once.
      return false;
    }
    case Failure::kPersistent:
      RecordErrorLocked(
          absl::Status(status.code(), absl::StrCat("insert stream to table \"", options_.table,
                                                   "\" failed (retrying): ", status.message())));
      return true;
  }
  return true;
}

}  // namespace engram::replay
