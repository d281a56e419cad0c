#include "learner/apex_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/core/dqn.h"
#include "learner/experiment_spec.h"
#include "learner/weights.h"
#include "torch/torch.h"

namespace engram::learner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::ExperimentSpec Resolved(const std::string& env, v1::Torso torso) {
  v1::ExperimentSpec spec;
  spec.set_id("t");
  spec.set_seed(3);
  spec.mutable_environment()->set_name(env);
  spec.mutable_apex_dqn()->set_torso(torso);
  spec.mutable_apex_dqn()->set_batch_size(32);
  spec.mutable_actors()->set_num_actors(2);
  spec.mutable_budget()->set_total_frames(1000);
  absl::StatusOr<v1::ExperimentSpec> resolved = ResolveExperimentSpec(spec);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  return *resolved;
}

TEST(ApexConfigTest, MinAtarDuelingNetwork) {
  absl::StatusOr<NetworkConfig> config =
      ApexNetworkConfig(Resolved("minatar/breakout", v1::TORSO_DUELING));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->torso, Torso::kMinAtarDueling);
  EXPECT_THAT(config->observation_shape, ElementsAre(10, 10, 4));
  EXPECT_EQ(config->num_actions, 6);
}

TEST(ApexConfigTest, MlpForCartPoleWithHiddenSizes) {
  v1::ExperimentSpec spec = Resolved("classic/cartpole", v1::TORSO_MLP);
  spec.mutable_apex_dqn()->add_hidden_sizes(32);
  absl::StatusOr<NetworkConfig> config = ApexNetworkConfig(spec);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->torso, Torso::kMlp);
  EXPECT_THAT(config->observation_shape, ElementsAre(4));
  EXPECT_EQ(config->num_actions, 2);
  EXPECT_THAT(config->hidden_sizes, ElementsAre(32));
}

TEST(ApexConfigTest, ConvolutionDoesNotFitVectorObservations) {
  absl::StatusOr<NetworkConfig> config =
      ApexNetworkConfig(Resolved("classic/cartpole", v1::TORSO_MINATAR));
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("apex_dqn.torso"));
}

TEST(ApexConfigTest, LearnerConfigCarriesTheSpec) {
  v1::ExperimentSpec spec = Resolved("minatar/breakout", v1::TORSO_MINATAR);
  spec.mutable_apex_dqn()->set_target_update_period(77);
  spec.mutable_apex_dqn()->mutable_optimizer()->set_kind(v1::OPTIMIZER_KIND_ADAM);
  spec.mutable_apex_dqn()->mutable_optimizer()->set_learning_rate(0.001);
  absl::StatusOr<DqnConfig> config = ApexLearnerConfig(spec);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->target_update_period, 77);
  EXPECT_EQ(config->optimizer.kind, OptimizerKind::kAdam);
  EXPECT_DOUBLE_EQ(config->optimizer.learning_rate, 0.001);
  EXPECT_TRUE(config->double_q);
}

TEST(ApexConfigTest, EwcTaskSequenceSharesOneNetworkWithPaddedChannels) {
  v1::ExperimentSpec spec;
  spec.set_id("t");
  spec.set_seed(3);
  for (const char* game : {"minatar/breakout", "minatar/space_invaders"}) {
    v1::Task* task = spec.mutable_task_sequence()->add_tasks();
    task->mutable_environment()->set_name(game);
    task->set_frames(100);
  }
  spec.mutable_ewc()->mutable_dqn()->set_torso(v1::TORSO_DUELING);
  spec.mutable_ewc()->mutable_dqn()->set_target_update_period(55);
  spec.mutable_actors()->set_num_actors(1);
  absl::StatusOr<v1::ExperimentSpec> resolved = ResolveExperimentSpec(spec);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  absl::StatusOr<DqnConfig> config = ApexLearnerConfig(*resolved);
  ASSERT_TRUE(config.ok()) << config.status();
  // Breakout has 4 channels, Space Invaders 6: the network takes 6.
  EXPECT_THAT(config->network.observation_shape, ElementsAre(10, 10, 6));
  EXPECT_EQ(config->network.torso, Torso::kMinAtarDueling);
  EXPECT_EQ(config->target_update_period, 55);

  resolved->mutable_ewc()->mutable_dqn()->set_torso(v1::TORSO_MLP);
  resolved->mutable_ewc()->mutable_dqn()->add_hidden_sizes(0);
  EXPECT_THAT(ApexNetworkConfig(*resolved).status().message(), HasSubstr("ewc.dqn.torso"));
}

TEST(WeightsTest, RoundTripIntoAnActorNetwork) {
  absl::StatusOr<DqnConfig> config =
      ApexLearnerConfig(Resolved("minatar/breakout", v1::TORSO_DUELING));
  ASSERT_TRUE(config.ok());
  std::string error;
  torch::manual_seed(1);
  std::unique_ptr<DqnLearner> learner = DqnLearner::Create(*config, torch::kCPU, &error);
  ASSERT_NE(learner, nullptr) << error;
  v1::ParameterSet set;
  ASSERT_TRUE(EncodeWeights(learner->ExportWeights(), &set).ok());
  absl::StatusOr<NamedWeights> decoded = DecodeWeights(set);
  ASSERT_TRUE(decoded.ok()) << decoded.status();

  torch::manual_seed(2);  // different initial weights
  std::shared_ptr<QNetwork> actor = MakeQNetwork(config->network);
  ASSERT_EQ(ImportWeights(*actor, *decoded), "");
  const torch::Tensor obs = torch::randint(0, 2, {3, 10, 10, 4}, torch::kUInt8);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(actor->forward(obs), learner->online().forward(obs)));
}

TEST(WeightsTest, RejectsRepeatedNamesAndMissingContent) {
  NamedWeights weights = {{"a", torch::zeros({2})}, {"a", torch::ones({2})}};
  v1::ParameterSet set;
  EXPECT_THAT(EncodeWeights(weights, &set).message(), HasSubstr("repeated"));
  EXPECT_EQ(DecodeWeights(v1::ParameterSet()).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(EncodeWeights({{"a", torch::zeros({2})}}, &set).ok());
  set.mutable_named()->mutable_tensors(0)->mutable_tensor()->set_data("xyz");
  EXPECT_THAT(DecodeWeights(set).status().message(), HasSubstr("named.tensors[0]"));
}

}  // namespace
}  // namespace engram::learner
