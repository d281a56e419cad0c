#include "actor/envs/minatar/breakout.h"

#include <cstdint>
#include <random>
#include <vector>

#include "actor/envs/minatar/minatar_env.h"
#include "actor/envs/minatar/test_util.h"
#include "gtest/gtest.h"

namespace engram::envs::minatar {
namespace {

using ::engram::envs::minatar::testing::Cell;
using ::engram::envs::minatar::testing::Cells;
using ::engram::envs::minatar::testing::Observe;

constexpr int C = Breakout::kChannels;

int At(const std::vector<uint8_t>& obs, int row, int col, int ch) {
  return obs[ObsIndex(row, col, ch, C)];
}

int CountChannel(const std::vector<uint8_t>& obs, int ch) {
  int n = 0;
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) n += At(obs, r, c, ch);
  }
  return n;
}

int CountBricks(const Breakout::State& s) {
  int n = 0;
  for (const auto& row : s.bricks) {
    for (bool b : row) n += b ? 1 : 0;
  }
  return n;
}

// A reset game with the ball placed at (row, col) moving (dcol, drow).
Breakout MakeGame(int row, int col, int dcol, int drow, int paddle_col = 4) {
  Breakout game;
  Rng rng(1);
  game.Reset(rng);
  Breakout::State& s = game.mutable_state();
  s.ball_row = s.prev_row = row;
  s.ball_col = s.prev_col = col;
  s.ball_dcol = dcol;
  s.ball_drow = drow;
  s.paddle_col = paddle_col;
  return game;
}

void ExpectBall(const Breakout& game, int row, int col, int dcol, int drow) {
  EXPECT_EQ(game.state().ball_row, row);
  EXPECT_EQ(game.state().ball_col, col);
  EXPECT_EQ(game.state().ball_dcol, dcol);
  EXPECT_EQ(game.state().ball_drow, drow);
}

TEST(BreakoutTest, ResetUsesOneIntegerDrawToPickTheSide) {
  bool seen[2] = {false, false};
  for (uint32_t seed = 0; seed < 20; ++seed) {
    Breakout game;
    Rng rng(seed);
    game.Reset(rng);
    Rng expected(seed);
    const int side = expected.Integer(0, 1);
    seen[side] = true;
    const Breakout::State& s = game.state();
    EXPECT_EQ(s.ball_row, 3) << "seed " << seed;
    EXPECT_EQ(s.ball_col, side == 0 ? 0 : 9) << "seed " << seed;
    EXPECT_EQ(s.ball_dcol, side == 0 ? 1 : -1) << "seed " << seed;
    EXPECT_EQ(s.ball_drow, 1) << "seed " << seed;
    EXPECT_EQ(s.prev_row, 3);
    EXPECT_EQ(s.prev_col, s.ball_col);
    EXPECT_EQ(s.paddle_col, 4);
    EXPECT_FALSE(s.just_struck);
    EXPECT_FALSE(s.terminal);
    EXPECT_EQ(CountBricks(s), 30);
    // Integer(0, 1) takes exactly one 32-bit output.
    EXPECT_EQ(rng.Next(), expected.Next()) << "seed " << seed;
  }
  EXPECT_TRUE(seen[0]);
  EXPECT_TRUE(seen[1]);
}

TEST(BreakoutTest, ResetObservation) {
  Breakout game;
  Rng rng(0);
  game.Reset(rng);
  const int col = game.state().ball_col;
  const std::vector<uint8_t> obs = Observe(game);
  int ones = 0;
  for (uint8_t v : obs) {
    ASSERT_LE(v, 1);
    ones += v;
  }
  EXPECT_EQ(ones, 33);
  EXPECT_EQ(At(obs, 9, 4, Breakout::kPaddleChannel), 1);
  EXPECT_EQ(At(obs, 3, col, Breakout::kBallChannel), 1);
  EXPECT_EQ(At(obs, 3, col, Breakout::kTrailChannel), 1);
  for (int r = 1; r <= 3; ++r) {
    for (int c = 0; c < kCols; ++c) EXPECT_EQ(At(obs, r, c, Breakout::kBrickChannel), 1);
  }
}

