#include "replay_server/wal.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::replay {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

using Record = std::pair<WalRecord, std::string>;

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            absl::StrCat("engram_wal_test_", ::getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<WalReplayInfo> Replay(int64_t from, std::vector<Record>* out) {
    return ReplayWal(dir_, from, [out](WalRecord type, absl::string_view payload) {
      out->emplace_back(type, std::string(payload));
      return absl::OkStatus();
    });
  }

  std::string Segment(int64_t n) const {
    char name[64];
    std::snprintf(name, sizeof(name), "wal-%020ld.log", static_cast<long>(n));
    return (fs::path(dir_) / name).string();
  }

  std::string dir_;
};

TEST_F(WalTest, RecordsComeBackInOrderAfterReopening) {
  {
    auto wal = WriteAheadLog::Open(dir_, 0);
    ASSERT_TRUE(wal.ok()) << wal.status();
    ASSERT_TRUE((*wal)->Append(WalRecord::kCreateTable, "spec").ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, std::string("a\0b", 3)).ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "").ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kDeleteTable, "t").ok());
    EXPECT_EQ((*wal)->stats().records, 4);
  }
  std::vector<Record> records;
  absl::StatusOr<WalReplayInfo> info = Replay(0, &records);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(records,
              ElementsAre(Pair(WalRecord::kCreateTable, "spec"),
                          Pair(WalRecord::kInsert, std::string("a\0b", 3)),
                          Pair(WalRecord::kInsert, ""), Pair(WalRecord::kDeleteTable, "t")));
  EXPECT_EQ(info->segments, 1);
  EXPECT_EQ(info->records, 4);
  EXPECT_EQ(info->next_segment, 1);
  EXPECT_EQ(info->truncated_bytes, 0);

  // Appending continues in the next segment; the first one must not be reopened.
  EXPECT_EQ(WriteAheadLog::Open(dir_, 0).status().code(), absl::StatusCode::kFailedPrecondition);
  auto wal = WriteAheadLog::Open(dir_, info->next_segment);
  ASSERT_TRUE(wal.ok()) << wal.status();
  ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "later").ok());
  wal->reset();
  records.clear();
  ASSERT_TRUE(Replay(0, &records).ok());
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[4].second, "later");
}

TEST_F(WalTest, ConcurrentAppendsAreAllDurableExactlyOnce) {
  constexpr int kThreads = 8, kPerThread = 150;
  {
    auto wal = WriteAheadLog::Open(dir_, 0);
    ASSERT_TRUE(wal.ok());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, absl::StrCat(t, ":", i)).ok());
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    const WriteAheadLog::Stats stats = (*wal)->stats();
    EXPECT_EQ(stats.records, kThreads * kPerThread);
    EXPECT_GE(stats.syncs, 1);
    EXPECT_LE(stats.syncs, stats.records);
  }
  std::vector<Record> records;
  ASSERT_TRUE(Replay(0, &records).ok());
  ASSERT_EQ(records.size(), static_cast<size_t>(kThreads * kPerThread));
  absl::flat_hash_set<std::string> seen;
  std::vector<int> next(kThreads, 0);
  for (const auto& [type, payload] : records) {
    EXPECT_TRUE(seen.insert(payload).second) << payload;
    // Each thread's records are in the order it appended them.
    const int t = std::stoi(payload.substr(0, payload.find(':')));
    EXPECT_EQ(payload, absl::StrCat(t, ":", next[t]++));
  }
}

TEST_F(WalTest, RotateSplitsSegmentsAndDropBeforeRemovesTheOldOnes) {
  auto wal = WriteAheadLog::Open(dir_, 3);
  ASSERT_TRUE(wal.ok());
  ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "before").ok());
  EXPECT_EQ((*wal)->stats().segment_bytes, 9 + 6);  // framing + payload
  absl::StatusOr<int64_t> segment = (*wal)->Rotate();
  ASSERT_TRUE(segment.ok());
  EXPECT_EQ(*segment, 4);
  EXPECT_EQ((*wal)->stats().segment_bytes, 0);
  ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "after").ok());
  EXPECT_TRUE(fs::exists(Segment(3)));
  EXPECT_TRUE(fs::exists(Segment(4)));

  std::vector<Record> records;
  ASSERT_TRUE(Replay(*segment, &records).ok());
  EXPECT_THAT(records, ElementsAre(Pair(WalRecord::kInsert, "after")));

  ASSERT_TRUE((*wal)->DropBefore(*segment).ok());
  EXPECT_FALSE(fs::exists(Segment(3)));
  records.clear();
  absl::StatusOr<WalReplayInfo> info = Replay(0, &records);
  ASSERT_TRUE(info.ok());
  EXPECT_THAT(records, ElementsAre(Pair(WalRecord::kInsert, "after")));
  EXPECT_EQ(info->next_segment, 5);
}

