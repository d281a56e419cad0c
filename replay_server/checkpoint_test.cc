#include "replay_server/checkpoint.h"

#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::replay {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr absl::Time kNow = absl::InfinitePast();  // "do not wait"

// A fresh, empty directory for one test.
std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::path(::testing::TempDir()) /
                       absl::StrCat("checkpoint_test_", ::getpid(), "_", info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// TestDir(), removed again at the end of the test.
struct ScopedTestDir {
  ScopedTestDir() : path(TestDir()) {}
  ~ScopedTestDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  const std::string path;
};

v1::TableSpec Spec(const std::string& name, v1::Selector selector, int64_t max_size,
                   v1::PayloadKind payload = v1::PAYLOAD_KIND_TRANSITION) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_selector(selector);
  spec.set_priority_exponent(0.6);
  spec.set_max_size(max_size);
  spec.mutable_signature()->set_payload(payload);
  spec.mutable_signature()->mutable_observation()->set_dtype(v1::DTYPE_UINT8);
  spec.mutable_signature()->mutable_observation()->add_shape(2);
  spec.mutable_signature()->mutable_observation()->add_shape(3);
  spec.mutable_signature()->set_num_actions(4);
  return spec;
}

v1::Tensor Tensor(v1::DType dtype, std::vector<int64_t> shape, std::string data) {
  v1::Tensor t;
  t.set_dtype(dtype);
  for (int64_t d : shape) t.add_shape(d);
  t.set_data(std::move(data));
  return t;
}

v1::Tensor Obs(int value) { return Tensor(v1::DTYPE_UINT8, {2, 3}, std::string(6, char(value))); }

v1::Item Transition(uint64_t key, double priority) {
  v1::Item item;
  item.set_key(key);
  item.set_priority(priority);
  v1::Transition* t = item.mutable_transition();
  *t->mutable_observation() = Obs(static_cast<int>(key % 200));
  *t->mutable_next_observation() = Obs(static_cast<int>(key % 200 + 1));
  t->set_action(static_cast<int>(key % 4));
  t->set_reward(0.25f * static_cast<float>(key));
  t->set_discount(0.99f);
  t->set_steps(3);
  t->mutable_provenance()->set_actor_index(static_cast<int>(key % 7));
  return item;
}

v1::Item Chunk(uint64_t key, double priority) {
  constexpr int kSteps = 4;
  v1::Item item;
  item.set_key(key);
  item.set_priority(priority);
  v1::TrajectoryChunk* c = item.mutable_chunk();
  *c->mutable_observations() =
      Tensor(v1::DTYPE_UINT8, {kSteps, 2, 3}, std::string(kSteps * 6, char(key % 250)));
  *c->mutable_actions() = Tensor(v1::DTYPE_INT32, {kSteps}, std::string(kSteps * 4, '\1'));
  *c->mutable_rewards() = Tensor(v1::DTYPE_FLOAT32, {kSteps}, std::string(kSteps * 4, '\0'));
  *c->mutable_discounts() = Tensor(v1::DTYPE_FLOAT32, {kSteps}, std::string(kSteps * 4, '\0'));
  *c->mutable_bootstrap_observation() = Obs(static_cast<int>(key % 250 + 1));
  c->set_previous_action(static_cast<int>(key % 4));
  return item;
}

void InsertOne(Table& table, v1::Item item) {
  google::protobuf::RepeatedPtrField<v1::Item> batch;
  *batch.Add() = std::move(item);
  ASSERT_TRUE(table.Insert(&batch, kNow).ok());
}

void Sample(Table& table, int batch_size, int times) {
  for (int i = 0; i < times; ++i) {
    v1::SampleResponse response;
    ASSERT_TRUE(table.Sample(batch_size, 0.5, kNow, &response).ok());
  }
}

struct Exported {
  std::vector<std::pair<std::string, int32_t>> items;  // serialized item, times sampled
  TableCounters counters;
};

Exported ExportAll(const Table& table) {
  Exported e;
  table.Export(
      [&](const v1::Item& item, int32_t times_sampled) {
        e.items.emplace_back(item.SerializeAsString(), times_sampled);
      },
      &e.counters);
  return e;
}

