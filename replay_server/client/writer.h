#ifndef ENGRAM_REPLAY_SERVER_CLIENT_WRITER_H_
#define ENGRAM_REPLAY_SERVER_CLIENT_WRITER_H_

// Client side of ReplayService.Insert: what an actor uses to stream items to ONE shard.
//
//   KeyGenerator keys;                       // one per process
//   auto writer = ReplayWriter::Create(channel, {.table = "replay"}).value();
//   item.set_key(keys.Next());
//   ENGRAM_RETURN_IF_ERROR(writer->Append(std::move(item), absl::Now() + absl::Seconds(10)));
//   ...
//   ENGRAM_RETURN_IF_ERROR(writer->Close(absl::Now() + absl::Seconds(30)));

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/v1/replay.grpc.pb.h"
#include "engram/v1/replay.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace engram::replay {

// Item keys as engram.v1.Item recommends: (process id << 32) | counter, where the process
// id is a random non-zero 32-bit number drawn at construction and the counter starts at 1.
// Keys are unique within a generator for its first 2^32 - 1 keys (the counter's low 32 bits
// then wrap; keys stay non-zero because the process id is), and unique across processes with
// high probability (two processes collide on their id with probability 2^-32).
//
// Thread-safe and lock-free: Next() may be called from any number of threads.
class KeyGenerator {
 public:
  KeyGenerator();
  // A fixed process id, for tests. CHECK-fails on 0.
  explicit KeyGenerator(uint32_t process_id);

  uint64_t Next();
  uint32_t process_id() const { return process_id_; }

 private:
  const uint32_t process_id_;
  std::atomic<uint64_t> counter_{1};
};

struct ReplayWriterOptions {
  // Table every item is inserted into. Required.
  std::string table;
  // Items per InsertRequest, >= 1: Append seals the current request when it holds this many
  // (Flush and Close seal a partial one).
  int max_items_per_request = 64;
  // Sealed requests not yet acknowledged by the server, >= 1. When this many are
  // outstanding, Append blocks (until its deadline) for an acknowledgement: backpressure
  // from a slow or rate-limited shard reaches the actor instead of growing memory.
  int max_unacked_requests = 64;
  // Reconnect backoff after a transient failure: the n-th consecutive failed attempt waits
  // min(max_backoff, initial_backoff * 2^(n-1)) scaled by a random factor in [0.5, 1.0)
  // (jitter, so that actors do not reconnect in lockstep). Reset by any acknowledgement.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Deadline of each Insert stream (attempt), counted from when it opens. Infinite (the
  // default) keeps one stream for the writer's life; a finite value ends the stream with
  // DEADLINE_EXCEEDED, after which the writer reconnects like after any transient error.
  absl::Duration stream_deadline = absl::InfiniteDuration();
};

// Streams items to one table of one replay shard over a single Insert stream at a time,
// and makes sure that every appended item is stored exactly once, in order, across
// transient failures.
//
// Delivery. Append() adds an item to the current request; a full request is sealed and
// queued. A background thread owns the bidi stream: it sends queued requests in order,
// reads the InsertResponses (one per request, in order) and drops acknowledged requests
// from the queue. When the stream fails transiently (UNAVAILABLE, RESOURCE_EXHAUSTED,
// DEADLINE_EXCEEDED, ABORTED, CANCELLED by the server, INTERNAL/UNKNOWN transport errors,
// or a server that restarts) it reconnects with backoff and resends every unacknowledged
// request, same keys, same order. A resent request the server had already stored is
// acknowledged as duplicates and not stored again (keys make Insert idempotent), so nothing
// acknowledged is lost and nothing is stored twice.
//
// Errors. A request the server rejects (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
// OUT_OF_RANGE, ALREADY_EXISTS) is dropped, the writer reconnects at once to send the rest,
// and the error is returned — once, with its code, naming the table and the first key of
// the dropped request — by the next Append, Flush or Close. So are PERMISSION_DENIED,
// UNAUTHENTICATED and UNIMPLEMENTED, which drop nothing: the writer keeps retrying with
// backoff. Such an "earlier request" error from Append does NOT mean that Append's own item
// was refused: it was appended. Append's own refusals are DEADLINE_EXCEEDED (no room
// before the deadline), FAILED_PRECONDITION (closed) and INVALID_ARGUMENT for key 0; their
// messages say "not appended".
//
// Thread-safe: every method may be called concurrently (items of concurrent Appends are
// sent in the order the calls take the writer's lock). Destroying a writer without Close
// cancels the stream and joins its thread: unacknowledged items are then lost.
class ReplayWriter {
 public:
  struct Stats {
    int64_t items_appended = 0;      // accepted by Append
    int64_t items_acknowledged = 0;  // acknowledged by the server (stored or duplicate)
    int64_t items_dropped = 0;       // in requests the server rejected
    int64_t requests_sent = 0;       // InsertRequests written, resends included
    int64_t requests_resent = 0;     // of which written again on a later stream
    int64_t reconnects = 0;          // streams opened after the first one
    int64_t unacked_requests = 0;    // sealed, not yet acknowledged (<= max_unacked_requests)
    int64_t unacked_items = 0;       // appended, not yet acknowledged (partial request included)
  };

