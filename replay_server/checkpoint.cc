#include "replay_server/checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "replay_server/checkpoint.pb.h"
#include "replay_server/record_io.h"

namespace engram::replay {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'E', 'N', 'G', 'R', 'A', 'M', 'R', 'T'};
constexpr size_t kHeaderSize = sizeof(kMagic) + 4;
constexpr char kManifestName[] = "MANIFEST";
constexpr char kFinalPrefix[] = "ckpt-";
constexpr char kTempPrefix[] = ".tmp-ckpt-";
// "yyyymmddThhmmss.ffffffZ"
constexpr size_t kStampSize = 23;

enum RecordType : uint8_t {
  kSpecRecord = 1,
  kCountersRecord = 2,
  kItemRecord = 3,
  kFooterRecord = 4
};
// uint32 length + uint8 type before the payload, uint32 crc after it.
constexpr size_t kRecordPrefix = 5;
constexpr size_t kRecordOverhead = kRecordPrefix + 4;

// Items are serialized into chunks of this size while the table is locked, and written
// with one write() per chunk.
constexpr size_t kChunkSize = size_t{8} << 20;
constexpr size_t kIoBufferSize = size_t{1} << 20;

using record_io::Crc;
using record_io::ErrnoText;
using record_io::GetU32;
using record_io::GetU64;
using record_io::PutU32;
using record_io::PutU64;

absl::Status IoError(absl::string_view what, const std::string& path, int err) {
  return absl::InternalError(absl::StrCat("checkpoint: ", what, " ", path, ": ", ErrnoText(err)));
}

std::string Join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

absl::Time TruncateToMicros(absl::Time t) {
  return absl::UnixEpoch() + absl::Floor(t - absl::UnixEpoch(), absl::Microseconds(1));
}

std::string Stamp(absl::Time t) {
  return absl::FormatTime("%Y%m%dT%H%M%E6SZ", t, absl::UTCTimeZone());
}

