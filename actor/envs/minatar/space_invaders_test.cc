#include "actor/envs/minatar/space_invaders.h"

#include <cstdint>
#include <initializer_list>
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
using Grid = SpaceInvaders::Grid;

constexpr int kL = SpaceInvaders::kLeftward;
constexpr int kR = SpaceInvaders::kRightward;
constexpr int kFar = 1000000;  // a countdown that never fires within a test

Grid MakeGrid(std::initializer_list<Cell> cells) {
  Grid g;
  for (const Cell& c : cells) g.Set(c.first, c.second);
  return g;
}

std::vector<Cell> GridCells(const Grid& g) {
  std::vector<Cell> cells;
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) {
      if (g.Get(r, c)) cells.emplace_back(r, c);
    }
  }
  return cells;
}

// Cells of the block rows [r0, r0 + 3] x columns [c0, c0 + 5].
std::vector<Cell> Block(int r0, int c0) {
  std::vector<Cell> cells;
  for (int r = r0; r < r0 + 4; ++r) {
    for (int c = c0; c < c0 + 6; ++c) cells.emplace_back(r, c);
  }
  return cells;
}

// A game with the given aliens whose countdowns never fire unless a test sets them.
SpaceInvaders Injected(std::initializer_list<Cell> aliens, bool ramping = true) {
  SpaceInvaders game(ramping);
  SpaceInvaders::State& s = game.mutable_state();
  s.aliens = MakeGrid(aliens);
  s.alien_move_countdown = kFar;
  s.alien_shot_countdown = kFar;
  return game;
}

TEST(SpaceInvadersTest, ResetState) {
  SpaceInvaders game(true);
  Rng rng(0);
  game.Act(kFire, rng);
  game.Act(kRight, rng);
  game.Reset(rng);
  const SpaceInvaders::State& s = game.state();
  EXPECT_EQ(s.cannon_col, 5);
  EXPECT_EQ(s.aliens.Count(), 24);
  EXPECT_EQ(GridCells(s.aliens), Block(0, 2));
  EXPECT_TRUE(s.friendly_bullets.Empty());
  EXPECT_TRUE(s.enemy_bullets.Empty());
  EXPECT_EQ(s.direction, kL);
  EXPECT_EQ(s.alien_move_interval, 12);
  EXPECT_EQ(s.alien_move_countdown, 12);
  EXPECT_EQ(s.alien_shot_countdown, 10);
  EXPECT_EQ(s.shot_cooldown, 0);
  EXPECT_EQ(s.ramp_level, 0);
  EXPECT_FALSE(game.terminal());

  EXPECT_EQ(game.num_channels(), 6);
  EXPECT_THAT(Cells(game, SpaceInvaders::kChCannon), ElementsAre(Pair(9, 5)));
  EXPECT_EQ(Cells(game, SpaceInvaders::kChAlien), Block(0, 2));
  EXPECT_EQ(Cells(game, SpaceInvaders::kChAlienLeft), Block(0, 2));
  EXPECT_THAT(Cells(game, SpaceInvaders::kChAlienRight), IsEmpty());
  EXPECT_THAT(Cells(game, SpaceInvaders::kChFriendlyBullet), IsEmpty());
  EXPECT_THAT(Cells(game, SpaceInvaders::kChEnemyBullet), IsEmpty());
}

TEST(SpaceInvadersTest, FirstMarchAtStep13ThenEvery12AndStepDownAtTheEdge) {
  SpaceInvaders game(true);
  game.mutable_state().alien_shot_countdown = kFar;
  Rng rng(0);
  std::vector<int> march_steps;
  for (int step = 1; step <= 49; ++step) {
    const Grid before = game.state().aliens;
    game.Act(kNoop, rng);
    if (!(game.state().aliens == before)) march_steps.push_back(step);
    if (step == 13) {
      EXPECT_EQ(GridCells(game.state().aliens), Block(0, 1));
    }
    if (step == 25) {
      EXPECT_EQ(GridCells(game.state().aliens), Block(0, 0));
    }
    if (step == 37) {
      EXPECT_EQ(GridCells(game.state().aliens), Block(1, 0));  // down, not sideways
      EXPECT_EQ(game.state().direction, kR);
    }
  }
  EXPECT_THAT(march_steps, ElementsAre(13, 25, 37, 49));
  EXPECT_EQ(GridCells(game.state().aliens), Block(1, 1));
  EXPECT_FALSE(game.terminal());
}

