#include "actor/envs/minatar/asterix.h"

#include <algorithm>
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

constexpr int C = Asterix::kChannels;

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

// True if the next raw outputs of `a` and `b` agree, i.e. both consumed the same amount.
bool SameStreamPosition(Rng a, Rng b) {
  for (int i = 0; i < 4; ++i) {
    if (a.Next() != b.Next()) return false;
  }
  return true;
}

void ExpectSameState(const Asterix::State& a, const Asterix::State& b) {
  EXPECT_EQ(a.player_row, b.player_row);
  EXPECT_EQ(a.player_col, b.player_col);
  for (int k = 0; k < Asterix::kNumLanes; ++k) {
    EXPECT_EQ(a.lanes[k].occupied, b.lanes[k].occupied) << "lane " << k;
    if (a.lanes[k].occupied && b.lanes[k].occupied) {
      EXPECT_EQ(a.lanes[k].col, b.lanes[k].col) << "lane " << k;
      EXPECT_EQ(a.lanes[k].dir, b.lanes[k].dir) << "lane " << k;
      EXPECT_EQ(a.lanes[k].gold, b.lanes[k].gold) << "lane " << k;
    }
  }
  EXPECT_EQ(a.spawn_interval, b.spawn_interval);
  EXPECT_EQ(a.spawn_countdown, b.spawn_countdown);
  EXPECT_EQ(a.move_interval, b.move_interval);
  EXPECT_EQ(a.move_countdown, b.move_countdown);
  EXPECT_EQ(a.ramp_countdown, b.ramp_countdown);
  EXPECT_EQ(a.ramp_level, b.ramp_level);
  EXPECT_EQ(a.terminal, b.terminal);
}

int OccupiedLanes(const Asterix::State& s) {
  int n = 0;
  for (const Asterix::Lane& lane : s.lanes) n += lane.occupied ? 1 : 0;
  return n;
}

Asterix::Lane MakeLane(int col, int dir, bool gold) {
  Asterix::Lane lane;
  lane.occupied = true;
  lane.col = col;
  lane.dir = dir;
  lane.gold = gold;
  return lane;
}

TEST(AsterixTest, ResetStateAndObservation) {
  Asterix game(/*ramping=*/true);
  Rng rng(3);
  game.mutable_state().terminal = true;
  game.mutable_state().player_row = 1;
  game.Reset(rng);
  const Asterix::State& s = game.state();
  EXPECT_EQ(s.player_row, 5);
  EXPECT_EQ(s.player_col, 5);
  EXPECT_EQ(OccupiedLanes(s), 0);
  EXPECT_EQ(s.spawn_interval, 10);
  EXPECT_EQ(s.spawn_countdown, 10);
  EXPECT_EQ(s.move_interval, 5);
  EXPECT_EQ(s.move_countdown, 5);
  EXPECT_EQ(s.ramp_countdown, 100);
  EXPECT_EQ(s.ramp_level, 0);
  EXPECT_FALSE(game.terminal());
  EXPECT_EQ(game.num_channels(), 4);

  const std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 5, 5, Asterix::kPlayerChannel), 1);
  int ones = 0;
  for (uint8_t v : obs) {
    ASSERT_LE(v, 1);
    ones += v;
  }
  EXPECT_EQ(ones, 1);
}

TEST(AsterixTest, ResetDrawsNothing) {
  Asterix game(true);
  Rng rng(11);
  game.Reset(rng);
  EXPECT_TRUE(SameStreamPosition(rng, Rng(11)));
}