bool AllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Parses "ckpt-<stamp>-shard<k>"; false for anything else.
bool ParseFinalName(absl::string_view name, absl::string_view* stamp, int64_t* shard) {
  if (!absl::ConsumePrefix(&name, kFinalPrefix) || name.size() < kStampSize) return false;
  const absl::string_view s = name.substr(0, kStampSize);
  for (size_t i = 0; i < kStampSize; ++i) {
    const char c = s[i];
    const bool ok = i == 8    ? c == 'T'
                    : i == 15 ? c == '.'
                    : i == 22 ? c == 'Z'
                              : (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  name.remove_prefix(kStampSize);
  if (!absl::ConsumePrefix(&name, "-shard") || !AllDigits(name) || name.size() > 9) return false;
  *stamp = s;
  *shard = std::stoll(std::string(name));
  return true;
}

bool ValidTableName(absl::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

absl::Status SyncDirectory(const std::string& dir) {
  if (const int err = record_io::FsyncDirectory(dir); err != 0) {
    return IoError("fsync directory", dir, err);
  }
  return absl::OkStatus();
}

// Temporary directories this process is writing now (by name), which the cleanup of
// crashed writes must leave alone.
absl::Mutex& ActiveMutex() {
  static auto* mu = new absl::Mutex;
  return *mu;
}
absl::flat_hash_set<std::string>& ActiveTemps() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ActiveMutex()) {
  static auto* set = new absl::flat_hash_set<std::string>;
  return *set;
}

// ---- writing ----------------------------------------------------------------------------

// Records appended in memory, checksums filled in later (outside the table lock).
//
// Memory comes in anonymous mappings of kChunkSize. Touching fresh pages costs a page
// fault each, which for hundreds of MB costs several times the serialization itself
// (measured: ~0.45 s instead of ~0.1 s of lock for 100K MinAtar transitions), so Reserve()
// maps and prefaults the expected size before the table is locked; only what exceeds it
// faults under the lock.
class RecordBuffer {
 public:
  class Chunk {
   public:
    // data() is null when the memory could not be mapped.
    Chunk(size_t capacity, bool prefault) : capacity_(capacity) {
      void* p =
          ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return;
      data_ = static_cast<char*>(p);
      if (prefault) {
        // Populating the page tables in one call is cheapest; touching every page as well
        // covers kernels without MADV_POPULATE_WRITE and hypervisors that shadow page
        // tables (there the first access faults again).
        ::madvise(p, capacity, MADV_POPULATE_WRITE);
        const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
        for (size_t i = 0; i < capacity; i += page) data_[i] = 0;
      }
    }
    ~Chunk() {
      if (data_ != nullptr) ::munmap(data_, capacity_);
    }
    Chunk(Chunk&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)),
          size_(other.size_),
          capacity_(other.capacity_) {}
    Chunk& operator=(Chunk&&) = delete;

    const char* data() const { return data_; }
    size_t size() const { return size_; }

   private:
    friend class RecordBuffer;
    char* data_ = nullptr;
    size_t size_ = 0;
    size_t capacity_ = 0;
  };

  // Maps and prefaults chunks for about `bytes` of records.
  // Stops early, silently, when memory runs out (Append reports it).
  void Reserve(size_t bytes) {
    chunks_.reserve(bytes / kChunkSize + 1);
    for (size_t reserved = 0; reserved < bytes; reserved += kChunkSize) {
      chunks_.emplace_back(kChunkSize, /*prefault=*/true);
      if (chunks_.back().data_ == nullptr) {
        chunks_.pop_back();
        return;
      }
    }
  }

  // Appends a record of `type` with `payload_size` bytes and returns where the payload goes;
  // null when out of memory.
  char* Append(RecordType type, size_t payload_size) {
    ENGRAM_CHECK(payload_size <= 0xFFFFFFFFu - kRecordOverhead) << "record of " << payload_size;
    const size_t total = payload_size + kRecordOverhead;
    while (current_ < chunks_.size() &&
           chunks_[current_].capacity_ - chunks_[current_].size_ < total) {
      ++current_;
    }
    if (current_ == chunks_.size()) {
      chunks_.emplace_back(std::max(kChunkSize, total), /*prefault=*/false);
      if (chunks_.back().data_ == nullptr) {
        chunks_.pop_back();
        return nullptr;
      }
    }
    Chunk& c = chunks_[current_];
    char* p = c.data_ + c.size_;
    PutU32(p, static_cast<uint32_t>(payload_size));
    p[4] = static_cast<char>(type);
    c.size_ += total;
    bytes_ += total;
    return p + kRecordPrefix;
  }

  void FillChecksums() {
    for (Chunk& c : chunks_) {
      size_t at = 0;
      while (at < c.size_) {
        char* p = c.data_ + at;
        const size_t covered = kRecordPrefix + GetU32(p);
        PutU32(p + covered, Crc(0, p, covered));
        at += covered + 4;
      }
    }
  }

  // Chunks in order; reserved chunks left unused are empty.
  const std::vector<Chunk>& chunks() const { return chunks_; }
  size_t bytes() const { return bytes_; }

 private:
  std::vector<Chunk> chunks_;
  size_t current_ = 0;
  size_t bytes_ = 0;
};

std::string Record(RecordType type, absl::string_view payload) {
  std::string r(payload.size() + kRecordOverhead, '\0');
  PutU32(r.data(), static_cast<uint32_t>(payload.size()));
  r[4] = static_cast<char>(type);
  std::memcpy(r.data() + kRecordPrefix, payload.data(), payload.size());
  PutU32(r.data() + kRecordPrefix + payload.size(),
         Crc(0, r.data(), kRecordPrefix + payload.size()));
  return r;
}

// A new file written through a 1 MiB buffer (large appends go straight to write()), with
// a running crc32 of everything written; Finish() flushes, fsyncs and closes.
class FileWriter {
 public:
  explicit FileWriter(std::string path) : path_(std::move(path)) {}
  ~FileWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  absl::Status Open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) return IoError("create", path_, errno);
    buffer_.reset(new char[kIoBufferSize]);
    return absl::OkStatus();
  }

  absl::Status Append(const char* data, size_t n) {
    crc_ = Crc(crc_, data, n);
    bytes_ += static_cast<int64_t>(n);
    if (used_ + n <= kIoBufferSize) {
      std::memcpy(buffer_.get() + used_, data, n);
      used_ += n;
      return absl::OkStatus();
    }
    ENGRAM_RETURN_IF_ERROR(Flush());
    if (n >= kIoBufferSize) return WriteAll(data, n);
    std::memcpy(buffer_.get(), data, n);
    used_ = n;
    return absl::OkStatus();
  }
  absl::Status Append(absl::string_view s) { return Append(s.data(), s.size()); }

  absl::Status Finish() {
    ENGRAM_RETURN_IF_ERROR(Flush());
    if (::fsync(fd_) != 0) return IoError("fsync", path_, errno);
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return IoError("close", path_, errno);
    return absl::OkStatus();
  }

  int64_t bytes() const { return bytes_; }
  uint32_t crc() const { return crc_; }

 private:
  absl::Status Flush() {
    const size_t n = used_;
    used_ = 0;
    return WriteAll(buffer_.get(), n);
  }
  absl::Status WriteAll(const char* data, size_t n) {
    if (const int err = record_io::WriteFully(fd_, data, n); err != 0) {
      return IoError("write", path_, err);
    }
    return absl::OkStatus();
  }

  const std::string path_;
  int fd_ = -1;
  std::unique_ptr<char[]> buffer_;
  size_t used_ = 0;
  int64_t bytes_ = 0;
  uint32_t crc_ = 0;
};