void ExpectSameTable(const Table& original, const Table& loaded) {
  SCOPED_TRACE(original.name());
  EXPECT_EQ(loaded.spec().SerializeAsString(), original.spec().SerializeAsString());
  const v1::TableInfo a = original.Info();
  const v1::TableInfo b = loaded.Info();
  EXPECT_EQ(b.size(), a.size());
  EXPECT_EQ(b.inserts_total(), a.inserts_total());
  EXPECT_EQ(b.duplicate_inserts_total(), a.duplicate_inserts_total());
  EXPECT_EQ(b.samples_total(), a.samples_total());
  EXPECT_EQ(b.removals_total(), a.removals_total());
  EXPECT_NEAR(b.priority_total(), a.priority_total(), 1e-9 * (1 + a.priority_total()));
  EXPECT_EQ(b.rate_limiter().diff(), a.rate_limiter().diff());
  EXPECT_EQ(b.rate_limiter().insert_wait_seconds_total(),
            a.rate_limiter().insert_wait_seconds_total());
  EXPECT_EQ(b.rate_limiter().sample_wait_seconds_total(),
            a.rate_limiter().sample_wait_seconds_total());
  const Exported x = ExportAll(original);
  const Exported y = ExportAll(loaded);
  EXPECT_EQ(y.counters.priority_updates, x.counters.priority_updates);
  EXPECT_EQ(y.counters.limiter_inserts, x.counters.limiter_inserts);
  EXPECT_EQ(y.counters.limiter_samples, x.counters.limiter_samples);
  ASSERT_EQ(y.items.size(), x.items.size());
  for (size_t i = 0; i < x.items.size(); ++i) {
    EXPECT_EQ(y.items[i], x.items[i]) << "item " << i;
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  ASSERT_TRUE(out.good()) << path;
}

uint32_t GetU32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

// Offsets of the records of a table file (the format of checkpoint.h), record 1 first.
std::vector<size_t> RecordOffsets(const std::string& file) {
  std::vector<size_t> offsets;
  for (size_t at = 12; at + 5 <= file.size(); at += 9 + GetU32(file, at)) offsets.push_back(at);
  return offsets;
}

// A checkpoint with one transition table "t" of 10 items, copied fresh for each case.
class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = TestDir();
    auto table = std::shared_ptr<Table>(Table::Create(Spec("t", v1::SELECTOR_FIFO, 100)).value());
    for (uint64_t k = 1; k <= 10; ++k) InsertOne(*table, Transition(k, 1.0));
    auto other =
        std::shared_ptr<Table>(Table::Create(Spec("a_first", v1::SELECTOR_UNIFORM, 10)).value());
    InsertOne(*other, Transition(99, 1.0));
    auto info = WriteCheckpoint(root_ + "/ckpts", {other, table}, 0);
    ASSERT_TRUE(info.ok()) << info.status();
    pristine_ = info->path;
    dir_ = root_ + "/copy";
    fs::copy(pristine_, dir_, fs::copy_options::recursive);
    file_ = dir_ + "/t.table";
    ASSERT_TRUE(LoadCheckpoint(dir_, nullptr).ok());
  }

  void TearDown() override { fs::remove_all(root_); }

  absl::Status Load() { return LoadCheckpoint(dir_, nullptr).status(); }

  std::string root_, pristine_, dir_, file_;
};

TEST_F(CorruptionTest, FlippedByteInAnItemRecordNamesFileAndRecord) {
  std::string data = ReadFile(file_);
  const std::vector<size_t> offsets = RecordOffsets(data);
  ASSERT_EQ(offsets.size(), 13u);  // spec, counters, 10 items, footer
  data[offsets[4] + 20] ^= 0x10;   // record 5 = item 2
  WriteFile(file_, data);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr(file_));
  EXPECT_THAT(s.message(), HasSubstr("record 5 (item 2)"));
  EXPECT_THAT(s.message(), HasSubstr("checksum mismatch"));
}

