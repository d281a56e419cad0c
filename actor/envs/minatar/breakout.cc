#include "actor/envs/minatar/breakout.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace engram::envs::minatar {
namespace {

bool AnyBrick(const std::array<std::array<bool, kCols>, kRows>& bricks) {
  for (const auto& row : bricks) {
    for (bool b : row) {
      if (b) return true;
    }
  }
  return false;
}

}  // namespace

std::array<std::array<bool, kCols>, kRows> Breakout::FullWall() {
  std::array<std::array<bool, kCols>, kRows> bricks{};
  for (int row = kFirstBrickRow; row <= kLastBrickRow; ++row) bricks[row].fill(true);
  return bricks;
}

void Breakout::Reset(Rng& rng) {
  // Spec 3.5: the only random draw of the game.
  const bool from_right = rng.Integer(0, 1) == 1;
  state_ = State{};
  state_.ball_col = from_right ? kCols - 1 : 0;
  state_.ball_dcol = from_right ? -1 : 1;
  state_.ball_drow = 1;
  state_.prev_row = state_.ball_row;
  state_.prev_col = state_.ball_col;
}

int Breakout::Act(int action, Rng& /*rng*/) {
  State& s = state_;
  if (s.terminal) return 0;
  int reward = 0;

  if (action == kLeft) {
    s.paddle_col = std::max(0, s.paddle_col - 1);
  } else if (action == kRight) {
    s.paddle_col = std::min(kCols - 1, s.paddle_col + 1);
  }

  s.prev_row = s.ball_row;
  s.prev_col = s.ball_col;
  int new_row = s.ball_row + s.ball_drow;
  int new_col = s.ball_col + s.ball_dcol;

  // Spec 3.6 step 4: the clamped column is what the brick and paddle tests below see.
  if (new_col < 0 || new_col >= kCols) {
    new_col = new_col < 0 ? 0 : kCols - 1;
    s.ball_dcol = -s.ball_dcol;
  }

  // Spec 3.6 step 5: at most one of ceiling, brick, bottom.
  bool brick_contact = false;
  if (new_row < 0) {
    new_row = 0;
    s.ball_drow = -s.ball_drow;
  } else if (s.bricks[new_row][new_col]) {
    brick_contact = true;
    // Quirk (spec 3.6 step 5b): while the flag is set the ball enters the brick's cell and
    // neither breaks it nor turns.
    if (!s.just_struck) {
      reward = 1;
      s.just_struck = true;
      s.bricks[new_row][new_col] = false;
      new_row = s.ball_row;
      s.ball_drow = -s.ball_drow;
    }
  } else if (new_row == kPaddleRow) {
    // The wall is refilled only here, so a cleared wall stays empty until the ball comes
    // down to paddle level, a losing step included (spec 3.6 step 5c).
    if (!AnyBrick(s.bricks)) s.bricks = FullWall();
    if (s.paddle_col == s.ball_col) {
      s.ball_drow = -s.ball_drow;
      new_row = s.ball_row;
    } else if (s.paddle_col == new_col) {
      s.ball_dcol = -s.ball_dcol;
      s.ball_drow = -s.ball_drow;
      new_row = s.ball_row;
    } else {
      s.terminal = true;
    }
  }
  if (!brick_contact) s.just_struck = false;

  s.ball_row = new_row;
  s.ball_col = new_col;
  return reward;
}

void Breakout::WriteObservation(uint8_t* dst) const {
  ClearObservation<kChannels>(dst);
  const State& s = state_;
  dst[ObsIndex(kPaddleRow, s.paddle_col, kPaddleChannel, kChannels)] = 1;
  dst[ObsIndex(s.ball_row, s.ball_col, kBallChannel, kChannels)] = 1;
  dst[ObsIndex(s.prev_row, s.prev_col, kTrailChannel, kChannels)] = 1;
  for (int row = kFirstBrickRow; row <= kLastBrickRow; ++row) {
    for (int col = 0; col < kCols; ++col) {
      dst[ObsIndex(row, col, kBrickChannel, kChannels)] = s.bricks[row][col];  // branch-free
    }
  }
}

std::unique_ptr<Game> MakeBreakout(bool /*ramping*/) { return std::make_unique<Breakout>(); }

}  // namespace engram::envs::minatar