TEST(AsterixTest, FirstSpawnAtStep11ThenEveryTenSteps) {
  Asterix game(true);
  Rng rng(2024);
  game.Reset(rng);
  Rng expected(2024);
  for (int step = 1; step <= 10; ++step) {
    game.Act(kNoop, rng);
    ASSERT_EQ(OccupiedLanes(game.state()), 0) << "step " << step;
  }
  EXPECT_TRUE(SameStreamPosition(rng, expected));

  game.Act(kNoop, rng);  // step 11
  const bool rightward = expected.Uniform() < 0.5;
  const bool gold = expected.Uniform() < 1.0 / 3.0;
  const int lane = expected.Integer(0, 7);
  ASSERT_EQ(OccupiedLanes(game.state()), 1);
  const Asterix::Lane& l = game.state().lanes[lane];
  ASSERT_TRUE(l.occupied);
  // Step 11 is also a move step (6, 11, 16, ...): the new object already took one step.
  EXPECT_EQ(l.col, rightward ? 1 : 8);
  EXPECT_EQ(l.dir, rightward ? 1 : -1);
  EXPECT_EQ(l.gold, gold);
  EXPECT_TRUE(SameStreamPosition(rng, expected));
  EXPECT_EQ(game.state().spawn_countdown, 9);

  // The next spawn is 10 steps later (the spawned object is far from the player by then).
  for (int step = 12; step <= 20; ++step) {
    game.Act(kNoop, rng);
    ASSERT_EQ(OccupiedLanes(game.state()), 1) << "step " << step;
  }
  game.Act(kNoop, rng);  // step 21
  EXPECT_EQ(OccupiedLanes(game.state()), 2);
}

TEST(AsterixTest, ObjectsMoveAtSteps6And11And16) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  game.mutable_state().lanes[0] = MakeLane(/*col=*/3, /*dir=*/1, /*gold=*/false);
  game.mutable_state().lanes[7] = MakeLane(/*col=*/8, /*dir=*/-1, /*gold=*/true);
  const int expected_col0[] = {3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6};
  for (int step = 1; step <= 17; ++step) {
    game.Act(kNoop, rng);
    ASSERT_FALSE(game.terminal());
    EXPECT_EQ(game.state().lanes[0].col, expected_col0[step - 1]) << "step " << step;
    EXPECT_EQ(game.state().lanes[7].col, 8 + 3 - expected_col0[step - 1]) << "step " << step;
  }
}

TEST(AsterixTest, ObjectLeavingTheGridIsRemoved) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  Asterix::State& s = game.mutable_state();
  s.lanes[1] = MakeLane(9, 1, false);
  s.lanes[2] = MakeLane(0, -1, true);
  s.lanes[3] = MakeLane(0, 1, false);
  s.move_countdown = 0;
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_FALSE(game.state().lanes[1].occupied);
  EXPECT_FALSE(game.state().lanes[2].occupied);
  ASSERT_TRUE(game.state().lanes[3].occupied);
  EXPECT_EQ(game.state().lanes[3].col, 1);
  EXPECT_EQ(game.state().move_countdown, 4);  // reloaded with M = 5, then decremented
}

TEST(AsterixTest, GoldReachingThePlayerGivesOneAndIsRemoved) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  game.mutable_state().lanes[4] = MakeLane(6, -1, true);  // row 5, next to the player
  game.mutable_state().move_countdown = 0;
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  EXPECT_FALSE(game.state().lanes[4].occupied);
  EXPECT_FALSE(game.terminal());
  EXPECT_EQ(CountChannel(Observe(game), Asterix::kGoldChannel), 0);
}

TEST(AsterixTest, PlayerStepsOntoGoldBeforeObjectsMove) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  game.mutable_state().lanes[3] = MakeLane(5, 1, true);  // row 4, above the player
  game.mutable_state().move_countdown = 0;               // it would move away this step
  EXPECT_EQ(game.Act(kUp, rng), 1);
  EXPECT_EQ(game.state().player_row, 4);
  EXPECT_FALSE(game.state().lanes[3].occupied);
}

