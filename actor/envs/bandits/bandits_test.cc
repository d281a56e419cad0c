#include "actor/envs/bandits/bandits.h"

#include <cstring>
#include <set>

#include "gtest/gtest.h"

namespace engram::envs::bandits {
namespace {

using Family = TwoArmedBandit::Family;

float ObsAt(const StepResult& r, int i) {
  float v;
  std::memcpy(&v, r.observation.data() + i * sizeof(float), sizeof(v));
  return v;
}

TEST(TwoArmedBanditTest, EpisodeIsNumTrialsPullsWithTrialIndexObserved) {
  TwoArmedBandit env(Family::kIndependent, 100);
  EXPECT_EQ(ObsAt(env.Reset(1), 0), 0.0f);
  StepResult r;
  for (int t = 1; t <= 100; ++t) {
    r = env.Step(t % 2);
    ASSERT_FLOAT_EQ(ObsAt(r, 0), t / 100.0f);
    ASSERT_EQ(r.terminated, t == 100);
    ASSERT_TRUE(r.reward == 0.0f || r.reward == 1.0f);
  }
  EXPECT_EQ(env.trial(), 100);
}

TEST(TwoArmedBanditTest, RewardsFollowTheArmProbabilities) {
  TwoArmedBandit env(Family::kIndependent, 1000000);
  env.Reset(2);
  env.mutable_arm_probabilities() = {0.2, 0.9};
  double sums[2] = {0, 0};
  for (int i = 0; i < 20000; ++i) sums[i % 2] += env.Step(i % 2).reward;
  EXPECT_NEAR(sums[0] / 10000, 0.2, 0.015);
  EXPECT_NEAR(sums[1] / 10000, 0.9, 0.015);
}

TEST(TwoArmedBanditTest, FamiliesDrawTheirInstances) {
  struct Case {
    Family family;
    std::set<double> allowed;  // empty: continuous
  };
  const Case cases[] = {{Family::kDependentEasy, {0.1, 0.9}},
                        {Family::kDependentMedium, {0.25, 0.75}},
                        {Family::kDependentHard, {0.4, 0.6}},
                        {Family::kDependentUniform, {}},
                        {Family::kIndependent, {}}};
  for (const Case& c : cases) {
    TwoArmedBandit env(c.family, 100);
    env.Reset(11);
    std::set<double> seen;
    double mean_p0 = 0;
    for (int i = 0; i < 2000; ++i) {
      const auto p = env.arm_probabilities();
      if (c.family != Family::kIndependent) {
        ASSERT_DOUBLE_EQ(p[0] + p[1], 1.0);
      }
      ASSERT_GE(p[0], 0.0);
      ASSERT_LE(p[0], 1.0);
      if (!c.allowed.empty()) {
        ASSERT_TRUE(c.allowed.count(p[0])) << p[0];
      }
      seen.insert(p[0]);
      mean_p0 += p[0] / 2000;
      env.Reset();
    }
    EXPECT_NEAR(mean_p0, 0.5, 0.03);
    if (c.allowed.empty()) {
      EXPECT_GT(seen.size(), 1900u);
    } else {
      EXPECT_EQ(seen, c.allowed);
    }
  }
}

TEST(TwoArmedBanditTest, SameSeedSameInstancesAndRewards) {
  TwoArmedBandit a(Family::kIndependent, 100), b(Family::kIndependent, 100);
  a.Reset(9);
  b.Reset(9);
  for (int e = 0; e < 5; ++e) {
    ASSERT_EQ(a.arm_probabilities(), b.arm_probabilities());
    for (int t = 0; t < 100; ++t) ASSERT_EQ(a.Step(t % 2).reward, b.Step(t % 2).reward);
    a.Reset();
    b.Reset();
  }
}

TEST(TwoStepTaskTest, TrialStructureAndObservation) {
  TwoStepTask env(3);
  StepResult r = env.Reset(5);
  EXPECT_EQ(ObsAt(r, 0), 1.0f);
  EXPECT_EQ(ObsAt(r, 1) + ObsAt(r, 2), 0.0f);
  for (int trial = 0; trial < 3; ++trial) {
    r = env.Step(0);
    EXPECT_EQ(r.reward, 0.0f);
    EXPECT_FALSE(r.terminated);
    const int state = env.state();
    ASSERT_TRUE(state == 1 || state == 2);
    EXPECT_EQ(env.transition_was_common(), state == 1);
    EXPECT_EQ(ObsAt(r, state), 1.0f);
    EXPECT_EQ(ObsAt(r, 0), 0.0f);
    r = env.Step(1);
    EXPECT_EQ(env.state(), 0);
    EXPECT_FLOAT_EQ(ObsAt(r, 3), (trial + 1) / 3.0f);
    EXPECT_EQ(r.terminated, trial == 2);
  }
}

TEST(TwoStepTaskTest, CommonTransitionsHappenSeventyPercentOfTheTime) {
  TwoStepTask env(1000000);
  env.Reset(3);
  int common = 0;
  for (int i = 0; i < 10000; ++i) {
    env.Step(i % 2);
    common += env.transition_was_common();
    // Action 0 commonly leads to A (1); action 1 commonly to B (2).
    ASSERT_EQ(env.state() == 1 + (i % 2), env.transition_was_common());
    env.Step(0);
  }
  EXPECT_NEAR(common / 10000.0, 0.7, 0.015);
}

TEST(TwoStepTaskTest, RewardProbabilitiesDriftWithinBounds) {
  TwoStepTask env(100000);
  env.Reset(8);
  const auto start = env.reward_probabilities();
  double max_step = 0;
  for (int i = 0; i < 20000; ++i) {
    const auto before = env.reward_probabilities();
    env.Step(0);
    env.Step(0);
    for (int s = 0; s < 2; ++s) {
      for (int c = 0; c < 2; ++c) {
        const double p = env.reward_probabilities()[s][c];
        ASSERT_GE(p, 0.25);
        ASSERT_LE(p, 0.75);
        max_step = std::max(max_step, std::abs(p - before[s][c]));
      }
    }
  }
  EXPECT_NE(env.reward_probabilities(), start);
  EXPECT_LT(max_step, 0.2);  // a Gaussian step of sd 0.025
  EXPECT_DOUBLE_EQ(TwoStepTask::Reflect(0.8), 0.7);
  EXPECT_DOUBLE_EQ(TwoStepTask::Reflect(0.2), 0.3);
  EXPECT_DOUBLE_EQ(TwoStepTask::Reflect(0.5), 0.5);
}

}  // namespace
}  // namespace engram::envs::bandits
