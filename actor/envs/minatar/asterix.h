#ifndef ENGRAM_ACTOR_ENVS_MINATAR_ASTERIX_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_ASTERIX_H_

#include <array>
#include <cstdint>

#include "actor/envs/minatar/game.h"
#include "actor/envs/minatar/rng.h"

namespace engram::envs::minatar {

// MinAtar Asterix (spec section 2): the player moves in rows 1..8; enemies and gold cross
// rows 1..8, at most one object per row. Gold gives +1, an enemy ends the episode. With
// ramping on, the spawn interval S and the shared move interval M fall from (10, 5) to
// (1, 1) over nine ramp events (spec 2.8).
//
// Bit-exact with the reference for the same random stream: Reset draws nothing; a spawn
// draws Uniform (direction), Uniform (gold), then Integer(0, n - 1) over the n empty lanes
// only if n >= 1 (spec 2.7). Act allocates nothing.
//
// Observation channels: 0 player, 1 enemy, 2 trail (no wrap), 3 gold.
//
// Not thread-safe; owned by one MinAtarEnv (or a test).
class Asterix : public Game {
 public:
  static constexpr int kChannels = 4;
  static constexpr int kPlayerChannel = 0;
  static constexpr int kEnemyChannel = 1;
  static constexpr int kTrailChannel = 2;
  static constexpr int kGoldChannel = 3;

  static constexpr int kNumLanes = 8;  // lane k is row k + 1
  static constexpr int kInitialSpawnInterval = 10;
  static constexpr int kInitialMoveInterval = 5;
  static constexpr int kRampInterval = 100;

  // One lane's object (spec 2.4). Meaningful only while `occupied`.
  struct Lane {
    bool occupied = false;
    int col = 0;        // 0..9
    int dir = 1;        // +1 rightward, -1 leftward
    bool gold = false;  // gold (treasure) if true, enemy otherwise
  };

  // The whole game state (spec 2.4). A value-initialised State is the reset state (2.5).
  // The reference's shot cooldown and shot counter are never used and are not kept.
  struct State {
    int player_row = 5;  // 1..8
    int player_col = 5;  // 0..9
    std::array<Lane, kNumLanes> lanes{};
    int spawn_interval = kInitialSpawnInterval;   // S
    int spawn_countdown = kInitialSpawnInterval;  // spawn when it reads 0 at step start
    int move_interval = kInitialMoveInterval;     // M, shared by all objects
    int move_countdown = kInitialMoveInterval;    // objects move when it reads 0
    int ramp_countdown = kRampInterval;           // ramp event when it reads -1
    int ramp_level = 0;                           // number of ramp events so far
    bool terminal = false;
  };

  // `ramping`: the difficulty-ramping flag (spec 1.3). When false, S, M, the ramp
  // countdown and the ramp level never change.
  explicit Asterix(bool ramping);

  int num_channels() const override { return kChannels; }
  void Reset(Rng& rng) override;
  int Act(int action, Rng& rng) override;
  bool terminal() const override { return state_.terminal; }
  void WriteObservation(uint8_t* dst) const override;

  bool ramping() const { return ramping_; }
  const State& state() const { return state_; }
  // For tests that inject states; the caller keeps the ranges documented in State.
  State& mutable_state() { return state_; }

 private:
  void Spawn(Rng& rng);
  // Contact between the player and the object in `lane` (spec 2.6 step 4); returns reward.
  int Touch(Lane& lane);

  bool ramping_;
  State state_;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_ASTERIX_H_
