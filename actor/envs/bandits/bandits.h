#ifndef ENGRAM_ACTOR_ENVS_BANDITS_BANDITS_H_
#define ENGRAM_ACTOR_ENVS_BANDITS_BANDITS_H_

// Task families for meta-RL (Wang et al. 2016, Duan et al. 2016). Each Reset() draws a new
// task instance from the family, from the environment's seeded stream; an episode is one
// instance played for a fixed number of trials.

#include <array>
#include <random>

#include "actor/envs/env.h"

namespace engram::envs::bandits {

// Two-armed Bernoulli bandits.
//   kIndependent       p0, p1 ~ U[0, 1] independently
//   kDependentUniform  p0 ~ U[0, 1], p1 = 1 - p0
//   kDependentEasy     p0 uniformly from {0.1, 0.9},   p1 = 1 - p0
//   kDependentMedium   p0 uniformly from {0.25, 0.75}, p1 = 1 - p0
//   kDependentHard     p0 uniformly from {0.4, 0.6},   p1 = 1 - p0
//
// Observation: float32 [1] = trial index / num_trials (0 at reset, the trials done so
// far). Actions: 0 = pull arm 0, 1 = pull arm 1. Reward 1 with the arm's probability,
// else 0. The episode terminates after num_trials pulls (default 100).
//
// Not thread-safe.
class TwoArmedBandit : public Env {
 public:
  enum class Family {
    kIndependent,
    kDependentUniform,
    kDependentEasy,
    kDependentMedium,
    kDependentHard
  };

  TwoArmedBandit(Family family, int num_trials);

  void WriteObservation(uint8_t* dst) const override;

  Family family() const { return family_; }
  int num_trials() const { return num_trials_; }
  int trial() const { return trial_; }
  // The current instance's success probabilities (for regret and tests).
  const std::array<double, 2>& arm_probabilities() const { return p_; }
  std::array<double, 2>& mutable_arm_probabilities() { return p_; }

 protected:
  void DoSeed(uint64_t seed) override;
  void DoReset() override;
  Outcome DoStep(int action) override;

 private:
  Family family_;
  int num_trials_;
  std::mt19937_64 rng_;
  std::array<double, 2> p_{0.5, 0.5};
  int trial_ = 0;
};

// The two-step task (Daw et al. 2011). Each trial has two steps:
//   stage 1: action a in {0, 1} leads to second-stage state A (a = 0) or B (a = 1) with the
//            common probability 0.7, else to the other state (rare); reward 0;
//   stage 2: in state s, action c in {0, 1} pays 1 with probability p[s][c], else 0.
// After every trial each of the four p[s][c] takes a Gaussian random-walk step (sd 0.025),
// reflected at the bounds [0.25, 0.75]. At reset they are drawn from U[0.25, 0.75].
//
// Observation: float32 [4] = one-hot stage-1 / A / B state, then trial index / num_trials.
// The episode terminates after num_trials trials (2 * num_trials steps; default 100 trials).
//
// Not thread-safe.
class TwoStepTask : public Env {
 public:
  static constexpr double kCommonProbability = 0.7;
  static constexpr double kDriftSd = 0.025;
  static constexpr double kLowerBound = 0.25;
  static constexpr double kUpperBound = 0.75;

  explicit TwoStepTask(int num_trials);

  void WriteObservation(uint8_t* dst) const override;

  int trial() const { return trial_; }
  // 0 = stage 1, 1 = state A, 2 = state B.
  int state() const { return state_; }
  // The first-stage action of the current (or last) trial, and whether its transition was
  // the common one. For stay-probability analyses.
  int first_stage_action() const { return first_action_; }
  bool transition_was_common() const { return common_; }
  const std::array<std::array<double, 2>, 2>& reward_probabilities() const { return p_; }
  std::array<std::array<double, 2>, 2>& mutable_reward_probabilities() { return p_; }

  // Folds `p` back into [0.25, 0.75] by reflection at the bounds.
  static double Reflect(double p);

 protected:
  void DoSeed(uint64_t seed) override;
  void DoReset() override;
  Outcome DoStep(int action) override;

 private:
  int num_trials_;
  std::mt19937_64 rng_;
  std::array<std::array<double, 2>, 2> p_{};
  int trial_ = 0;
  int state_ = 0;
  int first_action_ = 0;
  bool common_ = true;
};

}  // namespace engram::envs::bandits

#endif  // ENGRAM_ACTOR_ENVS_BANDITS_BANDITS_H_
