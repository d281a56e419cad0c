#include "actor/envs/vector_env.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace engram::envs {

absl::StatusOr<std::unique_ptr<VectorEnv>> VectorEnv::Create(const std::string& name,
                                                             const EnvOptions& options,
                                                             int num_envs) {
  if (num_envs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_envs must be >= 1, got ", num_envs));
  }
  std::vector<std::unique_ptr<Env>> envs;
  envs.reserve(num_envs);
  for (int i = 0; i < num_envs; ++i) {
    ENGRAM_ASSIGN_OR_RETURN(auto env, MakeEnv(name, options));
    envs.push_back(std::move(env));
  }
  return FromEnvs(std::move(envs));
}

absl::StatusOr<std::unique_ptr<VectorEnv>> VectorEnv::FromEnvs(
    std::vector<std::unique_ptr<Env>> envs) {
  if (envs.empty()) return absl::InvalidArgumentError("a VectorEnv needs at least one env");
  for (const auto& env : envs) {
    const EnvSpec& a = envs[0]->spec();
    const EnvSpec& b = env->spec();
    if (a.name != b.name || a.observation_shape != b.observation_shape ||
        a.observation_dtype != b.observation_dtype || a.num_actions != b.num_actions) {
      return absl::InvalidArgumentError(
          absl::StrCat("VectorEnv copies must share one spec; got ", a.name, " and ", b.name));
    }
  }
  return std::unique_ptr<VectorEnv>(new VectorEnv(std::move(envs)));
}

VectorEnv::VectorEnv(std::vector<std::unique_ptr<Env>> envs)
    : envs_(std::move(envs)),
      obs_bytes_(envs_[0]->spec().observation_bytes()),
      observations_(envs_.size() * obs_bytes_),
      final_observations_(envs_.size() * obs_bytes_),
      rewards_(envs_.size()),
      terminated_(envs_.size()),
      truncated_(envs_.size()),
      running_return_(envs_.size()),
      running_length_(envs_.size()),
      finished_return_(envs_.size()),
      finished_length_(envs_.size()) {}

void VectorEnv::Reset(uint64_t seed) {
  for (size_t i = 0; i < envs_.size(); ++i) {
    envs_[i]->ResetState(seed + i);
    envs_[i]->WriteObservation(observations_.data() + i * obs_bytes_);
    rewards_[i] = 0.0f;
    terminated_[i] = truncated_[i] = 0;
    running_return_[i] = 0.0f;
    running_length_[i] = 0;
  }
}

absl::Status VectorEnv::Step(absl::Span<const int> actions) {
  if (actions.size() != envs_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("VectorEnv::Step got ", actions.size(),
                                                   " actions for ", envs_.size(), " envs"));
  }
  const int num_actions = spec().num_actions;
  for (size_t i = 0; i < actions.size(); ++i) {
    if (actions[i] < 0 || actions[i] >= num_actions) {
      return absl::InvalidArgumentError(absl::StrCat("action ", actions[i], " for env ", i,
                                                     " is outside [0, ", num_actions, ")"));
    }
  }
  for (size_t i = 0; i < envs_.size(); ++i) {
    Env& env = *envs_[i];
    uint8_t* row = observations_.data() + i * obs_bytes_;
    const Env::Outcome outcome = env.Act(actions[i]);
    rewards_[i] = outcome.reward;
    terminated_[i] = outcome.terminated;
    truncated_[i] = outcome.truncated;
    running_return_[i] += outcome.reward;
    ++running_length_[i];
    if (outcome.terminated || outcome.truncated) {
      env.WriteObservation(final_observations_.data() + i * obs_bytes_);
      finished_return_[i] = running_return_[i];
      finished_length_[i] = running_length_[i];
      running_return_[i] = 0.0f;
      running_length_[i] = 0;
      env.ResetState();
    }
    env.WriteObservation(row);
  }
  return absl::OkStatus();
}

}  // namespace engram::envs