TEST(BreakoutTest, PaddleMovesAndIsClamped) {
  // The ball heads up, away from the bottom row, for the whole test.
  Breakout game = MakeGame(7, 5, -1, -1, /*paddle_col=*/1);
  game.mutable_state().bricks = {};
  Rng rng(0);
  game.Act(kLeft, rng);
  EXPECT_EQ(game.state().paddle_col, 0);
  game.Act(kLeft, rng);
  EXPECT_EQ(game.state().paddle_col, 0);
  game.Act(kUp, rng);
  game.Act(kDown, rng);
  game.Act(kFire, rng);
  EXPECT_EQ(game.state().paddle_col, 0);
  game.mutable_state().paddle_col = 8;
  game.Act(kRight, rng);
  game.Act(kRight, rng);
  EXPECT_EQ(game.state().paddle_col, 9);
  EXPECT_FALSE(game.terminal());
}

TEST(BreakoutTest, SideWallClampsColumnAndFlipsHorizontal) {
  Breakout game = MakeGame(6, 9, /*dcol=*/1, /*drow=*/-1);
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  ExpectBall(game, 5, 9, -1, -1);
  game.Act(kNoop, rng);
  ExpectBall(game, 4, 8, -1, -1);

  Breakout left = MakeGame(5, 0, -1, 1);
  left.Act(kNoop, rng);
  ExpectBall(left, 6, 0, 1, 1);
}

TEST(BreakoutTest, CeilingFlipsVerticalAndBallSpendsTwoStepsInRow0) {
  Breakout game = MakeGame(1, 4, 1, -1);
  game.mutable_state().bricks = {};
  Rng rng(0);
  game.Act(kNoop, rng);
  ExpectBall(game, 0, 5, 1, -1);
  game.Act(kNoop, rng);
  ExpectBall(game, 0, 6, 1, 1);
  game.Act(kNoop, rng);
  ExpectBall(game, 1, 7, 1, 1);
}

TEST(BreakoutTest, BrickHitRewardsRemovesBrickFlipsVerticalAndMovesSideways) {
  Breakout game = MakeGame(4, 2, 1, -1);
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  EXPECT_FALSE(game.state().bricks[3][3]);
  EXPECT_EQ(CountBricks(game.state()), 29);
  ExpectBall(game, 4, 3, 1, 1);
  EXPECT_TRUE(game.state().just_struck);
  // The next step has no brick contact and clears the flag.
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  ExpectBall(game, 5, 4, 1, 1);
  EXPECT_FALSE(game.state().just_struck);
}

TEST(BreakoutTest, BrickTestUsesTheWallClampedColumn) {
  Breakout game = MakeGame(4, 9, 1, -1);
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  EXPECT_FALSE(game.state().bricks[3][9]);
  ExpectBall(game, 4, 9, -1, 1);
}

TEST(BreakoutTest, JustStruckBallPassesThroughTheNextBrick) {
  // The ball sits in a hole at (2, 4): it breaks (1, 5), turns down, and enters (3, 6)
  // without breaking it because the flag is still set.
  Breakout game = MakeGame(2, 4, 1, -1);
  game.mutable_state().bricks[2][4] = false;
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  ExpectBall(game, 2, 5, 1, 1);
  EXPECT_FALSE(game.state().bricks[1][5]);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  ExpectBall(game, 3, 6, 1, 1);
  EXPECT_TRUE(game.state().bricks[3][6]);
  EXPECT_TRUE(game.state().just_struck);
  EXPECT_EQ(CountBricks(game.state()), 28);
  const std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 3, 6, Breakout::kBallChannel), 1);
  EXPECT_EQ(At(obs, 3, 6, Breakout::kBrickChannel), 1);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  ExpectBall(game, 4, 7, 1, 1);
  EXPECT_FALSE(game.state().just_struck);
}

TEST(BreakoutTest, PassThroughLastsWhileEveryStepLandsOnABrick) {
  Breakout game = MakeGame(4, 2, 1, -1);
  game.mutable_state().just_struck = true;
  Rng rng(0);
  const int path[][2] = {{3, 3}, {2, 4}, {1, 5}};
  for (const auto& cell : path) {
    EXPECT_EQ(game.Act(kNoop, rng), 0);
    ExpectBall(game, cell[0], cell[1], 1, -1);
    EXPECT_TRUE(game.state().just_struck);
  }
  EXPECT_EQ(CountBricks(game.state()), 30);
  EXPECT_EQ(game.Act(kNoop, rng), 0);  // (0, 6): no brick, the flag clears
  ExpectBall(game, 0, 6, 1, -1);
  EXPECT_FALSE(game.state().just_struck);
  EXPECT_EQ(game.Act(kNoop, rng), 0);  // ceiling
  ExpectBall(game, 0, 7, 1, 1);
  EXPECT_EQ(game.Act(kNoop, rng), 1);  // (1, 8) now breaks
  ExpectBall(game, 0, 8, 1, -1);
  EXPECT_FALSE(game.state().bricks[1][8]);
}