TEST_F(CorruptionTest, TruncatedFileIsDataLoss) {
  const std::string data = ReadFile(file_);
  const std::vector<size_t> offsets = RecordOffsets(data);
  // Inside record 8 (item 5), and exactly between two records.
  for (size_t size : {offsets[7] + 30, offsets[7], data.size() - 1}) {
    SCOPED_TRACE(size);
    WriteFile(file_, data.substr(0, size));
    const absl::Status s = Load();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr(file_));
    EXPECT_THAT(s.message(), HasSubstr("truncated"));
  }
  WriteFile(file_, data.substr(0, offsets[7] + 30));
  EXPECT_THAT(Load().message(), HasSubstr("record 8 (item 5)"));
}

TEST_F(CorruptionTest, WrongMagicOrVersionIsDataLoss) {
  const std::string data = ReadFile(file_);
  std::string bad_magic = data;
  bad_magic[0] = 'X';
  WriteFile(file_, bad_magic);
  absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr(file_));
  EXPECT_THAT(s.message(), HasSubstr("bad magic"));

  std::string bad_version = data;
  bad_version[8] = 2;
  WriteFile(file_, bad_version);
  s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("unsupported format version 2"));
}

TEST_F(CorruptionTest, ManifestItemCountMismatchIsDataLoss) {
  const std::string manifest = ReadFile(dir_ + "/MANIFEST");
  ASSERT_THAT(manifest, HasSubstr("items: 10"));
  WriteFile(dir_ + "/MANIFEST", absl::StrReplaceAll(manifest, {{"items: 10", "items: 11"}}));
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr(file_));
  EXPECT_THAT(s.message(), HasSubstr("item count mismatch"));
}

TEST_F(CorruptionTest, ManifestProblemsAreDataLoss) {
  const std::string manifest = ReadFile(dir_ + "/MANIFEST");
  WriteFile(dir_ + "/MANIFEST", manifest + "\nnot_a_field: 3\n");
  EXPECT_EQ(Load().code(), absl::StatusCode::kDataLoss);
  WriteFile(dir_ + "/MANIFEST",
            absl::StrReplaceAll(manifest, {{"format_version: 1", "format_version: 7"}}));
  EXPECT_THAT(Load().message(), HasSubstr("unsupported format version 7"));
  fs::remove(dir_ + "/MANIFEST");
  EXPECT_EQ(Load().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Load().message(), HasSubstr("MANIFEST"));
}

TEST_F(CorruptionTest, FileSwappedOrMissingIsDataLoss) {
  // Same records, but a different file than the MANIFEST describes.
  std::string data = ReadFile(file_);
  data += std::string(3, '\0');
  WriteFile(file_, data);
  EXPECT_THAT(Load().message(), HasSubstr("unexpected bytes after the footer"));
  fs::remove(file_);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("missing"));
}

TEST_F(CorruptionTest, SpecThatFailsValidationIsDataLoss) {
  const std::string data = ReadFile(file_);
  const std::vector<size_t> offsets = RecordOffsets(data);
  v1::TableSpec spec = Spec("t", v1::SELECTOR_FIFO, 100);
  spec.set_priority_exponent(3.0);
  const std::string payload = spec.SerializeAsString();
  // A well-formed spec record (valid checksum) holding an invalid spec.
  std::string record(4, '\0');
  for (int i = 0; i < 4; ++i) record[i] = static_cast<char>((payload.size() >> (8 * i)) & 0xFF);
  record += '\1';
  record += payload;
  const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(record.data()), record.size());
  for (int i = 0; i < 4; ++i) record += static_cast<char>((crc >> (8 * i)) & 0xFF);
  WriteFile(file_, data.substr(0, 12) + record + data.substr(offsets[1]));
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr(file_));
  EXPECT_THAT(s.message(), HasSubstr("table spec fails validation"));
  EXPECT_THAT(s.message(), HasSubstr("spec.priority_exponent"));
}

