// End to end: `engram local` runs an episodic control experiment on MinAtar Breakout (the
// episodic store, the learner keeping the books, two actors acting on the store's k-NN
// estimates, an evaluation actor) for 30K frames; the evaluation return must end well above
// a random policy's (0.52 on Breakout, bench/envs/random_policy), the store must hold the
// written keys, and every process must stop cleanly.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/subprocess.h"
#include "episodic_store/memory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

namespace fs = std::filesystem;

constexpr double kRandomPolicyReturn = 0.52;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(EpisodicControlTest, BeatsRandomOnBreakoutWithinThirtyThousandFrames) {
  const fs::path run_dir = fs::path(::testing::TempDir()) / "episodic-control-run";
  fs::remove_all(run_dir);
  absl::StatusOr<std::unique_ptr<Subprocess>> launcher = Subprocess::Start(
      {ENGRAM_BIN, "local",
       absl::StrCat(ENGRAM_SOURCE_DIR, "/deploy/experiments/breakout_ec.textproto"),
       "--max_frames=30000", "--max_wall_time=150s", absl::StrCat("--run_dir=", run_dir.string()),
       "--learner_flags=--csv_interval=2s"},
      (run_dir.parent_path() / "episodic-control-launcher.err").string());
  ASSERT_TRUE(launcher.ok()) << launcher.status();
  absl::StatusOr<int> code = (*launcher)->Wait(absl::Seconds(200));
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << (*launcher)->ReadStderr() << ReadFile(run_dir / "logs" / "learner.log");

  // The last evaluation (the final one, at >= 30K frames).
  const std::string csv = ReadFile(run_dir / "breakout-ec" / "evaluations.csv");
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << csv;
  std::vector<std::string> fields = absl::StrSplit(lines.back(), ',');
  ASSERT_EQ(fields.size(), 10u) << lines.back();  // ..., task, task_name
  int64_t frames = 0;
  double mean = 0;
  ASSERT_TRUE(absl::SimpleAtoi(fields[2], &frames));
  ASSERT_TRUE(absl::SimpleAtod(fields[5], &mean));
  EXPECT_GE(frames, 30000);
  EXPECT_GT(mean, 4 * kRandomPolicyReturn) << csv;

  // The actors wrote their episodes to the store and stopped cleanly.
  const std::string store_log = ReadFile(run_dir / "logs" / "episodic-store.log");
  EXPECT_THAT(store_log, ::testing::HasSubstr("stopped"));
  EXPECT_THAT(ReadFile(run_dir / "logs" / "actor-0.log"), ::testing::HasSubstr("stopping after"));
}

// An Ape-X run with apex_dqn.write_episodic: its actors fill the episodic store from the same
// experience; the store's final snapshot (written on SIGTERM) holds the episodes' keys.
TEST(EpisodicControlTest, ApexActorsAlsoFillTheEpisodicStore) {
  const fs::path run_dir = fs::path(::testing::TempDir()) / "apex-writes-episodic";
  fs::remove_all(run_dir);
  fs::create_directories(run_dir);
  const fs::path spec = run_dir / "cartpole.textproto";
  std::string text =
      ReadFile(fs::path(ENGRAM_SOURCE_DIR) / "deploy/experiments/cartpole_apex.textproto");
  const size_t apex = text.find("apex_dqn {");
  ASSERT_NE(apex, std::string::npos);
  text.insert(apex + std::string("apex_dqn {").size(), "\n  write_episodic: true");
  std::ofstream(spec) << text;
  absl::StatusOr<std::unique_ptr<Subprocess>> launcher = Subprocess::Start(
      {ENGRAM_BIN, "local", spec.string(), "--max_frames=15000", "--max_wall_time=120s",
       absl::StrCat("--run_dir=", (run_dir / "run").string())},
      (run_dir / "launcher.err").string());
  ASSERT_TRUE(launcher.ok()) << launcher.status();
  absl::StatusOr<int> code = (*launcher)->Wait(absl::Seconds(180));
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << (*launcher)->ReadStderr();
  fs::path memory_file;
  for (const auto& entry : fs::directory_iterator(run_dir / "run" / "episodic")) {
    if (fs::exists(entry.path() / "ec_cartpole_apex.memory")) {
      memory_file = entry.path() / "ec_cartpole_apex.memory";
    }
  }
  ASSERT_FALSE(memory_file.empty()) << "no snapshot with the experiment's memory";
  std::ifstream in(memory_file, std::ios::binary);
  absl::StatusOr<std::unique_ptr<episodic::Memory>> memory = episodic::Memory::Load(in);
  ASSERT_TRUE(memory.ok()) << memory.status();
  const v1::MemoryInfo info = (*memory)->Info();
  ASSERT_EQ(info.sizes_size(), 2);  // CartPole's two actions
  // Every finished training episode was written: thousands of steps out of 15K frames
  // (CartPole states are continuous, so nearly every key is new).
  EXPECT_GT(info.writes_total(), 5000);
  EXPECT_GT(info.sizes(0) + info.sizes(1), 5000);
}

}  // namespace
}  // namespace engram
