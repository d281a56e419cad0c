#include "learner/experiment_manager.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/auth.h"
#include "common/server.h"
#include "common/text_proto.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace engram::learner {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kCartPole[] = R"pb(
  seed: 3
  environment { name: "classic/cartpole" }
  apex_dqn { torso: TORSO_MLP }
  actors { num_actors: 2 }
  budget { total_frames: 1000 }
)pb";

v1::SubmitExperimentRequest Request(const std::string& id, const std::string& extra = "") {
  v1::SubmitExperimentRequest request;
  EXPECT_TRUE(ParseTextProto(kCartPole, request.mutable_spec()).ok());
  // Merged: set fields replace the base's, messages merge.
  EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(extra, request.mutable_spec()));
  request.mutable_spec()->set_id(id);
  return request;
}

class ExperimentManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
  }

  std::unique_ptr<ExperimentManager> Make(absl::Duration lease = absl::Seconds(30)) {
    ExperimentManagerOptions options;
    options.replay_addresses = {"replay-0:7700", "replay-1:7700"};
    options.runs_dir = dir_.string();
    options.actor_lease = lease;
    options.supports = [](const v1::ExperimentSpec& spec) {
      return spec.has_apex_dqn() ? absl::OkStatus()
                                 : absl::InvalidArgumentError("algorithm: apex_dqn only");
    };
    absl::StatusOr<std::unique_ptr<ExperimentManager>> manager = ExperimentManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return *std::move(manager);
  }

  // Takes the next experiment and starts it; returns its RunState.
  std::shared_ptr<RunState> Start(ExperimentManager& manager, const std::string& expected_id) {
    std::atomic<bool> stop{false};
    std::optional<ExperimentManager::Run> run = manager.Next(stop);
    EXPECT_TRUE(run.has_value());
    if (!run.has_value()) return nullptr;
    EXPECT_EQ(run->spec.id(), expected_id);
    auto state = std::make_shared<RunState>(run->spec, RunCounters{});
    EXPECT_TRUE(manager.Started(run->spec.id(), state));
    return state;
  }

  fs::path dir_;
};

TEST_F(ExperimentManagerTest, SubmitValidatesResolvesAndQueues) {
  auto manager = Make();
  // Every problem is named by its field path.
  absl::StatusOr<v1::SubmitExperimentResponse> bad =
      manager->Submit(Request("bad", "actors { num_actors: 0 } apex_dqn { n_step: 0 }"));
  ASSERT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_THAT(bad.status().message(), HasSubstr("apex_dqn.n_step"));
  EXPECT_THAT(bad.status().message(), HasSubstr("actors.num_actors"));
  // The cluster's shard count is filled in; another one is refused.
  absl::StatusOr<v1::SubmitExperimentResponse> shards =
      manager->Submit(Request("shards", "replay { num_shards: 3 }"));
  ASSERT_TRUE(absl::IsInvalidArgument(shards.status()));
  EXPECT_THAT(std::string(shards.status().message()),
              StartsWith("replay.num_shards: this learner's cluster"));
  // Algorithms the learner does not run are refused.
  v1::SubmitExperimentRequest meta = Request("meta");
  meta.mutable_spec()->clear_apex_dqn();
  meta.mutable_spec()->mutable_meta_rl();
  EXPECT_THAT(manager->Submit(meta).status().message(), HasSubstr("apex_dqn only"));

  v1::SubmitExperimentRequest validate = Request("dry");
  validate.set_validate_only(true);
  absl::StatusOr<v1::SubmitExperimentResponse> dry = manager->Submit(validate);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_EQ(dry->id(), "");
  EXPECT_EQ(dry->resolved_spec().replay().num_shards(), 2);
  EXPECT_EQ(dry->resolved_spec().apex_dqn().n_step(), 3);  // a default filled in
  EXPECT_TRUE(absl::IsNotFound(manager->Get("dry").status()));

  absl::StatusOr<v1::SubmitExperimentResponse> ok =
      manager->Submit(Request("cp", "checkpoint { directory: \"ckpt\" }"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->id(), "cp");
  // A relative checkpoint directory lives in the experiment's directory.
  EXPECT_EQ(ok->resolved_spec().checkpoint().directory(), (dir_ / "cp" / "ckpt").string());
  absl::StatusOr<v1::ExperimentStatus> status = manager->Get("cp");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state(), v1::EXPERIMENT_STATE_QUEUED);
  EXPECT_EQ(status->spec().id(), "cp");
  EXPECT_TRUE(status->has_create_time());
  EXPECT_FALSE(status->has_start_time());
  EXPECT_TRUE(fs::exists(dir_ / "cp" / "experiment.textproto"));

  EXPECT_TRUE(absl::IsAlreadyExists(manager->Submit(Request("cp")).status()));
  // Without an id the server names it after the environment.
  absl::StatusOr<v1::SubmitExperimentResponse> unnamed = manager->Submit(Request(""));
  ASSERT_TRUE(unnamed.ok()) << unnamed.status();
  EXPECT_THAT(unnamed->id(), StartsWith("cartpole-"));
  EXPECT_TRUE(manager->Get(unnamed->id()).ok());
  EXPECT_TRUE(absl::IsNotFound(manager->Get("nope").status()));

  manager->Shutdown();
  EXPECT_TRUE(absl::IsUnavailable(manager->Submit(Request("late")).status()));
}

