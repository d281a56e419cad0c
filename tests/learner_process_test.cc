// The learner, replay shard and an actor as real processes: weights flow, the run's
// counters advance, SIGTERM writes a checkpoint and exits 0, and a restarted learner
// resumes from it with the counters continuing while the actor (never restarted) carries
// on. Also: bad flags exit 2 naming the flag.

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/server.h"
#include "common/subprocess.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/experiment_status.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class LearnerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "learner_process_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    // CartPole with checkpoints in the test directory.
    std::ifstream in(
        absl::StrCat(ENGRAM_SOURCE_DIR, "/deploy/experiments/cartpole_apex.textproto"));
    std::string spec(std::istreambuf_iterator<char>(in), {});
    spec += absl::StrCat("\ncheckpoint { directory: \"", (dir_ / "ckpt").string(),
                         "\" interval { seconds: 3600 } keep: 2 }\n");
    spec_ = (dir_ / "spec.textproto").string();
    std::ofstream(spec_) << spec;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Subprocess> Start(const std::string& binary, std::vector<std::string> args) {
    args.insert(args.begin(), absl::StrCat(ENGRAM_BIN_DIR, "/", binary));
    auto child =
        Subprocess::Start(args, (dir_ / absl::StrCat(binary, ++children_, ".log")).string());
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? *std::move(child) : nullptr;
  }

  // Starts a server process and returns its address.
  std::string Listen(Subprocess& child) {
    absl::StatusOr<std::string> line = child.WaitForLine("listening on ", absl::Seconds(60));
    EXPECT_TRUE(line.ok()) << line.status() << "\n" << child.ReadStderr();
    return line.ok() ? std::string(absl::StripAsciiWhitespace(*line)) : "";
  }

  static v1::ExperimentStatus Status(const std::string& learner) {
    return testing::ExperimentStatusOf(learner, "cartpole-apex");
  }

  // Polls the learner's status until `done` holds or 60 s pass.
  static v1::ExperimentStatus WaitFor(
      const std::string& learner, const std::function<bool(const v1::ExperimentStatus&)>& done) {
    return testing::WaitForExperiment(learner, "cartpole-apex", done, absl::Seconds(60));
  }

  fs::path dir_;
  std::string spec_;
  int children_ = 0;
};

TEST_F(LearnerProcessTest, CheckpointsOnSigtermAndResumes) {
  std::unique_ptr<Subprocess> replay = Start("engram_replay_server", {"--address=127.0.0.1:0"});
  const std::string replay_address = Listen(*replay);
  ASSERT_FALSE(replay_address.empty());
  const std::vector<std::string> learner_args = {
      absl::StrCat("--experiment=", spec_), "--address=127.0.0.1:0",
      absl::StrCat("--replay_addresses=", replay_address),
      absl::StrCat("--output_dir=", (dir_ / "out").string())};
  std::unique_ptr<Subprocess> learner = Start("engram_learner", learner_args);
  std::string learner_address = Listen(*learner);
  ASSERT_FALSE(learner_address.empty());
  std::unique_ptr<Subprocess> actor =
      Start("engram_actor", {absl::StrCat("--experiment=", spec_), "--actor_index=0",
                             absl::StrCat("--replay_addresses=", replay_address),
                             absl::StrCat("--learner_address=", learner_address)});

  // Frames come from the actor's reports; updates start once the table holds 1000 items.
  const v1::ExperimentStatus before = WaitFor(learner_address, [](const v1::ExperimentStatus& s) {
    return s.learner_updates() >= 50 && s.frames() >= 3000;
  });
  ASSERT_GE(before.learner_updates(), 50) << learner->ReadStderr();
  EXPECT_GT(before.parameter_version(), 1);
  EXPECT_EQ(before.state(), v1::EXPERIMENT_STATE_RUNNING);

  learner->Signal(SIGTERM);
  absl::StatusOr<int> code = learner->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << learner->ReadStderr();
  std::vector<fs::path> checkpoints;
  for (const auto& entry : fs::directory_iterator(dir_ / "ckpt")) checkpoints.push_back(entry);
  ASSERT_EQ(checkpoints.size(), 1u);
  EXPECT_TRUE(fs::exists(checkpoints[0] / "learner.pt"));
  EXPECT_TRUE(fs::exists(checkpoints[0] / "state.textproto"));

  // The restarted learner (a new port: the actor must be told; here it keeps polling the
  // old address, so a second actor joins the new one) continues the counters.
  learner = Start("engram_learner", learner_args);
  learner_address = Listen(*learner);
  ASSERT_FALSE(learner_address.empty());
  // Counters come back with the run (it is RUNNING once restored).
  const v1::ExperimentStatus resumed = WaitFor(learner_address, [](const v1::ExperimentStatus& s) {
    return s.state() == v1::EXPERIMENT_STATE_RUNNING;
  });
  EXPECT_THAT(learner->ReadStderr(), HasSubstr("resumes from"));
  EXPECT_GE(resumed.frames(), before.frames());
  EXPECT_GE(resumed.learner_updates(), before.learner_updates());
  EXPECT_GE(resumed.parameter_version(), before.parameter_version());
  std::unique_ptr<Subprocess> second =
      Start("engram_actor", {absl::StrCat("--experiment=", spec_), "--actor_index=1",
                             absl::StrCat("--replay_addresses=", replay_address),
                             absl::StrCat("--learner_address=", learner_address)});
  const v1::ExperimentStatus later = WaitFor(learner_address, [&](const v1::ExperimentStatus& s) {
    return s.learner_updates() > resumed.learner_updates() + 20 && s.frames() > resumed.frames();
  });
  EXPECT_GT(later.learner_updates(), resumed.learner_updates() + 20) << learner->ReadStderr();
  EXPECT_GT(later.frames(), resumed.frames());

  for (Subprocess* child : {second.get(), actor.get(), learner.get(), replay.get()}) {
    absl::StatusOr<int> exit = child->Terminate(absl::Seconds(45));
    ASSERT_TRUE(exit.ok());
    EXPECT_EQ(*exit, 0) << child->ReadStderr();
  }
}

TEST_F(LearnerProcessTest, BadFlagsExitTwoNamingTheFlag) {
  std::unique_ptr<Subprocess> learner =
      Start("engram_learner",
            {absl::StrCat("--experiment=", spec_), "--replay_addresses=127.0.0.1:1,127.0.0.1:2"});
  absl::StatusOr<int> code = learner->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  EXPECT_THAT(learner->ReadStderr(),
              HasSubstr("replay.num_shards: this learner's cluster has 2 replay shard(s), the "
                        "spec asks for 1"));

  std::unique_ptr<Subprocess> actor =
      Start("engram_actor", {absl::StrCat("--experiment=", spec_), "--role=bystander"});
  code = actor->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  EXPECT_THAT(actor->ReadStderr(), HasSubstr("--role"));

  std::ofstream(dir_ / "bad.textproto") << "apex_dqn { n_step: 0 }\n";
  actor = Start("engram_actor", {absl::StrCat("--experiment=", (dir_ / "bad.textproto").string()),
                                 "--learner_address=127.0.0.1:1"});
  code = actor->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  EXPECT_THAT(actor->ReadStderr(), HasSubstr("apex_dqn.n_step"));
}

}  // namespace
}  // namespace engram
