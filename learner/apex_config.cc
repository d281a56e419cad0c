#include "learner/apex_config.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "learner/experiment_spec.h"

namespace engram::learner {

namespace {

// A resolved engram.v1.OptimizerConfig over `defaults` (fields a resolved spec leaves unset,
// e.g. Adam's decay, keep their learner/core default).
OptimizerConfig CoreOptimizer(const v1::OptimizerConfig& optimizer, OptimizerConfig defaults) {
  OptimizerConfig config = defaults;
  config.kind = optimizer.kind() == v1::OPTIMIZER_KIND_ADAM ? OptimizerKind::kAdam
                                                            : OptimizerKind::kCenteredRmsProp;
  config.learning_rate = optimizer.learning_rate();
  config.epsilon = optimizer.epsilon();
  if (optimizer.has_decay()) config.decay = optimizer.decay();
  if (optimizer.has_beta1()) config.beta1 = optimizer.beta1();
  if (optimizer.has_beta2()) config.beta2 = optimizer.beta2();
  return config;
}

}  // namespace

absl::StatusOr<NetworkConfig> ApexNetworkConfig(const v1::ExperimentSpec& resolved) {
  if (!resolved.has_apex_dqn() && !resolved.has_ewc()) {
    return absl::InvalidArgumentError("algorithm: expected apex_dqn or ewc");
  }
  ENGRAM_ASSIGN_OR_RETURN(EnvironmentInfo env, SharedEnvironment(resolved));
  const v1::ApexDqnConfig& apex = DqnAlgorithmConfig(resolved);
  const std::string path = DqnAlgorithmPath(resolved);
  NetworkConfig config;
  config.observation_shape = env.observation_shape;
  config.num_actions = env.num_actions;
  switch (apex.torso()) {
    case v1::TORSO_UNSPECIFIED:
    case v1::TORSO_MINATAR:
      config.torso = Torso::kMinAtar;
      break;
    case v1::TORSO_DUELING:
      config.torso = Torso::kMinAtarDueling;
      break;
    case v1::TORSO_MLP:
      config.torso = Torso::kMlp;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".torso: unknown value ", static_cast<int>(apex.torso())));
  }
  config.hidden_sizes.assign(apex.hidden_sizes().begin(), apex.hidden_sizes().end());
  if (const std::string error = config.Validate(); !error.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".torso: ", v1::Torso_Name(apex.torso()), " does not fit [",
                     absl::StrJoin(env.observation_shape, ", "), "] observations: ", error));
  }
  return config;
}

absl::StatusOr<DqnConfig> ApexLearnerConfig(const v1::ExperimentSpec& resolved) {
  ENGRAM_ASSIGN_OR_RETURN(NetworkConfig network, ApexNetworkConfig(resolved));
  const v1::ApexDqnConfig& apex = DqnAlgorithmConfig(resolved);
  DqnConfig config;
  config.network = std::move(network);
  config.double_q = apex.double_q();
  config.optimizer = CoreOptimizer(apex.optimizer(), config.optimizer);
  config.gradient_clip_norm = apex.gradient_clip_norm();
  config.target_update_period = apex.target_update_period();
  config.importance_beta_start = apex.importance_beta_start();
  config.importance_beta_end = apex.importance_beta_end();
  config.importance_beta_anneal_frames = apex.importance_beta_anneal_frames();
  if (const std::string error = config.Validate(); !error.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(DqnAlgorithmPath(resolved), ": ", error));
  }
  return config;
}

absl::StatusOr<MetaRlConfig> MetaRlLearnerConfig(const v1::ExperimentSpec& resolved) {
  if (!resolved.has_meta_rl()) return absl::InvalidArgumentError("algorithm: expected meta_rl");
  ENGRAM_ASSIGN_OR_RETURN(EnvironmentInfo env, DescribeEnvironment(resolved.environment()));
  const v1::MetaRlConfig& meta = resolved.meta_rl();
  MetaRlConfig config;
  config.network.observation_size = 1;
  for (int64_t d : env.observation_shape) config.network.observation_size *= d;
  config.network.num_actions = env.num_actions;
  config.network.lstm_size = meta.lstm_size();
  config.network.input_previous_action = meta.input_previous_action();
  config.network.input_previous_reward = meta.input_previous_reward();
  config.gamma = meta.gamma();
  config.entropy_cost = meta.entropy_cost();
  config.value_cost = meta.value_cost();
  config.vtrace_rho_clip = meta.vtrace_rho_clip();
  config.vtrace_c_clip = meta.vtrace_c_clip();
  config.optimizer = CoreOptimizer(meta.optimizer(), config.optimizer);
  config.gradient_clip_norm = meta.gradient_clip_norm();
  if (const std::string error = config.Validate(); !error.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("meta_rl: ", error));
  }
  return config;
}

}  // namespace engram::learner