TEST(BreakoutTest, PaddleDirectlyBelowFlipsVertical) {
  Breakout game = MakeGame(8, 3, 1, 1, /*paddle_col=*/3);
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_FALSE(game.terminal());
  ExpectBall(game, 8, 4, 1, -1);
}

TEST(BreakoutTest, PaddleAtTentativeColumnSendsBallBackAlongItsDiagonal) {
  // The paddle moves first, from 5 to 4, the ball's tentative column.
  Breakout game = MakeGame(8, 3, 1, 1, /*paddle_col=*/5);
  Rng rng(0);
  EXPECT_EQ(game.Act(kLeft, rng), 0);
  EXPECT_FALSE(game.terminal());
  ExpectBall(game, 8, 4, -1, -1);
  game.Act(kNoop, rng);
  ExpectBall(game, 7, 3, -1, -1);
}

TEST(BreakoutTest, DirectlyBelowWinsOverTentativeColumn) {
  // Paddle under the ball's current column: only the vertical part flips.
  Breakout game = MakeGame(8, 5, -1, 1, /*paddle_col=*/5);
  Rng rng(0);
  game.Act(kNoop, rng);
  ExpectBall(game, 8, 4, -1, -1);
}

TEST(BreakoutTest, MissedBallIsTerminalInRow9) {
  Breakout game = MakeGame(8, 3, 1, 1, /*paddle_col=*/6);
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(game.state().ball_row, 9);
  EXPECT_EQ(game.state().ball_col, 4);
  const std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 9, 4, Breakout::kBallChannel), 1);
  EXPECT_EQ(At(obs, 8, 3, Breakout::kTrailChannel), 1);
  EXPECT_EQ(At(obs, 9, 6, Breakout::kPaddleChannel), 1);
}

TEST(BreakoutTest, ActingAfterTerminalReturnsZeroAndChangesNothing) {
  Breakout game = MakeGame(8, 3, 1, 1, /*paddle_col=*/6);
  Rng rng(0);
  game.Act(kNoop, rng);
  ASSERT_TRUE(game.terminal());
  const Breakout::State before = game.state();
  const std::vector<uint8_t> obs = Observe(game);
  for (int a = 0; a < kNumActions; ++a) {
    EXPECT_EQ(game.Act(a, rng), 0);
    EXPECT_TRUE(game.terminal());
  }
  EXPECT_EQ(game.state().paddle_col, before.paddle_col);
  EXPECT_EQ(game.state().ball_row, before.ball_row);
  EXPECT_EQ(game.state().ball_col, before.ball_col);
  EXPECT_EQ(game.state().prev_row, before.prev_row);
  EXPECT_EQ(game.state().prev_col, before.prev_col);
  EXPECT_EQ(game.state().bricks, before.bricks);
  EXPECT_EQ(Observe(game), obs);
  EXPECT_EQ(rng.Next(), Rng(0).Next());
}

TEST(BreakoutTest, ShortestEpisodeIsSixSteps) {
  bool seen[2] = {false, false};
  for (uint32_t seed = 0; seed < 10; ++seed) {
    Breakout game;
    Rng rng(seed);
    game.Reset(rng);
    const bool from_left = game.state().ball_col == 0;
    seen[from_left ? 0 : 1] = true;
    for (int step = 1; step <= 5; ++step) {
      game.Act(kNoop, rng);
      ASSERT_FALSE(game.terminal()) << "step " << step;
    }
    ExpectBall(game, 8, from_left ? 5 : 4, from_left ? 1 : -1, 1);
    game.Act(kNoop, rng);
    if (from_left) {
      // Tentative (9, 6); the paddle at 4 is under neither column.
      EXPECT_TRUE(game.terminal()) << "seed " << seed;
    } else {
      // The paddle at 4 is directly below the ball.
      EXPECT_FALSE(game.terminal()) << "seed " << seed;
      ExpectBall(game, 8, 3, -1, -1);
    }
  }
  EXPECT_TRUE(seen[0] && seen[1]);
}

TEST(BreakoutTest, CornerExampleAt8And0MovingDownLeft) {
  Rng rng(0);
  Breakout caught = MakeGame(8, 0, -1, 1, /*paddle_col=*/0);
  caught.Act(kNoop, rng);
  EXPECT_FALSE(caught.terminal());
  ExpectBall(caught, 8, 0, 1, -1);
  caught.Act(kNoop, rng);
  ExpectBall(caught, 7, 1, 1, -1);

  Breakout missed = MakeGame(8, 0, -1, 1, /*paddle_col=*/1);
  missed.Act(kNoop, rng);
  EXPECT_TRUE(missed.terminal());
  ExpectBall(missed, 9, 0, 1, 1);
}

