#include "actor/envs/minatar/freeway.h"

#include <cstdint>
#include <cstdlib>
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

constexpr int C = Freeway::kChannels;

int At(const std::vector<uint8_t>& obs, int row, int col, int ch) {
  return obs[ObsIndex(row, col, ch, C)];
}

// The cars a randomisation draws from `rng` (spec 4.5): magnitudes, then directions.
struct ExpectedCars {
  int speed[Freeway::kNumCars];
};

ExpectedCars DrawCars(Rng& rng) {
  ExpectedCars cars;
  int magnitude[Freeway::kNumCars];
  for (int& m : magnitude) m = rng.Integer(1, 5);
  for (int k = 0; k < Freeway::kNumCars; ++k) {
    cars.speed[k] = rng.Uniform() < 0.5 ? -magnitude[k] : magnitude[k];
  }
  return cars;
}

// A reset game whose cars never move and sit in `cols` (so nothing hits the chicken
// unless a test puts a car in column 4).
Freeway ParkedCars(int col = 0) {
  Freeway game;
  Rng rng(1);
  game.Reset(rng);
  for (Freeway::Car& car : game.mutable_state().cars) {
    car.col = col;
    car.countdown = 1000000;
  }
  return game;
}

TEST(FreewayTest, ResetDrawsMagnitudesThenDirectionsAndParksCarsAtColumn0) {
  for (uint32_t seed : {0u, 1u, 99u, 2024u}) {
    Freeway game;
    Rng rng(seed);
    game.Reset(rng);
    Rng expected_rng(seed);
    const ExpectedCars expected = DrawCars(expected_rng);
    EXPECT_EQ(rng.Next(), expected_rng.Next()) << "seed " << seed;
    const Freeway::State& s = game.state();
    EXPECT_EQ(s.chicken_row, 9);
    EXPECT_EQ(s.cooldown, 3);
    EXPECT_EQ(s.time_remaining, 2500);
    EXPECT_FALSE(s.terminal);
    for (int k = 0; k < Freeway::kNumCars; ++k) {
      EXPECT_EQ(s.cars[k].col, 0) << "car " << k;
      EXPECT_EQ(s.cars[k].speed, expected.speed[k]) << "seed " << seed << " car " << k;
      EXPECT_EQ(s.cars[k].countdown, std::abs(expected.speed[k])) << "car " << k;
    }

    const std::vector<uint8_t> obs = Observe(game);
    int ones = 0;
    for (uint8_t v : obs) {
      ASSERT_LE(v, 1);
      ones += v;
    }
    EXPECT_EQ(ones, 1 + 8 + 8);
    EXPECT_EQ(At(obs, 9, 4, Freeway::kChickenChannel), 1);
    for (int k = 0; k < Freeway::kNumCars; ++k) {
      const int speed = expected.speed[k];
      EXPECT_EQ(At(obs, k + 1, 0, Freeway::kCarChannel), 1);
      // Rightward cars at column 0 have their trail wrapped to column 9.
      EXPECT_EQ(At(obs, k + 1, speed > 0 ? 9 : 1, 1 + std::abs(speed)), 1) << "car " << k;
    }
  }
}

TEST(FreewayTest, EveryEpisodeLastsExactly2501Steps) {
  MinAtarOptions options;
  options.sticky_action_prob = 0.0;
  auto env = MinAtarEnv::Create("freeway", options).value();
  std::mt19937 policy(4);
  for (uint64_t seed : {1u, 2u}) {
    for (int policy_kind = 0; policy_kind < 2; ++policy_kind) {
      env->Reset(seed + policy_kind * 10);
      int steps = 0;
      float total = 0;
      bool terminated = false;
      while (!terminated) {
        const int action = policy_kind == 0 ? kUp : static_cast<int>(policy() % kNumActions);
        const StepResult r = env->Step(action);
        terminated = r.terminated;
        total += r.reward;
        ++steps;
        ASSERT_LE(steps, 2501);
      }
      EXPECT_EQ(steps, 2501) << "seed " << seed << " policy " << policy_kind;
      if (policy_kind == 0) {
        EXPECT_GT(total, 0.0f);  // always-up crosses at least once
      }
    }
  }
}

TEST(FreewayTest, ChickenFirstMovesAtStep4ThenEveryThirdStep) {
  Freeway game = ParkedCars();
  Rng rng(0);
  const int expected_row[] = {9, 9, 9, 8, 8, 8, 7, 7, 7, 6};
  for (int step = 1; step <= 10; ++step) {
    game.Act(kUp, rng);
    EXPECT_EQ(game.state().chicken_row, expected_row[step - 1]) << "step " << step;
  }
  EXPECT_EQ(game.state().cooldown, 2);
}