TEST_F(WalTest, ATornTailOfTheLastSegmentIsCutOffOnce) {
  {
    auto wal = WriteAheadLog::Open(dir_, 0);
    ASSERT_TRUE(wal.ok());
    for (const char* payload : {"one", "two", "three"}) {
      ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, payload).ok());
    }
  }
  const std::string path = Segment(0);
  const auto size = static_cast<int64_t>(fs::file_size(path));
  // The last record loses its final 3 bytes, as if the crash came mid-write.
  fs::resize_file(path, size - 3);

  std::vector<Record> records;
  absl::StatusOr<WalReplayInfo> info = Replay(0, &records);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(records,
              ElementsAre(Pair(WalRecord::kInsert, "one"), Pair(WalRecord::kInsert, "two")));
  EXPECT_EQ(info->truncated_file, path);
  EXPECT_EQ(info->truncated_bytes, 5 + 5 + 4 - 3);  // header, payload, crc, less the cut
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(path)), size - (5 + 5 + 4));

  // The cut is made once: the segment now ends cleanly, also when it is no longer the last.
  auto wal = WriteAheadLog::Open(dir_, info->next_segment);
  ASSERT_TRUE(wal.ok());
  ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "four").ok());
  wal->reset();
  records.clear();
  info = Replay(0, &records);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(records.size(), 3u);
  EXPECT_EQ(info->truncated_bytes, 0);
}

TEST_F(WalTest, GarbageAfterTheLastGoodRecordIsCut) {
  {
    auto wal = WriteAheadLog::Open(dir_, 0);
    ASSERT_TRUE(wal.ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "kept").ok());
  }
  {
    std::ofstream out(Segment(0), std::ios::binary | std::ios::app);
    out << std::string(100, '\0');  // a preallocated, never written tail
  }
  std::vector<Record> records;
  absl::StatusOr<WalReplayInfo> info = Replay(0, &records);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(records, ElementsAre(Pair(WalRecord::kInsert, "kept")));
  EXPECT_EQ(info->truncated_bytes, 100);
}

TEST_F(WalTest, CorruptionInAnEarlierSegmentIsDataLossNamingFileAndOffset) {
  {
    auto wal = WriteAheadLog::Open(dir_, 0);
    ASSERT_TRUE(wal.ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "first").ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "second").ok());
    ASSERT_TRUE((*wal)->Rotate().ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "third").ok());
  }
  {
    // Flip a payload byte of "second" (header 20 bytes, record "first" 14 bytes, then the
    // 5-byte prefix of "second").
    std::fstream f(Segment(0), std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(20 + 14 + 5 + 1);
    f.put('X');
  }
  const auto size_before = fs::file_size(Segment(0));
  std::vector<Record> records;
  absl::StatusOr<WalReplayInfo> info = Replay(0, &records);
  ASSERT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(info.status().message(), HasSubstr(Segment(0)));
  EXPECT_THAT(info.status().message(), HasSubstr("offset 34"));
  EXPECT_THAT(info.status().message(), HasSubstr("checksum"));
  EXPECT_EQ(fs::file_size(Segment(0)), size_before);  // nothing was cut
}

TEST_F(WalTest, AnApplyErrorStopsTheReplayNamingWhere) {
  {
    auto wal = WriteAheadLog::Open(dir_, 0);
    ASSERT_TRUE(wal.ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "ok").ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "bad").ok());
    ASSERT_TRUE((*wal)->Append(WalRecord::kInsert, "never").ok());
  }
  int applied = 0;
  absl::StatusOr<WalReplayInfo> info =
      ReplayWal(dir_, 0, [&applied](WalRecord, absl::string_view payload) {
        if (payload == "bad") return absl::NotFoundError("table \"x\" not found");
        ++applied;
        return absl::OkStatus();
      });
  ASSERT_EQ(info.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(info.status().message(), HasSubstr("offset 31: table \"x\" not found"));
  EXPECT_EQ(applied, 1);
}

TEST_F(WalTest, AMissingDirectoryIsAnEmptyLogAndBadArgumentsAreRefused) {
  std::vector<Record> records;
  absl::StatusOr<WalReplayInfo> info = Replay(7, &records);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->segments, 0);
  EXPECT_EQ(info->next_segment, 7);
  EXPECT_EQ(WriteAheadLog::Open(dir_, -1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WalTest, AHeaderlessLastSegmentIsRemoved) {
  fs::create_directories(dir_);
  {
    std::ofstream out(Segment(2), std::ios::binary);
    out << "ENGRAM";
  }
  std::vector<Record> records;
  absl::StatusOr<WalReplayInfo> info = Replay(0, &records);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(records.empty());
  EXPECT_EQ(info->truncated_bytes, 6);
  EXPECT_FALSE(fs::exists(Segment(2)));
  EXPECT_EQ(info->next_segment, 3);
}

}  // namespace
}  // namespace engram::replay
