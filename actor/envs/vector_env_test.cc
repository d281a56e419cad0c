#include "actor/envs/vector_env.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::envs {
namespace {

TEST(VectorEnvTest, ObservationsAreContiguousAndMatchSingleEnvs) {
  constexpr int kB = 4;
  auto vec = VectorEnv::Create("minatar/breakout", {}, kB).value();
  const size_t bytes = vec->spec().observation_bytes();
  vec->Reset(100);
  // Copy i behaves exactly like a lone env seeded with 100 + i.
  std::vector<std::unique_ptr<Env>> singles;
  for (int i = 0; i < kB; ++i) {
    singles.push_back(MakeEnv("minatar/breakout").value());
    StepResult r = singles[i]->Reset(100 + i);
    ASSERT_EQ(std::memcmp(vec->observations() + i * bytes, r.observation.data(), bytes), 0);
  }
  std::vector<int> actions(kB);
  for (int t = 0; t < 50; ++t) {
    for (int i = 0; i < kB; ++i) actions[i] = (t + i) % 6;
    ASSERT_TRUE(vec->Step(actions).ok());
    for (int i = 0; i < kB; ++i) {
      StepResult r = singles[i]->Step(actions[i]);
      ASSERT_EQ(vec->rewards()[i], r.reward);
      ASSERT_EQ(vec->terminated()[i] != 0, r.terminated);
      if (r.terminated) {
        ASSERT_EQ(std::memcmp(vec->final_observation(i), r.observation.data(), bytes), 0);
        r = singles[i]->Reset();
      }
      ASSERT_EQ(std::memcmp(vec->observation(i), r.observation.data(), bytes), 0)
          << "env " << i << " step " << t;
    }
  }
}

TEST(VectorEnvTest, AutoResetReportsTheFinishedEpisode) {
  auto vec = VectorEnv::Create("classic/cartpole", {{"max_episode_steps", "10"}}, 2).value();
  vec->Reset(1);
  // Alternating pushes keep the pole up, so only the 10-step limit ends the episodes.
  std::vector<int> actions = {0, 1};
  for (int t = 0; t < 9; ++t) {
    actions = {t % 2, (t + 1) % 2};
    ASSERT_TRUE(vec->Step(actions).ok());
    ASSERT_FALSE(vec->done(0));
  }
  actions = {1, 0};
  ASSERT_TRUE(vec->Step(actions).ok());
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(vec->done(i));
    EXPECT_TRUE(vec->truncated()[i]);
    EXPECT_FALSE(vec->terminated()[i]);
    EXPECT_EQ(vec->episode_return(i), 10.0f);
    EXPECT_EQ(vec->episode_length(i), 10);
    // The row now holds a fresh episode's state: every variable within [-0.05, 0.05].
    float obs[4];
    std::memcpy(obs, vec->observation(i), sizeof(obs));
    for (float v : obs) EXPECT_LE(std::abs(v), 0.05f);
    float final_obs[4];
    std::memcpy(final_obs, vec->final_observation(i), sizeof(final_obs));
    EXPECT_NE(std::memcmp(obs, final_obs, sizeof(obs)), 0);
  }
  ASSERT_TRUE(vec->Step(actions).ok());
  EXPECT_FALSE(vec->done(0));
  EXPECT_EQ(vec->env(0).episode_step(), 1);
}

TEST(VectorEnvTest, BadActionsAreRejectedAndNothingSteps) {
  auto vec = VectorEnv::Create("bandit/independent", {}, 3).value();
  vec->Reset(5);
  EXPECT_EQ(vec->Step(std::vector<int>{0, 1}).code(), absl::StatusCode::kInvalidArgument);
  const absl::Status bad = vec->Step(std::vector<int>{0, 2, 1});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), ::testing::HasSubstr("env 1"));
  EXPECT_EQ(vec->env(0).episode_step(), 0);
}

TEST(VectorEnvTest, CreateRejectsBadArguments) {
  EXPECT_EQ(VectorEnv::Create("minatar/breakout", {}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VectorEnv::Create("nope", {}, 2).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::unique_ptr<Env>> mixed;
  mixed.push_back(MakeEnv("minatar/breakout").value());
  mixed.push_back(MakeEnv("minatar/asterix").value());
  EXPECT_EQ(VectorEnv::FromEnvs(std::move(mixed)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram::envs