TEST_F(CorruptionTest, NothingIsReturnedWhenALaterTableIsCorrupt) {
  // "a_first" loads before "t"; a corrupt "t" still fails the whole load.
  std::vector<std::string> created;
  std::string data = ReadFile(file_);
  data[RecordOffsets(data)[11] + 12] ^= 1;  // record 12 = item 9 (the last)
  WriteFile(file_, data);
  auto loaded = LoadCheckpoint(dir_, [&](const std::string& name) {
    created.push_back(name);
    return TableMetrics{};
  });
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(loaded.status().message(), HasSubstr("record 12 (item 9)"));
  EXPECT_EQ(created, (std::vector<std::string>{"a_first", "t"}));
}

TEST(CheckpointTest, MissingPathIsNotFound) {
  const ScopedTestDir dir;
  const std::string& root = dir.path;
  EXPECT_EQ(LoadCheckpoint(root + "/nope", nullptr).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LatestCheckpoint(root + "/nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LatestCheckpoint(root).status().code(), absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, RoundTripKeepsItemsOrderPrioritiesTimesSampledAndCounters) {
  const ScopedTestDir dir;
  const std::string& root = dir.path;
  // Prioritized, lowest-priority remover: evictions, samples, updates and deletions.
  v1::TableSpec prio_spec = Spec("prio", v1::SELECTOR_PRIORITIZED, 50);
  prio_spec.set_remover(v1::REMOVER_LOWEST_PRIORITY);
  auto prio = std::shared_ptr<Table>(Table::Create(prio_spec).value());
  for (uint64_t k = 1; k <= 80; ++k)
    InsertOne(*prio, Transition(k, 0.1 * static_cast<double>(k % 13)));
  InsertOne(*prio, Transition(80, 9.0));  // duplicate
  // Items recovered from a write-ahead log count in Info but not in the rate limiter; the
  // checkpoint must keep the two apart.
  google::protobuf::RepeatedPtrField<v1::Item> recovered;
  for (uint64_t k = 81; k <= 85; ++k) *recovered.Add() = Transition(k, 1.0);
  ASSERT_EQ(prio->InsertRecovered(&recovered).value_or(-1), 5);
  Sample(*prio, 8, 5);
  v1::UpdatePrioritiesRequest update;
  for (uint64_t k = 60; k <= 70; ++k) {
    update.add_keys(k);
    update.add_priorities(2.5 + static_cast<double>(k));
  }
  update.add_delete_keys(75);
  ASSERT_TRUE(prio->UpdatePriorities(update).ok());

  // FIFO queue-ish table: evictions and items leaving at max_times_sampled.
  v1::TableSpec fifo_spec = Spec("fifo", v1::SELECTOR_FIFO, 30);
  fifo_spec.set_max_times_sampled(3);
  fifo_spec.mutable_rate_limiter()->set_samples_per_insert(2);
  fifo_spec.mutable_rate_limiter()->set_min_size_to_sample(1);
  fifo_spec.mutable_rate_limiter()->set_error_buffer(1000);
  auto fifo = std::shared_ptr<Table>(Table::Create(fifo_spec).value());
  for (uint64_t k = 1; k <= 40; ++k) InsertOne(*fifo, Transition(1000 + k, 1.0));
  Sample(*fifo, 4, 4);

  // Uniform table of chunks.
  auto chunks = std::shared_ptr<Table>(
      Table::Create(Spec("chunks", v1::SELECTOR_UNIFORM, 8, v1::PAYLOAD_KIND_CHUNK)).value());
  for (uint64_t k = 1; k <= 12; ++k) InsertOne(*chunks, Chunk(5000 + k, 1.0));
  Sample(*chunks, 3, 3);

  auto lifo = std::shared_ptr<Table>(Table::Create(Spec("lifo", v1::SELECTOR_LIFO, 20)).value());
  for (uint64_t k = 1; k <= 5; ++k) InsertOne(*lifo, Transition(7000 + k, 1.0));
  Sample(*lifo, 2, 1);

  const std::vector<std::shared_ptr<Table>> tables = {prio, fifo, chunks, lifo};
  auto info = WriteCheckpoint(root, tables, 3);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(LatestCheckpoint(root).value(), info->path);
  EXPECT_EQ(
      fs::path(info->path).filename().string(),
      absl::StrCat("ckpt-", absl::FormatTime("%Y%m%dT%H%M%E6SZ", info->time, absl::UTCTimeZone()),
                   "-shard3"));
  EXPECT_LE(info->time, absl::Now());
  EXPECT_EQ(info->items, prio->size() + fifo->size() + chunks->size() + lifo->size());
  int64_t bytes = 0;
  for (const auto& entry : fs::directory_iterator(info->path)) bytes += entry.file_size();
  EXPECT_EQ(info->bytes, bytes);
  EXPECT_GT(info->duration, absl::ZeroDuration());
  EXPECT_LE(info->max_pause, info->duration);

  std::vector<std::string> metrics_asked;
  auto loaded = LoadCheckpoint(info->path, [&](const std::string& table) {
    metrics_asked.push_back(table);
    return TableMetrics{};
  });
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(metrics_asked, (std::vector<std::string>{"prio", "fifo", "chunks", "lifo"}));
  ASSERT_EQ(loaded->size(), tables.size());
  for (size_t i = 0; i < tables.size(); ++i) ExpectSameTable(*tables[i], *(*loaded)[i]);

  // Sampling the FIFO table continues identically, times_sampled included.
  Table& restored_fifo = *(*loaded)[1];
  for (int round = 0; round < 5; ++round) {
    v1::SampleResponse a, b;
    ASSERT_TRUE(fifo->Sample(4, 1.0, kNow, &a).ok());
    ASSERT_TRUE(restored_fifo.Sample(4, 1.0, kNow, &b).ok());
    ASSERT_EQ(a.items_size(), b.items_size());
    for (int j = 0; j < a.items_size(); ++j) {
      EXPECT_EQ(b.items(j).SerializeAsString(), a.items(j).SerializeAsString());
    }
  }
  ExpectSameTable(*fifo, restored_fifo);
}

TEST(CheckpointTest, EmptyTableAndNoTables) {
  const ScopedTestDir dir;
  const std::string& root = dir.path;
  auto empty =
      std::shared_ptr<Table>(Table::Create(Spec("empty", v1::SELECTOR_UNIFORM, 5)).value());
  auto info = WriteCheckpoint(root, {empty}, 0);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->items, 0);
  auto loaded = LoadCheckpoint(info->path, nullptr);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1u);
  ExpectSameTable(*empty, *loaded->front());

  auto none = WriteCheckpoint(root + "/none", {}, 0);
  ASSERT_TRUE(none.ok()) << none.status();
  auto loaded_none = LoadCheckpoint(none->path, nullptr);
  ASSERT_TRUE(loaded_none.ok()) << loaded_none.status();
  EXPECT_TRUE(loaded_none->empty());
}

