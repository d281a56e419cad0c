#include "learner/run_state.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::learner {
namespace {

using ::testing::HasSubstr;

v1::ExperimentSpec Spec() {
  v1::ExperimentSpec spec;
  spec.set_id("run");
  spec.mutable_actors()->set_num_actors(2);
  spec.mutable_evaluation()->set_every_frames(100);
  spec.mutable_evaluation()->set_episodes(2);
  spec.mutable_budget()->set_total_frames(1000);
  return spec;
}

v1::ActorReportRequest Training(uint64_t incarnation, int64_t sequence, int64_t frames) {
  v1::ActorReportRequest request;
  request.set_experiment_id("run");
  request.set_role(v1::ACTOR_ROLE_TRAINING);
  request.set_actor_index(0);
  request.set_incarnation(incarnation);
  request.set_sequence(sequence);
  request.set_frames(frames);
  return request;
}

v1::ActorReportRequest Evaluation(int64_t sequence) {
  v1::ActorReportRequest request = Training(99, sequence, 0);
  request.set_role(v1::ACTOR_ROLE_EVALUATION);
  return request;
}

TEST(RunStateTest, AppliesEachReportOnce) {
  RunState state(Spec(), {});
  v1::ActorReportRequest report = Training(7, 1, 40);
  v1::EpisodeResult* episode = report.add_episodes();
  episode->set_episode_return(3);
  episode->set_length(10);
  ASSERT_TRUE(state.ApplyReport(report).ok());
  // A resend (lost acknowledgement) is acknowledged and not counted again.
  absl::StatusOr<v1::ActorReportResponse> again = state.ApplyReport(report);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->frames(), 40);
  EXPECT_EQ(state.frames(), 40);
  EXPECT_EQ(state.Status().episodes(), 1);
  // Another incarnation (a restarted actor) counts separately.
  ASSERT_TRUE(state.ApplyReport(Training(8, 1, 5)).ok());
  EXPECT_EQ(state.frames(), 45);
  EXPECT_EQ(state.Status().train_return().mean(), 3);
}

