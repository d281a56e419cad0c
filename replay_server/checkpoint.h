#ifndef ENGRAM_REPLAY_SERVER_CHECKPOINT_H_
#define ENGRAM_REPLAY_SERVER_CHECKPOINT_H_

// Checkpoints of a replay shard: every table, with its items and counters, written to a
// directory that a restarted server loads to resume where it stopped.
//
// ---- Layout -----------------------------------------------------------------------------
//
//   <root_dir>/ckpt-<UTC yyyymmddThhmmss.ffffffZ>-shard<k>/   a complete checkpoint
//       MANIFEST          text proto (engram.replay.checkpoint.Manifest, checkpoint.proto):
//                         format_version, shard_index, time, wal_segment (the first
//                         write-ahead log segment not in the checkpoint, wal.h), and per
//                         table: name, file, items, bytes (file size) and crc32 (zlib crc32
//                         of the whole file)
//       <name>.table      one file per table (below)
//   <root_dir>/.tmp-ckpt-<time>-shard<k>-<pid>-<n>/           a checkpoint being written
//
// A checkpoint is written into its .tmp-ckpt-* directory (every file fsync'd, MANIFEST
// last, then the directory), renamed to its final ckpt-* name (renameat2 NOREPLACE) and
// the root directory fsync'd. A crash therefore leaves either nothing or a .tmp-ckpt-*
// directory under root_dir, never a partial checkpoint under a final name. The time in the
// name is when the snapshot started; if that name is taken (two checkpoints in the same
// microsecond) it is advanced by a microsecond until free, so names sort by time.
//
// ---- Table file (<name>.table), format version 1; integers little-endian --------------
//
//   header   8 bytes "ENGRAMRT", uint32 format version (1)
//   records  uint32 payload length L, uint8 type, L payload bytes,
//            uint32 crc32 (zlib) over the length, type and payload bytes
//     record 1          type 1 (spec):     engram.v1.TableSpec, serialized
//     record 2          type 2 (counters): engram.replay.checkpoint.CountersRecord
//     records 3..N+2    type 3 (item):     int32 times_sampled, then the engram.v1.Item
//                                          serialized (key, priority, payload), oldest first
//     record N+3        type 4 (footer):   uint64 item count N
//   nothing after the footer.
//
// Every record carries its own checksum, so a corrupt byte is reported with the record
// (and item) it is in; the MANIFEST's size and whole-file crc32 catch anything else
// (e.g. a truncated or swapped file).
//
// ---- Consistency, pause and memory ------------------------------------------------------
//
// Each table is snapshotted by Table::Export, which holds the table's lock while it
// iterates: inserts, samples and priority updates of that table wait meanwhile. To keep
// that pause short, the callback only serializes each item into large in-memory buffers
// that were mapped and prefaulted before the lock was taken (sized from the table's last
// checkpoint in this process, else from its payload bytes); checksums and all file I/O
// happen after the lock is released. Measured on the 2-core development VM for 100K
// MinAtar transitions (10x10x10 uint8): the table is locked ~0.15-0.4 s (~0.05 s of it is
// Export's own copying; the first checkpoint of a table in a process can pause up to
// ~0.6 s, as part of its buffer is faulted in under the lock). CheckpointInfo reports the
// longest pause and the whole duration.
//
// Each table is a consistent state on its own (items and counters at one instant);
// different tables are snapshotted one after the other, not at one common instant.
//
// Memory: one table is buffered at a time, so the extra memory peaks at about the
// serialized size of the largest table. A transition carries both of its observations
// (the table stores shared frames once), so 100K MinAtar transitions take ~207 MB in
// memory and on disk, about twice the table's payload.
//
// Retention renames an old checkpoint to a .tmp-ckpt-* name before deleting it, so a crash
// mid-delete never leaves a half-deleted checkpoint under a final name either.
//
// Thread-safety: the functions are thread-safe, and concurrent writes within one process
// are fine. Across processes, at most one may write a given (root_dir, shard): a
// .tmp-ckpt-*-shard<k>-* directory that this process is not writing is taken for the
// leftover of a crashed write and deleted by the next WriteCheckpoint of shard k.
// Blocking: all functions do file I/O (fsync included).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "replay_server/table.h"

namespace engram::replay {

inline constexpr uint32_t kCheckpointFormatVersion = 1;

// Result of WriteCheckpoint.
struct CheckpointInfo {
  std::string path;  // the checkpoint directory, <root_dir>/ckpt-...-shard<k>
  absl::Time time;   // when the snapshot started (the time in the directory name)
  int64_t items = 0;
  int64_t bytes = 0;  // bytes written: table files and MANIFEST
  // Wall time of the whole call (snapshot, write, fsync, rename, retention).
  absl::Duration duration = absl::ZeroDuration();
  // Longest time one table was locked by its snapshot (inserts/samples paused).
  absl::Duration max_pause = absl::ZeroDuration();
};

// Writes every table into a new directory <root_dir>/ckpt-<UTC time>-shard<shard_index>/
// atomically (see the layout above), creating root_dir if needed. Then keeps the newest
// `keep` checkpoints of this shard under root_dir and deletes older ones (never the one
// just written); a failure to delete an old checkpoint does not fail the call.
// INVALID_ARGUMENT for keep < 1, shard_index < 0, an empty root_dir or two tables with the
// same name; INTERNAL naming the file or directory on I/O errors; RESOURCE_EXHAUSTED when
// memory for a table's snapshot cannot be mapped. On error the temporary directory is
// removed and nothing else changes.
// `wal_segment` goes into the MANIFEST (see above; 0 without a log).
// `tables` must not contain null pointers.
absl::StatusOr<CheckpointInfo> WriteCheckpoint(const std::string& root_dir,
                                               const std::vector<std::shared_ptr<Table>>& tables,
                                               int32_t shard_index, int keep = 3,
                                               int64_t wal_segment = 0);

// The MANIFEST's wal_segment of the checkpoint directory `path`: the first log segment to
// replay after loading it. Errors as LoadCheckpoint's for the MANIFEST.
absl::StatusOr<int64_t> CheckpointWalSegment(const std::string& path);

// Reads and fully validates the checkpoint directory `path`, returning freshly created
// tables (in MANIFEST order) holding the same items (keys, priorities, payloads, times
// sampled, insertion order) and counters; each table is created with
// metrics_for(<table name>) (an empty function means no metrics). NOT_FOUND when `path`
// does not exist. DATA_LOSS naming the file and what is wrong: missing or unparsable
// MANIFEST, bad magic, unsupported version, checksum mismatch (naming the record and
// item), truncated record, item count mismatch (footer vs. records vs. MANIFEST), size or
// checksum differing from the MANIFEST, a table spec that fails validation, an item the
// table rejects. INTERNAL for I/O errors. On any error no table is returned.
absl::StatusOr<std::vector<std::unique_ptr<Table>>> LoadCheckpoint(
    const std::string& path,
    const std::function<TableMetrics(const std::string& table)>& metrics_for);

// The newest complete checkpoint directory under root_dir (a ckpt-<time>-shard<k> entry
// holding a MANIFEST; .tmp-ckpt-* and other entries are ignored), of any shard, by the time
// in its name. NOT_FOUND when there is none (or root_dir does not exist); INTERNAL when
// root_dir cannot be listed.
absl::StatusOr<std::string> LatestCheckpoint(const std::string& root_dir);

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_CHECKPOINT_H_
