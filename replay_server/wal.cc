#include "replay_server/wal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "replay_server/record_io.h"

namespace engram::replay {
namespace {

namespace fs = std::filesystem;
using record_io::Crc;
using record_io::ErrnoText;
using record_io::GetU32;
using record_io::GetU64;
using record_io::PutU32;
using record_io::PutU64;

constexpr char kMagic[8] = {'E', 'N', 'G', 'R', 'A', 'M', 'W', 'L'};
constexpr uint32_t kWalFormatVersion = 1;
constexpr size_t kHeaderSize = sizeof(kMagic) + 4 + 8;
// uint32 length + uint8 type before the payload, uint32 crc after it.
constexpr size_t kRecordPrefix = 5;
constexpr size_t kRecordOverhead = kRecordPrefix + 4;

absl::Status IoError(absl::string_view what, const std::string& path, int err) {
  return absl::InternalError(
      absl::StrCat("write-ahead log: ", what, " ", path, ": ", ErrnoText(err)));
}

std::string SegmentName(int64_t segment) { return absl::StrFormat("wal-%020d.log", segment); }

std::string SegmentPath(const std::string& dir, int64_t segment) {
  return (fs::path(dir) / SegmentName(segment)).string();
}

// Parses "wal-<digits>.log"; -1 for anything else.
int64_t ParseSegmentName(absl::string_view name) {
  int64_t segment = -1;
  if (!absl::ConsumePrefix(&name, "wal-") || !absl::ConsumeSuffix(&name, ".log") ||
      name.size() != 20 || !absl::SimpleAtoi(name, &segment)) {
    return -1;
  }
  return segment;
}

absl::Status SyncDirectory(const std::string& dir) {
  if (const int err = record_io::FsyncDirectory(dir); err != 0) {
    return IoError("fsync directory", dir, err);
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const char* data, size_t n, const std::string& path) {
  if (const int err = record_io::WriteFully(fd, data, n); err != 0) {
    return IoError("write", path, err);
  }
  return absl::OkStatus();
}

bool ValidType(uint8_t type) {
  return type >= static_cast<uint8_t>(WalRecord::kInsert) &&
         type <= static_cast<uint8_t>(WalRecord::kDeleteTable);
}

// Segment numbers under `dir`, ascending; an empty list when `dir` does not exist.
absl::StatusOr<std::vector<int64_t>> ListSegments(const std::string& dir) {
  std::vector<int64_t> segments;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return segments;
  for (fs::directory_iterator end; !ec && it != end; it.increment(ec)) {
    const int64_t segment = ParseSegmentName(it->path().filename().string());
    if (segment >= 0) segments.push_back(segment);
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("write-ahead log: cannot list ", dir, ": ", ec.message()));
  }
  std::sort(segments.begin(), segments.end());
  return segments;
}

// Reads one segment file, calling `apply` per good record. Sets *good_end to the offset
// after the last good record and *bad to what is wrong at that offset ("" when the file
// ends cleanly there).
absl::Status ReadSegment(const std::string& path, int64_t segment,
                         const std::function<absl::Status(WalRecord, absl::string_view)>& apply,
                         int64_t* records, int64_t* good_end, std::string* bad) {
  std::FILE* file = std::fopen(path.c_str(), "rbe");
  if (file == nullptr) return IoError("open", path, errno);
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{file};
  *good_end = 0;
  bad->clear();
  char header[kHeaderSize];
  const size_t got = std::fread(header, 1, kHeaderSize, file);
  if (std::ferror(file)) return IoError("read", path, errno);
  if (got < kHeaderSize) {
    *bad = absl::StrCat("header truncated (", got, " of ", kHeaderSize, " bytes)");
    return absl::OkStatus();
  }
  if (std::memcmp(header, kMagic, sizeof(kMagic)) != 0) {
    *bad = "bad magic (not a write-ahead log segment)";
    return absl::OkStatus();
  }
  if (const uint32_t version = GetU32(header + sizeof(kMagic)); version != kWalFormatVersion) {
    return absl::DataLossError(absl::StrCat("write-ahead log ", path, ": format version ", version,
                                            ", this build reads ", kWalFormatVersion));
  }
  if (const uint64_t number = GetU64(header + sizeof(kMagic) + 4);
      number != static_cast<uint64_t>(segment)) {
    return absl::DataLossError(absl::StrCat("write-ahead log ", path, ": header says segment ",
                                            number, ", the file name ", segment));
  }
  int64_t offset = kHeaderSize;
  *good_end = offset;
  std::string payload;
  while (true) {
    char prefix[kRecordPrefix];
    const size_t n = std::fread(prefix, 1, kRecordPrefix, file);
    if (std::ferror(file)) return IoError("read", path, errno);
    if (n == 0) return absl::OkStatus();  // a clean end
    if (n < kRecordPrefix) {
      *bad = "truncated record header";
      return absl::OkStatus();
    }
    const uint32_t length = GetU32(prefix);
    const uint8_t type = static_cast<uint8_t>(prefix[4]);
    if (length > kMaxWalRecord || !ValidType(type)) {
      *bad = absl::StrCat("bad record header (length ", length, ", type ", type, ")");
      return absl::OkStatus();
    }
    payload.resize(length + 4);
    if (std::fread(payload.data(), 1, payload.size(), file) != payload.size()) {
      if (std::ferror(file)) return IoError("read", path, errno);
      *bad = absl::StrCat("truncated record (", length, " payload bytes)");
      return absl::OkStatus();
    }
    uint32_t crc = Crc(0, prefix, kRecordPrefix);
    crc = Crc(crc, payload.data(), length);
    if (crc != GetU32(payload.data() + length)) {
      *bad = "record checksum mismatch";
      return absl::OkStatus();
    }
    if (absl::Status status =
            apply(static_cast<WalRecord>(type), absl::string_view(payload.data(), length));
        !status.ok()) {
      return absl::Status(status.code(), absl::StrCat("write-ahead log ", path, " at offset ",
                                                      offset, ": ", status.message()));
    }
    ++*records;
    offset += static_cast<int64_t>(kRecordOverhead + length);
    *good_end = offset;
  }
}

}  // namespace

WalMetrics WalMetrics::Create(prometheus::Registry& registry) {
  WalMetrics m;
  m.records = &prometheus::BuildCounter()
                   .Name("engram_replay_wal_records_total")
                   .Help("Records appended to the write-ahead log (inserts, table changes).")
                   .Register(registry)
                   .Add({});
  m.bytes = &prometheus::BuildCounter()
                 .Name("engram_replay_wal_bytes_total")
                 .Help("Bytes appended to the write-ahead log.")
                 .Register(registry)
                 .Add({});
  m.syncs = &prometheus::BuildCounter()
                 .Name("engram_replay_wal_syncs_total")
                 .Help("Write + fdatasync rounds of the write-ahead log (group commits).")
                 .Register(registry)
                 .Add({});
  m.sync_seconds = &prometheus::BuildHistogram()
                        .Name("engram_replay_wal_sync_seconds")
                        .Help("Time of one write + fdatasync round of the write-ahead log.")
                        .Register(registry)
                        .Add({}, prometheus::Histogram::BucketBoundaries{
                                     0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1});
  return m;
}

absl::StatusOr<std::unique_ptr<WriteAheadLog>> WriteAheadLog::Open(const std::string& dir,
                                                                   int64_t first_segment,
                                                                   WalMetrics metrics) {
  if (first_segment < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("write-ahead log: first segment must be >= 0, got ", first_segment));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("write-ahead log: cannot create directory ", dir, ": ", ec.message()));
  }
  ENGRAM_ASSIGN_OR_RETURN(const std::vector<int64_t> segments, ListSegments(dir));
  if (!segments.empty() && segments.back() >= first_segment) {
    return absl::FailedPreconditionError(absl::StrCat(
        "write-ahead log: ", SegmentPath(dir, segments.back()),
        " exists; replay the log and open at segment ", segments.back() + 1, " or later"));
  }
  return std::unique_ptr<WriteAheadLog>(new WriteAheadLog(dir, first_segment, metrics));
}