TEST(RunStateTest, RejectsBadReportsAndChangesNothing) {
  RunState state(Spec(), {});
  v1::ActorReportRequest other = Training(1, 1, 5);
  other.set_experiment_id("other");
  EXPECT_EQ(state.ApplyReport(other).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(state.ApplyReport(Training(1, 1, -1)).status().message(), HasSubstr("frames"));
  v1::ActorReportRequest bad_index = Training(1, 1, 5);
  bad_index.set_actor_index(2);
  EXPECT_THAT(state.ApplyReport(bad_index).status().message(), HasSubstr("actor_index"));
  v1::ActorReportRequest nan = Training(1, 1, 5);
  nan.add_episodes()->set_episode_return(std::nan(""));
  nan.mutable_episodes(0)->set_length(3);
  EXPECT_THAT(state.ApplyReport(nan).status().message(), HasSubstr("episodes[0]"));
  v1::ActorReportRequest no_role = Training(1, 1, 5);
  no_role.set_role(v1::ACTOR_ROLE_UNSPECIFIED);
  EXPECT_EQ(state.ApplyReport(no_role).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(state.frames(), 0);
  // The rejected first report did not consume the sequence number.
  EXPECT_TRUE(state.ApplyReport(Training(1, 1, 5)).ok());
  EXPECT_EQ(state.frames(), 5);
  // A skipped number is refused.
  EXPECT_THAT(state.ApplyReport(Training(1, 3, 5)).status().message(),
              HasSubstr("sequence: expected 2, got 3"));
  EXPECT_EQ(state.frames(), 5);
}

// A learner restarted from a checkpoint meets running actors mid-stream: the first report
// it gets from an incarnation starts that incarnation's count, whatever its number.
TEST(RunStateTest, AnIncarnationFirstSeenMidStreamIsCountedFromThere) {
  RunState state(Spec(), {});
  ASSERT_TRUE(state.ApplyReport(Training(5, 40, 7)).ok());
  EXPECT_EQ(state.frames(), 7);
  ASSERT_TRUE(state.ApplyReport(Training(5, 40, 7)).ok());  // a resend
  ASSERT_TRUE(state.ApplyReport(Training(5, 39, 7)).ok());  // older: already counted
  EXPECT_EQ(state.frames(), 7);
  ASSERT_TRUE(state.ApplyReport(Training(5, 41, 3)).ok());
  EXPECT_EQ(state.frames(), 10);
  EXPECT_FALSE(state.ApplyReport(Training(5, 43, 3)).ok());
}

TEST(RunStateTest, SchedulesEvaluationsByFramesAndRecordsResults) {
  RunState state(Spec(), {});
  EXPECT_EQ(state.ApplyReport(Evaluation(1))->evaluation_index(), 0);
  ASSERT_TRUE(state.ApplyReport(Training(1, 1, 99)).ok());
  EXPECT_EQ(state.ApplyReport(Evaluation(2))->evaluation_index(), 0);
  // Crossing 100 and 200 frames in one report asks for one evaluation, the newest.
  ASSERT_TRUE(state.ApplyReport(Training(1, 2, 150)).ok());
  EXPECT_EQ(state.ApplyReport(Evaluation(3))->evaluation_index(), 1);
  EXPECT_TRUE(state.has_evaluation_actor());

  v1::ActorReportRequest done = Evaluation(4);
  done.set_evaluation_index(1);
  done.set_evaluation_complete(true);
  for (double r : {2.0, 6.0}) {
    v1::EpisodeResult* episode = done.add_episodes();
    episode->set_episode_return(r);
    episode->set_length(5);
  }
  absl::StatusOr<v1::ActorReportResponse> answer = state.ApplyReport(done);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->evaluation_index(), 0);  // nothing more due
  EXPECT_EQ(state.evaluations_completed(), 1);
  const v1::ReturnSummary eval = state.Status().eval_return();
  EXPECT_EQ(eval.episodes(), 2);
  EXPECT_DOUBLE_EQ(eval.mean(), 4);
  EXPECT_DOUBLE_EQ(eval.min(), 2);
  EXPECT_DOUBLE_EQ(eval.max(), 6);
  EXPECT_EQ(eval.at_frames(), 249);
  auto taken = state.TakeNewEvaluation();
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->index, 1);
  EXPECT_DOUBLE_EQ(taken->summary.mean(), 4);
  EXPECT_TRUE(taken->tasks.empty());
  EXPECT_FALSE(state.TakeNewEvaluation().has_value());
  // Evaluation frames are not training frames.
  EXPECT_EQ(state.frames(), 249);
  // The next one is due at 300 frames; an explicit request comes on top.
  EXPECT_EQ(state.RequestEvaluation(), 2);
  EXPECT_EQ(state.ApplyReport(Evaluation(5))->evaluation_index(), 2);
}

