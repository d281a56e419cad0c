#ifndef ENGRAM_ACTOR_ENVS_MINATAR_SEAQUEST_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_SEAQUEST_H_

#include <cstdint>
#include <vector>

#include "actor/envs/minatar/game.h"
#include "actor/envs/minatar/rng.h"

namespace engram::envs::minatar {

// MinAtar Seaquest (spec section 5), reference version 1.0.15 including every quirk the
// spec marks: the diver count going to -1 after a six-diver surfacing, a sub shot down
// while moving still firing, and the v1.0.11 oxygen rule (the oxygen check comes before
// this step's use; the gauge is clamped at zero).
//
// For the same Rng stream and actions, observations, rewards and terminal flags equal the
// reference's: the per-step phase order, list iteration orders and random draws follow
// spec 5.7 and 5.8 exactly.
//
// Observation: 10 x 10 x 10 (spec 5.2). Act() performs no heap allocation as long as each
// object list stays within kListCapacity, which normal play never approaches.
//
// Not thread-safe; owned by one MinAtarEnv.
class Seaquest : public Game {
 public:
  static constexpr int kChannels = 10;
  static constexpr int kMaxOxygen = 200;
  static constexpr int kInitEnemySpawnInterval = 20;  // E at reset; ramps down to 1
  static constexpr int kInitEnemyMoveInterval = 5;    // M at reset; ramps down to 2
  static constexpr int kDiverSpawnInterval = 30;
  static constexpr int kDiverMoveInterval = 5;
  static constexpr int kShotCooldown = 5;
  static constexpr int kEnemyShotInterval = 10;
  static constexpr int kMaxDivers = 6;
  // Capacity reserved for each object list at construction.
  static constexpr int kListCapacity = 64;

  // Horizontal directions of travel / facing.
  static constexpr int kLeftward = -1;
  static constexpr int kRightward = 1;

  // Channels (spec 5.2).
  static constexpr int kChPlayerFront = 0;
  static constexpr int kChPlayerBack = 1;
  static constexpr int kChFriendlyBullet = 2;
  static constexpr int kChTrail = 3;
  static constexpr int kChEnemyBullet = 4;
  static constexpr int kChFish = 5;
  static constexpr int kChEnemySub = 6;
  static constexpr int kChOxygenGauge = 7;
  static constexpr int kChDiverGauge = 8;
  static constexpr int kChDiver = 9;

  // A friendly or enemy bullet.
  struct Bullet {
    int row;
    int col;
    int dir;  // kLeftward or kRightward
  };
  struct Fish {
    int row;
    int col;
    int dir;
    int move_countdown;  // moves when 0 (then reloaded with the current M)
  };
  struct EnemySub {
    int row;
    int col;
    int dir;
    int move_countdown;  // moves when 0 (then reloaded with the current M)
    int shot_countdown;  // fires when 0 (then reloaded with kEnemyShotInterval)
  };
  struct Diver {
    int row;
    int col;
    int dir;
    int move_countdown;  // moves when 0 (then reloaded with kDiverMoveInterval)
  };

  // The whole game state (spec 5.5). The default values are the reset state (spec 5.6).
  // Lists are in creation order, oldest first.
  struct State {
    int player_row = 0;       // 0..8; row 0 is the surface
    int player_col = 5;       // 0..9; the sub's front cell
    int facing = kLeftward;   // kLeftward or kRightward
    int oxygen = kMaxOxygen;  // -1 on an oxygen-death terminal step
    int divers_carried = 0;   // d; may go negative (spec 5.9 quirk)
    bool surfaced = true;     // at the surface after a completed surfacing / at start
    int shot_cooldown = 0;    // player fire allowed when 0
    std::vector<Bullet> friendly_bullets;
    std::vector<Bullet> enemy_bullets;
    std::vector<Fish> fish;
    std::vector<EnemySub> subs;
    std::vector<Diver> divers;
    int enemy_spawn_countdown = kInitEnemySpawnInterval;
    int diver_spawn_countdown = kDiverSpawnInterval;
    int enemy_spawn_interval = kInitEnemySpawnInterval;  // E
    int enemy_move_interval = kInitEnemyMoveInterval;    // M
    int ramp_level = 0;
    bool terminal = false;
  };

  // `ramping`: the difficulty-ramping flag (spec 1.3). The game starts in the reset state.
  explicit Seaquest(bool ramping);

  int num_channels() const override { return kChannels; }
  // No random draws (spec 5.6). Keeps the lists' reserved capacity.
  void Reset(Rng& rng) override;
  // One step (spec 5.7). Draws from `rng` only when a spawn countdown fires (spec 5.8).
  int Act(int action, Rng& rng) override;
  bool terminal() const override { return state_.terminal; }
  void WriteObservation(uint8_t* dst) const override;

  bool ramping() const { return ramping_; }
  const State& state() const { return state_; }
  // For tests that inject states; any consistent state is allowed.
  State& mutable_state() { return state_; }

 private:
  void SpawnEnemy(Rng& rng);
  void SpawnDiver(Rng& rng);
  // Surfacing procedure (spec 5.9); returns its reward.
  int Surface();

  bool ramping_;
  State state_;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_SEAQUEST_H_
