#include "actor/envs/minatar/seaquest.h"

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "actor/envs/minatar/minatar_env.h"
#include "actor/envs/minatar/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::envs::minatar {
namespace {

using ::engram::envs::minatar::testing::Cell;
using ::engram::envs::minatar::testing::Cells;
using ::engram::envs::minatar::testing::Observe;

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr int kL = Seaquest::kLeftward;
constexpr int kR = Seaquest::kRightward;
constexpr int kFar = 1000000;  // a countdown that never fires within a test

std::vector<Cell> Row9Columns(int first, int last) {
  std::vector<Cell> cells;
  for (int c = first; c <= last; ++c) cells.emplace_back(9, c);
  return cells;
}

// True when both generators are at the same point of the stream (checked on copies).
bool SameStreamPosition(Rng a, Rng b) {
  for (int i = 0; i < 4; ++i) {
    if (a.Next() != b.Next()) return false;
  }
  return true;
}

// A reset game whose spawn countdowns never fire, so injected states evolve without draws.
Seaquest QuietGame(bool ramping = true) {
  Seaquest game(ramping);
  game.mutable_state().enemy_spawn_countdown = kFar;
  game.mutable_state().diver_spawn_countdown = kFar;
  return game;
}

// Puts the player under water at (row, col), as after a dive.
void Submerge(Seaquest& game, int row, int col, int facing = kL) {
  Seaquest::State& s = game.mutable_state();
  s.player_row = row;
  s.player_col = col;
  s.facing = facing;
  s.surfaced = false;
}

// The spawn the reference makes from the next draws of `mirror` (spec 5.8).
struct ExpectedEnemy {
  int dir;
  int col;
  bool is_sub;
  int row;
};
ExpectedEnemy DrawEnemy(Rng& mirror) {
  const bool rightward = mirror.Uniform() < 0.5;
  const bool is_sub = mirror.Uniform() < 1.0 / 3.0;
  const int row = mirror.Integer(1, 8);
  return {rightward ? kR : kL, rightward ? 0 : 9, is_sub, row};
}
struct ExpectedDiver {
  int dir;
  int col;
  int row;
};
ExpectedDiver DrawDiver(Rng& mirror) {
  const bool rightward = mirror.Uniform() < 0.5;
  const int row = mirror.Integer(1, 8);
  return {rightward ? kR : kL, rightward ? 0 : 9, row};
}

TEST(SeaquestTest, ResetState) {
  Seaquest game(/*ramping=*/true);
  Rng rng(1);
  game.Act(kDown, rng);
  game.Act(kFire, rng);
  game.Reset(rng);
  const Seaquest::State& s = game.state();
  EXPECT_EQ(s.player_row, 0);
  EXPECT_EQ(s.player_col, 5);
  EXPECT_EQ(s.facing, kL);
  EXPECT_EQ(s.oxygen, 200);
  EXPECT_EQ(s.divers_carried, 0);
  EXPECT_TRUE(s.surfaced);
  EXPECT_EQ(s.shot_cooldown, 0);
  EXPECT_THAT(s.friendly_bullets, IsEmpty());
  EXPECT_THAT(s.enemy_bullets, IsEmpty());
  EXPECT_THAT(s.fish, IsEmpty());
  EXPECT_THAT(s.subs, IsEmpty());
  EXPECT_THAT(s.divers, IsEmpty());
  EXPECT_EQ(s.enemy_spawn_countdown, 20);
  EXPECT_EQ(s.diver_spawn_countdown, 30);
  EXPECT_EQ(s.enemy_spawn_interval, 20);
  EXPECT_EQ(s.enemy_move_interval, 5);
  EXPECT_EQ(s.ramp_level, 0);
  EXPECT_FALSE(game.terminal());

  EXPECT_EQ(game.num_channels(), 10);
  EXPECT_THAT(Cells(game, Seaquest::kChPlayerFront), ElementsAre(Pair(0, 5)));
  EXPECT_THAT(Cells(game, Seaquest::kChPlayerBack), ElementsAre(Pair(0, 6)));
  EXPECT_EQ(Cells(game, Seaquest::kChOxygenGauge), Row9Columns(0, 9));
  for (int ch : {2, 3, 4, 5, 6, 8, 9}) EXPECT_THAT(Cells(game, ch), IsEmpty()) << ch;
}

TEST(SeaquestTest, FirstEnemySpawnAttemptAtStep21) {
  int subs_seen = 0;
  int fish_seen = 0;
  for (uint32_t seed = 0; seed < 20; ++seed) {
    SCOPED_TRACE(seed);
    Seaquest game(true);
    Rng rng(seed);
    Rng mirror(seed);
    game.Reset(rng);
    for (int step = 1; step <= 20; ++step) {
      game.Act(kNoop, rng);
      ASSERT_THAT(game.state().fish, IsEmpty());
      ASSERT_THAT(game.state().subs, IsEmpty());
      ASSERT_EQ(game.state().enemy_spawn_countdown, 20 - step);
      ASSERT_TRUE(SameStreamPosition(rng, mirror)) << "draw before step 21, step " << step;
    }
    game.Act(kNoop, rng);  // step 21
    const ExpectedEnemy e = DrawEnemy(mirror);
    EXPECT_TRUE(SameStreamPosition(rng, mirror));
    EXPECT_EQ(game.state().enemy_spawn_countdown, 19);
    const Seaquest::State& s = game.state();
    if (e.is_sub) {
      ++subs_seen;
      ASSERT_EQ(s.subs.size(), 1u);
      EXPECT_THAT(s.fish, IsEmpty());
      EXPECT_EQ(s.subs[0].row, e.row);
      EXPECT_EQ(s.subs[0].col, e.col);
      EXPECT_EQ(s.subs[0].dir, e.dir);
      EXPECT_EQ(s.subs[0].move_countdown, 4);  // created with M = 5, decremented in step 21
      EXPECT_EQ(s.subs[0].shot_countdown, 9);
      EXPECT_THAT(Cells(game, Seaquest::kChEnemySub), ElementsAre(Pair(e.row, e.col)));
    } else {
      ++fish_seen;
      ASSERT_EQ(s.fish.size(), 1u);
      EXPECT_THAT(s.subs, IsEmpty());
      EXPECT_EQ(s.fish[0].row, e.row);
      EXPECT_EQ(s.fish[0].col, e.col);
      EXPECT_EQ(s.fish[0].dir, e.dir);
      EXPECT_EQ(s.fish[0].move_countdown, 4);
      EXPECT_THAT(Cells(game, Seaquest::kChFish), ElementsAre(Pair(e.row, e.col)));
    }
    // Trail behind it: off the grid for a fresh spawn at either edge.
    EXPECT_THAT(Cells(game, Seaquest::kChTrail), IsEmpty());
  }
  EXPECT_GT(subs_seen, 0);
  EXPECT_GT(fish_seen, 0);
}

TEST(SeaquestTest, FirstDiverAtStep31) {
  for (uint32_t seed = 0; seed < 10; ++seed) {
    SCOPED_TRACE(seed);
    Seaquest game(true);
    Rng rng(seed);
    Rng mirror(seed);
    game.Reset(rng);
    for (int step = 1; step <= 30; ++step) {
      game.Act(kNoop, rng);
      ASSERT_THAT(game.state().divers, IsEmpty()) << step;
    }
    DrawEnemy(mirror);  // step 21
    ASSERT_TRUE(SameStreamPosition(rng, mirror));
    game.Act(kNoop, rng);  // step 31
    const ExpectedDiver d = DrawDiver(mirror);
    EXPECT_TRUE(SameStreamPosition(rng, mirror));
    ASSERT_EQ(game.state().divers.size(), 1u);
    const Seaquest::Diver& diver = game.state().divers[0];
    EXPECT_EQ(diver.row, d.row);
    EXPECT_EQ(diver.col, d.col);
    EXPECT_EQ(diver.dir, d.dir);
    EXPECT_EQ(diver.move_countdown, 4);
    EXPECT_EQ(game.state().diver_spawn_countdown, 29);
    EXPECT_THAT(Cells(game, Seaquest::kChDiver), ElementsAre(Pair(d.row, d.col)));
  }
}

TEST(SeaquestTest, EnemyDrawsComeBeforeDiverDrawsInTheSameStep) {
  // Enemy attempts at 21, 41, 61; divers at 31, 61. Each attempt uses a fixed number of
  // outputs (two doubles and one integer in [1, 8]), cancelled or not.
  bool order_matters_somewhere = false;
  for (uint32_t seed = 0; seed < 10; ++seed) {
    SCOPED_TRACE(seed);
    Seaquest game(true);
    Rng rng(seed);
    game.Reset(rng);
    for (int step = 1; step <= 61; ++step) game.Act(kNoop, rng);
    Rng mirror(seed);
    DrawEnemy(mirror);
    DrawDiver(mirror);
    DrawEnemy(mirror);
    Rng swapped = mirror;
    DrawEnemy(mirror);
    const ExpectedDiver d = DrawDiver(mirror);
    const ExpectedDiver wrong = DrawDiver(swapped);
    EXPECT_TRUE(SameStreamPosition(rng, mirror));
    ASSERT_FALSE(game.state().divers.empty());
    const Seaquest::Diver& newest = game.state().divers.back();
    EXPECT_EQ(newest.row, d.row);
    EXPECT_EQ(newest.col, d.col);
    EXPECT_EQ(newest.dir, d.dir);
    if (wrong.row != d.row || wrong.dir != d.dir) order_matters_somewhere = true;
  }
  EXPECT_TRUE(order_matters_somewhere);
}

// Injects one enemy in the row that the next spawn will draw, then runs the spawn step.
// Returns the number of fish and subs after it.
struct SpawnOutcome {
  size_t fish;
  size_t subs;
  int countdown;
  bool stream_in_step;
};
enum class Blocker { kFish, kSub, kDiver };
SpawnOutcome SpawnNextTo(uint32_t seed, Blocker blocker, bool opposite) {
  Seaquest game = QuietGame();
  Seaquest::State& s = game.mutable_state();
  s.enemy_spawn_countdown = 0;
  Rng rng(seed);
  Rng mirror(seed);
  Rng peek = mirror;
  const ExpectedEnemy e = DrawEnemy(peek);
  const int dir = opposite ? -e.dir : e.dir;
  switch (blocker) {
    case Blocker::kFish:
      s.fish.push_back({e.row, 5, dir, kFar});
      break;
    case Blocker::kSub:
      s.subs.push_back({e.row, 5, dir, kFar, kFar});
      break;
    case Blocker::kDiver:
      s.divers.push_back({e.row, 5, dir, kFar});
      break;
  }
  game.Act(kNoop, rng);
  DrawEnemy(mirror);
  return {game.state().fish.size(), game.state().subs.size(), game.state().enemy_spawn_countdown,
          SameStreamPosition(rng, mirror)};
}

TEST(SeaquestTest, SpawnIsCancelledByAnOppositeEnemyInTheRow) {
  for (uint32_t seed = 0; seed < 8; ++seed) {
    SCOPED_TRACE(seed);
    for (Blocker b : {Blocker::kFish, Blocker::kSub}) {
      const SpawnOutcome out = SpawnNextTo(seed, b, /*opposite=*/true);
      EXPECT_EQ(out.fish + out.subs, 1u);  // only the injected one
      EXPECT_EQ(out.countdown, 19);        // reloaded with E = 20 all the same
      EXPECT_TRUE(out.stream_in_step);     // all three draws were used
    }
  }
}

TEST(SeaquestTest, SpawnProceedsBesideSameDirectionEnemyOrAnyDiver) {
  for (uint32_t seed = 0; seed < 8; ++seed) {
    SCOPED_TRACE(seed);
    for (Blocker b : {Blocker::kFish, Blocker::kSub}) {
      const SpawnOutcome out = SpawnNextTo(seed, b, /*opposite=*/false);
      EXPECT_EQ(out.fish + out.subs, 2u);
      EXPECT_TRUE(out.stream_in_step);
    }
    const SpawnOutcome out = SpawnNextTo(seed, Blocker::kDiver, /*opposite=*/true);
    EXPECT_EQ(out.fish + out.subs, 1u);
    EXPECT_TRUE(out.stream_in_step);
  }
}

TEST(SeaquestTest, DiveOnStepOneAndNeverSurfaceIsTerminalOnStep201) {
  Seaquest game = QuietGame();
  Rng rng(0);
  game.Act(kDown, rng);
  EXPECT_EQ(game.state().player_row, 1);
  for (int step = 1; step <= 201; ++step) {
    if (step > 1) game.Act(kNoop, rng);
    const Seaquest::State& s = game.state();
    if (step <= 200) {
      ASSERT_FALSE(game.terminal()) << step;
      ASSERT_EQ(s.oxygen, 200 - step) << step;
      ASSERT_FALSE(s.surfaced);
    }
    if (step == 1) {
      EXPECT_EQ(Cells(game, Seaquest::kChOxygenGauge), Row9Columns(0, 8));
    }
    if (step == 20) {
      EXPECT_EQ(Cells(game, Seaquest::kChOxygenGauge), Row9Columns(0, 8));
    }
    if (step == 21) {
      EXPECT_EQ(Cells(game, Seaquest::kChOxygenGauge), Row9Columns(0, 7));
    }
    if (step == 180) {
      EXPECT_EQ(Cells(game, Seaquest::kChOxygenGauge), Row9Columns(0, 0));
    }
    if (step == 181) {
      EXPECT_THAT(Cells(game, Seaquest::kChOxygenGauge), IsEmpty());
    }
  }
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(game.state().oxygen, -1);
  // v1.0.11: the gauge is clamped at zero (older versions lit 9 cells here).
  EXPECT_THAT(Cells(game, Seaquest::kChOxygenGauge), IsEmpty());
}

TEST(SeaquestTest, OxygenDeathAlsoWhenReachingTheSurface) {
  // Oxygen 0 at the check is fatal wherever the sub is; the check comes first.
  Seaquest game = QuietGame();
  Submerge(game, 1, 5);
  game.mutable_state().oxygen = 0;
  game.mutable_state().divers_carried = 2;
  Rng rng(0);
  game.Act(kUp, rng);
  EXPECT_TRUE(game.terminal());
}

TEST(SeaquestTest, OxygenGaugeCells) {
  Seaquest game(true);
  const std::pair<int, int> cases[] = {{200, 10}, {199, 9}, {180, 9}, {179, 8}, {100, 5},
                                       {20, 1},   {19, 0},  {1, 0},   {0, 0},   {-1, 0}};
  for (const auto& [oxygen, cells] : cases) {
    game.mutable_state().oxygen = oxygen;
    const std::vector<Cell> got = Cells(game, Seaquest::kChOxygenGauge);
    if (cells == 0) {
      EXPECT_THAT(got, IsEmpty()) << oxygen;
    } else {
      EXPECT_EQ(got, Row9Columns(0, cells - 1)) << oxygen;
    }
  }
}

TEST(SeaquestTest, DiverGaugeCellsEndAtColumnEight) {
  Seaquest game(true);
  for (int d = -2; d <= 6; ++d) {
    game.mutable_state().divers_carried = d;
    const std::vector<Cell> got = Cells(game, Seaquest::kChDiverGauge);
    if (d <= 0) {
      EXPECT_THAT(got, IsEmpty()) << d;
    } else {
      EXPECT_EQ(got, Row9Columns(9 - d, 8)) << d;
    }
  }
  game.mutable_state().divers_carried = 6;
  EXPECT_EQ(Cells(game, Seaquest::kChDiverGauge), Row9Columns(3, 8));
}

TEST(SeaquestTest, PlayerBackCellIsBehindTheFacing) {
  Seaquest game = QuietGame();
  Rng rng(0);
  game.Act(kRight, rng);
  EXPECT_THAT(Cells(game, Seaquest::kChPlayerFront), ElementsAre(Pair(0, 6)));
  EXPECT_THAT(Cells(game, Seaquest::kChPlayerBack), ElementsAre(Pair(0, 5)));
  for (int i = 0; i < 8; ++i) game.Act(kLeft, rng);
  EXPECT_EQ(game.state().player_col, 0);
  EXPECT_EQ(game.state().facing, kL);
  EXPECT_THAT(Cells(game, Seaquest::kChPlayerBack), ElementsAre(Pair(0, 1)));
  // Blocked by a wall, the sub still turns (injected: play never faces away from a wall).
  game.mutable_state().facing = kR;
  game.Act(kLeft, rng);
  EXPECT_EQ(game.state().player_col, 0);
  EXPECT_EQ(game.state().facing, kL);
  game.mutable_state().player_col = 9;
  game.mutable_state().facing = kL;
  game.Act(kRight, rng);
  EXPECT_EQ(game.state().player_col, 9);
  EXPECT_EQ(game.state().facing, kR);
  // Down stops at row 8.
  for (int i = 0; i < 12; ++i) game.Act(kDown, rng);
  EXPECT_EQ(game.state().player_row, 8);
  EXPECT_THAT(Cells(game, Seaquest::kChPlayerBack), ElementsAre(Pair(8, 8)));
}

TEST(SeaquestTest, TrailBehindFishSubsAndDiversButNotBullets) {
  Seaquest game = QuietGame();
  Seaquest::State& s = game.mutable_state();
  s.fish.push_back({3, 4, kR, kFar});
  s.subs.push_back({4, 9, kL, kFar, kFar});  // trail at column 10: omitted
  s.divers.push_back({5, 0, kR, kFar});      // trail at column -1: omitted
  s.divers.push_back({6, 2, kL, kFar});
  s.enemy_bullets.push_back({7, 5, kR});
  s.friendly_bullets.push_back({8, 5, kL});
  EXPECT_THAT(Cells(game, Seaquest::kChTrail), ElementsAre(Pair(3, 3), Pair(6, 3)));
  EXPECT_THAT(Cells(game, Seaquest::kChFish), ElementsAre(Pair(3, 4)));
  EXPECT_THAT(Cells(game, Seaquest::kChEnemySub), ElementsAre(Pair(4, 9)));
  EXPECT_THAT(Cells(game, Seaquest::kChDiver), ElementsAre(Pair(5, 0), Pair(6, 2)));
  EXPECT_THAT(Cells(game, Seaquest::kChEnemyBullet), ElementsAre(Pair(7, 5)));
  EXPECT_THAT(Cells(game, Seaquest::kChFriendlyBullet), ElementsAre(Pair(8, 5)));
}

TEST(SeaquestTest, DiverIsPickedUpWhenItMovesOntoThePlayer) {
  Seaquest game = QuietGame();
  Submerge(game, 3, 5);
  game.mutable_state().divers.push_back({3, 4, kR, 0});
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_THAT(game.state().divers, IsEmpty());
  EXPECT_EQ(game.state().divers_carried, 1);
  EXPECT_EQ(Cells(game, Seaquest::kChDiverGauge), Row9Columns(8, 8));
}

TEST(SeaquestTest, DiverOnThePlayerCellIsPickedUpBeforeMoving) {
  Seaquest game = QuietGame();
  Submerge(game, 2, 2);
  game.mutable_state().divers_carried = 4;
  game.mutable_state().divers.push_back({6, 6, kL, 3});  // elsewhere: counts down
  game.mutable_state().divers.push_back({2, 3, kL, 3});  // the player moves onto it
  Rng rng(0);
  game.Act(kRight, rng);
  ASSERT_EQ(game.state().divers.size(), 1u);
  EXPECT_EQ(game.state().divers[0].col, 6);
  EXPECT_EQ(game.state().divers[0].move_countdown, 2);
  EXPECT_EQ(game.state().divers_carried, 5);
}

TEST(SeaquestTest, DiverPassesThroughWhenSixAreCarried) {
  Seaquest game = QuietGame();
  Submerge(game, 3, 5);
  game.mutable_state().divers_carried = 6;
  game.mutable_state().divers.push_back({3, 4, kR, 0});
  Rng rng(0);
  game.Act(kNoop, rng);  // moves onto the player, not picked up
  ASSERT_EQ(game.state().divers.size(), 1u);
  EXPECT_EQ(game.state().divers[0].col, 5);
  EXPECT_EQ(game.state().divers[0].move_countdown, 5);
  for (int i = 0; i < 5; ++i) game.Act(kNoop, rng);
  EXPECT_EQ(game.state().divers[0].col, 5);
  game.Act(kNoop, rng);  // on the player's cell, still not picked up, moves on
  EXPECT_EQ(game.state().divers[0].col, 6);
  EXPECT_EQ(game.state().divers_carried, 6);
  EXPECT_FALSE(game.terminal());
}

TEST(SeaquestTest, SixDiverSurfacingRewardAndDiverCountQuirk) {
  const std::pair<int, int> cases[] = {{199, 9}, {150, 7}, {120, 6}, {20, 1}, {19, 0}, {1, 0}};
  for (const auto& [oxygen, reward] : cases) {
    SCOPED_TRACE(oxygen);
    Seaquest game = QuietGame();
    Submerge(game, 1, 5);
    game.mutable_state().oxygen = oxygen;
    game.mutable_state().divers_carried = 6;
    Rng rng(0);
    EXPECT_EQ(game.Act(kUp, rng), reward);  // floor(oxygen * 10 / 200); no oxygen used
    const Seaquest::State& s = game.state();
    EXPECT_FALSE(game.terminal());
    EXPECT_EQ(s.divers_carried, -1);
    EXPECT_EQ(s.oxygen, 200);
    EXPECT_TRUE(s.surfaced);
    EXPECT_EQ(s.enemy_spawn_interval, 19);
    EXPECT_EQ(s.ramp_level, 1);
    EXPECT_THAT(Cells(game, Seaquest::kChDiverGauge), IsEmpty());
  }
}

TEST(SeaquestTest, SurfacingWithNegativeDiverCountIsNotFatal) {
  Seaquest game = QuietGame();
  Submerge(game, 1, 5);
  game.mutable_state().divers_carried = 6;
  game.mutable_state().oxygen = 150;
  Rng rng(0);
  EXPECT_EQ(game.Act(kUp, rng), 7);
  EXPECT_EQ(game.state().divers_carried, -1);
  EXPECT_EQ(game.Act(kNoop, rng), 0);  // staying up is not another surfacing
  EXPECT_EQ(game.state().ramp_level, 1);
  game.Act(kDown, rng);
  EXPECT_EQ(game.state().oxygen, 199);
  EXPECT_EQ(game.Act(kUp, rng), 0);
  EXPECT_FALSE(game.terminal());
  EXPECT_EQ(game.state().divers_carried, -2);
  EXPECT_EQ(game.state().oxygen, 200);
  EXPECT_EQ(game.state().enemy_spawn_interval, 18);
  EXPECT_EQ(game.state().enemy_move_interval, 4);
  EXPECT_EQ(game.state().ramp_level, 2);
  // Seven pick-ups from -1 reach the next bonus; one more is refused at six.
  Submerge(game, 3, 5);
  game.mutable_state().divers_carried = -1;
  for (int i = 0; i < 8; ++i) {
    game.mutable_state().divers.push_back({3, 5, kR, kFar});
    game.Act(kNoop, rng);
  }
  EXPECT_EQ(game.state().divers_carried, 6);
  EXPECT_EQ(game.state().divers.size(), 1u);
}

TEST(SeaquestTest, SurfacingWithNoDiversIsTerminal) {
  Seaquest game = QuietGame();
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 0);
  EXPECT_FALSE(game.terminal());  // at the surface from the start: not a surfacing
  game.Act(kDown, rng);
  EXPECT_FALSE(game.terminal());
  EXPECT_EQ(game.Act(kUp, rng), 0);
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(game.state().ramp_level, 0);
}