TEST(RunStateTest, StopsTrainingActorsThenEveryone) {
  RunState state(Spec(), {});
  ASSERT_FALSE(state.ApplyReport(Training(1, 1, 1000))->stop());
  EXPECT_EQ(state.BudgetSpent().value_or(""), "1000 frames");
  state.StopTraining();
  EXPECT_TRUE(state.ApplyReport(Training(1, 2, 0))->stop());
  EXPECT_FALSE(state.ApplyReport(Evaluation(1))->stop());
  state.Finish(v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_TRUE(state.ApplyReport(Evaluation(2))->stop());
  EXPECT_EQ(state.Status().state(), v1::EXPERIMENT_STATE_SUCCEEDED);
}

TEST(RunStateTest, WallTimeBudgetCountsRestoredTime) {
  v1::ExperimentSpec spec = Spec();
  spec.mutable_budget()->set_total_frames(0);
  spec.mutable_budget()->mutable_max_wall_time()->set_seconds(60);
  RunCounters restored;
  restored.elapsed = absl::Seconds(59);
  EXPECT_FALSE(RunState(spec, {}).BudgetSpent().has_value());
  restored.elapsed = absl::Seconds(61);
  EXPECT_EQ(RunState(spec, restored).BudgetSpent().value_or(""), "1m of wall time");
}

TEST(RunStateTest, RestoredCountersContinue) {
  RunCounters restored;
  restored.frames = 500;
  restored.episodes = 7;
  restored.updates = 30;
  restored.parameter_version = 4;
  restored.evaluations_requested = 5;
  restored.next_evaluation_frames = 600;
  RunState state(Spec(), restored);
  ASSERT_TRUE(state.ApplyReport(Training(1, 1, 100)).ok());
  const v1::ExperimentStatus status = state.Status();
  EXPECT_EQ(status.frames(), 600);
  EXPECT_EQ(status.episodes(), 7);
  EXPECT_EQ(status.learner_updates(), 30);
  EXPECT_EQ(status.parameter_version(), 4);
  // 600 frames reached: evaluation 6 (after the 5 before the restart) is due.
  EXPECT_EQ(state.ApplyReport(Evaluation(1))->evaluation_index(), 6);
}

TEST(RunStateTest, RatesAndLag) {
  RunState state(Spec(), {});
  state.RecordSampled(256, 1.5, 3);
  state.RecordSampled(256, 2.5, 4);
  const v1::ExperimentStatus status = state.Status();
  EXPECT_DOUBLE_EQ(status.policy_lag().mean_versions(), 2.0);
  EXPECT_EQ(status.policy_lag().max_versions(), 4);
  EXPECT_EQ(status.state(), v1::EXPERIMENT_STATE_RUNNING);
  EXPECT_EQ(status.spec().id(), "run");
}

TEST(RunStateTest, TaskSequenceSwitchesActorsAndEvaluatesEveryTaskSeen) {
  v1::ExperimentSpec spec = Spec();
  spec.mutable_budget()->set_total_frames(0);
  for (const auto& [name, frames] : {std::pair<std::string, int>{"a", 300}, {"b", 200}}) {
    v1::Task* task = spec.mutable_task_sequence()->add_tasks();
    task->set_name(name);
    task->set_frames(frames);
  }
  RunState state(spec, {});
  absl::StatusOr<v1::ActorReportResponse> answer = state.ApplyReport(Training(1, 1, 150));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->task_index(), 0);
  EXPECT_EQ(state.ApplyReport(Evaluation(1))->evaluation_tasks(), 1);

  state.SetTaskPhase(1);
  state.SetTaskPhase(0);  // phases never go back
  EXPECT_EQ(state.task_phase(), 1);
  EXPECT_EQ(state.ApplyReport(Training(1, 2, 200))->task_index(), 1);
  EXPECT_EQ(state.Status().task_index(), 1);
  const int64_t index = state.RequestEvaluation();
  answer = state.ApplyReport(Evaluation(2));
  EXPECT_EQ(answer->evaluation_index(), index);
  EXPECT_EQ(answer->evaluation_tasks(), 2);

  v1::ActorReportRequest bad = Evaluation(3);
  bad.add_episodes()->set_task_index(2);
  bad.mutable_episodes(0)->set_length(1);
  EXPECT_THAT(state.ApplyReport(bad).status().message(),
              HasSubstr("episodes[0].task_index: must be in [0, 2), got 2"));

  v1::ActorReportRequest done = Evaluation(3);  // the rejected report applied nothing
  done.set_evaluation_index(index);
  done.set_evaluation_complete(true);
  for (const auto& [task, r] : {std::pair<int, double>{0, 10}, {0, 20}, {1, 1}, {1, 3}}) {
    v1::EpisodeResult* episode = done.add_episodes();
    episode->set_task_index(task);
    episode->set_episode_return(r);
    episode->set_length(5);
  }
  ASSERT_TRUE(state.ApplyReport(done).ok());
  const v1::ExperimentStatus status = state.Status();
  EXPECT_DOUBLE_EQ(status.eval_return().mean(), 2);  // task b's: the task being trained
  ASSERT_EQ(status.task_eval_returns_size(), 2);
  EXPECT_EQ(status.task_eval_returns(0).task(), "a");
  EXPECT_DOUBLE_EQ(status.task_eval_returns(0).eval_return().mean(), 15);
  EXPECT_EQ(status.task_eval_returns(0).eval_return().episodes(), 2);
  EXPECT_EQ(status.task_eval_returns(1).task_index(), 1);
  EXPECT_DOUBLE_EQ(status.task_eval_returns(1).eval_return().min(), 1);
  const std::optional<CompletedEvaluation> taken = state.TakeNewEvaluation();
  ASSERT_TRUE(taken.has_value());
  ASSERT_EQ(taken->tasks.size(), 2u);
  EXPECT_DOUBLE_EQ(taken->tasks[0].eval_return().max(), 20);
  // Kept by checkpoints.
  EXPECT_EQ(state.counters().task_phase, 1);
  EXPECT_EQ(state.counters().task_eval_returns.size(), 2u);

  EXPECT_FALSE(state.BudgetSpent().has_value());
  ASSERT_TRUE(state.ApplyReport(Training(1, 3, 150)).ok());  // 500 frames: the sequence's end
  EXPECT_EQ(state.BudgetSpent().value_or(""), "the task sequence's 500 frames");
}

}  // namespace
}  // namespace engram::learner
