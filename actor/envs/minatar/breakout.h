#ifndef ENGRAM_ACTOR_ENVS_MINATAR_BREAKOUT_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_BREAKOUT_H_

#include <array>
#include <cstdint>

#include "actor/envs/minatar/game.h"
#include "actor/envs/minatar/rng.h"

namespace engram::envs::minatar {

// MinAtar Breakout (spec section 3): a paddle in row 9 bounces a diagonally moving ball
// into three rows of bricks (+1 each); the wall is refilled when the ball next reaches
// the bottom row after the last brick broke. Missing the ball ends the episode. No
// difficulty ramp; the ramping flag is ignored.
//
// Bit-exact with the reference for the same random stream: Reset draws one Integer(0, 1);
// Act draws nothing. Keeps the "just struck" pass-through quirk (spec 3.6 step 5b). Act
// allocates nothing.
//
// Observation channels: 0 paddle, 1 ball, 2 trail (previous ball position), 3 bricks.
//
// Not thread-safe; owned by one MinAtarEnv (or a test).
class Breakout : public Game {
 public:
  static constexpr int kChannels = 4;
  static constexpr int kPaddleChannel = 0;
  static constexpr int kBallChannel = 1;
  static constexpr int kTrailChannel = 2;
  static constexpr int kBrickChannel = 3;

  static constexpr int kPaddleRow = 9;
  static constexpr int kFirstBrickRow = 1;
  static constexpr int kLastBrickRow = 3;

  // The whole game state (spec 3.4). A value-initialised State is the reset state for
  // the draw 0 (ball at (3, 0) moving down-right); Reset picks the actual start.
  struct State {
    int paddle_col = 4;  // 0..9; the paddle's row is always kPaddleRow
    int ball_row = 3;    // 0..8 while not terminal; 9 only on the terminal frame
    int ball_col = 0;    // 0..9
    int ball_dcol = 1;   // horizontal direction: +1 right, -1 left
    int ball_drow = 1;   // vertical direction: +1 down, -1 up
    int prev_row = 3;    // ball position before the most recent step (the trail)
    int prev_col = 0;
    // bricks[row][col]; only rows kFirstBrickRow..kLastBrickRow are ever set.
    std::array<std::array<bool, kCols>, kRows> bricks = FullWall();
    // Set by a brick break, cleared by the first step without brick contact (spec 3.6).
    bool just_struck = false;
    bool terminal = false;
  };

  Breakout() = default;

  int num_channels() const override { return kChannels; }
  void Reset(Rng& rng) override;
  int Act(int action, Rng& rng) override;
  bool terminal() const override { return state_.terminal; }
  void WriteObservation(uint8_t* dst) const override;

  const State& state() const { return state_; }
  // For tests that inject states; the caller keeps the ranges documented in State.
  State& mutable_state() { return state_; }

  // A brick grid with rows kFirstBrickRow..kLastBrickRow full and the rest empty.
  static std::array<std::array<bool, kCols>, kRows> FullWall();

 private:
  State state_;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_BREAKOUT_H_