TEST(SpaceInvadersTest, AliensFireAtStep11ThenEvery10FromTheNearestColumn) {
  SpaceInvaders game(true);
  Rng rng(0);
  std::vector<int> fire_steps;
  for (int step = 1; step <= 31; ++step) {
    // Dodge to column 0 after the first shot.
    const int action = (step >= 12 && step <= 16) ? kLeft : kNoop;
    game.Act(action, rng);
    ASSERT_FALSE(game.terminal()) << step;
    const Grid& after = game.state().enemy_bullets;
    // A new bullet sits on the shooter's cell (row 3) for the rest of its step.
    if (after.rows[3] != 0) fire_steps.push_back(step);
    if (step == 11) {
      EXPECT_THAT(GridCells(after), ElementsAre(Pair(3, 5)));
    }
    if (step == 12) {
      EXPECT_THAT(GridCells(after), ElementsAre(Pair(4, 5)));
    }
    if (step == 17) {
      EXPECT_THAT(GridCells(after), ElementsAre(Pair(9, 5)));
    }
    if (step == 18) {
      EXPECT_THAT(GridCells(after), IsEmpty());
    }
    // Block at columns 1-6 after step 13: the nearest column to the cannon (0) is 1.
    if (step == 21) {
      EXPECT_THAT(GridCells(after), ElementsAre(Pair(3, 1)));
    }
    // Block at columns 0-5 after step 25.
    if (step == 31) {
      EXPECT_THAT(GridCells(after), ElementsAre(Pair(3, 0)));
    }
  }
  EXPECT_THAT(fire_steps, ElementsAre(11, 21, 31));
}

TEST(SpaceInvadersTest, ShooterTieGoesToTheSmallerColumnAndItsLowestAlien) {
  SpaceInvaders game = Injected({{1, 3}, {4, 3}, {6, 7}, {2, 7}});
  game.mutable_state().alien_shot_countdown = 0;
  Rng rng(0);
  game.Act(kNoop, rng);  // columns 3 and 7 are both 2 away from the cannon (5)
  EXPECT_THAT(GridCells(game.state().enemy_bullets), ElementsAre(Pair(4, 3)));
  EXPECT_EQ(game.state().alien_shot_countdown, 9);

  SpaceInvaders nearer = Injected({{1, 3}, {8, 3}, {6, 7}, {2, 7}});
  nearer.mutable_state().alien_shot_countdown = 0;
  nearer.Act(kRight, rng);  // cannon at 6: column 7 is nearer than column 3
  EXPECT_THAT(GridCells(nearer.state().enemy_bullets), ElementsAre(Pair(6, 7)));

  SpaceInvaders same = Injected({{2, 5}, {0, 4}});
  same.mutable_state().alien_shot_countdown = 0;
  same.Act(kNoop, rng);  // the cannon's own column comes first
  EXPECT_THAT(GridCells(same.state().enemy_bullets), ElementsAre(Pair(2, 5)));
}