TEST(SeaquestTest, DifficultyRampsOnEachSurfacing) {
  Seaquest game = QuietGame(/*ramping=*/true);
  Rng rng(0);
  for (int event = 1; event <= 25; ++event) {
    SCOPED_TRACE(event);
    Submerge(game, 1, 5);
    game.mutable_state().divers_carried = 1;
    game.Act(kUp, rng);
    ASSERT_FALSE(game.terminal());
    const int expected_m = 5 - (event >= 2) - (event >= 4) - (event >= 6);
    EXPECT_EQ(game.state().enemy_spawn_interval, std::max(20 - event, 1));
    EXPECT_EQ(game.state().enemy_move_interval, expected_m);
    EXPECT_EQ(game.state().ramp_level, std::min(event, 19));
    EXPECT_EQ(game.state().divers_carried, 0);
  }
}

TEST(SeaquestTest, NoRampWithRampingOff) {
  Seaquest game = QuietGame(/*ramping=*/false);
  Rng rng(0);
  for (int event = 1; event <= 10; ++event) {
    Submerge(game, 1, 5);
    game.mutable_state().divers_carried = 1;
    game.Act(kUp, rng);
    ASSERT_FALSE(game.terminal());
  }
  EXPECT_EQ(game.state().enemy_spawn_interval, 20);
  EXPECT_EQ(game.state().enemy_move_interval, 5);
  EXPECT_EQ(game.state().ramp_level, 0);
}

