#include "actor/envs/classic/cartpole.h"

#include <cmath>
#include <cstring>

namespace engram::envs::classic {
namespace {

EnvSpec CartPoleSpec(int max_episode_steps) {
  EnvSpec spec;
  spec.name = "classic/cartpole";
  spec.observation_shape = {4};
  spec.observation_dtype = DType::kFloat32;
  spec.num_actions = 2;
  spec.action_names = {"left", "right"};
  spec.max_episode_steps = max_episode_steps;
  return spec;
}

}  // namespace

CartPole::CartPole(int max_episode_steps, int signed_permutation_seed, float observation_offset)
    : Env(CartPoleSpec(max_episode_steps)), offset_(observation_offset) {
  if (signed_permutation_seed != 0) transform_ = SignedPermutation(signed_permutation_seed);
}

CartPole::Transform CartPole::SignedPermutation(int seed) {
  Transform t;
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  for (int i = 3; i >= 1; --i)
    std::swap(t.source[i], t.source[rng() % static_cast<uint64_t>(i + 1)]);
  for (float& sign : t.sign) sign = (rng() & 1) != 0 ? -1.0f : 1.0f;
  const Transform identity;
  if (t.source == identity.source && t.sign == identity.sign) t.sign = {-1, -1, -1, -1};
  return t;
}

void CartPole::DoSeed(uint64_t seed) { rng_.seed(seed); }

void CartPole::DoReset() {
  std::uniform_real_distribution<double> uniform(-0.05, 0.05);
  for (double& v : state_) v = uniform(rng_);
  done_ = false;
}

Env::Outcome CartPole::DoStep(int action) {
  // After the pole fell the episode is over: nothing moves, no more reward.
  if (done_) return Outcome{0.0f, true, false};
  auto& [x, x_dot, theta, theta_dot] = state_;
  const double force = action == 1 ? kForce : -kForce;
  const double cos_theta = std::cos(theta);
  const double sin_theta = std::sin(theta);
  const double total_mass = kCartMass + kPoleMass;
  const double pole_mass_length = kPoleMass * kHalfLength;
  const double temp = (force + pole_mass_length * theta_dot * theta_dot * sin_theta) / total_mass;
  const double theta_acc =
      (kGravity * sin_theta - cos_theta * temp) /
      (kHalfLength * (4.0 / 3.0 - kPoleMass * cos_theta * cos_theta / total_mass));
  const double x_acc = temp - pole_mass_length * theta_acc * cos_theta / total_mass;
  // Explicit Euler, positions first with the old velocities (the classic integrator).
  x += kTau * x_dot;
  x_dot += kTau * x_acc;
  theta += kTau * theta_dot;
  theta_dot += kTau * theta_acc;
  done_ = x < -kXLimit || x > kXLimit || theta < -kThetaLimit || theta > kThetaLimit;
  return Outcome{1.0f, done_, false};
}

void CartPole::WriteObservation(uint8_t* dst) const {
  float obs[4];
  for (int i = 0; i < 4; ++i) {
    obs[i] = transform_.sign[i] * static_cast<float>(state_[transform_.source[i]]) + offset_;
  }
  std::memcpy(dst, obs, sizeof(obs));
}

}  // namespace engram::envs::classic