// Serialized bytes per item of each table's last checkpoint in this process, by table name:
// the best guess of how much memory the next snapshot of that table needs.
absl::Mutex& HintMutex() {
  static auto* mu = new absl::Mutex;
  return *mu;
}
absl::flat_hash_map<std::string, double>& BytesPerItem()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(HintMutex()) {
  static auto* hints = new absl::flat_hash_map<std::string, double>;
  return *hints;
}

// Memory to prefault before snapshotting `table`. Without a hint, the payload bytes are a
// lower bound (every stored byte is exported at least once; transitions export frames that
// the table shares between items once per item).
size_t SnapshotSizeGuess(const Table& table) {
  const int64_t size = table.size();
  double per_item = 0;
  {
    absl::MutexLock lock(&HintMutex());
    auto it = BytesPerItem().find(table.name());
    if (it != BytesPerItem().end()) per_item = it->second;
  }
  if (per_item > 0) return static_cast<size_t>(1.02 * per_item * static_cast<double>(size));
  return static_cast<size_t>(table.payload_bytes() + 32 * size);
}

// Snapshots `table` (serializing under its lock), then writes <dir>/<name>.table.
absl::Status WriteTableFile(const std::string& dir, const Table& table,
                            checkpoint::ManifestTable* entry, absl::Duration* pause) {
  RecordBuffer items;
  items.Reserve(SnapshotSizeGuess(table));
  TableCounters counters;
  uint64_t count = 0;
  bool out_of_memory = false;
  const absl::Time locked = absl::Now();
  table.Export(
      [&](const v1::Item& item, int32_t times_sampled) {
        if (out_of_memory) return;
        const size_t size = item.ByteSizeLong();
        char* p = items.Append(kItemRecord, 4 + size);
        if (p == nullptr) {
          out_of_memory = true;
          return;
        }
        PutU32(p, static_cast<uint32_t>(times_sampled));
        item.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(p + 4));
        ++count;
      },
      &counters);
  *pause = absl::Now() - locked;
  if (out_of_memory) {
    return absl::ResourceExhaustedError(
        absl::StrCat("checkpoint: out of memory snapshotting table \"", table.name(), "\" after ",
                     count, " items (", items.bytes(), " bytes)"));
  }
  if (count > 0) {
    absl::MutexLock lock(&HintMutex());
    BytesPerItem()[table.name()] = static_cast<double>(items.bytes()) / static_cast<double>(count);
  }
  items.FillChecksums();

  checkpoint::CountersRecord c;
  c.set_inserts(counters.inserts);
  c.set_duplicate_inserts(counters.duplicate_inserts);
  c.set_samples(counters.samples);
  c.set_removals(counters.removals);
  c.set_priority_updates(counters.priority_updates);
  c.set_insert_wait_seconds(counters.insert_wait_seconds);
  c.set_sample_wait_seconds(counters.sample_wait_seconds);
  if (counters.limiter_inserts >= 0) c.set_limiter_inserts(counters.limiter_inserts);
  if (counters.limiter_samples >= 0) c.set_limiter_samples(counters.limiter_samples);

  const std::string file = table.name() + ".table";
  FileWriter w(Join(dir, file));
  ENGRAM_RETURN_IF_ERROR(w.Open());
  char header[kHeaderSize];
  std::memcpy(header, kMagic, sizeof(kMagic));
  PutU32(header + sizeof(kMagic), kCheckpointFormatVersion);
  ENGRAM_RETURN_IF_ERROR(w.Append(header, kHeaderSize));
  ENGRAM_RETURN_IF_ERROR(w.Append(Record(kSpecRecord, table.spec().SerializeAsString())));
  ENGRAM_RETURN_IF_ERROR(w.Append(Record(kCountersRecord, c.SerializeAsString())));
  for (const RecordBuffer::Chunk& chunk : items.chunks()) {
    if (chunk.size() > 0) ENGRAM_RETURN_IF_ERROR(w.Append(chunk.data(), chunk.size()));
  }
  char footer[8];
  PutU64(footer, count);
  ENGRAM_RETURN_IF_ERROR(w.Append(Record(kFooterRecord, absl::string_view(footer, 8))));
  ENGRAM_RETURN_IF_ERROR(w.Finish());

  entry->set_name(table.name());
  entry->set_file(file);
  entry->set_items(static_cast<int64_t>(count));
  entry->set_bytes(w.bytes());
  entry->set_crc32(w.crc());
  return absl::OkStatus();
}

