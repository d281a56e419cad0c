#ifndef ENGRAM_ACTOR_ENVS_MINATAR_FREEWAY_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_FREEWAY_H_

#include <array>
#include <cstdint>

#include "actor/envs/minatar/game.h"
#include "actor/envs/minatar/rng.h"

namespace engram::envs::minatar {

// MinAtar Freeway (spec section 4): a chicken in column 4 crosses eight lanes of traffic
// from row 9 to row 0 (+1 per crossing, then back to row 9 with new car speeds). A car hit
// sends it back to row 9. Every episode lasts exactly 2501 steps. No difficulty ramp;
// the ramping flag is ignored.
//
// Bit-exact with the reference for the same random stream: Reset and every crossing draw
// eight Integer(1, 5) (magnitudes of cars 0..7) then eight Uniform() (directions); nothing
// else is random (spec 4.5). Act allocates nothing.
//
// Observation channels: 0 chicken, 1 car, 1 + m the (wrapping) trail of a car with speed
// magnitude m in 1..5.
//
// Not thread-safe; owned by one MinAtarEnv (or a test).
class Freeway : public Game {
 public:
  static constexpr int kChannels = 7;
  static constexpr int kChickenChannel = 0;
  static constexpr int kCarChannel = 1;
  // The trail of a car with magnitude m (1..5) is in channel kCarChannel + m.

  static constexpr int kNumCars = 8;  // car k lives in row k + 1
  static constexpr int kChickenCol = 4;
  static constexpr int kChickenStartRow = 9;
  static constexpr int kMoveCooldown = 3;
  static constexpr int kTimeLimit = 2500;

  // One car (spec 4.4). Its magnitude |speed| is really a delay: the car moves one cell
  // every |speed| + 1 steps.
  struct Car {
    int col = 0;        // 0..9
    int speed = 1;      // signed: +m rightward, -m leftward, m in 1..5
    int countdown = 1;  // moves when it reads 0, then reloads with m
  };

  // The whole game state (spec 4.4). Cars hold placeholders until the first Reset.
  struct State {
    int chicken_row = kChickenStartRow;  // 0..9; row 0 is never observed
    int cooldown = kMoveCooldown;        // the chicken may move when it reads 0
    std::array<Car, kNumCars> cars{};
    int time_remaining = kTimeLimit;  // terminal once it drops below 0
    bool terminal = false;
  };

  Freeway() = default;

  int num_channels() const override { return kChannels; }
  void Reset(Rng& rng) override;
  int Act(int action, Rng& rng) override;
  bool terminal() const override { return state_.terminal; }
  void WriteObservation(uint8_t* dst) const override;

  const State& state() const { return state_; }
  // For tests that inject states; the caller keeps the ranges documented in State.
  State& mutable_state() { return state_; }

 private:
  // Spec 4.5: new magnitudes and directions; columns go to 0 only when `reset_columns`.
  void RandomizeCars(Rng& rng, bool reset_columns);

  State state_;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_FREEWAY_H_