TEST(SeaquestTest, SpawnCountdownsReloadWithCurrentIntervals) {
  Seaquest game = QuietGame();
  Submerge(game, 1, 5);
  game.mutable_state().divers_carried = 1;
  Rng rng(0);
  game.Act(kUp, rng);  // E = 19
  game.mutable_state().enemy_spawn_countdown = 0;
  game.mutable_state().diver_spawn_countdown = 0;
  game.Act(kNoop, rng);
  EXPECT_EQ(game.state().enemy_spawn_countdown, 18);
  EXPECT_EQ(game.state().diver_spawn_countdown, 29);
  // An enemy move reloads with the M current at the move.
  game.mutable_state().fish.assign({{4, 4, kR, 0}});
  game.mutable_state().subs.clear();
  game.mutable_state().enemy_move_interval = 3;
  game.Act(kNoop, rng);
  ASSERT_FALSE(game.state().fish.empty());
  EXPECT_EQ(game.state().fish[0].col, 5);
  EXPECT_EQ(game.state().fish[0].move_countdown, 3);
}

TEST(SeaquestTest, EnemyMovesAtCreationPlusMThenEveryMPlusOne) {
  Seaquest game = QuietGame();
  // Injected with countdown M = 5 before step 1: as if created during step 1.
  game.mutable_state().fish.push_back({4, 0, kR, 5});
  game.mutable_state().subs.push_back({5, 9, kL, 5, kFar});
  Rng rng(0);
  std::vector<int> fish_moves;
  std::vector<int> sub_moves;
  for (int step = 1; step <= 18; ++step) {
    const int fish_before = game.state().fish[0].col;
    const int sub_before = game.state().subs[0].col;
    game.Act(kNoop, rng);
    if (game.state().fish[0].col != fish_before) fish_moves.push_back(step);
    if (game.state().subs[0].col != sub_before) sub_moves.push_back(step);
  }
  EXPECT_THAT(fish_moves, ElementsAre(6, 12, 18));
  EXPECT_THAT(sub_moves, ElementsAre(6, 12, 18));
  EXPECT_EQ(game.state().fish[0].col, 3);
  EXPECT_EQ(game.state().subs[0].col, 6);
}

