#ifndef ENGRAM_ACTOR_ENVS_CLASSIC_CARTPOLE_H_
#define ENGRAM_ACTOR_ENVS_CLASSIC_CARTPOLE_H_

#include <array>
#include <random>

#include "actor/envs/env.h"

namespace engram::envs::classic {

// Cart-pole balancing with the classic published dynamics (Barto, Sutton & Anderson 1983,
// as in Gym's CartPole-v1): pole half-length 0.5 m, cart 1.0 kg, pole 0.1 kg, force
// 10 N, gravity 9.8 m/s^2, Euler steps of tau = 0.02 s. The episode terminates when the
// pole leans past 12 degrees or the cart leaves [-2.4, 2.4] m, and is truncated after
// 500 steps. Reward +1 on every step, the terminating one included.
//
// Observation: float32 [4] = cart position (m), cart velocity (m/s), pole angle (rad),
// pole angular velocity (rad/s). Actions: 0 = push left, 1 = push right.
// Reset draws each state variable uniformly from [-0.05, 0.05].
//
// Not thread-safe.
class CartPole : public Env {
 public:
  static constexpr double kGravity = 9.8;
  static constexpr double kCartMass = 1.0;
  static constexpr double kPoleMass = 0.1;
  static constexpr double kHalfLength = 0.5;
  static constexpr double kForce = 10.0;
  static constexpr double kTau = 0.02;
  static constexpr double kThetaLimit = 12.0 * 2.0 * 3.14159265358979323846 / 360.0;
  static constexpr double kXLimit = 2.4;
  static constexpr int kDefaultMaxSteps = 500;

  // `max_episode_steps` > 0 (default 500). Two changes that make other tasks with the same
  // dynamics (continual learning), both off by default: `signed_permutation_seed` != 0
  // permutes and sign-flips the observation's four variables by SignedPermutation(seed);
  // `observation_offset` is then added to each of them (finite), which moves the task's
  // observations away from the classic task's (about [-2.4, 2.4] x [-3, 3] x [-0.21, 0.21] x
  // [-3.5, 3.5]) so that one network can tell the two apart.
  explicit CartPole(int max_episode_steps = kDefaultMaxSteps, int signed_permutation_seed = 0,
                    float observation_offset = 0);

  // Observation slot i shows sign[i] * state[source[i]]. Drawn from `seed` (> 0) with
  // std::mt19937_64 (Fisher-Yates over the sources, then one sign bit each), so the same on
  // every platform; never the identity: a draw that would change nothing negates every
  // slot instead.
  struct Transform {
    std::array<int, 4> source{0, 1, 2, 3};
    std::array<float, 4> sign{1, 1, 1, 1};
  };
  static Transform SignedPermutation(int seed);

  void WriteObservation(uint8_t* dst) const override;

  // x, x_dot, theta, theta_dot. Tests may set it.
  std::array<double, 4>& mutable_state() { return state_; }
  const std::array<double, 4>& state() const { return state_; }

 protected:
  void DoSeed(uint64_t seed) override;
  void DoReset() override;
  Outcome DoStep(int action) override;

 private:
  std::mt19937_64 rng_;
  std::array<double, 4> state_{};
  bool done_ = false;
  Transform transform_;  // the identity for the classic task
  float offset_ = 0;
};

}  // namespace engram::envs::classic

#endif  // ENGRAM_ACTOR_ENVS_CLASSIC_CARTPOLE_H_
