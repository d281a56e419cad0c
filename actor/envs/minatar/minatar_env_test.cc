#include "actor/envs/minatar/minatar_env.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::envs::minatar {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<MinAtarEnv> Make(const std::string& game, double sticky = 0.1,
                                 bool minimal = false) {
  MinAtarOptions options;
  options.sticky_action_prob = sticky;
  options.minimal_action_set = minimal;
  return MinAtarEnv::Create(game, options).value();
}

// Paddle column of a Breakout observation (channel 0 of row 9).
int PaddleColumn(absl::Span<const uint8_t> obs) {
  for (int col = 0; col < kCols; ++col) {
    if (obs[ObsIndex(9, col, 0, 4)]) return col;
  }
  return -1;
}

TEST(MinAtarEnvTest, UnknownGameAndBadOptionsAreRejected) {
  auto env = MinAtarEnv::Create("pong", MinAtarOptions{});
  ASSERT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(env.status().message(), HasSubstr("pong"));
  EXPECT_THAT(env.status().message(), HasSubstr("space_invaders"));
  MinAtarOptions bad;
  bad.sticky_action_prob = -0.5;
  EXPECT_EQ(MinAtarEnv::Create("breakout", bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MinAtarEnvTest, ObservationsAreBooleanGridsOfTheRightSize) {
  const std::pair<const char*, int> games[] = {
      {"asterix", 4}, {"breakout", 4}, {"freeway", 7}, {"seaquest", 10}, {"space_invaders", 6}};
  for (const auto& [game, channels] : games) {
    auto env = Make(game);
    EXPECT_EQ(env->spec().observation_shape, (std::vector<int64_t>{10, 10, channels}));
    StepResult r = env->Reset(3);
    for (int t = 0; t < 200 && !r.terminated; ++t) {
      ASSERT_EQ(r.observation.size(), 100u * channels);
      for (uint8_t v : r.observation) ASSERT_LE(v, 1) << game;
      r = env->Step(t % 6);
    }
  }
}

TEST(MinAtarEnvTest, StickyProbabilityOneAlwaysRepeatsTheFirstNoop) {
  auto env = Make("breakout", /*sticky=*/1.0);
  StepResult r = env->Reset(5);
  for (int t = 0; t < 5; ++t) {
    r = env->Step(kRight);
    EXPECT_EQ(PaddleColumn(r.observation), 4);  // never moves from its reset column
    EXPECT_EQ(env->last_action(), kNoop);
  }
}

TEST(MinAtarEnvTest, StickyProbabilityZeroExecutesEveryAction) {
  auto env = Make("breakout", /*sticky=*/0.0);
  env->Reset(5);
  EXPECT_EQ(PaddleColumn(env->Step(kRight).observation), 5);
  EXPECT_EQ(PaddleColumn(env->Step(kLeft).observation), 4);
  EXPECT_EQ(env->last_action(), kLeft);
}

TEST(MinAtarEnvTest, StickyRepeatsHappenAtTheConfiguredRate) {
  auto env = Make("breakout", /*sticky=*/0.1);
  env->Reset(8);
  int repeats = 0, changes = 0;
  StepResult r = env->Reset(8);
  for (int t = 0; t < 20000; ++t) {
    if (r.terminated) r = env->Reset();
    // Alternate requested actions; a sticky step executes the previous one instead.
    const int wanted = t % 2 == 0 ? kRight : kLeft;
    r = env->Step(wanted);
    ++changes;
    repeats += env->last_action() != wanted;
  }
  EXPECT_NEAR(static_cast<double>(repeats) / changes, 0.1, 0.01);
}

TEST(MinAtarEnvTest, StickyMemorySurvivesReset) {
  // Spec 1.2 quirk: reset does not clear the last executed action.
  auto env = Make("breakout", /*sticky=*/0.0);
  env->Reset(1);
  env->Step(kRight);
  env->Reset();
  EXPECT_EQ(env->last_action(), kRight);
  env->Reset(2);
  EXPECT_EQ(env->last_action(), kRight);
}

TEST(MinAtarEnvTest, StickyDrawIsTakenOnEveryStepEvenAfterTheEnd) {
  // Breakout's only draws: Integer(0, 1) at reset, plus the wrapper's sticky double (two
  // 32-bit outputs) on every step. After N steps, the next reset's draw is the output that
  // follows 1 + 2N outputs of MT19937(seed).
  constexpr uint32_t kSeed = 77;
  auto env = Make("breakout", 0.1);
  env->Reset(kSeed);
  int steps = 0;
  StepResult r;
  do {
    r = env->Step(kNoop);
    ++steps;
  } while (!r.terminated);
  for (int extra = 0; extra < 7; ++extra, ++steps) {
    r = env->Step(kRight);
    ASSERT_TRUE(r.terminated);
    ASSERT_EQ(r.reward, 0.0f);
  }
  const StepResult reset = env->Reset();
  Rng reference(kSeed);
  for (int i = 0; i < 1 + 2 * steps; ++i) reference.Next();
  const int start_col = reference.Integer(0, 1) == 0 ? 0 : 9;
  EXPECT_EQ(reset.observation[ObsIndex(3, start_col, 1, 4)], 1) << "ball at row 3";
}

TEST(MinAtarEnvTest, MinimalActionSetMapsToFullIndices) {
  auto env = Make("breakout", 0.0, /*minimal=*/true);
  EXPECT_EQ(env->spec().num_actions, 3);
  env->Reset(1);
  EXPECT_EQ(PaddleColumn(env->Step(2).observation), 5);  // minimal 2 = right
  EXPECT_EQ(env->last_action(), kRight);
  EXPECT_EQ(PaddleColumn(env->Step(1).observation), 4);  // minimal 1 = left
}

TEST(MinAtarEnvTest, SameSeedSameTrajectoryDifferentSeedDifferent) {
  for (const std::string& game : MinAtarEnv::GameNames()) {
    auto a = Make(game), b = Make(game), c = Make(game);
    StepResult ra = a->Reset(123), rb = b->Reset(123), rc = c->Reset(124);
    bool differs = false;
    for (int t = 0; t < 3000; ++t) {
      const int action = (t * 7 + t / 3) % 6;
      ra = a->Step(action);
      rb = b->Step(action);
      rc = c->Step(action);
      ASSERT_TRUE(std::equal(ra.observation.begin(), ra.observation.end(), rb.observation.begin()))
          << game << " step " << t;
      ASSERT_EQ(ra.reward, rb.reward);
      ASSERT_EQ(ra.terminated, rb.terminated);
      differs |= !std::equal(ra.observation.begin(), ra.observation.end(), rc.observation.begin());
      if (ra.terminated) {
        ra = a->Reset();
        rb = b->Reset();
      }
      if (rc.terminated) rc = c->Reset();
    }
    EXPECT_TRUE(differs) << game;
  }
}

}  // namespace
}  // namespace engram::envs::minatar