TEST(SeaquestTest, EnemySubFiresTenStepsAfterCreationThenEveryEleven) {
  Seaquest game = QuietGame();
  game.mutable_state().subs.push_back({4, 5, kR, kFar, 10});
  Rng rng(0);
  std::vector<int> fire_steps;
  for (int step = 1; step <= 33; ++step) {
    game.Act(kNoop, rng);
    for (const Seaquest::Bullet& b : game.state().enemy_bullets) {
      if (b.col == 6) {
        fire_steps.push_back(step);  // first seen one cell ahead of the sub
        EXPECT_EQ(b.row, 4);
        EXPECT_EQ(b.dir, kR);
      }
    }
  }
  EXPECT_THAT(fire_steps, ElementsAre(11, 22, 33));
}

TEST(SeaquestTest, FriendlyBulletCooldownAndFirstCell) {
  Seaquest game = QuietGame();
  game.mutable_state().facing = kR;
  Rng rng(0);
  std::vector<std::vector<int>> columns;
  std::vector<int> cooldowns;
  for (int step = 1; step <= 11; ++step) {
    game.Act(kFire, rng);
    std::vector<int> cols;
    for (const Seaquest::Bullet& b : game.state().friendly_bullets) cols.push_back(b.col);
    columns.push_back(cols);
    cooldowns.push_back(game.state().shot_cooldown);
    if (step == 1) {
      EXPECT_THAT(Cells(game, Seaquest::kChFriendlyBullet), ElementsAre(Pair(0, 6)));
    }
  }
  const std::vector<std::vector<int>> expected = {{6}, {7}, {8}, {9}, {}, {6},
                                                  {7}, {8}, {9}, {},  {6}};
  EXPECT_EQ(columns, expected);
  EXPECT_EQ(cooldowns, (std::vector<int>{4, 3, 2, 1, 0, 4, 3, 2, 1, 0, 4}));
}

