#include "actor/envs/minatar/asterix.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace engram::envs::minatar {
namespace {

// The player is limited to the object rows (spec 2.4).
constexpr int kMinPlayerRow = 1;
constexpr int kMaxPlayerRow = 8;

}  // namespace

Asterix::Asterix(bool ramping) : ramping_(ramping) {}

// Spec 2.5: deterministic, no random draws.
void Asterix::Reset(Rng& /*rng*/) { state_ = State{}; }

int Asterix::Touch(Lane& lane) {
  if (lane.gold) {
    lane.occupied = false;
    return 1;
  }
  // The enemy stays on the player's cell and the step goes on (spec 2.6 step 4).
  state_.terminal = true;
  return 0;
}

void Asterix::Spawn(Rng& rng) {
  // Spec 2.7: both uniforms are drawn even when no lane is free.
  const bool rightward = rng.Uniform() < 0.5;
  const bool gold = rng.Uniform() < 1.0 / 3.0;
  std::array<int, kNumLanes> empty;
  int n = 0;
  for (int k = 0; k < kNumLanes; ++k) {
    if (!state_.lanes[k].occupied) empty[n++] = k;
  }
  if (n == 0) return;
  // Integer(0, 0) consumes nothing, as the reference's generator (spec 8).
  Lane& lane = state_.lanes[empty[rng.Integer(0, n - 1)]];
  lane.occupied = true;
  lane.col = rightward ? 0 : kCols - 1;
  lane.dir = rightward ? 1 : -1;
  lane.gold = gold;
}

int Asterix::Act(int action, Rng& rng) {
  State& s = state_;
  if (s.terminal) return 0;
  int reward = 0;

  if (s.spawn_countdown == 0) {
    Spawn(rng);
    s.spawn_countdown = s.spawn_interval;
  }

  switch (action) {
    case kLeft:
      s.player_col = std::max(0, s.player_col - 1);
      break;
    case kRight:
      s.player_col = std::min(kCols - 1, s.player_col + 1);
      break;
    case kUp:
      s.player_row = std::max(kMinPlayerRow, s.player_row - 1);
      break;
    case kDown:
      s.player_row = std::min(kMaxPlayerRow, s.player_row + 1);
      break;
    default:
      break;  // no-op and fire
  }

  // Spec 2.6 step 4: contact before the objects move, so the player moving onto an object
  // (or an object spawning on the player) is caught even if the object would move away.
  for (int k = 0; k < kNumLanes; ++k) {
    Lane& lane = s.lanes[k];
    if (lane.occupied && k + 1 == s.player_row && lane.col == s.player_col) {
      reward += Touch(lane);
    }
  }

  if (s.move_countdown == 0) {
    s.move_countdown = s.move_interval;
    for (int k = 0; k < kNumLanes; ++k) {
      Lane& lane = s.lanes[k];
      if (!lane.occupied) continue;
      lane.col += lane.dir;
      if (lane.col < 0 || lane.col >= kCols) {
        lane.occupied = false;
      } else if (k + 1 == s.player_row && lane.col == s.player_col) {
        reward += Touch(lane);
      }
    }
  }

  // Spec 2.6 step 6: decremented after the test-and-reload above, so an event with
  // interval N recurs every N steps (pattern (a) of spec section 0).
  --s.spawn_countdown;
  --s.move_countdown;

  // Spec 2.6 step 7: the countdown runs 100 -> -1 before an event, so events come every
  // 102 steps.
  if (ramping_ && (s.spawn_interval > 1 || s.move_interval > 1)) {
    if (s.ramp_countdown >= 0) {
      --s.ramp_countdown;
    } else {
      if (s.move_interval > 1 && s.ramp_level % 2 == 1) --s.move_interval;
      if (s.spawn_interval > 1) --s.spawn_interval;
      ++s.ramp_level;
      s.ramp_countdown = kRampInterval;
    }
  }
  return reward;
}

void Asterix::WriteObservation(uint8_t* dst) const {
  ClearObservation<kChannels>(dst);
  const State& s = state_;
  dst[ObsIndex(s.player_row, s.player_col, kPlayerChannel, kChannels)] = 1;
  for (int k = 0; k < kNumLanes; ++k) {
    const Lane& lane = s.lanes[k];
    if (!lane.occupied) continue;
    const int row = k + 1;
    dst[ObsIndex(row, lane.col, lane.gold ? kGoldChannel : kEnemyChannel, kChannels)] = 1;
    // Spec 2.9: the trail is one column behind, omitted off-grid (no wrap).
    const int trail = lane.col - lane.dir;
    if (trail >= 0 && trail < kCols) dst[ObsIndex(row, trail, kTrailChannel, kChannels)] = 1;
  }
}

std::unique_ptr<Game> MakeAsterix(bool ramping) { return std::make_unique<Asterix>(ramping); }

}  // namespace engram::envs::minatar
