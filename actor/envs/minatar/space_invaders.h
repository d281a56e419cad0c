#ifndef ENGRAM_ACTOR_ENVS_MINATAR_SPACE_INVADERS_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_SPACE_INVADERS_H_

#include <array>
#include <cstdint>

#include "actor/envs/minatar/game.h"
#include "actor/envs/minatar/rng.h"

namespace engram::envs::minatar {

// MinAtar Space Invaders (spec section 6), reference version 1.0.15 including the quirks
// the spec marks: the cyclic row shift on the terminal step, the march countdown reloaded
// from the alien count before that step's hits, and a new wave keeping the direction,
// both alien countdowns and all bullets in flight.
//
// The game itself draws no random numbers; Act() and Reset() never touch the Rng.
// Observation: 10 x 10 x 6 (spec 6.2). Act() performs no heap allocation.
//
// Not thread-safe; owned by one MinAtarEnv.
class SpaceInvaders : public Game {
 public:
  static constexpr int kChannels = 6;
  static constexpr int kShotCooldown = 5;
  static constexpr int kInitAlienMoveInterval = 12;  // A at reset; ramps down to 6
  static constexpr int kMinAlienMoveInterval = 6;
  static constexpr int kAlienShotInterval = 10;

  // Directions of the alien block.
  static constexpr int kLeftward = -1;
  static constexpr int kRightward = 1;

  // Channels (spec 6.2).
  static constexpr int kChCannon = 0;
  static constexpr int kChAlien = 1;
  static constexpr int kChAlienLeft = 2;
  static constexpr int kChAlienRight = 3;
  static constexpr int kChFriendlyBullet = 4;
  static constexpr int kChEnemyBullet = 5;

  // A 10 x 10 binary grid: bit c of rows[r] is cell (r, c). Bits 10..15 are always 0.
  struct Grid {
    std::array<uint16_t, kRows> rows{};

    bool Get(int row, int col) const { return (rows[row] >> col) & 1u; }
    void Set(int row, int col, bool value = true) {
      if (value) {
        rows[row] = static_cast<uint16_t>(rows[row] | (1u << col));
      } else {
        rows[row] = static_cast<uint16_t>(rows[row] & ~(1u << col));
      }
    }
    // Number of set cells.
    int Count() const;
    bool Empty() const;
    bool operator==(const Grid& other) const { return rows == other.rows; }
  };

  // The whole game state (spec 6.4). The default values are the reset state (spec 6.5),
  // except `aliens`, which Reset() fills with the initial block.
  struct State {
    int cannon_col = 5;  // 0..9; the cannon is always in row 9
    Grid friendly_bullets;
    Grid enemy_bullets;
    Grid aliens;
    int direction = kLeftward;  // of the alien block: kLeftward or kRightward
    int alien_move_interval = kInitAlienMoveInterval;   // A
    int alien_move_countdown = kInitAlienMoveInterval;  // the block marches when 0
    int alien_shot_countdown = kAlienShotInterval;      // an alien fires when 0
    int shot_cooldown = 0;                              // cannon fire allowed when 0
    int ramp_level = 0;
    bool terminal = false;
  };

  // The initial alien block: rows 0-3 x columns 2-7 (spec 6.5).
  static Grid InitialAliens();

  // `ramping`: the difficulty-ramping flag (spec 1.3). The game starts in the reset state.
  explicit SpaceInvaders(bool ramping);

  int num_channels() const override { return kChannels; }
  void Reset(Rng& rng) override;
  // One step (spec 6.6).
  int Act(int action, Rng& rng) override;
  bool terminal() const override { return state_.terminal; }
  void WriteObservation(uint8_t* dst) const override;

  bool ramping() const { return ramping_; }
  const State& state() const { return state_; }
  // For tests that inject states; any consistent state is allowed.
  State& mutable_state() { return state_; }

 private:
  void ResetState();

  bool ramping_;
  State state_;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_SPACE_INVADERS_H_