TEST(SeaquestTest, FiringIntoAnAdjacentWallStillUsesTheCooldown) {
  Seaquest game = QuietGame();
  Rng rng(0);
  for (int i = 0; i < 5; ++i) game.Act(kLeft, rng);
  ASSERT_EQ(game.state().player_col, 0);
  game.Act(kFire, rng);
  EXPECT_THAT(game.state().friendly_bullets, IsEmpty());
  EXPECT_EQ(game.state().shot_cooldown, 4);
}

TEST(SeaquestTest, BulletKillsOneEnemyFishBeforeSubsOldestFirst) {
  Seaquest game = QuietGame();
  Submerge(game, 3, 2, kR);
  Seaquest::State& s = game.mutable_state();
  s.subs.push_back({3, 4, kL, kFar, kFar});
  s.fish.push_back({3, 4, kL, kFar});      // oldest fish
  s.fish.push_back({3, 4, kL, kFar - 7});  // newer fish, told apart by its countdown
  Rng rng(0);
  EXPECT_EQ(game.Act(kFire, rng), 0);  // bullet at column 3
  EXPECT_EQ(game.Act(kNoop, rng), 1);  // bullet reaches column 4
  ASSERT_EQ(game.state().fish.size(), 1u);
  EXPECT_EQ(game.state().fish[0].move_countdown, kFar - 7 - 2);
  EXPECT_EQ(game.state().subs.size(), 1u);
  EXPECT_THAT(game.state().friendly_bullets, IsEmpty());
  int total = 0;
  for (int step = 3; step <= 12; ++step) total += game.Act(kFire, rng);
  EXPECT_EQ(total, 2);  // shots from steps 6 and 11 take the fish, then the sub
  EXPECT_THAT(game.state().fish, IsEmpty());
  EXPECT_THAT(game.state().subs, IsEmpty());
}