absl::StatusOr<int64_t> WriteManifest(const std::string& dir, const checkpoint::Manifest& m) {
  std::string text;
  ENGRAM_CHECK(google::protobuf::TextFormat::PrintToString(m, &text));
  text = absl::StrCat("# Engram replay checkpoint (replay_server/checkpoint.h)\n", text);
  FileWriter w(Join(dir, kManifestName));
  ENGRAM_RETURN_IF_ERROR(w.Open());
  ENGRAM_RETURN_IF_ERROR(w.Append(text));
  ENGRAM_RETURN_IF_ERROR(w.Finish());
  return w.bytes();
}

// Removes .tmp-ckpt-* directories of `shard` that this process is not writing: leftovers
// of a crashed write. Best effort.
void RemoveStaleTemps(const std::string& root, int32_t shard) {
  const std::string tag = absl::StrCat("-shard", shard, "-");
  std::error_code ec;
  std::vector<fs::path> stale;
  {
    absl::MutexLock lock(&ActiveMutex());
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (absl::StartsWith(name, kTempPrefix) && absl::StrContains(name, tag) &&
          !ActiveTemps().contains(name)) {
        stale.push_back(it->path());
      }
    }
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

// Keeps the newest `keep` complete checkpoints of `shard` under root (and always `current`);
// directories without a MANIFEST are not ours to judge and are left alone.
void ApplyRetention(const std::string& root, int32_t shard, int keep, const std::string& current) {
  std::error_code ec;
  std::vector<std::string> names;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    absl::string_view stamp;
    int64_t k;
    std::error_code manifest_ec;
    if (ParseFinalName(name, &stamp, &k) && k == shard &&
        fs::is_regular_file(it->path() / kManifestName, manifest_ec)) {
      names.push_back(name);
    }
  }
  std::sort(names.rbegin(), names.rend());  // newest first: names sort by time
  static std::atomic<int64_t> counter{0};
  for (size_t i = static_cast<size_t>(keep); i < names.size(); ++i) {
    if (names[i] == current) continue;
    // Renamed out of sight first, so that a crash while deleting leaves a temporary
    // directory (removed by a later write), never a half-deleted checkpoint.
    const std::string doomed =
        Join(root, absl::StrCat(kTempPrefix, names[i].substr(std::strlen(kFinalPrefix)),
                                "-deleting-", ::getpid(), "-", counter++));
    if (::rename(Join(root, names[i]).c_str(), doomed.c_str()) == 0) fs::remove_all(doomed, ec);
  }
}

// ---- reading ----------------------------------------------------------------------------

// Sequential reads through a 1 MiB buffer, with a running crc32 of the bytes consumed.
class FileReader {
 public:
  explicit FileReader(std::string path) : path_(std::move(path)) {}
  ~FileReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // errno on failure (ENOENT for a missing file), 0 on success.
  int Open() {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return errno;
    struct stat st;
    if (::fstat(fd_, &st) != 0) return errno;
    size_ = st.st_size;
    buffer_.reset(new char[kIoBufferSize]);
    return 0;
  }

  // Reads exactly `n` bytes into `out`; false (with *status OK) when the file ends first.
  bool Read(char* out, size_t n, absl::Status* status) {
    const char* const start = out;
    const size_t wanted = n;
    while (n > 0) {
      if (pos_ == end_) {
        if (n >= kIoBufferSize) {
          const ssize_t r = ReadSome(out, n, status);
          if (r <= 0) return false;
          out += r;
          n -= static_cast<size_t>(r);
          continue;
        }
        const ssize_t r = ReadSome(buffer_.get(), kIoBufferSize, status);
        if (r <= 0) return false;
        pos_ = 0;
        end_ = static_cast<size_t>(r);
      }
      const size_t take = std::min(n, end_ - pos_);
      std::memcpy(out, buffer_.get() + pos_, take);
      pos_ += take;
      out += take;
      n -= take;
    }
    crc_ = Crc(crc_, start, wanted);
    offset_ += static_cast<int64_t>(wanted);
    return true;
  }

  int64_t offset() const { return offset_; }  // bytes consumed by successful reads
  int64_t size() const { return size_; }
  uint32_t crc() const { return crc_; }

