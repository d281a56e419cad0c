#ifndef ENGRAM_ACTOR_ENVS_MINATAR_TEST_UTIL_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_TEST_UTIL_H_

// Helpers for the MinAtar rule tests: read a game's observation as cells.

#include <cstdint>
#include <utility>
#include <vector>

#include "actor/envs/minatar/game.h"
#include "gtest/gtest.h"

namespace engram::envs::minatar::testing {

// The game's current 10 x 10 x C observation (channels last). The buffer starts filled with
// 7, so a byte the game leaves unwritten shows up as 7 instead of a plausible 0.
inline std::vector<uint8_t> Observe(const Game& game) {
  std::vector<uint8_t> obs(kRows * kCols * game.num_channels(), 7);
  game.WriteObservation(obs.data());
  return obs;
}

using Cell = std::pair<int, int>;  // (row, column)

// The (row, column) cells set in `channel`, in row-major order; every element must be 0/1.
inline std::vector<Cell> Cells(const Game& game, int channel) {
  const std::vector<uint8_t> obs = Observe(game);
  std::vector<Cell> cells;
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) {
      const uint8_t v = obs[ObsIndex(r, c, channel, game.num_channels())];
      EXPECT_LE(v, 1);
      if (v) cells.emplace_back(r, c);
    }
  }
  return cells;
}

}  // namespace engram::envs::minatar::testing

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_TEST_UTIL_H_