TEST(SeaquestTest, EnemyMovingOntoABulletIsShotDown) {
  Seaquest game = QuietGame();
  Submerge(game, 8, 0);
  Seaquest::State& s = game.mutable_state();
  s.friendly_bullets.push_back({5, 4, kR});  // moves to column 5 first
  s.friendly_bullets.push_back({6, 4, kR});
  s.fish.push_back({5, 6, kL, 0});  // then moves onto it
  s.subs.push_back({6, 6, kL, 0, 3});
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 2);
  EXPECT_THAT(game.state().fish, IsEmpty());
  EXPECT_THAT(game.state().subs, IsEmpty());
  EXPECT_THAT(game.state().friendly_bullets, IsEmpty());
  EXPECT_THAT(game.state().enemy_bullets, IsEmpty());  // shot countdown was not 0
}

TEST(SeaquestTest, SubShotDownWhileMovingStillFires) {
  Seaquest game = QuietGame();
  Submerge(game, 8, 0);
  Seaquest::State& s = game.mutable_state();
  s.friendly_bullets.push_back({5, 4, kR});
  s.subs.push_back({5, 6, kL, 0, 0});
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  EXPECT_THAT(game.state().subs, IsEmpty());
  EXPECT_THAT(game.state().friendly_bullets, IsEmpty());
  ASSERT_EQ(game.state().enemy_bullets.size(), 1u);
  // Fired from the cell where it died (5, 5), then moved one cell in phase 8.
  EXPECT_EQ(game.state().enemy_bullets[0].row, 5);
  EXPECT_EQ(game.state().enemy_bullets[0].col, 4);
  EXPECT_EQ(game.state().enemy_bullets[0].dir, kL);
}