 private:
  ssize_t ReadSome(char* out, size_t n, absl::Status* status) {
    while (true) {
      const ssize_t r = ::read(fd_, out, n);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      *status = IoError("read", path_, errno);
      return -1;
    }
  }

  const std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
  std::unique_ptr<char[]> buffer_;
  size_t pos_ = 0;
  size_t end_ = 0;
  int64_t offset_ = 0;
  uint32_t crc_ = 0;
};

// Reads and checks the records of one table file, restoring them into a new table.
class TableFileLoader {
 public:
  TableFileLoader(std::string path, const checkpoint::ManifestTable& entry)
      : path_(std::move(path)), entry_(entry), reader_(path_) {}

  absl::StatusOr<std::unique_ptr<Table>> Load(TableMetrics metrics) {
    if (const int err = reader_.Open(); err != 0) {
      if (err == ENOENT) return Corrupt("table file is missing");
      return IoError("open", path_, err);
    }
    ENGRAM_RETURN_IF_ERROR(ReadHeader());

    std::string payload;
    ENGRAM_RETURN_IF_ERROR(ReadRecord(kSpecRecord, &payload));
    v1::TableSpec spec;
    if (!spec.ParseFromString(payload)) return Corrupt("record 1 (spec): not a TableSpec");
    if (spec.name() != entry_.name()) {
      return Corrupt(absl::StrCat("record 1 (spec): table name \"", spec.name(),
                                  "\" differs from the MANIFEST's \"", entry_.name(), "\""));
    }
    auto created = Table::Create(spec, std::move(metrics));
    if (!created.ok()) {
      return Corrupt(absl::StrCat("record 1 (spec): table spec fails validation: ",
                                  created.status().message()));
    }
    std::unique_ptr<Table> table = std::move(created).value();

    ENGRAM_RETURN_IF_ERROR(ReadRecord(kCountersRecord, &payload));
    checkpoint::CountersRecord c;
    if (!c.ParseFromString(payload)) return Corrupt("record 2 (counters): not a CountersRecord");

    int64_t items = 0;
    while (true) {
      const int64_t record = items + 3;
      RecordType type;
      ENGRAM_RETURN_IF_ERROR(ReadAnyRecord(&type, &payload));
      if (type == kFooterRecord) {
        if (payload.size() != 8) {
          return Corrupt(
              absl::StrCat("record ", record, " (footer): ", payload.size(), " bytes, expected 8"));
        }
        const uint64_t footer = GetU64(payload.data());
        if (footer != static_cast<uint64_t>(items)) {
          return Corrupt(absl::StrCat("item count mismatch: footer record says ", footer,
                                      " items, the file holds ", items));
        }
        break;
      }
      if (type != kItemRecord) {
        return Corrupt(absl::StrCat("record ", record, ": unexpected record type ",
                                    static_cast<int>(type), " (expected an item or the footer)"));
      }
      const std::string where = absl::StrCat("record ", record, " (item ", items, ")");
      if (payload.size() < 4) return Corrupt(absl::StrCat(where, ": shorter than 4 bytes"));
      const auto times_sampled = static_cast<int32_t>(GetU32(payload.data()));
      v1::Item item;
      if (!item.ParseFromArray(payload.data() + 4, static_cast<int>(payload.size() - 4))) {
        return Corrupt(absl::StrCat(where, ": not an Item"));
      }
      const int32_t max_times = spec.max_times_sampled();
      if (times_sampled < 0 || (max_times > 0 && times_sampled >= max_times)) {
        return Corrupt(absl::StrCat(where, ": times_sampled ", times_sampled,
                                    " outside [0, max_times_sampled ", max_times, ")"));
      }
      if (items >= spec.max_size()) {
        return Corrupt(absl::StrCat(where, ": more items than spec.max_size ", spec.max_size()));
      }
      const uint64_t key = item.key();
      if (absl::Status s = table->Restore(std::move(item), times_sampled); !s.ok()) {
        return Corrupt(absl::StrCat(where, " key ", key, ": ", s.message()));
      }
      ++items;
    }
    if (reader_.offset() != reader_.size()) {
      return Corrupt(absl::StrCat(reader_.size() - reader_.offset(),
                                  " unexpected bytes after the footer record at offset ",
                                  reader_.offset()));
    }
    if (items != entry_.items()) {
      return Corrupt(absl::StrCat("item count mismatch: MANIFEST says ", entry_.items(),
                                  " items, the file holds ", items));
    }
    if (reader_.size() != entry_.bytes()) {
      return Corrupt(absl::StrCat("file size ", reader_.size(), " differs from the MANIFEST's ",
                                  entry_.bytes()));
    }
    if (reader_.crc() != entry_.crc32()) {
      return Corrupt(absl::StrFormat("file checksum mismatch: crc32 0x%08x, MANIFEST says 0x%08x",
                                     reader_.crc(), entry_.crc32()));
    }
    TableCounters counters;
    counters.inserts = c.inserts();
    counters.duplicate_inserts = c.duplicate_inserts();
    counters.samples = c.samples();
    counters.removals = c.removals();
    counters.priority_updates = c.priority_updates();
    counters.insert_wait_seconds = c.insert_wait_seconds();
    counters.sample_wait_seconds = c.sample_wait_seconds();
    if (c.has_limiter_inserts()) counters.limiter_inserts = c.limiter_inserts();
    if (c.has_limiter_samples()) counters.limiter_samples = c.limiter_samples();
    if (counters.limiter_inserts < -1 || counters.limiter_samples < -1) {
      return Corrupt("record 2 (counters): negative rate-limiter counts");
    }
    table->RestoreCounters(counters);
    return table;
  }