TEST(CheckpointTest, UnwritableRootIsInternalNamingThePath) {
  const ScopedTestDir dir;
  const std::string& root = dir.path;
  WriteFile(root + "/plain_file", "x");
  auto table = std::shared_ptr<Table>(Table::Create(Spec("t", v1::SELECTOR_UNIFORM, 5)).value());
  const std::string bad_root = root + "/plain_file/ckpts";
  auto info = WriteCheckpoint(bad_root, {table}, 0);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInternal) << info.status();
  EXPECT_THAT(info.status().message(), HasSubstr(bad_root));
}

TEST(CheckpointTest, BadArgumentsAreInvalidArgument) {
  const ScopedTestDir dir;
  const std::string& root = dir.path;
  auto table = std::shared_ptr<Table>(Table::Create(Spec("t", v1::SELECTOR_UNIFORM, 5)).value());
  EXPECT_EQ(WriteCheckpoint(root, {table}, 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteCheckpoint(root, {table}, -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(WriteCheckpoint(root, {table, table}, 0).status().message(), HasSubstr("\"t\""));
  EXPECT_EQ(LatestCheckpoint(root).status().code(), absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, CrashLeftoversAreIgnoredNewestWinsAndOldOnesAreDeleted) {
  const ScopedTestDir dir;
  const std::string& root = dir.path;
  // A crashed write of this shard: partial files in a temporary directory.
  const std::string crashed = root + "/.tmp-ckpt-29990101T000000.000000Z-shard0-12345-0";
  fs::create_directories(crashed);
  WriteFile(crashed + "/t.table", "ENGRAMRT\1\0");
  // A final-looking directory without a MANIFEST, and unrelated entries.
  fs::create_directories(root + "/ckpt-29990101T000000.000000Z-shard0");
  fs::create_directories(root + "/something_else");
  EXPECT_EQ(LatestCheckpoint(root).status().code(), absl::StatusCode::kNotFound);

  // Another shard's checkpoint, older than the ones written below.
  fs::create_directories(root + "/ckpt-20000101T000000.000000Z-shard1");
  WriteFile(root + "/ckpt-20000101T000000.000000Z-shard1/MANIFEST", "format_version: 1\n");
  EXPECT_EQ(LatestCheckpoint(root).value(), root + "/ckpt-20000101T000000.000000Z-shard1");

  auto table = std::shared_ptr<Table>(Table::Create(Spec("t", v1::SELECTOR_UNIFORM, 5)).value());
  std::vector<std::string> paths;
  for (int i = 0; i < 4; ++i) {
    InsertOne(*table, Transition(i + 1, 1.0));
    auto info = WriteCheckpoint(root, {table}, 0, /*keep=*/2);
    ASSERT_TRUE(info.ok()) << info.status();
    if (!paths.empty()) {
      EXPECT_GT(info->path, paths.back());  // names sort by time
    }
    paths.push_back(info->path);
    EXPECT_EQ(LatestCheckpoint(root).value(), info->path);
  }
  EXPECT_FALSE(fs::exists(crashed));  // cleaned by the next write of shard 0
  EXPECT_FALSE(fs::exists(paths[0]));
  EXPECT_FALSE(fs::exists(paths[1]));
  EXPECT_TRUE(fs::exists(paths[2]));
  EXPECT_TRUE(fs::exists(paths[3]));
  // Other shards' checkpoints are not this shard's to delete.
  EXPECT_TRUE(fs::exists(root + "/ckpt-20000101T000000.000000Z-shard1"));
  for (const auto& entry : fs::directory_iterator(root)) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr(".tmp-ckpt-")));
  }
  auto loaded = LoadCheckpoint(paths[3], nullptr);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->front()->size(), 4);
}