TEST(SeaquestTest, SubLeavingTheGridFiresABulletThatIsDiscarded) {
  Seaquest game = QuietGame();
  game.mutable_state().subs.push_back({5, 9, kR, 0, 0});
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_THAT(game.state().subs, IsEmpty());
  EXPECT_THAT(game.state().enemy_bullets, IsEmpty());
}

TEST(SeaquestTest, EnemyBulletKillsPlayer) {
  {
    Seaquest game = QuietGame();
    Submerge(game, 2, 4);
    game.mutable_state().enemy_bullets.push_back({2, 3, kR});  // moves onto the player
    Rng rng(0);
    game.Act(kNoop, rng);
    EXPECT_TRUE(game.terminal());
  }
  {
    Seaquest game = QuietGame();
    Submerge(game, 2, 4);
    game.mutable_state().enemy_bullets.push_back({2, 5, kR});  // the player moves onto it
    Rng rng(0);
    game.Act(kRight, rng);
    EXPECT_TRUE(game.terminal());
  }
  {
    Seaquest game = QuietGame();
    Submerge(game, 2, 4);
    game.mutable_state().enemy_bullets.push_back({2, 5, kR});  // moving away
    Rng rng(0);
    game.Act(kNoop, rng);
    EXPECT_FALSE(game.terminal());
  }
}