TEST(FreewayTest, DownAtRow9StillRestartsTheCooldown) {
  Freeway game = ParkedCars();
  Rng rng(0);
  for (int step = 1; step <= 3; ++step) game.Act(kNoop, rng);
  EXPECT_EQ(game.state().cooldown, 0);
  game.Act(kDown, rng);  // step 4: spends the move
  EXPECT_EQ(game.state().chicken_row, 9);
  EXPECT_EQ(game.state().cooldown, 2);
  game.Act(kUp, rng);
  game.Act(kUp, rng);
  EXPECT_EQ(game.state().chicken_row, 9);
  game.Act(kUp, rng);  // step 7
  EXPECT_EQ(game.state().chicken_row, 8);
}

TEST(FreewayTest, NonMovementActionsDoNothingToTheChicken) {
  Freeway game = ParkedCars();
  game.mutable_state().cooldown = 0;
  game.mutable_state().chicken_row = 5;
  Rng rng(0);
  for (int a : {kNoop, kLeft, kRight, kFire}) {
    game.Act(a, rng);
    EXPECT_EQ(game.state().chicken_row, 5);
    EXPECT_EQ(game.state().cooldown, 0);
  }
}

TEST(FreewayTest, CrossingGivesOneAndReRandomisesSpeedsKeepingColumns) {
  Freeway game = ParkedCars();
  Freeway::State& s = game.mutable_state();
  for (int k = 0; k < Freeway::kNumCars; ++k) s.cars[k].col = (k + 5) % 10;
  s.chicken_row = 1;
  s.cooldown = 0;
  Rng rng(555);
  Rng expected_rng(555);
  const ExpectedCars expected = DrawCars(expected_rng);
  EXPECT_EQ(game.Act(kUp, rng), 1);
  EXPECT_EQ(rng.Next(), expected_rng.Next());
  EXPECT_EQ(game.state().chicken_row, 9);
  EXPECT_EQ(game.state().cooldown, 2);
  for (int k = 0; k < Freeway::kNumCars; ++k) {
    const int m = std::abs(expected.speed[k]);
    EXPECT_EQ(game.state().cars[k].col, (k + 5) % 10) << "car " << k;
    EXPECT_EQ(game.state().cars[k].speed, expected.speed[k]) << "car " << k;
    // Reloaded with m, then decremented in the same step.
    EXPECT_EQ(game.state().cars[k].countdown, m - 1) << "car " << k;
  }
  const std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 9, 4, Freeway::kChickenChannel), 1);
  for (int c = 0; c < kCols; ++c) EXPECT_EQ(At(obs, 0, c, Freeway::kChickenChannel), 0);
}

TEST(FreewayTest, AfterACrossingAtStepTCarsFirstMoveAtStepTPlusM) {
  Freeway game = ParkedCars();
  Freeway::State& s = game.mutable_state();
  s.chicken_row = 1;
  s.cooldown = 0;
  Rng rng(8);
  ASSERT_EQ(game.Act(kUp, rng), 1);  // step t = 1
  int first_move[Freeway::kNumCars] = {0};
  int col[Freeway::kNumCars];
  for (int k = 0; k < Freeway::kNumCars; ++k) col[k] = game.state().cars[k].col;
  for (int step = 2; step <= 10; ++step) {
    game.Act(kNoop, rng);
    for (int k = 0; k < Freeway::kNumCars; ++k) {
      if (first_move[k] == 0 && game.state().cars[k].col != col[k]) first_move[k] = step;
    }
  }
  for (int k = 0; k < Freeway::kNumCars; ++k) {
    EXPECT_EQ(first_move[k], 1 + std::abs(game.state().cars[k].speed)) << "car " << k;
  }
}

TEST(FreewayTest, CarOnTheChickenSendsItBackWithoutPenalty) {
  // Car 4 (row 5) already in column 4 when the step starts.
  Freeway game = ParkedCars();
  game.mutable_state().chicken_row = 5;
  game.mutable_state().cooldown = 2;
  game.mutable_state().cars[4].col = 4;
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_EQ(game.state().chicken_row, 9);
  EXPECT_EQ(game.state().cooldown, 1);  // a hit does not reset the cooldown
}

TEST(FreewayTest, CarMovingOntoTheChickenSendsItBack) {
  Freeway game = ParkedCars();
  game.mutable_state().chicken_row = 3;
  game.mutable_state().cars[2] = Freeway::Car{/*col=*/3, /*speed=*/2, /*countdown=*/0};
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_EQ(game.state().cars[2].col, 4);
  EXPECT_EQ(game.state().cars[2].countdown, 2);
  EXPECT_EQ(game.state().chicken_row, 9);
}

TEST(FreewayTest, ChickenSteppingIntoACarIsSentBack) {
  Freeway game = ParkedCars();
  game.mutable_state().chicken_row = 6;
  game.mutable_state().cooldown = 0;
  game.mutable_state().cars[4].col = 4;  // row 5
  Rng rng(0);
  game.Act(kUp, rng);
  EXPECT_EQ(game.state().chicken_row, 9);
  EXPECT_EQ(game.state().cooldown, 2);
}