TEST_F(ExperimentManagerTest, ListsNewestFirstInPagesAndFilters) {
  auto manager = Make();
  for (const char* id : {"a", "b", "c", "d", "e"}) {
    ASSERT_TRUE(manager->Submit(Request(id)).ok());
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_TRUE(manager->Cancel("b", "test").ok());
  std::vector<std::string> seen;
  v1::ListExperimentsRequest request;
  request.set_page_size(2);
  int pages = 0;
  do {
    absl::StatusOr<v1::ListExperimentsResponse> page = manager->List(request);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    for (const v1::ExperimentStatus& status : page->experiments()) {
      seen.push_back(status.id());
      EXPECT_FALSE(status.has_spec());  // List leaves the spec out
    }
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(seen, ElementsAre("e", "d", "c", "b", "a"));

  v1::ListExperimentsRequest cancelled;
  cancelled.add_states(v1::EXPERIMENT_STATE_CANCELLED);
  absl::StatusOr<v1::ListExperimentsResponse> only = manager->List(cancelled);
  ASSERT_TRUE(only.ok());
  ASSERT_EQ(only->experiments_size(), 1);
  EXPECT_EQ(only->experiments(0).id(), "b");

  v1::ListExperimentsRequest bad;
  bad.add_states(v1::EXPERIMENT_STATE_UNSPECIFIED);
  EXPECT_TRUE(absl::IsInvalidArgument(manager->List(bad).status()));
  // A token of another filter is refused.
  v1::ListExperimentsRequest first;
  first.set_page_size(1);
  cancelled.set_page_token(manager->List(first)->next_page_token());
  EXPECT_TRUE(absl::IsInvalidArgument(manager->List(cancelled).status()));
}

TEST_F(ExperimentManagerTest, CancelsQueuedAndRunningExperiments) {
  auto manager = Make();
  ASSERT_TRUE(manager->Submit(Request("first")).ok());
  ASSERT_TRUE(manager->Submit(Request("second")).ok());
  ASSERT_TRUE(manager->Submit(Request("third")).ok());
  // A queued one is cancelled at once and never runs.
  absl::StatusOr<v1::ExperimentStatus> second = manager->Cancel("second", "not needed");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->state(), v1::EXPERIMENT_STATE_CANCELLED);
  EXPECT_TRUE(second->has_end_time());

  std::shared_ptr<RunState> state = Start(*manager, "first");
  EXPECT_EQ(manager->Get("first")->state(), v1::EXPERIMENT_STATE_RUNNING);
  EXPECT_FALSE(manager->stop_running().load());
  absl::StatusOr<v1::ExperimentStatus> first = manager->Cancel("first", "");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->state(), v1::EXPERIMENT_STATE_RUNNING);
  EXPECT_TRUE(first->cancel_requested());
  EXPECT_TRUE(manager->stop_running().load());  // the training loop stops
  manager->Ended("first", absl::OkStatus());
  EXPECT_EQ(manager->Get("first")->state(), v1::EXPERIMENT_STATE_CANCELLED);
  // Actors of the cancelled run are told to stop.
  v1::ActorReportRequest report;
  report.set_experiment_id("first");
  report.set_role(v1::ACTOR_ROLE_TRAINING);
  report.set_incarnation(5);
  report.set_sequence(1);
  absl::StatusOr<v1::ActorReportResponse> answer = manager->Report(report);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_TRUE(answer->stop());
  report.set_experiment_id("unknown");
  EXPECT_TRUE(absl::IsFailedPrecondition(manager->Report(report).status()));
  // Idempotent on terminal experiments; unknown ids are NOT_FOUND.
  EXPECT_EQ(manager->Cancel("first", "")->state(), v1::EXPERIMENT_STATE_CANCELLED);
  EXPECT_TRUE(absl::IsNotFound(manager->Cancel("nope", "").status()));
  // The next in line is "third", "second" was skipped.
  Start(*manager, "third");
}

