#include "actor/nstep.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::actor {
namespace {

TEST(ApexEpsilonTest, FollowsTheApexSchedule) {
  EXPECT_DOUBLE_EQ(ApexEpsilon(0, 8), 0.4);
  EXPECT_DOUBLE_EQ(ApexEpsilon(7, 8), std::pow(0.4, 8.0));
  EXPECT_DOUBLE_EQ(ApexEpsilon(1, 8), std::pow(0.4, 2.0));  // 1 + 7 * 1 / 7
  EXPECT_DOUBLE_EQ(ApexEpsilon(0, 1), 0.4);
  for (int i = 1; i < 8; ++i) EXPECT_LT(ApexEpsilon(i, 8), ApexEpsilon(i - 1, 8));
}

// One-byte observations: the byte is the time step, so transitions are easy to read.
struct Recorder {
  NStepBuilder builder;
  std::vector<NStepTransition> out;
  explicit Recorder(int n, float gamma = 0.5f, int envs = 1) : builder(envs, n, gamma, 1) {}
  void Step(int env, uint8_t t, int action, float reward, bool terminated = false,
            bool truncated = false) {
    const uint8_t obs = t, next = static_cast<uint8_t>(t + 1);
    builder.Add(env, &obs, action, reward, terminated, truncated, &next, &out);
  }
};

TEST(NStepBuilderTest, SumsNRewardsAndBootstrapsWithGammaToTheN) {
  Recorder r(3);
  r.Step(0, 0, 1, 1);
  r.Step(0, 1, 2, 2);
  EXPECT_TRUE(r.out.empty());
  r.Step(0, 2, 0, 3);
  ASSERT_EQ(r.out.size(), 1u);
  // o_0, a_0 = 1, R = 1 + 0.5 * 2 + 0.25 * 3 = 2.75, discount 0.125, next o_3.
  EXPECT_EQ(r.out[0].observation, std::vector<uint8_t>{0});
  EXPECT_EQ(r.out[0].action, 1);
  EXPECT_FLOAT_EQ(r.out[0].reward, 2.75f);
  EXPECT_FLOAT_EQ(r.out[0].discount, 0.125f);
  EXPECT_EQ(r.out[0].steps, 3);
  EXPECT_EQ(r.out[0].next_observation, std::vector<uint8_t>{3});
  r.Step(0, 3, 0, 4);
  ASSERT_EQ(r.out.size(), 2u);
  EXPECT_FLOAT_EQ(r.out[1].reward, 2 + 0.5f * 3 + 0.25f * 4);
  EXPECT_EQ(r.out[1].next_observation, std::vector<uint8_t>{4});
  EXPECT_EQ(r.builder.pending(0), 2);
}

TEST(NStepBuilderTest, TerminationFlushesWithZeroDiscount) {
  Recorder r(3);
  r.Step(0, 0, 0, 1);
  r.Step(0, 1, 0, 2, /*terminated=*/true);
  ASSERT_EQ(r.out.size(), 2u);
  EXPECT_FLOAT_EQ(r.out[0].reward, 1 + 0.5f * 2);
  EXPECT_EQ(r.out[0].steps, 2);
  EXPECT_EQ(r.out[0].discount, 0.0f);
  EXPECT_FLOAT_EQ(r.out[1].reward, 2);
  EXPECT_EQ(r.out[1].steps, 1);
  EXPECT_EQ(r.out[1].discount, 0.0f);
  EXPECT_EQ(r.builder.pending(0), 0);
  // The next episode starts from scratch.
  r.Step(0, 10, 0, 5);
  EXPECT_EQ(r.out.size(), 2u);
  EXPECT_EQ(r.builder.pending(0), 1);
}

TEST(NStepBuilderTest, TruncationBootstrapsFromTheFinalObservation) {
  Recorder r(3);
  r.Step(0, 0, 0, 1);
  r.Step(0, 1, 0, 1);
  r.Step(0, 2, 0, 1);  // emits o_0
  r.Step(0, 3, 0, 1, false, /*truncated=*/true);
  ASSERT_EQ(r.out.size(), 4u);
  // o_1: m = 3 (o_1..o_3), o_2: m = 2, o_3: m = 1; all bootstrap from o_4.
  EXPECT_FLOAT_EQ(r.out[1].discount, 0.125f);
  EXPECT_FLOAT_EQ(r.out[2].discount, 0.25f);
  EXPECT_FLOAT_EQ(r.out[3].discount, 0.5f);
  EXPECT_FLOAT_EQ(r.out[3].reward, 1.0f);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(r.out[i].next_observation, std::vector<uint8_t>{4});
}

TEST(NStepBuilderTest, EnvironmentsAreIndependent) {
  Recorder r(2, 1.0f, /*envs=*/2);
  r.Step(0, 0, 0, 1);
  r.Step(1, 100, 1, 10);
  r.Step(1, 101, 1, 10, /*terminated=*/true);
  ASSERT_EQ(r.out.size(), 2u);
  EXPECT_EQ(r.out[0].env, 1);
  EXPECT_FLOAT_EQ(r.out[0].reward, 20);
  EXPECT_EQ(r.builder.pending(0), 1);
  r.Step(0, 1, 0, 1);
  ASSERT_EQ(r.out.size(), 3u);
  EXPECT_EQ(r.out[2].env, 0);
  EXPECT_FLOAT_EQ(r.out[2].reward, 2);
  EXPECT_FLOAT_EQ(r.out[2].discount, 1.0f);
}

TEST(NStepBuilderTest, OneStepTransitions) {
  Recorder r(1, 0.9f);
  r.Step(0, 0, 3, 2);
  ASSERT_EQ(r.out.size(), 1u);
  EXPECT_FLOAT_EQ(r.out[0].reward, 2);
  EXPECT_FLOAT_EQ(r.out[0].discount, 0.9f);
  EXPECT_EQ(r.out[0].next_observation, std::vector<uint8_t>{1});
}

}  // namespace
}  // namespace engram::actor