namespace engram::envs::minatar {
namespace {

TEST(MinAtarEnvTest, CellPermutationMovesEveryCellAndNothingElse) {
  const std::vector<int> perm = PermutedCells(7);
  std::vector<int> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 100; ++i) ASSERT_EQ(sorted[i], i);  // a permutation of 0..99
  int moved = 0;
  for (int i = 0; i < 100; ++i) moved += perm[i] != i;
  EXPECT_GT(moved, 90);
  EXPECT_EQ(PermutedCells(7), perm);  // fixed by its seed
  EXPECT_NE(PermutedCells(8), perm);

  // The same game and actions with and without the permutation: the observations are the
  // same cells moved, channel by channel.
  MinAtarOptions plain_options;
  plain_options.sticky_action_prob = 0;
  MinAtarOptions permuted_options = plain_options;
  permuted_options.cell_permutation_seed = 7;
  auto plain = *MinAtarEnv::Create("breakout", plain_options);
  auto permuted = *MinAtarEnv::Create("breakout", permuted_options);
  plain->Reset(3);
  permuted->Reset(3);
  const size_t channels = plain->spec().observation_shape[2];
  std::vector<uint8_t> a(plain->spec().observation_bytes()), b(a.size());
  for (int step = 0; step < 30; ++step) {
    plain->WriteObservation(a.data());
    permuted->WriteObservation(b.data());
    for (int cell = 0; cell < 100; ++cell) {
      for (size_t c = 0; c < channels; ++c) {
        ASSERT_EQ(b[perm[cell] * channels + c], a[cell * channels + c]) << "step " << step;
      }
    }
    plain->Step(step % 3);
    permuted->Step(step % 3);
  }
}

}  // namespace
}  // namespace engram::envs::minatar
