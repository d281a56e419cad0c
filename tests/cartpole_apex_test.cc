// End to end: `engram local` starts a replay shard, the learner, two training actors and
// an evaluation actor as real processes on loopback, trains Ape-X DQN on CartPole for at
// most two minutes, and the evaluation return must end far above a random policy's
// (about 22 on CartPole).

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

namespace fs = std::filesystem;

constexpr double kRandomPolicyReturn = 22;

struct Evaluation {
  int64_t frames = 0;
  double mean = 0;
};

std::vector<Evaluation> ReadEvaluations(const fs::path& csv) {
  std::vector<Evaluation> rows;
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    const std::vector<std::string> cells = absl::StrSplit(line, ',');
    // evaluation,wall_time_s,frames,updates,episodes,mean_return,min_return,max_return
    if (cells.size() < 8) continue;
    Evaluation e;
    EXPECT_TRUE(absl::SimpleAtoi(cells[2], &e.frames)) << line;
    EXPECT_TRUE(absl::SimpleAtod(cells[5], &e.mean)) << line;
    rows.push_back(e);
  }
  return rows;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CartPoleApexTest, LearnsWithinTwoMinutes) {
  const fs::path run_dir = fs::path(::testing::TempDir()) / "cartpole-run";
  fs::remove_all(run_dir);
  const std::string spec =
      absl::StrCat(ENGRAM_SOURCE_DIR, "/deploy/experiments/cartpole_apex.textproto");
  absl::StatusOr<std::unique_ptr<Subprocess>> launcher = Subprocess::Start(
      {ENGRAM_BIN, "local", spec, "--max_wall_time=110s", "--progress_interval=10s",
       absl::StrCat("--run_dir=", run_dir.string()), "--learner_flags=--csv_interval=5s"},
      (run_dir.parent_path() / "cartpole-launcher.err").string());
  ASSERT_TRUE(launcher.ok()) << launcher.status();
  // The summary table is printed when the run is over (budget, then a final evaluation).
  absl::StatusOr<std::string> summary =
      (*launcher)->WaitForLine("finished after", absl::Minutes(3));
  absl::StatusOr<int> code = (*launcher)->Wait(absl::Seconds(60));
  const std::string learner_log = ReadFile(run_dir / "logs" / "learner.log");
  ASSERT_TRUE(summary.ok()) << summary.status() << "\nlauncher stderr:\n"
                            << (*launcher)->ReadStderr() << "\nlearner log:\n"
                            << learner_log;
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << (*launcher)->ReadStderr();

  const std::vector<Evaluation> evaluations =
      ReadEvaluations(run_dir / "cartpole-apex" / "evaluations.csv");
  ASSERT_FALSE(evaluations.empty()) << learner_log;
  // The final evaluation (with the last weights) must be far above random; so must the
  // best one (a single evaluation can catch a bad moment of the policy, not a trend).
  double best = 0;
  for (const Evaluation& e : evaluations) best = std::max(best, e.mean);
  EXPECT_GT(best, 8 * kRandomPolicyReturn)
      << ReadFile(run_dir / "cartpole-apex" / "evaluations.csv");
  EXPECT_GT(evaluations.back().mean, 4 * kRandomPolicyReturn)
      << ReadFile(run_dir / "cartpole-apex" / "evaluations.csv");
  // The counters are consistent: frames only grow across evaluations.
  for (size_t i = 1; i < evaluations.size(); ++i) {
    EXPECT_GE(evaluations[i].frames, evaluations[i - 1].frames);
  }
  // Every process stopped cleanly (exit code 0) when the run ended.
  EXPECT_THAT(ReadFile(run_dir / "logs" / "actor-0.log"), ::testing::HasSubstr("stopped"));
  EXPECT_THAT(learner_log, ::testing::HasSubstr("finished"));
}

}  // namespace
}  // namespace engram