TEST(SeaquestTest, PlayerMovingOntoAStillEnemyDies) {
  for (bool sub : {false, true}) {
    SCOPED_TRACE(sub);
    Seaquest game = QuietGame();
    Submerge(game, 3, 4);
    if (sub) {
      game.mutable_state().subs.push_back({3, 5, kL, 3, kFar});
    } else {
      game.mutable_state().fish.push_back({3, 5, kL, 3});
    }
    Rng rng(0);
    game.Act(kRight, rng);
    EXPECT_TRUE(game.terminal());
  }
  // A sub that moves onto the player kills it too.
  Seaquest game = QuietGame();
  Submerge(game, 3, 4);
  game.mutable_state().subs.push_back({3, 5, kL, 0, kFar});
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_TRUE(game.terminal());
}

TEST(SeaquestTest, EnemyContactKillsPlayerButTheStepFinishes) {
  Seaquest game = QuietGame();
  Submerge(game, 3, 5);
  Seaquest::State& s = game.mutable_state();
  s.fish.push_back({3, 6, kL, 0});           // swims into the player
  s.friendly_bullets.push_back({7, 1, kR});  // hits a fish later in the same step
  s.fish.push_back({7, 2, kR, kFar});
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(game.state().oxygen, 199);  // phase 11 still ran
}

TEST(SeaquestTest, ActAfterTerminalReturnsZeroAndChangesNothing) {
  Seaquest game = QuietGame();
  Rng rng(3);
  game.Act(kDown, rng);
  game.Act(kUp, rng);
  ASSERT_TRUE(game.terminal());
  game.mutable_state().enemy_spawn_countdown = 0;  // would draw if the step ran
  game.mutable_state().fish.push_back({4, 4, kR, 0});
  const Seaquest::State before = game.state();
  const std::vector<uint8_t> obs = Observe(game);
  const Rng mirror = rng;
  for (int a = 0; a < kNumActions; ++a) {
    EXPECT_EQ(game.Act(a, rng), 0);
    EXPECT_TRUE(game.terminal());
  }
  EXPECT_EQ(Observe(game), obs);
  EXPECT_TRUE(SameStreamPosition(rng, mirror));
  EXPECT_EQ(game.state().enemy_spawn_countdown, 0);
  EXPECT_EQ(game.state().fish[0].move_countdown, 0);
  EXPECT_EQ(game.state().oxygen, before.oxygen);
  EXPECT_EQ(game.state().player_row, before.player_row);
}

std::unique_ptr<MinAtarEnv> MakeEnv(bool ramping = true) {
  MinAtarOptions options;
  options.sticky_action_prob = 0.0;
  options.difficulty_ramping = ramping;
  return MinAtarEnv::Create("seaquest", options).value();
}

TEST(SeaquestTest, WrapperSpec) {
  auto env = MakeEnv();
  EXPECT_EQ(env->spec().observation_shape, (std::vector<int64_t>{10, 10, 10}));
  EXPECT_EQ(env->spec().num_actions, 6);
}

TEST(SeaquestTest, NeverDivingPlayerNeverTerminates) {
  auto env = MakeEnv();
  env->Reset(11);
  std::mt19937 policy(5);
  const int actions[] = {kNoop, kLeft, kUp, kRight, kFire};
  float total = 0;
  for (int step = 0; step < 20000; ++step) {
    const StepResult r = env->Step(actions[policy() % 5]);
    ASSERT_FALSE(r.terminated) << step;
    total += r.reward;
  }
  EXPECT_EQ(total, 0.0f);
  const auto& s = static_cast<const Seaquest&>(env->game()).state();
  EXPECT_EQ(s.oxygen, 200);
  EXPECT_FALSE(s.fish.empty() && s.subs.empty() && s.divers.empty());
}

}  // namespace
}  // namespace engram::envs::minatar
