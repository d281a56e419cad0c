#include "actor/envs/bandits/bandits.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace engram::envs::bandits {
namespace {

double Uniform01(std::mt19937_64& rng) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

const char* FamilyName(TwoArmedBandit::Family family) {
  switch (family) {
    case TwoArmedBandit::Family::kIndependent:
      return "bandit/independent";
    default:
      return "bandit/dependent";
  }
}

EnvSpec BanditSpec(TwoArmedBandit::Family family, int num_trials) {
  EnvSpec spec;
  spec.name = FamilyName(family);
  spec.observation_shape = {1};
  spec.observation_dtype = DType::kFloat32;
  spec.num_actions = 2;
  spec.action_names = {"arm0", "arm1"};
  return spec;
}

EnvSpec TwoStepSpec() {
  EnvSpec spec;
  spec.name = "bandit/two_step";
  spec.observation_shape = {4};
  spec.observation_dtype = DType::kFloat32;
  spec.num_actions = 2;
  spec.action_names = {"choice0", "choice1"};
  return spec;
}

}  // namespace

TwoArmedBandit::TwoArmedBandit(Family family, int num_trials)
    : Env(BanditSpec(family, num_trials)), family_(family), num_trials_(num_trials) {
  ENGRAM_CHECK(num_trials > 0) << "num_trials " << num_trials;
}

void TwoArmedBandit::DoSeed(uint64_t seed) { rng_.seed(seed); }

void TwoArmedBandit::DoReset() {
  trial_ = 0;
  switch (family_) {
    case Family::kIndependent:
      p_[0] = Uniform01(rng_);
      p_[1] = Uniform01(rng_);
      return;
    case Family::kDependentUniform:
      p_[0] = Uniform01(rng_);
      break;
    case Family::kDependentEasy:
      p_[0] = Uniform01(rng_) < 0.5 ? 0.1 : 0.9;
      break;
    case Family::kDependentMedium:
      p_[0] = Uniform01(rng_) < 0.5 ? 0.25 : 0.75;
      break;
    case Family::kDependentHard:
      p_[0] = Uniform01(rng_) < 0.5 ? 0.4 : 0.6;
      break;
  }
  p_[1] = 1.0 - p_[0];
}

Env::Outcome TwoArmedBandit::DoStep(int action) {
  if (trial_ >= num_trials_) return Outcome{0.0f, true, false};
  const float reward = Uniform01(rng_) < p_[action] ? 1.0f : 0.0f;
  ++trial_;
  return Outcome{reward, trial_ >= num_trials_, false};
}

void TwoArmedBandit::WriteObservation(uint8_t* dst) const {
  const float obs = static_cast<float>(trial_) / static_cast<float>(num_trials_);
  std::memcpy(dst, &obs, sizeof(obs));
}

TwoStepTask::TwoStepTask(int num_trials) : Env(TwoStepSpec()), num_trials_(num_trials) {
  ENGRAM_CHECK(num_trials > 0) << "num_trials " << num_trials;
}

double TwoStepTask::Reflect(double p) {
  // A step of sd 0.025 can never cross the whole [0.25, 0.75] band, so one reflection
  // suffices; the loop only guards against extreme draws.
  while (p < kLowerBound || p > kUpperBound) {
    if (p > kUpperBound) p = 2.0 * kUpperBound - p;
    if (p < kLowerBound) p = 2.0 * kLowerBound - p;
  }
  return p;
}

void TwoStepTask::DoSeed(uint64_t seed) { rng_.seed(seed); }

void TwoStepTask::DoReset() {
  trial_ = 0;
  state_ = 0;
  first_action_ = 0;
  common_ = true;
  std::uniform_real_distribution<double> initial(kLowerBound, kUpperBound);
  for (auto& row : p_) {
    for (double& p : row) p = initial(rng_);
  }
}

Env::Outcome TwoStepTask::DoStep(int action) {
  if (trial_ >= num_trials_) return Outcome{0.0f, true, false};
  if (state_ == 0) {
    first_action_ = action;
    common_ = Uniform01(rng_) < kCommonProbability;
    // Action 0 commonly leads to A (state 1), action 1 commonly to B (state 2).
    const int common_state = action == 0 ? 1 : 2;
    state_ = common_ ? common_state : 3 - common_state;
    return Outcome{0.0f, false, false};
  }
  const float reward = Uniform01(rng_) < p_[state_ - 1][action] ? 1.0f : 0.0f;
  std::normal_distribution<double> drift(0.0, kDriftSd);
  for (auto& row : p_) {
    for (double& p : row) p = Reflect(p + drift(rng_));
  }
  state_ = 0;
  ++trial_;
  return Outcome{reward, trial_ >= num_trials_, false};
}

void TwoStepTask::WriteObservation(uint8_t* dst) const {
  float obs[4] = {0.0f, 0.0f, 0.0f, static_cast<float>(trial_) / static_cast<float>(num_trials_)};
  obs[state_] = 1.0f;
  std::memcpy(dst, obs, sizeof(obs));
}

}  // namespace engram::envs::bandits