TEST(BreakoutTest, LastBrickBreakDoesNotRefillUntilBallReachesRow9) {
  Breakout game = MakeGame(4, 2, 1, -1, /*paddle_col=*/7);
  game.mutable_state().bricks = {};
  game.mutable_state().bricks[3][3] = true;
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);  // ball (4, 3) moving down-right
  EXPECT_EQ(CountBricks(game.state()), 0);
  for (int step = 0; step < 3; ++step) {
    game.Act(kNoop, rng);
    EXPECT_EQ(CountBricks(game.state()), 0) << "step " << step;
  }
  ExpectBall(game, 7, 6, 1, 1);
  game.Act(kNoop, rng);  // (8, 7)
  EXPECT_EQ(CountBricks(game.state()), 0);
  game.Act(kNoop, rng);  // tentative (9, 8): the paddle at 7 is directly below
  EXPECT_FALSE(game.terminal());
  EXPECT_EQ(CountBricks(game.state()), 30);
  EXPECT_EQ(game.state().bricks, Breakout::FullWall());
  EXPECT_EQ(CountChannel(Observe(game), Breakout::kBrickChannel), 30);
}

TEST(BreakoutTest, RefillAlsoHappensOnTheLosingStep) {
  Breakout game = MakeGame(8, 3, 1, 1, /*paddle_col=*/0);
  game.mutable_state().bricks = {};
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(CountBricks(game.state()), 30);
}

TEST(BreakoutTest, NoRefillWhileAnyBrickRemains) {
  Breakout game = MakeGame(8, 3, 1, 1, /*paddle_col=*/3);
  game.mutable_state().bricks = {};
  game.mutable_state().bricks[2][7] = true;
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_EQ(CountBricks(game.state()), 1);
}

TEST(BreakoutTest, TrailIsThePreviousBallPosition) {
  Breakout game = MakeGame(5, 5, 1, 1);
  Rng rng(0);
  game.Act(kNoop, rng);
  std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 6, 6, Breakout::kBallChannel), 1);
  EXPECT_EQ(At(obs, 5, 5, Breakout::kTrailChannel), 1);
  EXPECT_EQ(CountChannel(obs, Breakout::kBallChannel), 1);
  EXPECT_EQ(CountChannel(obs, Breakout::kTrailChannel), 1);
  // After a brick hit the ball stays in its row: trail and ball are side by side.
  Breakout hit = MakeGame(4, 2, 1, -1);
  hit.Act(kNoop, rng);
  obs = Observe(hit);
  EXPECT_EQ(At(obs, 4, 3, Breakout::kBallChannel), 1);
  EXPECT_EQ(At(obs, 4, 2, Breakout::kTrailChannel), 1);
  EXPECT_EQ(At(obs, 3, 3, Breakout::kBrickChannel), 0);
  EXPECT_EQ(CountChannel(obs, Breakout::kBrickChannel), 29);
}

std::vector<std::vector<uint8_t>> PlayEnv(uint64_t seed, int steps, uint32_t policy_seed) {
  MinAtarOptions options;
  options.sticky_action_prob = 0.0;
  auto env = MinAtarEnv::Create("breakout", options).value();
  std::mt19937 policy(policy_seed);
  std::vector<std::vector<uint8_t>> trace;
  StepResult r = env->Reset(seed);
  trace.emplace_back(r.observation.begin(), r.observation.end());
  for (int i = 0; i < steps; ++i) {
    r = env->Step(static_cast<int>(policy() % kNumActions));
    trace.emplace_back(r.observation.begin(), r.observation.end());
    trace.back().push_back(static_cast<uint8_t>(r.reward));
    trace.back().push_back(r.terminated ? 1 : 0);
    if (r.terminated) r = env->Reset();
  }
  return trace;
}

TEST(BreakoutTest, SeedsWithDifferentResetDrawsDiffer) {
  uint64_t seed_for[2] = {0, 0};
  bool found[2] = {false, false};
  for (uint32_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    const int side = rng.Integer(0, 1);
    if (!found[side]) seed_for[side] = seed;
    found[side] = true;
  }
  ASSERT_TRUE(found[0] && found[1]);
  const auto a = PlayEnv(seed_for[0], 50, 3);
  const auto b = PlayEnv(seed_for[1], 50, 3);
  EXPECT_NE(a.front(), b.front());
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace engram::envs::minatar