WriteAheadLog::WriteAheadLog(std::string dir, int64_t first_segment, WalMetrics metrics)
    : dir_(std::move(dir)), metrics_(metrics), segment_(first_segment) {
  stats_.segment = first_segment;
  thread_ = std::thread([this] { Run(); });
}

WriteAheadLog::~WriteAheadLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

absl::Status WriteAheadLog::Append(WalRecord type, absl::string_view payload) {
  if (payload.size() > kMaxWalRecord) {
    return absl::InvalidArgumentError(absl::StrCat("write-ahead log: record of ", payload.size(),
                                                   " bytes exceeds the limit of ", kMaxWalRecord));
  }
  char prefix[kRecordPrefix];
  PutU32(prefix, static_cast<uint32_t>(payload.size()));
  prefix[4] = static_cast<char>(type);
  char crc[4];
  PutU32(crc, Crc(Crc(0, prefix, kRecordPrefix), payload.data(), payload.size()));

  absl::MutexLock lock(&mu_);
  if (!failed_.ok()) return failed_;
  if (stopping_) return absl::FailedPreconditionError("write-ahead log: closed");
  if (pending_.empty() || pending_.back().segment != segment_) {
    pending_.emplace_back();
    pending_.back().segment = segment_;
  }
  Chunk& chunk = pending_.back();
  chunk.bytes.append(prefix, kRecordPrefix);
  chunk.bytes.append(payload.data(), payload.size());
  chunk.bytes.append(crc, 4);
  ++chunk.records;
  stats_.segment_bytes += static_cast<int64_t>(kRecordOverhead + payload.size());
  const int64_t ticket = ++appended_;
  const auto done = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return durable_ >= ticket || !failed_.ok();
  };
  mu_.Await(absl::Condition(&done));
  return durable_ >= ticket ? absl::OkStatus() : failed_;
}