TEST(SpaceInvadersTest, FireCooldownAndBulletInRow8AfterTheFiringStep) {
  SpaceInvaders game(true);
  Rng rng(0);
  std::vector<int> rewards;
  std::vector<std::vector<Cell>> bullets;
  std::vector<int> cooldowns;
  for (int step = 1; step <= 6; ++step) {
    rewards.push_back(game.Act(kFire, rng));
    bullets.push_back(GridCells(game.state().friendly_bullets));
    cooldowns.push_back(game.state().shot_cooldown);
  }
  const std::vector<std::vector<Cell>> expected_bullets = {{{8, 5}}, {{7, 5}}, {{6, 5}},
                                                           {{5, 5}}, {{4, 5}}, {{8, 5}}};
  EXPECT_EQ(bullets, expected_bullets);
  EXPECT_EQ(cooldowns, (std::vector<int>{4, 3, 2, 1, 0, 4}));
  // The first bullet moved into the block's bottom row (3) on step 6: one alien, +1.
  EXPECT_EQ(rewards, (std::vector<int>{0, 0, 0, 0, 0, 1}));
  EXPECT_FALSE(game.state().aliens.Get(3, 5));
  EXPECT_EQ(game.state().aliens.Count(), 23);
  EXPECT_THAT(Cells(game, SpaceInvaders::kChFriendlyBullet), ElementsAre(Pair(8, 5)));
}

TEST(SpaceInvadersTest, EveryHitScoresOne) {
  SpaceInvaders game(true);
  game.mutable_state().friendly_bullets = MakeGrid({{4, 2}, {4, 3}, {4, 7}, {5, 4}});
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 3);
  EXPECT_EQ(game.state().aliens.Count(), 21);
  EXPECT_THAT(GridCells(game.state().friendly_bullets), ElementsAre(Pair(4, 4)));
  EXPECT_EQ(game.Act(kNoop, rng), 1);
}

TEST(SpaceInvadersTest, HitsAreCheckedAfterBothMoved) {
  SpaceInvaders meet = Injected({{2, 4}});
  meet.mutable_state().alien_move_countdown = 0;
  meet.mutable_state().friendly_bullets = MakeGrid({{3, 3}});
  Rng rng(0);
  EXPECT_EQ(meet.Act(kNoop, rng), 1);

  SpaceInvaders pass = Injected({{2, 4}});  // the alien steps off the bullet's new cell
  pass.mutable_state().alien_move_countdown = 0;
  pass.mutable_state().friendly_bullets = MakeGrid({{3, 4}});
  EXPECT_EQ(pass.Act(kNoop, rng), 0);
  EXPECT_THAT(GridCells(pass.state().aliens), ElementsAre(Pair(2, 3)));
  EXPECT_THAT(GridCells(pass.state().friendly_bullets), ElementsAre(Pair(2, 4)));
}

TEST(SpaceInvadersTest, BlockReversesAndStepsDownAtEdges) {
  Rng rng(0);
  SpaceInvaders left = Injected({{0, 0}, {2, 3}});
  left.mutable_state().alien_move_countdown = 0;
  left.Act(kNoop, rng);
  EXPECT_EQ(left.state().direction, kR);
  EXPECT_THAT(GridCells(left.state().aliens), ElementsAre(Pair(1, 0), Pair(3, 3)));

  SpaceInvaders right = Injected({{4, 9}, {4, 6}});
  right.mutable_state().direction = kR;
  right.mutable_state().alien_move_countdown = 0;
  right.Act(kNoop, rng);
  EXPECT_EQ(right.state().direction, kL);
  EXPECT_THAT(GridCells(right.state().aliens), ElementsAre(Pair(5, 6), Pair(5, 9)));

  SpaceInvaders sideways = Injected({{2, 4}, {3, 8}});
  sideways.mutable_state().direction = kR;
  sideways.mutable_state().alien_move_countdown = 0;
  sideways.Act(kNoop, rng);
  EXPECT_EQ(sideways.state().direction, kR);
  EXPECT_THAT(GridCells(sideways.state().aliens), ElementsAre(Pair(2, 5), Pair(3, 9)));
}

TEST(SpaceInvadersTest, LoneAlienMarchesEveryStep) {
  SpaceInvaders game = Injected({{1, 3}});
  game.mutable_state().alien_move_countdown = 0;
  Rng rng(0);
  std::vector<Cell> path;
  for (int step = 0; step < 6; ++step) {
    game.Act(kNoop, rng);
    path.push_back(GridCells(game.state().aliens).at(0));
  }
  EXPECT_THAT(path,
              ElementsAre(Pair(1, 2), Pair(1, 1), Pair(1, 0), Pair(2, 0), Pair(2, 1), Pair(2, 2)));
}

