#include "actor/envs/env.h"

#include <random>
#include <utility>

#include "common/check.h"

namespace engram::envs {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kUint8:
      return 1;
    case DType::kFloat32:
      return 4;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kUint8:
      return "uint8";
    case DType::kFloat32:
      return "float32";
  }
  return "unknown";
}

int64_t EnvSpec::observation_elements() const {
  int64_t n = 1;
  for (int64_t d : observation_shape) n *= d;
  return n;
}

size_t EnvSpec::observation_bytes() const {
  return static_cast<size_t>(observation_elements()) * DTypeSize(observation_dtype);
}

Env::Env(EnvSpec spec) : spec_(std::move(spec)), observation_(spec_.observation_bytes()) {
  ENGRAM_CHECK(spec_.action_names.size() == static_cast<size_t>(spec_.num_actions))
      << spec_.name << ": one name per action";
}

void Env::EnsureSeeded() {
  if (seeded_) return;
  std::random_device device;
  DoSeed((static_cast<uint64_t>(device()) << 32) | device());
  seeded_ = true;
}

void Env::ResetState(uint64_t seed) {
  DoSeed(seed);
  seeded_ = true;
  started_ = true;
  episode_step_ = 0;
  DoReset();
}

void Env::ResetState() {
  EnsureSeeded();
  started_ = true;
  episode_step_ = 0;
  DoReset();
}

Env::Outcome Env::Act(int action) {
  ENGRAM_CHECK(action >= 0 && action < spec_.num_actions)
      << spec_.name << ": action " << action << " outside [0, " << spec_.num_actions << ")";
  // A Step() before any Reset() starts an episode first (seeded from entropy), so an
  // environment is never stepped from an uninitialised state.
  if (!started_) ResetState();
  Outcome outcome = DoStep(action);
  ++episode_step_;
  if (spec_.max_episode_steps > 0 && episode_step_ >= spec_.max_episode_steps &&
      !outcome.terminated) {
    outcome.truncated = true;
  }
  return outcome;
}

StepResult Env::Reset(uint64_t seed) {
  ResetState(seed);
  WriteObservation(observation_.data());
  return StepResult{observation_, 0.0f, false, false};
}

StepResult Env::Reset() {
  ResetState();
  WriteObservation(observation_.data());
  return StepResult{observation_, 0.0f, false, false};
}

StepResult Env::Step(int action) {
  const Outcome outcome = Act(action);
  WriteObservation(observation_.data());
  return StepResult{observation_, outcome.reward, outcome.terminated, outcome.truncated};
}

}  // namespace engram::envs