  // INVALID_ARGUMENT names the offending option (`table`, `max_items_per_request`, ...).
  // Does not connect: the first stream opens when the first request is sealed.
  static absl::StatusOr<std::unique_ptr<ReplayWriter>> Create(
      std::shared_ptr<grpc::ChannelInterface> channel, ReplayWriterOptions options);
  ~ReplayWriter();

  ReplayWriter(const ReplayWriter&) = delete;
  ReplayWriter& operator=(const ReplayWriter&) = delete;

  // Appends `item` (its key must be non-zero) to the current request, sealing the request
  // when it is full. Blocks while max_unacked_requests sealed requests are unacknowledged,
  // until `deadline` (DEADLINE_EXCEEDED, item not appended). Does not wait for the server
  // otherwise. See the class comment for errors of earlier requests.
  absl::Status Append(v1::Item item, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Seals the partial request and blocks until every item appended before the call is
  // acknowledged (or dropped by a server rejection, whose error is then returned). Items
  // appended concurrently, after Flush began, are not waited for. Sealing a partial request
  // may take the queue to max_unacked_requests + 1 (Flush does not wait for room).
  // DEADLINE_EXCEEDED at `deadline`, saying how much is still unacknowledged and the last
  // stream error; nothing is lost by that, the writer keeps trying.
  absl::Status Flush(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Flush, then half-closes the stream and waits for the server's final status. After
  // Close (whatever it returns) the stream is gone and Append/Flush return
  // FAILED_PRECONDITION; a second Close returns OK. When `deadline` passes first the stream
  // is cancelled and DEADLINE_EXCEEDED returned (unacknowledged items are lost).
  absl::Status Close(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const ReplayWriterOptions& options() const { return options_; }

 private:
  // A sealed request: `seq` numbers requests in sealing order (from 1); `written` says
  // whether an earlier stream carried it already.
  struct Pending {
    std::shared_ptr<const v1::InsertRequest> request;
    int64_t seq = 0;
    bool written = false;
  };

  ReplayWriter(std::shared_ptr<grpc::ChannelInterface> channel, ReplayWriterOptions options);

  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // One stream attempt; returns its final status (OK only after a clean Close).
  absl::Status RunStream() ABSL_LOCKS_EXCLUDED(mu_);
  void ReadAcks(grpc::ClientReaderWriter<v1::InsertRequest, v1::InsertResponse>* stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Decides what a failed stream means for the queue; returns whether to back off.
  bool HandleStreamEnd(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SealLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordErrorLocked(absl::Status error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status TakeErrorLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FlushLocked(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration NextBackoffLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Join() ABSL_LOCKS_EXCLUDED(mu_);

  const ReplayWriterOptions options_;
  const std::unique_ptr<v1::ReplayService::Stub> stub_;

  mutable absl::Mutex mu_;
  // The request being filled by Append (not yet in `unacked_`).
  v1::InsertRequest partial_ ABSL_GUARDED_BY(mu_);
  // Sealed requests in order; the first `sent_on_stream_` were written on the current stream.
  std::deque<Pending> unacked_ ABSL_GUARDED_BY(mu_);
  size_t sent_on_stream_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_sealed_ ABSL_GUARDED_BY(mu_) = 0;      // seq of the newest sealed request
  int64_t done_through_ ABSL_GUARDED_BY(mu_) = 0;     // every request up to this seq is settled
  bool stream_ended_ ABSL_GUARDED_BY(mu_) = false;    // the reader saw the end of the stream
  absl::Status protocol_error_ ABSL_GUARDED_BY(mu_);  // an ack that matched no request
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // of the current stream
  bool closing_ ABSL_GUARDED_BY(mu_) = false;       // Close: half-close once all is acknowledged
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;      // cancel and exit now
  bool finished_ ABSL_GUARDED_BY(mu_) = false;      // the thread has exited
  bool closed_ ABSL_GUARDED_BY(mu_) = false;        // Close was called
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);  // final status of the last stream
  // First error not yet returned to the caller, and how many more came after it.
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int64_t more_errors_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_stream_error_ ABSL_GUARDED_BY(mu_);  // for DEADLINE_EXCEEDED messages
  int failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  bool ever_connected_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);

  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_CLIENT_WRITER_H_