TEST(SpaceInvadersTest, MarchCountdownUsesTheCountBeforeHits) {
  SpaceInvaders game = Injected({{2, 4}, {2, 6}, {2, 8}});
  game.mutable_state().alien_move_countdown = 0;
  game.mutable_state().friendly_bullets = MakeGrid({{3, 5}});  // meets the alien from (2, 6)
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  EXPECT_EQ(game.state().aliens.Count(), 2);
  EXPECT_EQ(game.state().alien_move_countdown, 2);  // min(3, 12), then the step's -1
  game.mutable_state().aliens = MakeGrid({{0, 4}, {0, 5}});
  for (int i = 0; i < 3; ++i) game.Act(kNoop, rng);
  EXPECT_EQ(game.state().alien_move_countdown, 1);  // marched, reloaded with min(2, 12)
}

TEST(SpaceInvadersTest, NewWaveKeepsDirectionCountdownsAndBulletsAndRampsA) {
  SpaceInvaders game = Injected({{5, 5}});
  SpaceInvaders::State& s = game.mutable_state();
  s.friendly_bullets = MakeGrid({{6, 5}, {8, 1}});
  s.enemy_bullets = MakeGrid({{2, 2}});
  s.direction = kR;
  s.alien_move_countdown = 7;
  s.alien_shot_countdown = 4;
  s.cannon_col = 8;
  Rng rng(0);
  EXPECT_EQ(game.Act(kNoop, rng), 1);
  EXPECT_EQ(GridCells(game.state().aliens), Block(0, 2));
  EXPECT_EQ(game.state().direction, kR);
  EXPECT_EQ(game.state().alien_move_countdown, 6);
  EXPECT_EQ(game.state().alien_shot_countdown, 3);
  EXPECT_THAT(GridCells(game.state().friendly_bullets), ElementsAre(Pair(7, 1)));
  EXPECT_THAT(GridCells(game.state().enemy_bullets), ElementsAre(Pair(3, 2)));
  EXPECT_EQ(game.state().alien_move_interval, 11);
  EXPECT_EQ(game.state().ramp_level, 1);
}

// Clears `waves` waves by injection and returns A after each.
std::vector<int> ClearWaves(SpaceInvaders& game, int waves) {
  Rng rng(0);
  std::vector<int> intervals;
  for (int i = 0; i < waves; ++i) {
    SpaceInvaders::State& s = game.mutable_state();
    s.aliens = MakeGrid({{5, 5}});
    s.friendly_bullets = MakeGrid({{6, 5}});
    s.alien_move_countdown = kFar;
    s.alien_shot_countdown = kFar;
    EXPECT_EQ(game.Act(kNoop, rng), 1);
    EXPECT_EQ(game.state().aliens.Count(), 24);
    intervals.push_back(game.state().alien_move_interval);
  }
  return intervals;
}

TEST(SpaceInvadersTest, AlienIntervalRampsFrom12To6) {
  SpaceInvaders game(/*ramping=*/true);
  EXPECT_THAT(ClearWaves(game, 8), ElementsAre(11, 10, 9, 8, 7, 6, 6, 6));
  EXPECT_EQ(game.state().ramp_level, 6);
}

TEST(SpaceInvadersTest, AlienIntervalStaysAt12WithRampingOff) {
  SpaceInvaders game(/*ramping=*/false);
  EXPECT_THAT(ClearWaves(game, 3), ElementsAre(12, 12, 12));
  EXPECT_EQ(game.state().ramp_level, 0);
}

TEST(SpaceInvadersTest, RampedIntervalCapsTheMarchGap) {
  SpaceInvaders game(true);
  ClearWaves(game, 2);  // A = 10
  game.mutable_state().alien_move_countdown = 0;
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_EQ(game.state().alien_move_countdown, 9);  // min(24, 10) - 1
}