TEST(AsterixTest, EnemyContactIsTerminalAndEnemyStays) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  game.mutable_state().lanes[4] = MakeLane(6, -1, false);
  game.mutable_state().move_countdown = 0;
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_TRUE(game.terminal());
  ASSERT_TRUE(game.state().lanes[4].occupied);
  EXPECT_EQ(game.state().lanes[4].col, 5);
  const std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 5, 5, Asterix::kPlayerChannel), 1);
  EXPECT_EQ(At(obs, 5, 5, Asterix::kEnemyChannel), 1);
  EXPECT_EQ(At(obs, 5, 6, Asterix::kTrailChannel), 1);
}

TEST(AsterixTest, PlayerCannotSwapCellsWithAnEnemy) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  game.mutable_state().lanes[4] = MakeLane(4, 1, false);  // moving right into the player
  game.mutable_state().move_countdown = 0;
  game.Act(kLeft, rng);  // the player steps onto it first
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(game.state().player_col, 4);
  EXPECT_EQ(game.state().lanes[4].col, 5);  // the enemy still moved afterwards
}

TEST(AsterixTest, ActingAfterTerminalReturnsZeroAndChangesNothing) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  game.mutable_state().lanes[4] = MakeLane(5, 1, false);
  game.mutable_state().lanes[0] = MakeLane(2, 1, true);
  game.mutable_state().spawn_countdown = 0;
  game.Act(kNoop, rng);
  ASSERT_TRUE(game.terminal());
  const Asterix::State before = game.state();
  const std::vector<uint8_t> obs_before = Observe(game);
  const Rng rng_before = rng;
  for (int a = 0; a < kNumActions; ++a) {
    EXPECT_EQ(game.Act(a, rng), 0);
    EXPECT_TRUE(game.terminal());
  }
  ExpectSameState(game.state(), before);
  EXPECT_EQ(Observe(game), obs_before);
  EXPECT_TRUE(SameStreamPosition(rng, rng_before));
}

TEST(AsterixTest, PlayerIsLimitedToRows1To8AndColumns0To9) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  game.mutable_state().spawn_countdown = 1000;
  for (int i = 0; i < 6; ++i) game.Act(kUp, rng);
  EXPECT_EQ(game.state().player_row, 1);
  for (int i = 0; i < 10; ++i) game.Act(kDown, rng);
  EXPECT_EQ(game.state().player_row, 8);
  for (int i = 0; i < 7; ++i) game.Act(kLeft, rng);
  EXPECT_EQ(game.state().player_col, 0);
  for (int i = 0; i < 12; ++i) game.Act(kRight, rng);
  EXPECT_EQ(game.state().player_col, 9);
  game.Act(kFire, rng);
  EXPECT_EQ(game.state().player_row, 8);
  EXPECT_EQ(game.state().player_col, 9);
}

TEST(AsterixTest, ObservationChannelsAndTrailWithoutWrap) {
  Asterix game(true);
  Rng rng(5);
  game.Reset(rng);
  Asterix::State& s = game.mutable_state();
  s.player_row = 2;
  s.player_col = 7;
  s.lanes[0] = MakeLane(0, 1, false);   // fresh rightward spawn: no trail
  s.lanes[1] = MakeLane(9, -1, true);   // fresh leftward spawn: no trail
  s.lanes[2] = MakeLane(3, 1, true);    // trail at column 2
  s.lanes[3] = MakeLane(3, -1, false);  // trail at column 4
  s.lanes[4] = MakeLane(0, -1, false);  // trail at column 1
  const std::vector<uint8_t> obs = Observe(game);
  EXPECT_EQ(At(obs, 2, 7, Asterix::kPlayerChannel), 1);
  EXPECT_EQ(At(obs, 1, 0, Asterix::kEnemyChannel), 1);
  EXPECT_EQ(At(obs, 2, 9, Asterix::kGoldChannel), 1);
  EXPECT_EQ(At(obs, 3, 3, Asterix::kGoldChannel), 1);
  EXPECT_EQ(At(obs, 4, 3, Asterix::kEnemyChannel), 1);
  EXPECT_EQ(At(obs, 5, 0, Asterix::kEnemyChannel), 1);
  EXPECT_EQ(At(obs, 3, 2, Asterix::kTrailChannel), 1);
  EXPECT_EQ(At(obs, 4, 4, Asterix::kTrailChannel), 1);
  EXPECT_EQ(At(obs, 5, 1, Asterix::kTrailChannel), 1);
  EXPECT_EQ(CountChannel(obs, Asterix::kPlayerChannel), 1);
  EXPECT_EQ(CountChannel(obs, Asterix::kEnemyChannel), 3);
  EXPECT_EQ(CountChannel(obs, Asterix::kGoldChannel), 2);
  EXPECT_EQ(CountChannel(obs, Asterix::kTrailChannel), 3);
}

