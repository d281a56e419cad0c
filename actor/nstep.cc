#include "actor/nstep.h"

#include <cmath>

#include "common/check.h"

namespace engram::actor {

double ApexEpsilon(int actor_index, int num_actors, double base, double alpha) {
  ENGRAM_CHECK(num_actors >= 1 && actor_index >= 0 && actor_index < num_actors)
      << "actor " << actor_index << " of " << num_actors;
  if (num_actors == 1) return base;
  return std::pow(base, 1.0 + alpha * actor_index / (num_actors - 1));
}

NStepBuilder::NStepBuilder(int num_envs, int n, float gamma, size_t observation_bytes)
    : n_(n), gamma_(gamma), observation_bytes_(observation_bytes), pending_(num_envs) {
  ENGRAM_CHECK(num_envs >= 1 && n >= 1 && gamma >= 0 && gamma <= 1 && observation_bytes > 0)
      << "num_envs " << num_envs << ", n " << n << ", gamma " << gamma;
}

void NStepBuilder::EmitFront(int env, bool terminated, const uint8_t* next_observation,
                             std::vector<NStepTransition>* out) {
  std::deque<Step>& steps = pending_[env];
  NStepTransition t;
  t.env = env;
  t.observation = std::move(steps.front().observation);
  t.action = steps.front().action;
  double reward = 0, scale = 1;
  for (const Step& s : steps) {
    reward += scale * s.reward;
    scale *= gamma_;
  }
  t.reward = static_cast<float>(reward);
  t.steps = static_cast<int>(steps.size());
  t.discount = terminated ? 0.0f : static_cast<float>(scale);  // gamma^m
  t.next_observation.assign(next_observation, next_observation + observation_bytes_);
  out->push_back(std::move(t));
  steps.pop_front();
}

void NStepBuilder::Add(int env, const uint8_t* observation, int action, float reward,
                       bool terminated, bool truncated, const uint8_t* next_observation,
                       std::vector<NStepTransition>* out) {
  ENGRAM_CHECK(env >= 0 && env < static_cast<int>(pending_.size())) << "env " << env;
  std::deque<Step>& steps = pending_[env];
  steps.push_back(
      Step{std::vector<uint8_t>(observation, observation + observation_bytes_), action, reward});
  if (terminated || truncated) {
    // Every pending step's window ends here: shorter sums, bootstrapping (truncation) or
    // not (termination) from the last observation of the episode.
    while (!steps.empty()) EmitFront(env, terminated, next_observation, out);
    return;
  }
  if (static_cast<int>(steps.size()) == n_) EmitFront(env, false, next_observation, out);
}

}  // namespace engram::actor