TEST(SpaceInvadersTest, EnemyBulletReachingTheCannonIsTerminal) {
  Rng rng(0);
  SpaceInvaders falls = Injected({{0, 0}});
  falls.mutable_state().enemy_bullets = MakeGrid({{8, 5}});
  falls.Act(kNoop, rng);
  EXPECT_TRUE(falls.terminal());

  SpaceInvaders steps_under = Injected({{0, 0}});
  steps_under.mutable_state().enemy_bullets = MakeGrid({{8, 4}});
  steps_under.Act(kLeft, rng);
  EXPECT_TRUE(steps_under.terminal());

  // A bullet already in row 9 is gone before the check: stepping into its column is safe.
  SpaceInvaders gone = Injected({{0, 0}});
  gone.mutable_state().enemy_bullets = MakeGrid({{9, 4}});
  gone.Act(kLeft, rng);
  EXPECT_FALSE(gone.terminal());
  EXPECT_TRUE(gone.state().enemy_bullets.Empty());

  SpaceInvaders beside = Injected({{0, 0}});
  beside.mutable_state().enemy_bullets = MakeGrid({{8, 6}});
  beside.Act(kNoop, rng);
  EXPECT_FALSE(beside.terminal());
}

TEST(SpaceInvadersTest, AlienOnTheCannonCellIsTerminal) {
  Rng rng(0);
  SpaceInvaders before_march = Injected({{9, 5}});
  before_march.Act(kNoop, rng);
  EXPECT_TRUE(before_march.terminal());

  SpaceInvaders after_march = Injected({{9, 6}});
  after_march.mutable_state().alien_move_countdown = 0;
  after_march.Act(kNoop, rng);
  EXPECT_TRUE(after_march.terminal());

  SpaceInvaders elsewhere = Injected({{9, 7}});
  elsewhere.mutable_state().alien_move_countdown = 0;
  elsewhere.Act(kNoop, rng);
  EXPECT_FALSE(elsewhere.terminal());
}

TEST(SpaceInvadersTest, StepDownWithAlienInRowNineIsTerminalAndWrapsCyclically) {
  SpaceInvaders game = Injected({{9, 0}, {5, 0}});
  game.mutable_state().alien_move_countdown = 0;
  Rng rng(0);
  game.Act(kNoop, rng);
  EXPECT_TRUE(game.terminal());
  EXPECT_EQ(game.state().direction, kR);
  EXPECT_THAT(GridCells(game.state().aliens), ElementsAre(Pair(0, 0), Pair(6, 0)));
  EXPECT_THAT(Cells(game, SpaceInvaders::kChAlien), ElementsAre(Pair(0, 0), Pair(6, 0)));
}

TEST(SpaceInvadersTest, DirectionChannels) {
  SpaceInvaders game = Injected({{1, 1}, {4, 8}});
  game.mutable_state().friendly_bullets = MakeGrid({{6, 2}});
  game.mutable_state().enemy_bullets = MakeGrid({{7, 3}, {1, 1}});
  game.mutable_state().cannon_col = 0;
  EXPECT_THAT(Cells(game, SpaceInvaders::kChAlienLeft), ElementsAre(Pair(1, 1), Pair(4, 8)));
  EXPECT_THAT(Cells(game, SpaceInvaders::kChAlienRight), IsEmpty());
  game.mutable_state().direction = kR;
  EXPECT_THAT(Cells(game, SpaceInvaders::kChAlienLeft), IsEmpty());
  EXPECT_THAT(Cells(game, SpaceInvaders::kChAlienRight), ElementsAre(Pair(1, 1), Pair(4, 8)));
  EXPECT_THAT(Cells(game, SpaceInvaders::kChAlien), ElementsAre(Pair(1, 1), Pair(4, 8)));
  EXPECT_THAT(Cells(game, SpaceInvaders::kChFriendlyBullet), ElementsAre(Pair(6, 2)));
  EXPECT_THAT(Cells(game, SpaceInvaders::kChEnemyBullet), ElementsAre(Pair(1, 1), Pair(7, 3)));
  EXPECT_THAT(Cells(game, SpaceInvaders::kChCannon), ElementsAre(Pair(9, 0)));
}

