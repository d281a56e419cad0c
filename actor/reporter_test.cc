#include "actor/reporter.h"

#include <atomic>

#include "common/server.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "learner/run_state.h"

namespace engram::actor {
namespace {

v1::ExperimentSpec Spec() {
  v1::ExperimentSpec spec;
  spec.set_id("run");
  spec.mutable_actors()->set_num_actors(4);
  spec.mutable_evaluation()->set_every_frames(0);
  spec.mutable_evaluation()->set_episodes(1);
  return spec;
}

// Applies reports to a RunState but loses the first `drop_acks` acknowledgements (the
// report is applied, the answer is an error), as a network failure after the server
// acted would.
class LossyActorService final : public v1::ActorService::Service {
 public:
  LossyActorService(learner::RunState* state, int drop_acks) : state_(state), drop_(drop_acks) {}
  grpc::Status Report(grpc::ServerContext*, const v1::ActorReportRequest* request,
                      v1::ActorReportResponse* response) override {
    absl::StatusOr<v1::ActorReportResponse> result = state_->ApplyReport(*request);
    if (!result.ok()) return ToGrpc(result.status());
    if (drop_.fetch_sub(1) > 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "lost");
    *response = *result;
    return grpc::Status::OK;
  }

 private:
  learner::RunState* state_;
  std::atomic<int> drop_;
};

ReporterOptions Options(v1::ActorRole role = v1::ACTOR_ROLE_TRAINING) {
  ReporterOptions options;
  options.experiment_id = "run";
  options.actor_index = 1;
  options.role = role;
  options.interval = absl::Milliseconds(20);
  options.initial_backoff = absl::Milliseconds(5);
  options.max_backoff = absl::Milliseconds(20);
  return options;
}

TEST(ProgressReporterTest, DeliversFramesAndEpisodesExactlyOnceDespiteLostAcks) {
  learner::RunState state(Spec(), {});
  LossyActorService service(&state, /*drop_acks=*/3);
  auto server = Server::Start({.address = "127.0.0.1:0"}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto reporter = ProgressReporter::Create((*server)->InProcessChannel(), Options());
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  for (int i = 0; i < 10; ++i) {
    (*reporter)->AddFrames(16);
    v1::EpisodeResult episode;
    episode.set_episode_return(i);
    episode.set_length(4);
    (*reporter)->AddEpisode(episode);
  }
  ASSERT_TRUE((*reporter)->Flush(absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(state.frames(), 160);
  EXPECT_EQ(state.Status().episodes(), 10);
  EXPECT_DOUBLE_EQ(state.Status().train_return().mean(), 4.5);
  EXPECT_GE((*reporter)->stats().failures, 3);
  EXPECT_TRUE((*reporter)->connected());
}

TEST(ProgressReporterTest, SeesStopAndEvaluationRequests) {
  learner::RunState state(Spec(), {});
  LossyActorService service(&state, /*drop_acks=*/0);
  auto server = Server::Start({.address = "127.0.0.1:0"}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto reporter =
      ProgressReporter::Create((*server)->InProcessChannel(), Options(v1::ACTOR_ROLE_EVALUATION));
  ASSERT_TRUE(reporter.ok());
  const int64_t index = state.RequestEvaluation();
  v1::ActorReportResponse seen;
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (seen.evaluation_index() != index && absl::Now() < give_up) {
    seen = (*reporter)->WaitForResponseChange(seen, absl::Seconds(1));
  }
  ASSERT_EQ(seen.evaluation_index(), index);
  EXPECT_FALSE((*reporter)->stop_requested());
  v1::EpisodeResult episode;
  episode.set_episode_return(7);
  episode.set_length(3);
  (*reporter)->CompleteEvaluation(index, {episode});
  ASSERT_TRUE((*reporter)->Flush(absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(state.evaluations_completed(), index);
  EXPECT_DOUBLE_EQ(state.Status().eval_return().mean(), 7);

  state.Finish(v1::EXPERIMENT_STATE_SUCCEEDED);
  give_up = absl::Now() + absl::Seconds(10);
  while (!seen.stop() && absl::Now() < give_up) {
    seen = (*reporter)->WaitForResponseChange(seen, absl::Seconds(1));
  }
  EXPECT_TRUE(seen.stop());
  EXPECT_TRUE((*reporter)->stop_requested());
}

TEST(ProgressReporterTest, FlushTimesOutWhenTheLearnerIsAway) {
  auto channel = CreateChannel("127.0.0.1:1", ChannelOptions());
  ASSERT_TRUE(channel.ok());
  auto reporter = ProgressReporter::Create(*channel, Options());
  ASSERT_TRUE(reporter.ok());
  (*reporter)->AddFrames(5);
  const absl::Status flushed = (*reporter)->Flush(absl::Now() + absl::Milliseconds(300));
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE((*reporter)->connected());
}

TEST(ProgressReporterTest, RejectsBadOptions) {
  auto channel = CreateChannel("127.0.0.1:1", ChannelOptions());
  ReporterOptions options = Options();
  options.experiment_id = "";
  EXPECT_EQ(ProgressReporter::Create(*channel, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = Options();
  options.role = v1::ACTOR_ROLE_UNSPECIFIED;
  EXPECT_EQ(ProgressReporter::Create(*channel, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram::actor