absl::StatusOr<int64_t> WriteAheadLog::Rotate() {
  absl::MutexLock lock(&mu_);
  if (!failed_.ok()) return failed_;
  const int64_t target = appended_;
  ++segment_;
  stats_.segment = segment_;
  stats_.segment_bytes = 0;
  const auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return durable_ >= target || !failed_.ok();
  };
  mu_.Await(absl::Condition(&done));
  if (durable_ < target) return failed_;
  return segment_;
}

absl::Status WriteAheadLog::DropBefore(int64_t segment) {
  ENGRAM_ASSIGN_OR_RETURN(const std::vector<int64_t> segments, ListSegments(dir_));
  absl::Status first_error;
  bool removed = false;
  for (const int64_t s : segments) {
    if (s >= segment) break;
    const std::string path = SegmentPath(dir_, s);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      if (first_error.ok()) first_error = IoError("delete", path, errno);
      continue;
    }
    removed = true;
  }
  if (removed) {
    if (absl::Status synced = SyncDirectory(dir_); !synced.ok() && first_error.ok()) {
      first_error = synced;
    }
  }
  return first_error;
}

WriteAheadLog::Stats WriteAheadLog::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status WriteAheadLog::OpenSegment(int64_t segment) {
  if (fd_ >= 0) {
    ::close(fd_);  // its data was synced with the batch that wrote it
    fd_ = -1;
  }
  const std::string path = SegmentPath(dir_, segment);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return IoError("create", path, errno);
  open_segment_ = segment;
  char header[kHeaderSize];
  std::memcpy(header, kMagic, sizeof(kMagic));
  PutU32(header + sizeof(kMagic), kWalFormatVersion);
  PutU64(header + sizeof(kMagic) + 4, static_cast<uint64_t>(segment));
  ENGRAM_RETURN_IF_ERROR(WriteAll(fd_, header, kHeaderSize, path));
  // The file's directory entry must be durable before anything in it is acknowledged.
  if (::fdatasync(fd_) != 0) return IoError("fdatasync", path, errno);
  return SyncDirectory(dir_);
}

