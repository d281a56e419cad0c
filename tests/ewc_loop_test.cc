// End to end: a task sequence through the distributed loop with EWC. `engram local` runs
// deploy/experiments/cartpole_ewc.textproto shortened to 15K frames per task, with
// checkpoints: the learner trains CartPole on its table "replay_t0", then at 15K frames
// samples the Fisher minibatches from that table, creates "replay_t1", tells the actors to
// switch to the permuted CartPole, consolidates (Fisher of 100 x 64 transitions), and
// trains on the new table with the EWC penalty; evaluations cover every task seen so far.
// Checked: the switch in the learner's and actors' logs, evaluations.csv rows for both tasks
// after the switch, the final checkpoint's task phase and EWC file, the run ending at the
// sequence's 30K frames, and every process exiting 0. (Whether EWC prevents forgetting is
// bench/ewc's question: it needs minutes of training.)

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(EwcLoopTest, TaskSequenceSwitchesConsolidatesAndEvaluatesEveryTask) {
  const fs::path run_dir = fs::path(::testing::TempDir()) / "ewc-run";
  fs::remove_all(run_dir);
  fs::create_directories(run_dir);
  const std::string original =
      ReadFile(absl::StrCat(ENGRAM_SOURCE_DIR, "/deploy/experiments/cartpole_ewc.textproto"));
  ASSERT_THAT(original, HasSubstr("frames: 300000"));
  const fs::path spec = run_dir / "ewc.textproto";
  std::ofstream(spec) << absl::StrReplaceAll(original,
                                             {{"frames: 250000", "frames: 15000"},
                                              {"frames: 300000", "frames: 15000"},
                                              {"every_frames: 20000", "every_frames: 5000"}})
                      << "\ncheckpoint {\n  directory: \"checkpoints\"\n  keep: 5\n}\n";
  absl::StatusOr<std::unique_ptr<Subprocess>> launcher = Subprocess::Start(
      {ENGRAM_BIN, "local", spec.string(), absl::StrCat("--run_dir=", run_dir.string())},
      (run_dir.parent_path() / "ewc-launcher.err").string());
  ASSERT_TRUE(launcher.ok()) << launcher.status();
  absl::StatusOr<int> code = (*launcher)->Wait(absl::Seconds(150));
  ASSERT_TRUE(code.ok()) << code.status();
  const std::string learner_log = ReadFile(run_dir / "logs" / "learner.log");
  ASSERT_EQ(*code, 0) << (*launcher)->ReadStderr() << learner_log;
  // The launcher's summary (stdout).
  const absl::StatusOr<std::string> permuted_row =
      (*launcher)->WaitForLine("task cartpole_permuted", absl::Seconds(5));
  EXPECT_TRUE(permuted_row.ok()) << permuted_row.status();
  const absl::StatusOr<std::string> exit_codes =
      (*launcher)->WaitForLine("exit codes", absl::Seconds(5));
  ASSERT_TRUE(exit_codes.ok()) << exit_codes.status();
  EXPECT_THAT(*exit_codes,
              HasSubstr("replay-0=0, episodic-store=0, learner=0, actor-0=0, actor-1=0, eval=0"));

  EXPECT_THAT(learner_log, HasSubstr("table \"replay_t0\" created"));
  EXPECT_THAT(learner_log, HasSubstr("task sequence: task 0 (cartpole) done at"));
  EXPECT_THAT(learner_log, HasSubstr("table \"replay_t1\" created"));
  EXPECT_THAT(learner_log, HasSubstr("task 0 consolidated: Fisher of 6400 transitions"));
  EXPECT_THAT(learner_log, HasSubstr("budget reached (the task sequence's 30000 frames)"));
  for (const char* actor : {"actor-0.log", "actor-1.log"}) {
    EXPECT_THAT(ReadFile(run_dir / "logs" / actor),
                HasSubstr("task 1 (cartpole_permuted) from now on, writing to table \"replay_t1\""))
        << actor;
  }

  // evaluations.csv: ..., task, task_name. Before the switch only task 0 is evaluated; from
  // the switch on, each evaluation has a row per task.
  const fs::path experiment = run_dir / "cartpole-ewc";
  const std::string csv = ReadFile(experiment / "evaluations.csv");
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 4u) << csv;
  EXPECT_EQ(lines.front(),
            "evaluation,wall_time_s,frames,updates,episodes,mean_return,min_return,max_return,"
            "task,task_name");
  std::map<std::string, std::set<std::string>> tasks_of;  // evaluation -> task names
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string> row = absl::StrSplit(lines[i], ',');
    ASSERT_EQ(row.size(), 10u) << lines[i];
    double mean = -1;
    ASSERT_TRUE(absl::SimpleAtod(row[5], &mean)) << lines[i];
    EXPECT_GE(mean, 8) << lines[i];  // CartPole's shortest episodes last 8 or more steps
    EXPECT_EQ(row[9], row[8] == "0" ? "cartpole" : "cartpole_permuted") << lines[i];
    tasks_of[row[0]].insert(row[9]);
  }
  int both = 0;
  for (const auto& [evaluation, names] : tasks_of) both += names.size() == 2;
  EXPECT_GE(both, 2) << csv;  // the switch's and the final evaluation at least

  // The final checkpoint is in phase 1, with the consolidated terms beside the network.
  std::vector<fs::path> checkpoints;
  for (const auto& entry : fs::directory_iterator(experiment / "checkpoints")) {
    checkpoints.push_back(entry.path());
  }
  ASSERT_FALSE(checkpoints.empty());
  std::sort(checkpoints.begin(), checkpoints.end());
  EXPECT_TRUE(fs::exists(checkpoints.back() / "ewc.pt"));
  EXPECT_THAT(ReadFile(checkpoints.back() / "state.textproto"), HasSubstr("task_phase: 1"));
}

}  // namespace
}  // namespace engram