TEST(CheckpointTest, CheckpointsWhileInsertingAreConsistentStates) {
  const ScopedTestDir dir;
  const std::string& root = dir.path;
  auto table = std::shared_ptr<Table>(Table::Create(Spec("live", v1::SELECTOR_FIFO, 500)).value());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> next_key{1};
  std::thread inserter([&] {
    while (!stop.load()) {
      google::protobuf::RepeatedPtrField<v1::Item> batch;
      const int n = static_cast<int>(next_key.load() % 7) + 1;
      for (int i = 0; i < n; ++i) *batch.Add() = Transition(next_key++, 1.0);
      ASSERT_TRUE(table->Insert(&batch, kNow).ok());
    }
  });
  int64_t last_inserts = -1;
  for (int i = 0; i < 15; ++i) {
    auto info = WriteCheckpoint(root, {table}, 0, /*keep=*/3);
    ASSERT_TRUE(info.ok()) << info.status();
    auto loaded = LoadCheckpoint(info->path, nullptr);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const Exported e = ExportAll(*loaded->front());
    const int64_t size = static_cast<int64_t>(e.items.size());
    EXPECT_EQ(size, e.counters.inserts - e.counters.removals);
    EXPECT_EQ(size, info->items);
    EXPECT_GE(e.counters.inserts, last_inserts);
    last_inserts = e.counters.inserts;
    // One inserter with increasing keys and FIFO eviction: exactly the newest keys, in order.
    for (int64_t j = 0; j < size; ++j) {
      v1::Item item;
      ASSERT_TRUE(item.ParseFromString(e.items[j].first));
      ASSERT_EQ(item.key(), static_cast<uint64_t>(e.counters.inserts - size + 1 + j));
    }
  }
  stop = true;
  inserter.join();
  EXPECT_GT(last_inserts, 0);
}

}  // namespace
}  // namespace engram::replay
