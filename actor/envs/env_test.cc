#include "actor/envs/env.h"

#include <cstring>
#include <random>

#include "actor/envs/registry.h"
#include "gtest/gtest.h"

namespace engram::envs {
namespace {

// Counts steps; observation = float32 [2] = (step count, last random draw). Terminates when
// the action is 1.
class CountingEnv : public Env {
 public:
  explicit CountingEnv(int max_steps)
      : Env(EnvSpec{"test/counting", {2}, DType::kFloat32, 2, {"go", "stop"}, max_steps}) {}

  void WriteObservation(uint8_t* dst) const override {
    const float obs[2] = {static_cast<float>(count_), draw_};
    std::memcpy(dst, obs, sizeof(obs));
  }
  int seeds = 0;

 protected:
  void DoSeed(uint64_t seed) override {
    ++seeds;
    rng_.seed(seed);
  }
  void DoReset() override {
    count_ = 0;
    draw_ = std::uniform_real_distribution<float>(0, 1)(rng_);
  }
  Outcome DoStep(int action) override {
    ++count_;
    return Outcome{1.0f, action == 1, false};
  }

 private:
  std::mt19937 rng_;
  int count_ = 0;
  float draw_ = 0;
};

float ObsAt(const StepResult& r, int i) {
  float v;
  std::memcpy(&v, r.observation.data() + i * sizeof(float), sizeof(float));
  return v;
}

TEST(EnvTest, SpecSizes) {
  const EnvSpec spec{"x", {10, 10, 4}, DType::kUint8, 6, {"a", "b", "c", "d", "e", "f"}, 0};
  EXPECT_EQ(spec.observation_elements(), 400);
  EXPECT_EQ(spec.observation_bytes(), 400u);
  const EnvSpec f{"y", {4}, DType::kFloat32, 2, {"l", "r"}, 0};
  EXPECT_EQ(f.observation_bytes(), 16u);
  EXPECT_STREQ(DTypeName(DType::kFloat32), "float32");
}

TEST(EnvTest, StepReturnsObservationRewardAndFlags) {
  CountingEnv env(0);
  StepResult r = env.Reset(7);
  EXPECT_EQ(r.observation.size(), 8u);
  EXPECT_EQ(ObsAt(r, 0), 0.0f);
  r = env.Step(0);
  EXPECT_EQ(ObsAt(r, 0), 1.0f);
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_FALSE(r.terminated);
  r = env.Step(1);
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(env.episode_step(), 2);
}

TEST(EnvTest, MaxEpisodeStepsTruncatesUnlessTerminated) {
  CountingEnv env(3);
  env.Reset(1);
  EXPECT_FALSE(env.Step(0).truncated);
  EXPECT_FALSE(env.Step(0).truncated);
  StepResult r = env.Step(0);
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(r.terminated);
  env.Reset();
  env.Step(0);
  env.Step(0);
  r = env.Step(1);
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
}

TEST(EnvTest, ResetWithSeedIsDeterministicAndResetContinuesTheStream) {
  CountingEnv a(0), b(0);
  const float first = ObsAt(a.Reset(42), 1);
  EXPECT_EQ(ObsAt(b.Reset(42), 1), first);
  const float second = ObsAt(a.Reset(), 1);
  EXPECT_NE(second, first);
  EXPECT_EQ(ObsAt(b.Reset(), 1), second);
  EXPECT_EQ(ObsAt(a.Reset(42), 1), first);
}

TEST(EnvTest, UnseededResetSeedsOnce) {
  CountingEnv env(0);
  env.Reset();
  env.Reset();
  EXPECT_EQ(env.seeds, 1);
}

TEST(EnvTest, StepBeforeAnyResetStartsAnEpisode) {
  CountingEnv env(0);
  const StepResult r = env.Step(0);
  EXPECT_EQ(env.seeds, 1);
  EXPECT_EQ(ObsAt(r, 0), 1.0f);  // reset to 0, then one step
  EXPECT_EQ(env.episode_step(), 1);
}

TEST(EnvDeathTest, OutOfRangeActionIsAProgrammerError) {
  CountingEnv env(0);
  env.Reset(1);
  EXPECT_DEATH(env.Step(2), "outside \\[0, 2\\)");
}

TEST(PadChannelsTest, PadsEveryCellWithZerosAndKeepsTheDynamics) {
  auto plain = MakeEnv("minatar/breakout", {{"sticky_action_prob", "0.1"}}).value();
  auto padded =
      PadChannels(MakeEnv("minatar/breakout", {{"sticky_action_prob", "0.1"}}).value(), 7);
  EXPECT_EQ(padded->spec().observation_shape, (std::vector<int64_t>{10, 10, 7}));
  EXPECT_EQ(padded->spec().num_actions, plain->spec().num_actions);
  StepResult a = plain->Reset(5);
  std::vector<uint8_t> expected(a.observation.begin(), a.observation.end());
  StepResult b = padded->Reset(5);
  int lit = 0;
  for (int step = 0; step < 200; ++step) {
    ASSERT_EQ(b.observation.size(), 700u);
    for (int cell = 0; cell < 100; ++cell) {
      for (int c = 0; c < 7; ++c) {
        const uint8_t want = c < 4 ? expected[cell * 4 + c] : 0;
        ASSERT_EQ(b.observation[cell * 7 + c], want) << "step " << step << " cell " << cell;
        lit += want;
      }
    }
    a = plain->Step(step % 3);
    b = padded->Step(step % 3);
    expected.assign(a.observation.begin(), a.observation.end());
    ASSERT_EQ(a.reward, b.reward);
    ASSERT_EQ(a.terminated, b.terminated);
    if (a.terminated) {
      a = plain->Reset();
      b = padded->Reset();
      expected.assign(a.observation.begin(), a.observation.end());
    }
  }
  EXPECT_GT(lit, 0);
}

TEST(PadChannelsTest, SameWidthIsTheEnvItself) {
  auto env = MakeEnv("classic/cartpole").value();
  Env* raw = env.get();
  EXPECT_EQ(PadChannels(std::move(env), 4).get(), raw);
}

}  // namespace
}  // namespace engram::envs