 private:
  absl::Status Corrupt(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat("checkpoint file ", path_, ": ", what));
  }

  // What record `n` should be according to the MANIFEST's item count.
  std::string Describe(int64_t n) const {
    if (n == 1) return "record 1 (spec)";
    if (n == 2) return "record 2 (counters)";
    if (n - 3 < entry_.items()) return absl::StrCat("record ", n, " (item ", n - 3, ")");
    return absl::StrCat("record ", n, " (footer)");
  }

  absl::Status ReadHeader() {
    char header[kHeaderSize];
    absl::Status status;
    if (!reader_.Read(header, kHeaderSize, &status)) {
      ENGRAM_RETURN_IF_ERROR(status);
      return Corrupt(absl::StrCat("truncated header: file has ", reader_.size(), " bytes"));
    }
    if (std::memcmp(header, kMagic, sizeof(kMagic)) != 0) {
      return Corrupt(absl::StrCat("bad magic \"", absl::CHexEscape(absl::string_view(header, 8)),
                                  "\" (expected \"ENGRAMRT\"): not an Engram table file"));
    }
    const uint32_t version = GetU32(header + sizeof(kMagic));
    if (version != kCheckpointFormatVersion) {
      return Corrupt(absl::StrCat("unsupported format version ", version, " (this build reads ",
                                  kCheckpointFormatVersion, ")"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadRecord(RecordType expected, std::string* payload) {
    RecordType type;
    const int64_t n = records_ + 1;
    ENGRAM_RETURN_IF_ERROR(ReadAnyRecord(&type, payload));
    if (type != expected) {
      return Corrupt(absl::StrCat(Describe(n), ": record type ", static_cast<int>(type),
                                  ", expected ", static_cast<int>(expected)));
    }
    return absl::OkStatus();
  }

  absl::Status ReadAnyRecord(RecordType* type, std::string* payload) {
    const int64_t n = ++records_;
    const int64_t offset = reader_.offset();
    char prefix[kRecordPrefix];
    absl::Status status;
    if (!reader_.Read(prefix, kRecordPrefix, &status)) {
      ENGRAM_RETURN_IF_ERROR(status);
      if (offset == reader_.size()) {
        return Corrupt(absl::StrCat("truncated: the file ends at offset ", offset, " after ", n - 1,
                                    " records, before ", Describe(n)));
      }
      return Corrupt(absl::StrCat("truncated ", Describe(n), " at offset ", offset,
                                  ": the file ends at offset ", reader_.size()));
    }
    const uint32_t length = GetU32(prefix);
    if (static_cast<int64_t>(length) + 4 > reader_.size() - reader_.offset()) {
      return Corrupt(absl::StrCat("truncated ", Describe(n), " at offset ", offset, ": needs ",
                                  length + kRecordOverhead, " bytes, the file ends at offset ",
                                  reader_.size()));
    }
    payload->resize(length);
    char crc_bytes[4];
    if (!reader_.Read(payload->data(), length, &status) || !reader_.Read(crc_bytes, 4, &status)) {
      ENGRAM_RETURN_IF_ERROR(status);
      return Corrupt(absl::StrCat("truncated ", Describe(n), " at offset ", offset));
    }
    const uint32_t stored = GetU32(crc_bytes);
    const uint32_t computed = Crc(Crc(0, prefix, kRecordPrefix), payload->data(), length);
    if (stored != computed) {
      return Corrupt(
          absl::StrFormat("%s at offset %d: checksum mismatch (stored 0x%08x, "
                          "computed 0x%08x)",
                          Describe(n), offset, stored, computed));
    }
    *type = static_cast<RecordType>(static_cast<unsigned char>(prefix[4]));
    return absl::OkStatus();
  }

  const std::string path_;
  const checkpoint::ManifestTable& entry_;
  FileReader reader_;
  int64_t records_ = 0;
};

class ManifestErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat("line ", line + 1, ":", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

absl::StatusOr<checkpoint::Manifest> ReadManifest(const std::string& dir) {
  const std::string path = Join(dir, kManifestName);
  const auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("checkpoint file ", path, ": ", what));
  };
  FileReader reader(path);
  if (const int err = reader.Open(); err != 0) {
    if (err == ENOENT) return corrupt("MANIFEST is missing (not a complete checkpoint)");
    return IoError("open", path, err);
  }
  if (reader.size() > (int64_t{16} << 20)) return corrupt("implausibly large MANIFEST");
  std::string text(static_cast<size_t>(reader.size()), '\0');
  absl::Status status;
  if (!reader.Read(text.data(), text.size(), &status)) {
    ENGRAM_RETURN_IF_ERROR(status);
    return corrupt("MANIFEST changed while being read");
  }
  checkpoint::Manifest m;
  google::protobuf::TextFormat::Parser parser;
  ManifestErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &m)) {
    return corrupt(absl::StrCat("cannot parse MANIFEST: ", errors.first()));
  }
  if (m.format_version() != kCheckpointFormatVersion) {
    return corrupt(absl::StrCat("unsupported format version ", m.format_version(),
                                " (this build reads ", kCheckpointFormatVersion, ")"));
  }
  if (m.wal_segment() < 0) return corrupt(absl::StrCat("wal_segment ", m.wal_segment(), " < 0"));
  absl::flat_hash_set<std::string> names;
  for (const checkpoint::ManifestTable& t : m.tables()) {
    if (!ValidTableName(t.name())) {
      return corrupt(absl::StrCat("invalid table name \"", absl::CHexEscape(t.name()), "\""));
    }
    if (t.file() != t.name() + ".table") {
      return corrupt(absl::StrCat("table \"", t.name(), "\": file \"", absl::CHexEscape(t.file()),
                                  "\", expected \"", t.name(), ".table\""));
    }
    if (!names.insert(t.name()).second) {
      return corrupt(absl::StrCat("table \"", t.name(), "\" listed twice"));
    }
    if (t.items() < 0 || t.bytes() < 0) {
      return corrupt(absl::StrCat("table \"", t.name(), "\": negative items or bytes"));
    }
  }
  return m;
}

}  // namespace