TEST(SpaceInvadersTest, NoopPlayerDiesOnStep17) {
  SpaceInvaders game(true);
  Rng rng(0);
  for (int step = 1; step <= 16; ++step) {
    game.Act(kNoop, rng);
    ASSERT_FALSE(game.terminal()) << step;
  }
  game.Act(kNoop, rng);
  EXPECT_TRUE(game.terminal());
}

TEST(SpaceInvadersTest, NoEpisodeEndsBeforeStep17) {
  MinAtarOptions options;
  options.sticky_action_prob = 0.1;
  auto env = MinAtarEnv::Create("space_invaders", options).value();
  env->Reset(1);
  std::mt19937 policy(3);
  int episodes = 0;
  int shortest = 1 << 30;
  int step_in_episode = 0;
  while (episodes < 500) {
    const StepResult r = env->Step(static_cast<int>(policy() % kNumActions));
    ++step_in_episode;
    if (r.terminated) {
      shortest = std::min(shortest, step_in_episode);
      ++episodes;
      step_in_episode = 0;
      env->Reset();
    }
  }
  EXPECT_GE(shortest, 17);
}

TEST(SpaceInvadersTest, ActAfterTerminalReturnsZeroAndChangesNothing) {
  SpaceInvaders game(true);
  Rng rng(0);
  for (int step = 1; step <= 17; ++step) game.Act(kNoop, rng);
  ASSERT_TRUE(game.terminal());
  game.mutable_state().friendly_bullets = MakeGrid({{4, 5}});
  const SpaceInvaders::State before = game.state();
  const std::vector<uint8_t> obs = Observe(game);
  for (int a = 0; a < kNumActions; ++a) {
    EXPECT_EQ(game.Act(a, rng), 0);
    EXPECT_TRUE(game.terminal());
  }
  const SpaceInvaders::State& after = game.state();
  EXPECT_EQ(Observe(game), obs);
  EXPECT_EQ(after.cannon_col, before.cannon_col);
  EXPECT_TRUE(after.friendly_bullets == before.friendly_bullets);
  EXPECT_TRUE(after.enemy_bullets == before.enemy_bullets);
  EXPECT_TRUE(after.aliens == before.aliens);
  EXPECT_EQ(after.alien_move_countdown, before.alien_move_countdown);
  EXPECT_EQ(after.alien_shot_countdown, before.alien_shot_countdown);
  EXPECT_EQ(after.shot_cooldown, before.shot_cooldown);
}

TEST(SpaceInvadersTest, GameDrawsNoRandomNumbers) {
  SpaceInvaders game(true);
  Rng rng(8);
  Rng mirror(8);
  game.Reset(rng);
  std::mt19937 policy(1);
  for (int i = 0; i < 2000 && !game.terminal(); ++i) {
    game.Act(static_cast<int>(policy() % kNumActions), rng);
  }
  EXPECT_EQ(rng.Next(), mirror.Next());
}

TEST(SpaceInvadersTest, WrapperSpecAndMinimalActions) {
  MinAtarOptions options;
  options.sticky_action_prob = 0.0;
  options.minimal_action_set = true;
  auto env = MinAtarEnv::Create("space_invaders", options).value();
  EXPECT_EQ(env->spec().observation_shape, (std::vector<int64_t>{10, 10, 6}));
  EXPECT_EQ(env->spec().num_actions, 4);
  env->Reset(0);
  env->Step(2);  // minimal action 2 = right
  EXPECT_EQ(static_cast<const SpaceInvaders&>(env->game()).state().cannon_col, 6);
}

}  // namespace
}  // namespace engram::envs::minatar