TEST(FreewayTest, CarWithMagnitudeMFirstMovesAtStepMPlus1ThenEveryMPlus1) {
  Freeway game;
  Rng rng(31337);
  game.Reset(rng);
  const Freeway::State start = game.state();
  std::vector<int> moves[Freeway::kNumCars];
  int col[Freeway::kNumCars];
  for (int k = 0; k < Freeway::kNumCars; ++k) col[k] = start.cars[k].col;
  for (int step = 1; step <= 40; ++step) {
    game.Act(kNoop, rng);
    for (int k = 0; k < Freeway::kNumCars; ++k) {
      const int now = game.state().cars[k].col;
      if (now != col[k]) {
        const int dir = start.cars[k].speed > 0 ? 1 : -1;
        EXPECT_EQ(now, (col[k] + dir + 10) % 10) << "car " << k << " step " << step;
        moves[k].push_back(step);
        col[k] = now;
      }
    }
  }
  for (int k = 0; k < Freeway::kNumCars; ++k) {
    const int period = std::abs(start.cars[k].speed) + 1;
    ASSERT_EQ(static_cast<int>(moves[k].size()), 40 / period) << "car " << k;
    for (size_t i = 0; i < moves[k].size(); ++i) {
      EXPECT_EQ(moves[k][i], period * static_cast<int>(i + 1)) << "car " << k;
    }
  }
}

TEST(FreewayTest, CarsWrapAroundTheEdges) {
  Freeway game = ParkedCars();
  game.mutable_state().cars[0] = Freeway::Car{9, 1, 0};
  game.mutable_state().cars[1] = Freeway::Car{0, -3, 0};
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_EQ(game.state().cars[0].col, 0);
  EXPECT_EQ(game.state().cars[1].col, 9);
}

TEST(FreewayTest, TrailWrapsAndUsesChannelOnePlusMagnitude) {
  Freeway game = ParkedCars();
  Freeway::State& s = game.mutable_state();
  s.cars[0] = Freeway::Car{0, 3, 3};   // trail wraps to column 9, channel 4
  s.cars[1] = Freeway::Car{9, -5, 5};  // trail wraps to column 0, channel 6
  s.cars[2] = Freeway::Car{5, -1, 1};  // trail at column 6, channel 2
  s.cars[3] = Freeway::Car{5, 2, 2};   // trail at column 4, channel 3
  s.cars[4] = Freeway::Car{7, -4, 4};  // trail at column 8, channel 5
  const std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 1, 0, Freeway::kCarChannel), 1);
  EXPECT_EQ(At(obs, 1, 9, 4), 1);
  EXPECT_EQ(At(obs, 2, 9, Freeway::kCarChannel), 1);
  EXPECT_EQ(At(obs, 2, 0, 6), 1);
  EXPECT_EQ(At(obs, 3, 6, 2), 1);
  EXPECT_EQ(At(obs, 4, 4, 3), 1);
  EXPECT_EQ(At(obs, 5, 8, 5), 1);
  // Each trail is in its magnitude's channel only.
  for (int ch = 2; ch < C; ++ch) {
    if (ch != 4) {
      EXPECT_EQ(At(obs, 1, 9, ch), 0) << "channel " << ch;
    }
  }
}

TEST(FreewayTest, ActingAfterTerminalReturnsZeroAndChangesNothing) {
  Freeway game;
  Rng rng(6);
  game.Reset(rng);
  int steps = 0;
  while (!game.terminal()) {
    game.Act(steps % 2 == 0 ? kUp : kNoop, rng);
    ++steps;
  }
  EXPECT_EQ(steps, 2501);
  EXPECT_EQ(game.state().time_remaining, -1);
  const Freeway::State before = game.state();
  const std::vector<uint8_t> obs = Observe(game);
  Rng rng_before = rng;
  for (int a = 0; a < kNumActions; ++a) EXPECT_EQ(game.Act(a, rng), 0);
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(game.state().time_remaining, -1);
  EXPECT_EQ(game.state().chicken_row, before.chicken_row);
  EXPECT_EQ(game.state().cooldown, before.cooldown);
  for (int k = 0; k < Freeway::kNumCars; ++k) {
    EXPECT_EQ(game.state().cars[k].col, before.cars[k].col);
    EXPECT_EQ(game.state().cars[k].speed, before.cars[k].speed);
    EXPECT_EQ(game.state().cars[k].countdown, before.cars[k].countdown);
  }
  EXPECT_EQ(Observe(game), obs);
  EXPECT_EQ(rng.Next(), rng_before.Next());
}

}  // namespace
}  // namespace engram::envs::minatar