absl::StatusOr<CheckpointInfo> WriteCheckpoint(const std::string& root_dir,
                                               const std::vector<std::shared_ptr<Table>>& tables,
                                               int32_t shard_index, int keep, int64_t wal_segment) {
  const absl::Time start = absl::Now();
  if (keep < 1) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: keep must be >= 1, got ", keep));
  }
  if (shard_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint: shard_index must be >= 0, got ", shard_index));
  }
  if (root_dir.empty()) return absl::InvalidArgumentError("checkpoint: root_dir is empty");
  absl::flat_hash_set<std::string> names;
  for (const auto& table : tables) {
    ENGRAM_CHECK(table != nullptr) << "WriteCheckpoint: null table";
    if (!names.insert(table->name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint: table \"", table->name(), "\" given twice"));
    }
  }

  std::error_code ec;
  fs::create_directories(root_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("checkpoint: cannot create directory ", root_dir, ": ", ec.message()));
  }
  RemoveStaleTemps(root_dir, shard_index);

  absl::Time time = TruncateToMicros(start);
  const auto final_name = [&] {
    return absl::StrCat(kFinalPrefix, Stamp(time), "-shard", shard_index);
  };
  while (fs::exists(Join(root_dir, final_name()), ec)) time += absl::Microseconds(1);

  static std::atomic<int64_t> counter{0};
  const std::string temp_name = absl::StrCat(kTempPrefix, Stamp(time), "-shard", shard_index, "-",
                                             ::getpid(), "-", counter++);
  const std::string temp = Join(root_dir, temp_name);
  {
    absl::MutexLock lock(&ActiveMutex());
    ActiveTemps().insert(temp_name);
  }
  bool keep_temp = false;
  struct Cleanup {
    std::function<void()> fn;
    ~Cleanup() { fn(); }
  } cleanup{[&] {
    if (!keep_temp) fs::remove_all(temp, ec);
    absl::MutexLock lock(&ActiveMutex());
    ActiveTemps().erase(temp_name);
  }};

  if (::mkdir(temp.c_str(), 0755) != 0) return IoError("create directory", temp, errno);

  CheckpointInfo info;
  info.time = time;
  checkpoint::Manifest manifest;
  manifest.set_format_version(kCheckpointFormatVersion);
  manifest.set_shard_index(shard_index);
  manifest.set_time_unix_micros(absl::ToUnixMicros(time));
  manifest.set_time(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone()));
  manifest.set_wal_segment(wal_segment);
  for (const auto& table : tables) {
    absl::Duration pause;
    ENGRAM_RETURN_IF_ERROR(WriteTableFile(temp, *table, manifest.add_tables(), &pause));
    info.max_pause = std::max(info.max_pause, pause);
    const checkpoint::ManifestTable& written = manifest.tables(manifest.tables_size() - 1);
    info.items += written.items();
    info.bytes += written.bytes();
  }
  ENGRAM_ASSIGN_OR_RETURN(const int64_t manifest_bytes, WriteManifest(temp, manifest));
  info.bytes += manifest_bytes;
  ENGRAM_RETURN_IF_ERROR(SyncDirectory(temp));

  // NOREPLACE: never merge into (or replace) a checkpoint another writer put there.
  while (true) {
    info.path = Join(root_dir, final_name());
    if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, info.path.c_str(), RENAME_NOREPLACE) == 0) {
      break;
    }
    if (errno == EEXIST) {
      time += absl::Microseconds(1);
      continue;
    }
    if (errno == EINVAL || errno == ENOSYS) {  // file system without RENAME_NOREPLACE
      if (fs::exists(info.path, ec)) {
        time += absl::Microseconds(1);
        continue;
      }
      if (::rename(temp.c_str(), info.path.c_str()) == 0) break;
    }
    return IoError(absl::StrCat("rename ", temp, " to"), info.path, errno);
  }
  keep_temp = true;  // renamed: nothing left to remove
  info.time = time;
  ENGRAM_RETURN_IF_ERROR(SyncDirectory(root_dir));

  ApplyRetention(root_dir, shard_index, keep, fs::path(info.path).filename().string());
  info.duration = absl::Now() - start;
  return info;
}