TEST_F(ExperimentManagerTest, AssignsActorSlotsWithLeases) {
  auto manager = Make(/*lease=*/absl::Milliseconds(300));
  v1::GetAssignmentRequest ask;
  ask.set_role(v1::ACTOR_ROLE_TRAINING);
  ask.set_incarnation(1);
  absl::StatusOr<v1::GetAssignmentResponse> idle = manager->Assign(ask);
  ASSERT_TRUE(idle.ok());
  EXPECT_FALSE(idle->assigned());  // nothing runs
  EXPECT_GT(idle->retry_after().seconds() * 1000 + idle->retry_after().nanos() / 1000000, 0);

  ASSERT_TRUE(manager->Submit(Request("run")).ok());
  Start(*manager, "run");
  auto assign = [&](uint64_t incarnation, v1::ActorRole role = v1::ACTOR_ROLE_TRAINING) {
    v1::GetAssignmentRequest request;
    request.set_role(role);
    request.set_incarnation(incarnation);
    absl::StatusOr<v1::GetAssignmentResponse> response = manager->Assign(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response->assigned() ? response->actor_index() : -1;
  };
  absl::StatusOr<v1::GetAssignmentResponse> one = manager->Assign(ask);
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(one->assigned());
  EXPECT_EQ(one->experiment_id(), "run");
  EXPECT_EQ(one->spec().id(), "run");
  EXPECT_EQ(one->actor_index(), 0);
  EXPECT_EQ(one->replay_shard(), 0);
  EXPECT_THAT(one->replay_addresses(), ElementsAre("replay-0:7700", "replay-1:7700"));
  EXPECT_EQ(assign(1), 0);   // asking again keeps the slot
  EXPECT_EQ(assign(2), 1);   // the next actor gets the next slot
  EXPECT_EQ(assign(3), -1);  // two actors in the spec: no slot left
  EXPECT_EQ(assign(10, v1::ACTOR_ROLE_EVALUATION), 0);
  EXPECT_EQ(assign(11, v1::ACTOR_ROLE_EVALUATION), -1);

  // Slot 1 keeps reporting, slot 0 goes silent: after the lease, slot 0 is free again.
  for (int i = 1; i <= 4; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    v1::ActorReportRequest report;
    report.set_experiment_id("run");
    report.set_role(v1::ACTOR_ROLE_TRAINING);
    report.set_actor_index(1);
    report.set_incarnation(2);  // the holder of slot 1
    report.set_sequence(i);
    ASSERT_TRUE(manager->Report(report).ok());
  }
  EXPECT_EQ(assign(3), 0);
  EXPECT_EQ(assign(4), -1);
  // A report of another actor under slot 0's index does not take the live slot over.
  {
    v1::ActorReportRequest stranger;
    stranger.set_experiment_id("run");
    stranger.set_role(v1::ACTOR_ROLE_TRAINING);
    stranger.set_actor_index(0);
    stranger.set_incarnation(99);
    stranger.set_sequence(1);
    ASSERT_TRUE(manager->Report(stranger).ok());  // applied (counted), but no lease
    EXPECT_EQ(assign(3), 0);                      // still incarnation 3's
  }

  ask.set_role(v1::ACTOR_ROLE_UNSPECIFIED);
  EXPECT_TRUE(absl::IsInvalidArgument(manager->Assign(ask).status()));
  ask.set_role(v1::ACTOR_ROLE_TRAINING);
  ask.set_incarnation(0);
  EXPECT_TRUE(absl::IsInvalidArgument(manager->Assign(ask).status()));

  // Once the run ends nobody is assigned to it.
  manager->Ended("run", absl::InternalError("boom"));
  EXPECT_EQ(assign(1), -1);
  absl::StatusOr<v1::ExperimentStatus> failed = manager->Get("run");
  EXPECT_EQ(failed->state(), v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(failed->error_message(), HasSubstr("boom"));
}

TEST_F(ExperimentManagerTest, QueuedExperimentsAskActorsToRetryAndSpentOnesAssignNoTraining) {
  auto manager = Make();
  ASSERT_TRUE(manager->Submit(Request("run")).ok());
  v1::ActorReportRequest report;
  report.set_experiment_id("run");
  report.set_role(v1::ACTOR_ROLE_TRAINING);
  report.set_incarnation(3);
  report.set_sequence(1);
  // Queued (or still being set up): not "stop", a retry.
  EXPECT_TRUE(absl::IsUnavailable(manager->Report(report).status()));
  std::shared_ptr<RunState> state = Start(*manager, "run");
  ASSERT_TRUE(manager->Report(report).ok());
  state->StopTraining();  // the budget is spent; the final evaluation may still run
  v1::GetAssignmentRequest ask;
  ask.set_role(v1::ACTOR_ROLE_TRAINING);
  ask.set_incarnation(4);
  EXPECT_FALSE(manager->Assign(ask)->assigned());
  ask.set_role(v1::ACTOR_ROLE_EVALUATION);
  EXPECT_TRUE(manager->Assign(ask)->assigned());
}

TEST_F(ExperimentManagerTest, CancelledBeforeAStopStaysCancelledAfterRestart) {
  {
    auto manager = Make();
    ASSERT_TRUE(manager->Submit(Request("run")).ok());
    Start(*manager, "run");
    ASSERT_TRUE(manager->Cancel("run", "no").ok());  // cancel_requested, then the process stops
    manager->Shutdown();
  }
  auto manager = Make();
  EXPECT_EQ(manager->Get("run")->state(), v1::EXPERIMENT_STATE_CANCELLED);
  std::atomic<bool> stop{true};
  EXPECT_FALSE(manager->Next(stop).has_value());
}

TEST_F(ExperimentManagerTest, RestartTakesUpRunningAndQueuedExperiments) {
  {
    auto manager = Make();
    ASSERT_TRUE(manager->Submit(Request("done")).ok());
    ASSERT_TRUE(manager->Submit(Request("interrupted")).ok());
    ASSERT_TRUE(manager->Submit(Request("waiting")).ok());
    std::shared_ptr<RunState> done = Start(*manager, "done");
    done->Finish(v1::EXPERIMENT_STATE_SUCCEEDED);
    manager->Ended("done", absl::OkStatus());
    Start(*manager, "interrupted");
    manager->Shutdown();  // SIGTERM: the running experiment stays RUNNING on disk
    manager->Ended("interrupted", absl::OkStatus());
    v1::ExperimentStatus on_disk;
    ASSERT_TRUE(
        ReadTextProtoFile((dir_ / "interrupted" / "experiment.textproto").string(), &on_disk).ok());
    EXPECT_EQ(on_disk.state(), v1::EXPERIMENT_STATE_RUNNING);
  }
  auto manager = Make();
  EXPECT_EQ(manager->Get("done")->state(), v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(manager->Get("interrupted")->state(), v1::EXPERIMENT_STATE_QUEUED);
  EXPECT_EQ(manager->Get("waiting")->state(), v1::EXPERIMENT_STATE_QUEUED);
  EXPECT_TRUE(manager->Get("interrupted")->has_start_time());
  Start(*manager, "interrupted");  // the interrupted run goes first
  Start(*manager, "waiting");
}

TEST_F(ExperimentManagerTest, ServesResultFiles) {
  auto manager = Make();
  ASSERT_TRUE(manager->Submit(Request("run")).ok());
  {
    std::ofstream out(dir_ / "run" / "progress.csv");
    out << "frames,updates\n10,1\n";
  }
  absl::StatusOr<std::vector<v1::ResultFile>> files = manager->ListResults("run");
  ASSERT_TRUE(files.ok());
  std::vector<std::string> names;
  for (const v1::ResultFile& file : *files) names.push_back(file.name());
  EXPECT_THAT(names, ElementsAre("progress.csv", "experiment.textproto"));
  EXPECT_EQ((*files)[0].size_bytes(), 20);
  absl::StatusOr<std::string> path = manager->ResultPath("run", "progress.csv");
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(*path, (dir_ / "run" / "progress.csv").string());
  // Only listed names are served: nothing outside the experiment's files.
  EXPECT_TRUE(absl::IsNotFound(manager->ResultPath("run", "../run/progress.csv").status()));
  EXPECT_TRUE(absl::IsNotFound(manager->ResultPath("run", "evaluations.csv").status()));
  EXPECT_TRUE(absl::IsNotFound(manager->ListResults("nope").status()));
}

TEST_F(ExperimentManagerTest, WatchStreamsStateChangesAndEndsAtTheTerminalState) {
  auto manager = Make();
  ExperimentServiceImpl service(manager.get());
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start({}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::ExperimentService::NewStub((*server)->InProcessChannel());
  ASSERT_TRUE(manager->Submit(Request("run")).ok());

  std::vector<v1::ExperimentState> states;
  std::thread watcher([&] {
    grpc::ClientContext context;
    v1::WatchExperimentRequest request;
    request.set_id("run");
    request.mutable_min_interval()->set_nanos(50'000'000);
    auto reader = stub->Watch(&context, request);
    v1::ExperimentStatus status;
    while (reader->Read(&status)) {
      if (states.empty() || states.back() != status.state()) states.push_back(status.state());
    }
    EXPECT_TRUE(reader->Finish().ok());
  });
  absl::SleepFor(absl::Milliseconds(200));
  std::shared_ptr<RunState> state = Start(*manager, "run");
  absl::SleepFor(absl::Milliseconds(200));
  state->Finish(v1::EXPERIMENT_STATE_SUCCEEDED);
  manager->Ended("run", absl::OkStatus());
  watcher.join();  // the stream ended by itself
  EXPECT_THAT(states, ElementsAre(v1::EXPERIMENT_STATE_QUEUED, v1::EXPERIMENT_STATE_RUNNING,
                                  v1::EXPERIMENT_STATE_SUCCEEDED));

  grpc::ClientContext context;
  v1::WatchExperimentRequest unknown;
  unknown.set_id("nope");
  auto reader = stub->Watch(&context, unknown);
  v1::ExperimentStatus ignored;
  EXPECT_FALSE(reader->Read(&ignored));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  (*server)->Shutdown(absl::Seconds(1));
}

// With tokens, Submit and Cancel need a submit (or admin) token; a refused call changes
// nothing. Reads need none.
TEST_F(ExperimentManagerTest, SubmitAndCancelNeedASubmitToken) {
  auto manager = Make();
  absl::StatusOr<std::shared_ptr<const Authorizer>> authorizer = Authorizer::FromText(
      "submit-token-0123456789 submit\nadmin-token-01234567890 admin\n", "tokens");
  ASSERT_TRUE(authorizer.ok()) << authorizer.status();
  ExperimentServiceImpl service(manager.get(), *authorizer);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start({}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::ExperimentService::NewStub((*server)->InProcessChannel());
  auto submit = [&](const std::string& token) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", token);
    v1::SubmitExperimentResponse response;
    return stub->Submit(&context, Request("run"), &response);
  };
  auto cancel = [&](const std::string& token) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", token);
    v1::CancelExperimentRequest request;
    request.set_id("run");
    v1::ExperimentStatus response;
    return stub->Cancel(&context, request, &response);
  };
  grpc::Status status = submit("");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("ExperimentService.Submit needs a bearer token"));
  EXPECT_EQ(submit("submit-token-0123456789").error_code(),  // no "Bearer "
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(submit("Bearer submit-token-0123456780").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::IsNotFound(manager->Get("run").status()));  // nothing was created

  EXPECT_TRUE(submit("Bearer submit-token-0123456789").ok());
  EXPECT_EQ(cancel("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  absl::StatusOr<v1::ExperimentStatus> queued = manager->Get("run");
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->state(), v1::EXPERIMENT_STATE_QUEUED);  // the refused cancel changed nothing
  {
    grpc::ClientContext context;  // reads need no token
    v1::GetExperimentRequest request;
    request.set_id("run");
    v1::ExperimentStatus response;
    EXPECT_TRUE(stub->Get(&context, request, &response).ok());
  }
  EXPECT_TRUE(cancel("Bearer admin-token-01234567890").ok());  // admin may do everything
  EXPECT_EQ(manager->Get("run")->state(), v1::EXPERIMENT_STATE_CANCELLED);
  (*server)->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace engram::learner