absl::Status WriteAheadLog::WriteChunks(std::deque<Chunk>& chunks) {
  for (Chunk& chunk : chunks) {
    if (chunk.segment != open_segment_) {
      if (fd_ >= 0 && ::fdatasync(fd_) != 0) {
        return IoError("fdatasync", SegmentPath(dir_, open_segment_), errno);
      }
      ENGRAM_RETURN_IF_ERROR(OpenSegment(chunk.segment));
    }
    ENGRAM_RETURN_IF_ERROR(
        WriteAll(fd_, chunk.bytes.data(), chunk.bytes.size(), SegmentPath(dir_, open_segment_)));
  }
  if (::fdatasync(fd_) != 0) return IoError("fdatasync", SegmentPath(dir_, open_segment_), errno);
  return absl::OkStatus();
}

void WriteAheadLog::Run() {
  while (true) {
    std::deque<Chunk> chunks;
    int64_t target = 0;
    {
      absl::MutexLock lock(&mu_);
      const auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !pending_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&work));
      if (pending_.empty()) return;  // stopping, nothing left
      chunks.swap(pending_);
      target = appended_;
    }
    const absl::Time start = absl::Now();
    absl::Status status = WriteChunks(chunks);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    int64_t records = 0, bytes = 0;
    for (const Chunk& chunk : chunks) {
      records += chunk.records;
      bytes += static_cast<int64_t>(chunk.bytes.size());
    }
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      if (failed_.ok()) failed_ = std::move(status);
      continue;  // later Appends fail at once; the loop exits when stopping
    }
    durable_ = target;
    stats_.records += records;
    stats_.bytes += bytes;
    ++stats_.syncs;
    if (metrics_.records != nullptr) {
      metrics_.records->Increment(static_cast<double>(records));
      metrics_.bytes->Increment(static_cast<double>(bytes));
      metrics_.syncs->Increment();
      metrics_.sync_seconds->Observe(seconds);
    }
  }
}

absl::StatusOr<WalReplayInfo> ReplayWal(
    const std::string& dir, int64_t from_segment,
    const std::function<absl::Status(WalRecord type, absl::string_view payload)>& apply) {
  WalReplayInfo info;
  info.next_segment = std::max<int64_t>(from_segment, 0);
  ENGRAM_ASSIGN_OR_RETURN(std::vector<int64_t> segments, ListSegments(dir));
  segments.erase(std::remove_if(segments.begin(), segments.end(),
                                [from_segment](int64_t s) { return s < from_segment; }),
                 segments.end());
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string path = SegmentPath(dir, segments[i]);
    const bool last = i + 1 == segments.size();
    int64_t good_end = 0;
    std::string bad;
    ENGRAM_RETURN_IF_ERROR(ReadSegment(path, segments[i], apply, &info.records, &good_end, &bad));
    ++info.segments;
    info.next_segment = segments[i] + 1;
    if (bad.empty()) continue;
    if (!last) {
      return absl::DataLossError(absl::StrCat("write-ahead log ", path, " at offset ", good_end,
                                              ": ", bad,
                                              " (not the last segment, so not a torn "
                                              "write)"));
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return IoError("stat", path, errno);
    info.truncated_bytes = st.st_size - good_end;
    info.truncated_file = path;
    if (good_end == 0) {
      // Not even a whole header: the segment was being created; nothing in it was acknowledged.
      if (::unlink(path.c_str()) != 0) return IoError("delete", path, errno);
      ENGRAM_RETURN_IF_ERROR(SyncDirectory(dir));
    } else {
      if (::truncate(path.c_str(), good_end) != 0) return IoError("truncate", path, errno);
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return IoError("open", path, errno);
      const int rc = ::fsync(fd);
      const int err = errno;
      ::close(fd);
      if (rc != 0) return IoError("fsync", path, err);
    }
  }
  return info;
}

}  // namespace engram::replay