absl::StatusOr<std::vector<std::unique_ptr<Table>>> LoadCheckpoint(
    const std::string& path,
    const std::function<TableMetrics(const std::string& table)>& metrics_for) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", path, " does not exist"));
    }
    return IoError("stat", path, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path, " is not a directory"));
  }
  ENGRAM_ASSIGN_OR_RETURN(const checkpoint::Manifest manifest, ReadManifest(path));
  std::vector<std::unique_ptr<Table>> tables;
  tables.reserve(manifest.tables_size());
  for (const checkpoint::ManifestTable& entry : manifest.tables()) {
    TableFileLoader loader(Join(path, entry.file()), entry);
    ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<Table> table,
                            loader.Load(metrics_for ? metrics_for(entry.name()) : TableMetrics{}));
    tables.push_back(std::move(table));
  }
  return tables;
}

absl::StatusOr<int64_t> CheckpointWalSegment(const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(const checkpoint::Manifest manifest, ReadManifest(path));
  return manifest.wal_segment();
}

absl::StatusOr<std::string> LatestCheckpoint(const std::string& root_dir) {
  std::error_code ec;
  fs::directory_iterator it(root_dir, ec);
  if (ec == std::errc::no_such_file_or_directory) {
    return absl::NotFoundError(
        absl::StrCat("no checkpoint under ", root_dir, ": it does not exist"));
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("checkpoint: cannot list ", root_dir, ": ", ec.message()));
  }
  std::string best_stamp, best_name;
  for (fs::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    absl::string_view stamp;
    int64_t shard;
    if (!ParseFinalName(name, &stamp, &shard)) continue;
    std::error_code manifest_ec;
    if (!fs::is_regular_file(it->path() / kManifestName, manifest_ec)) continue;
    if (std::make_pair(std::string(stamp), name) > std::make_pair(best_stamp, best_name)) {
      best_stamp = std::string(stamp);
      best_name = name;
    }
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("checkpoint: cannot list ", root_dir, ": ", ec.message()));
  }
  if (best_name.empty()) {
    return absl::NotFoundError(absl::StrCat("no complete checkpoint under ", root_dir));
  }
  return Join(root_dir, best_name);
}

}  // namespace engram::replay