// Plays noop steps with the lanes cleared before each step, so nothing ever collides;
// records S and M after every step and the steps on which a spawn happened.
struct RampTrace {
  std::vector<int> s, m, level, spawn_steps;
};

RampTrace TraceRamp(bool ramping, int steps) {
  Asterix game(ramping);
  Rng rng(77);
  game.Reset(rng);
  RampTrace trace;
  trace.s.push_back(game.state().spawn_interval);
  trace.m.push_back(game.state().move_interval);
  trace.level.push_back(game.state().ramp_level);
  for (int step = 1; step <= steps; ++step) {
    game.mutable_state().lanes = {};
    game.Act(kNoop, rng);
    if (OccupiedLanes(game.state()) > 0) trace.spawn_steps.push_back(step);
    trace.s.push_back(game.state().spawn_interval);
    trace.m.push_back(game.state().move_interval);
    trace.level.push_back(game.state().ramp_level);
  }
  return trace;
}

TEST(AsterixTest, RampEventsEvery102StepsFollowTheSpecTable) {
  const RampTrace t = TraceRamp(/*ramping=*/true, 1200);
  const int event_steps[] = {102, 204, 306, 408, 510, 612, 714, 816, 918};
  const int s_after[] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
  const int m_after[] = {5, 4, 4, 3, 3, 2, 2, 1, 1};
  for (int e = 0; e < 9; ++e) {
    const int step = event_steps[e];
    EXPECT_EQ(t.s[step], s_after[e]) << "event " << e + 1;
    EXPECT_EQ(t.m[step], m_after[e]) << "event " << e + 1;
    EXPECT_EQ(t.level[step], e + 1) << "event " << e + 1;
    EXPECT_EQ(t.s[step - 1], e == 0 ? 10 : s_after[e - 1]) << "before event " << e + 1;
    EXPECT_EQ(t.m[step - 1], e == 0 ? 5 : m_after[e - 1]) << "before event " << e + 1;
    EXPECT_EQ(t.level[step - 1], e) << "before event " << e + 1;
  }
  // The ramp stops after event 9.
  EXPECT_EQ(t.s[1200], 1);
  EXPECT_EQ(t.m[1200], 1);
  EXPECT_EQ(t.level[1200], 9);
}

TEST(AsterixTest, SpawnPeriodIsTheIntervalAtThePreviousSpawn) {
  const RampTrace t = TraceRamp(/*ramping=*/true, 1200);
  ASSERT_GE(t.spawn_steps.size(), 13u);
  const int expected[] = {11, 21, 31, 41, 51, 61, 71, 81, 91, 101, 111, 120, 129};
  for (int i = 0; i < 13; ++i) EXPECT_EQ(t.spawn_steps[i], expected[i]) << "spawn " << i;
  // Once S = 1 (from step 918) a spawn happens every step.
  for (int step = 930; step <= 1200; ++step) {
    EXPECT_TRUE(std::find(t.spawn_steps.begin(), t.spawn_steps.end(), step) != t.spawn_steps.end())
        << "step " << step;
  }
}

