#include "actor/envs/env.h"

#include <cstring>
#include <optional>
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

namespace {

class PaddedChannels final : public Env {
 public:
  PaddedChannels(std::unique_ptr<Env> inner, EnvSpec spec)
      : Env(std::move(spec)),
        inner_(std::move(inner)),
        buffer_(inner_->spec().observation_bytes()) {}

  void WriteObservation(uint8_t* dst) const override {
    inner_->WriteObservation(buffer_.data());
    const size_t element = DTypeSize(spec().observation_dtype);
    const size_t in = static_cast<size_t>(inner_->spec().observation_shape.back()) * element;
    const size_t out = static_cast<size_t>(spec().observation_shape.back()) * element;
    const size_t cells = buffer_.size() / in;
    for (size_t c = 0; c < cells; ++c) {
      std::memcpy(dst + c * out, buffer_.data() + c * in, in);
      std::memset(dst + c * out + in, 0, out - in);
    }
  }

 protected:
  void DoSeed(uint64_t seed) override { pending_seed_ = seed; }
  void DoReset() override {
    if (pending_seed_.has_value()) {
      inner_->ResetState(*pending_seed_);
      pending_seed_.reset();
    } else {
      inner_->ResetState();
    }
  }
  Outcome DoStep(int action) override { return inner_->Act(action); }

 private:
  std::unique_ptr<Env> inner_;
  mutable std::vector<uint8_t> buffer_;
  std::optional<uint64_t> pending_seed_;
};

}  // namespace

std::unique_ptr<Env> PadChannels(std::unique_ptr<Env> env, int64_t channels) {
  const EnvSpec& inner = env->spec();
  ENGRAM_CHECK(!inner.observation_shape.empty() && channels >= inner.observation_shape.back())
      << inner.name << ": cannot pad " << inner.observation_shape.back() << " channels to "
      << channels;
  if (channels == inner.observation_shape.back()) return env;
  EnvSpec spec = inner;
  spec.observation_shape.back() = channels;
  return std::make_unique<PaddedChannels>(std::move(env), std::move(spec));
}

}  // namespace engram::envs
