#include "actor/envs/minatar/freeway.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace engram::envs::minatar {
namespace {

int Magnitude(const Freeway::Car& car) { return car.speed < 0 ? -car.speed : car.speed; }
int Direction(const Freeway::Car& car) { return car.speed < 0 ? -1 : 1; }
int Wrap(int col) { return col < 0 ? col + kCols : (col >= kCols ? col - kCols : col); }

}  // namespace

void Freeway::RandomizeCars(Rng& rng, bool reset_columns) {
  // Spec 4.5 and 8: all eight magnitudes first, then all eight directions.
  std::array<int, kNumCars> magnitude;
  for (int k = 0; k < kNumCars; ++k) magnitude[k] = rng.Integer(1, 5);
  for (int k = 0; k < kNumCars; ++k) {
    Car& car = state_.cars[k];
    // A draw of exactly 0.5 (probability 2^-53) would give the reference a zero speed it
    // cannot handle; it counts as rightward here.
    car.speed = rng.Uniform() < 0.5 ? -magnitude[k] : magnitude[k];
    car.countdown = magnitude[k];
    if (reset_columns) car.col = 0;
  }
}

void Freeway::Reset(Rng& rng) {
  state_ = State{};
  RandomizeCars(rng, /*reset_columns=*/true);
}

int Freeway::Act(int action, Rng& rng) {
  State& s = state_;
  if (s.terminal) return 0;
  int reward = 0;

  // Spec 4.7 step 2: a move at row 9 downwards still restarts the cooldown.
  if (s.cooldown == 0) {
    if (action == kUp) {
      s.cooldown = kMoveCooldown;
      s.chicken_row = std::max(0, s.chicken_row - 1);
    } else if (action == kDown) {
      s.cooldown = kMoveCooldown;
      s.chicken_row = std::min(kChickenStartRow, s.chicken_row + 1);
    }
  }

  if (s.chicken_row == 0) {
    reward = 1;
    RandomizeCars(rng, /*reset_columns=*/false);
    s.chicken_row = kChickenStartRow;
  }

  for (int k = 0; k < kNumCars; ++k) {
    Car& car = s.cars[k];
    const int row = k + 1;
    if (car.col == kChickenCol && s.chicken_row == row) s.chicken_row = kChickenStartRow;
    // Pattern (b) of spec section 0: "if zero reload and move, else decrement", so a car
    // moves every m + 1 steps.
    if (car.countdown == 0) {
      car.countdown = Magnitude(car);
      car.col = Wrap(car.col + Direction(car));
      if (car.col == kChickenCol && s.chicken_row == row) s.chicken_row = kChickenStartRow;
    } else {
      --car.countdown;
    }
  }

  if (s.cooldown > 0) --s.cooldown;
  // 2500 -> -1: terminal on step 2501 (spec 4.8).
  if (--s.time_remaining < 0) s.terminal = true;
  return reward;
}

void Freeway::WriteObservation(uint8_t* dst) const {
  ClearObservation<kChannels>(dst);
  const State& s = state_;
  dst[ObsIndex(s.chicken_row, kChickenCol, kChickenChannel, kChannels)] = 1;
  for (int k = 0; k < kNumCars; ++k) {
    const Car& car = s.cars[k];
    const int row = k + 1;
    dst[ObsIndex(row, car.col, kCarChannel, kChannels)] = 1;
    // Spec 4.2: unlike the other games, the trail wraps around.
    const int trail = Wrap(car.col - Direction(car));
    dst[ObsIndex(row, trail, kCarChannel + Magnitude(car), kChannels)] = 1;
  }
}

std::unique_ptr<Game> MakeFreeway(bool /*ramping*/) { return std::make_unique<Freeway>(); }

}  // namespace engram::envs::minatar
