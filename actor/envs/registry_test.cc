#include "actor/envs/registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::envs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct ExpectedSpec {
  const char* name;
  std::vector<int64_t> shape;
  DType dtype;
  int num_actions;
};

TEST(RegistryTest, EveryEnvironmentHasTheDocumentedSpec) {
  const ExpectedSpec expected[] = {
      {"minatar/asterix", {10, 10, 4}, DType::kUint8, 6},
      {"minatar/breakout", {10, 10, 4}, DType::kUint8, 6},
      {"minatar/freeway", {10, 10, 7}, DType::kUint8, 6},
      {"minatar/seaquest", {10, 10, 10}, DType::kUint8, 6},
      {"minatar/space_invaders", {10, 10, 6}, DType::kUint8, 6},
      {"classic/cartpole", {4}, DType::kFloat32, 2},
      {"bandit/independent", {1}, DType::kFloat32, 2},
      {"bandit/dependent", {1}, DType::kFloat32, 2},
      {"bandit/two_step", {4}, DType::kFloat32, 2},
  };
  EXPECT_EQ(RegisteredEnvs().size(), std::size(expected));
  for (const ExpectedSpec& e : expected) {
    auto env = MakeEnv(e.name);
    ASSERT_TRUE(env.ok()) << e.name << ": " << env.status();
    const EnvSpec& spec = (*env)->spec();
    EXPECT_EQ(spec.name, e.name);
    EXPECT_EQ(spec.observation_shape, e.shape) << e.name;
    EXPECT_EQ(spec.observation_dtype, e.dtype) << e.name;
    EXPECT_EQ(spec.num_actions, e.num_actions) << e.name;
    EXPECT_EQ(spec.action_names.size(), static_cast<size_t>(e.num_actions)) << e.name;
    // Reset and a step work and produce an observation of the declared size.
    EXPECT_EQ((*env)->Reset(1).observation.size(), spec.observation_bytes());
    EXPECT_EQ((*env)->Step(0).observation.size(), spec.observation_bytes());
  }
}

TEST(RegistryTest, MinimalActionSets) {
  auto breakout = MakeEnv("minatar/breakout", {{"minimal_action_set", "true"}}).value();
  EXPECT_THAT(breakout->spec().action_names, ElementsAre("noop", "left", "right"));
  auto freeway = MakeEnv("minatar/freeway", {{"minimal_action_set", "true"}}).value();
  EXPECT_THAT(freeway->spec().action_names, ElementsAre("noop", "up", "down"));
  auto invaders = MakeEnv("minatar/space_invaders", {{"minimal_action_set", "1"}}).value();
  EXPECT_THAT(invaders->spec().action_names, ElementsAre("noop", "left", "right", "fire"));
  auto asterix = MakeEnv("minatar/asterix", {{"minimal_action_set", "true"}}).value();
  EXPECT_EQ(asterix->spec().num_actions, 5);
  auto seaquest = MakeEnv("minatar/seaquest", {{"minimal_action_set", "true"}}).value();
  EXPECT_EQ(seaquest->spec().num_actions, 6);
}

TEST(RegistryTest, OptionsReachTheEnvironment) {
  auto cartpole = MakeEnv("classic/cartpole", {{"max_episode_steps", "20"}}).value();
  EXPECT_EQ(cartpole->spec().max_episode_steps, 20);
  auto breakout = MakeEnv("minatar/breakout", {{"max_episode_steps", "5"}}).value();
  breakout->Reset(0);
  StepResult r;
  for (int i = 0; i < 5; ++i) r = breakout->Step(0);
  EXPECT_TRUE(r.truncated);  // the shortest Breakout episode is 6 steps (spec 3.6)
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(MakeEnv("classic/cartpole").value()->spec().max_episode_steps, 500);
}

TEST(RegistryTest, UnknownNameListsRegisteredOnes) {
  auto env = MakeEnv("minatar/pong");
  ASSERT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(env.status().message(), HasSubstr("unknown environment \"minatar/pong\""));
  EXPECT_THAT(env.status().message(), HasSubstr("minatar/breakout"));
}

TEST(RegistryTest, UnknownOptionListsAcceptedOnes) {
  auto env = MakeEnv("classic/cartpole", {{"gravity", "3"}});
  ASSERT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(env.status().message(), HasSubstr("unknown option \"gravity\""));
  EXPECT_THAT(env.status().message(), HasSubstr("max_episode_steps"));
}

TEST(RegistryTest, BadValuesNameTheOptionAndTheExpectation) {
  struct Case {
    const char* env;
    const char* key;
    const char* value;
    const char* expected;
  };
  const Case cases[] = {
      {"minatar/breakout", "sticky_action_prob", "1.5", "a number in [0, 1]"},
      {"minatar/breakout", "sticky_action_prob", "nan", "a number in [0, 1]"},
      {"minatar/breakout", "sticky_action_prob", "lots", "a number in [0, 1]"},
      {"minatar/asterix", "difficulty_ramping", "maybe", "true or false"},
      {"minatar/seaquest", "max_episode_steps", "-1", "an integer in [0, "},
      {"classic/cartpole", "max_episode_steps", "0", "an integer in [1, "},
      {"bandit/dependent", "difficulty", "brutal", "one of uniform, easy, medium, hard"},
      {"bandit/independent", "num_trials", "ten", "an integer in [1, "},
  };
  for (const Case& c : cases) {
    auto env = MakeEnv(c.env, {{c.key, c.value}});
    ASSERT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument) << c.env << " " << c.key;
    EXPECT_THAT(env.status().message(), HasSubstr(c.key));
    EXPECT_THAT(env.status().message(), HasSubstr(c.expected)) << env.status();
  }
}

TEST(RegistryTest, ParseEnvString) {
  auto plain = ParseEnvString("minatar/breakout").value();
  EXPECT_EQ(plain.first, "minatar/breakout");
  EXPECT_TRUE(plain.second.empty());
  auto with = ParseEnvString("bandit/dependent?difficulty=easy&num_trials=10").value();
  EXPECT_EQ(with.first, "bandit/dependent");
  EXPECT_EQ(with.second.at("difficulty"), "easy");
  EXPECT_EQ(with.second.at("num_trials"), "10");
  EXPECT_EQ(ParseEnvString("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseEnvString("?a=b").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseEnvString("x?novalue").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseEnvString("x?a=1&a=2").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram::envs