TEST(AsterixTest, RampingOffKeepsIntervalsFixed) {
  Asterix game(/*ramping=*/false);
  Rng rng(77);
  game.Reset(rng);
  std::vector<int> spawn_steps;
  for (int step = 1; step <= 1500; ++step) {
    game.mutable_state().lanes = {};
    game.Act(kNoop, rng);
    if (OccupiedLanes(game.state()) > 0) spawn_steps.push_back(step);
    ASSERT_EQ(game.state().spawn_interval, 10) << "step " << step;
    ASSERT_EQ(game.state().move_interval, 5) << "step " << step;
    ASSERT_EQ(game.state().ramp_level, 0) << "step " << step;
    ASSERT_EQ(game.state().ramp_countdown, 100) << "step " << step;
  }
  ASSERT_EQ(spawn_steps.size(), 149u);
  for (size_t i = 0; i < spawn_steps.size(); ++i) {
    EXPECT_EQ(spawn_steps[i], 11 + 10 * static_cast<int>(i));
  }
}

TEST(AsterixTest, SpawnWithNoEmptyLaneStillConsumesTwoUniforms) {
  Asterix game(true);
  Rng rng(31);
  game.Reset(rng);
  Asterix::State& s = game.mutable_state();
  for (int k = 0; k < Asterix::kNumLanes; ++k) s.lanes[k] = MakeLane(k == 4 ? 0 : 2, 1, false);
  s.spawn_countdown = 0;
  const Asterix::State before = game.state();
  Rng expected = rng;
  expected.Uniform();
  expected.Uniform();
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_TRUE(SameStreamPosition(rng, expected));
  for (int k = 0; k < Asterix::kNumLanes; ++k) {
    EXPECT_EQ(game.state().lanes[k].col, before.lanes[k].col) << "lane " << k;
    EXPECT_EQ(game.state().lanes[k].dir, 1) << "lane " << k;
  }
  EXPECT_EQ(game.state().spawn_countdown, 9);  // reloaded with S = 10, then decremented
}

TEST(AsterixTest, SpawnWithOneEmptyLaneDrawsNoInteger) {
  Asterix game(true);
  Rng rng(32);
  game.Reset(rng);
  Asterix::State& s = game.mutable_state();
  for (int k = 0; k < Asterix::kNumLanes; ++k) {
    if (k != 6) s.lanes[k] = MakeLane(2, 1, false);
  }
  s.spawn_countdown = 0;
  Rng expected = rng;
  const bool rightward = expected.Uniform() < 0.5;
  const bool gold = expected.Uniform() < 1.0 / 3.0;
  game.Act(kNoop, rng);
  EXPECT_TRUE(SameStreamPosition(rng, expected));
  const Asterix::Lane& lane = game.state().lanes[6];
  ASSERT_TRUE(lane.occupied);
  EXPECT_EQ(lane.col, rightward ? 0 : 9);
  EXPECT_EQ(lane.gold, gold);
}

TEST(AsterixTest, ObjectSpawningOnThePlayerIsCaughtInTheSameStep) {
  for (uint32_t seed = 0; seed < 12; ++seed) {
    Asterix game(true);
    Rng rng(seed);
    game.Reset(rng);
    Rng peek = rng;
    const bool rightward = peek.Uniform() < 0.5;
    const bool gold = peek.Uniform() < 1.0 / 3.0;
    Asterix::State& s = game.mutable_state();
    for (int k = 0; k < Asterix::kNumLanes; ++k) {
      if (k != 2) s.lanes[k] = MakeLane(4, 1, false);
    }
    s.player_row = 3;  // lane 2, the only empty one
    s.player_col = rightward ? 0 : 9;
    s.spawn_countdown = 0;
    const int reward = game.Act(kNoop, rng);
    EXPECT_EQ(reward, gold ? 1 : 0) << "seed " << seed;
    EXPECT_EQ(game.terminal(), !gold) << "seed " << seed;
    EXPECT_EQ(game.state().lanes[2].occupied, !gold) << "seed " << seed;
  }
}

}  // namespace
}  // namespace engram::envs::minatar
