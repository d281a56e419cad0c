#ifndef ENGRAM_REPLAY_SERVER_WAL_H_
#define ENGRAM_REPLAY_SERVER_WAL_H_

// The write-ahead log of a replay shard in durable mode (--durability=log): every insert
// request, table creation and deletion is appended and fsync'd before it is acknowledged,
// so an acknowledged item survives a crash (kill -9, power loss) of the shard.
//
// ---- Layout -----------------------------------------------------------------------------
//
//   <dir>/wal-<segment, 20 digits>.log     segments, numbered from 0, replayed in order
//
// A segment is: 8 bytes "ENGRAMWL", uint32 format version (1), uint64 segment number, then
// records of the checkpoint's framing (checkpoint.h): uint32 payload length L, uint8 type,
// L payload bytes, uint32 zlib crc32 over the length, type and payload. Integers are
// little-endian. Record types:
//   1 insert        engram.v1.InsertRequest (table and items, as the client sent them)
//   2 create table  engram.v1.TableSpec
//   3 delete table  the table name (raw bytes)
//
// ---- Checkpoints bound the log ----------------------------------------------------------
//
// Before writing a checkpoint the server calls Rotate(): records appended afterwards go to
// a new segment S. The service applies a change to its tables BEFORE appending its record,
// so every record in a segment < S describes a change made before the checkpoint's
// snapshot began, which the checkpoint therefore contains. The checkpoint's MANIFEST stores
// S (wal_segment), and once the checkpoint is complete DropBefore(S) deletes the older
// segments. Recovery loads the newest checkpoint and replays segments >= its wal_segment.
// Records of segment S may also be in the checkpoint; replaying them is harmless because
// inserts are idempotent by key (a key already stored is acknowledged, not stored again)
// and creating an identical table is a no-op.
//
// What the log does not hold: priority updates, samples (times sampled, items sampled out
// at max_times_sampled) and rate-limiter counts since the last checkpoint. After a crash
// those come from the checkpoint; the items themselves all come back.
//
// ---- Group commit ------------------------------------------------------------------------
//
// Append() copies the record into a shared buffer and waits. One background thread writes
// whatever has accumulated with one write() and one fdatasync(), then releases every
// Append it covered: concurrent inserts (one per Insert stream) share an fsync, and the
// batch grows by itself under load. After a write or sync error the log stays failed:
// every later Append returns the error (INTERNAL naming the file) and nothing more is
// acknowledged.
//
// Torn writes: a crash during a write can leave the last segment ending in a partial or
// garbled record, which was never acknowledged. ReplayWal cuts the last segment at its
// first bad record (truncating the file) and reports the bytes cut. A bad record in any
// other segment is DATA_LOSS.
//
// Thread-safe: every method may be called concurrently.
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace engram::replay {

enum class WalRecord : uint8_t { kInsert = 1, kCreateTable = 2, kDeleteTable = 3 };

// The largest record payload accepted (an InsertRequest is bounded by the gRPC message
// size; this is far above it and guards readers against absurd lengths).
inline constexpr uint32_t kMaxWalRecord = uint32_t{1} << 30;

struct WalMetrics {
  prometheus::Counter* records = nullptr;         // engram_replay_wal_records_total
  prometheus::Counter* bytes = nullptr;           // engram_replay_wal_bytes_total
  prometheus::Counter* syncs = nullptr;           // engram_replay_wal_syncs_total
  prometheus::Histogram* sync_seconds = nullptr;  // engram_replay_wal_sync_seconds

  static WalMetrics Create(prometheus::Registry& registry);
};

class WriteAheadLog {
 public:
  struct Stats {
    int64_t records = 0;
    int64_t bytes = 0;          // record bytes appended (headers excluded)
    int64_t syncs = 0;          // write + fdatasync rounds
    int64_t segment = 0;        // the segment new records go to
    int64_t segment_bytes = 0;  // record bytes appended since the last Rotate (or Open)
  };

  // Opens `dir` (created if needed) for appending; the first record creates segment
  // `first_segment`, which must not exist yet (FAILED_PRECONDITION otherwise: replay the log
  // first, ReplayWal says which segment is next). INVALID_ARGUMENT for first_segment < 0,
  // INTERNAL for I/O errors.
  static absl::StatusOr<std::unique_ptr<WriteAheadLog>> Open(const std::string& dir,
                                                             int64_t first_segment,
                                                             WalMetrics metrics = {});
  // Syncs what is pending and stops the background thread.
  ~WriteAheadLog();

  WriteAheadLog(const WriteAheadLog&) = delete;
  WriteAheadLog& operator=(const WriteAheadLog&) = delete;

  // Appends one record and blocks until it is on disk. INVALID_ARGUMENT for a payload over
  // kMaxWalRecord; INTERNAL once a write or sync has failed (the log stays failed).
  absl::Status Append(WalRecord type, absl::string_view payload) ABSL_LOCKS_EXCLUDED(mu_);

  // Starts a new segment: waits until every record appended before the call is on disk and
  // returns the number of the segment later records go to. INTERNAL when the log failed.
  absl::StatusOr<int64_t> Rotate() ABSL_LOCKS_EXCLUDED(mu_);

  // Deletes the segment files numbered below `segment` (after a checkpoint that holds
  // them). INTERNAL naming the file when one cannot be deleted; the rest are still tried.
  absl::Status DropBefore(int64_t segment) ABSL_LOCKS_EXCLUDED(mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& dir() const { return dir_; }

 private:
  struct Chunk {
    int64_t segment = 0;
    std::string bytes;
    int64_t records = 0;
  };

  WriteAheadLog(std::string dir, int64_t first_segment, WalMetrics metrics);
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // Writes `chunks` to their segment files and syncs (the sync thread only).
  absl::Status WriteChunks(std::deque<Chunk>& chunks);
  absl::Status OpenSegment(int64_t segment);

  const std::string dir_;
  const WalMetrics metrics_;

  mutable absl::Mutex mu_;
  std::deque<Chunk> pending_ ABSL_GUARDED_BY(mu_);
  int64_t segment_ ABSL_GUARDED_BY(mu_);
  int64_t appended_ ABSL_GUARDED_BY(mu_) = 0;  // records appended (a ticket per Append)
  int64_t durable_ ABSL_GUARDED_BY(mu_) = 0;   // records on disk
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // Owned by the sync thread.
  int fd_ = -1;
  int64_t open_segment_ = -1;

  std::thread thread_;
};

// What ReplayWal found.
struct WalReplayInfo {
  int64_t segments = 0;         // segment files replayed
  int64_t records = 0;          // records passed to the callback
  int64_t next_segment = 0;     // the first segment number free for WriteAheadLog::Open
  int64_t truncated_bytes = 0;  // cut from the end of the last segment (a torn write)
  std::string truncated_file;   // which file was cut ("" if none)
};

// Replays the segments numbered >= from_segment under `dir`, oldest first, calling `apply`
// for every record; an error from `apply` stops the replay and is returned, prefixed with
// the file and offset. A torn tail of the last segment is cut off (see above). DATA_LOSS
// naming the file and offset for a bad header or a bad record in an earlier segment;
// INTERNAL for I/O errors. A missing `dir` is an empty log (next_segment = from_segment).
// Segment files below from_segment are left alone (DropBefore removes them).
absl::StatusOr<WalReplayInfo> ReplayWal(
    const std::string& dir, int64_t from_segment,
    const std::function<absl::Status(WalRecord type, absl::string_view payload)>& apply);

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_WAL_H_
