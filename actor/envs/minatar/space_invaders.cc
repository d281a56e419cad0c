#include "actor/envs/minatar/space_invaders.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace engram::envs::minatar {
namespace {

constexpr uint16_t kRowMask = (1u << kCols) - 1;
constexpr int kLastRow = kRows - 1;

// Union of all rows: bit c is set when column c holds anything.
uint16_t Columns(const SpaceInvaders::Grid& g) {
  uint16_t cols = 0;
  for (uint16_t r : g.rows) cols = static_cast<uint16_t>(cols | r);
  return cols;
}

}  // namespace

int SpaceInvaders::Grid::Count() const {
  int n = 0;
  for (uint16_t r : rows) n += __builtin_popcount(r);
  return n;
}

bool SpaceInvaders::Grid::Empty() const { return Columns(*this) == 0; }

SpaceInvaders::Grid SpaceInvaders::InitialAliens() {
  Grid g;
  for (int r = 0; r < 4; ++r) {
    for (int c = 2; c <= 7; ++c) g.Set(r, c);
  }
  return g;
}

SpaceInvaders::SpaceInvaders(bool ramping) : ramping_(ramping) { ResetState(); }

void SpaceInvaders::ResetState() {
  state_ = State{};
  state_.aliens = InitialAliens();
}

void SpaceInvaders::Reset(Rng& /*rng*/) { ResetState(); }

int SpaceInvaders::Act(int action, Rng& /*rng*/) {
  State& s = state_;
  if (s.terminal) return 0;
  int reward = 0;

  if (action == kFire) {
    if (s.shot_cooldown == 0) {
      s.friendly_bullets.Set(kLastRow, s.cannon_col);
      s.shot_cooldown = kShotCooldown;
    }
  } else if (action == kLeft) {
    s.cannon_col = std::max(0, s.cannon_col - 1);
  } else if (action == kRight) {
    s.cannon_col = std::min(kCols - 1, s.cannon_col + 1);
  }

  // Friendly bullets rise one row (row 0 leaves); enemy bullets fall one row (row 9 leaves).
  for (int r = 0; r < kLastRow; ++r) s.friendly_bullets.rows[r] = s.friendly_bullets.rows[r + 1];
  s.friendly_bullets.rows[kLastRow] = 0;
  for (int r = kLastRow; r > 0; --r) s.enemy_bullets.rows[r] = s.enemy_bullets.rows[r - 1];
  s.enemy_bullets.rows[0] = 0;
  if (s.enemy_bullets.Get(kLastRow, s.cannon_col)) s.terminal = true;
  if (s.aliens.Get(kLastRow, s.cannon_col)) s.terminal = true;

  if (s.alien_move_countdown == 0) {
    // Counted before this step's hits (spec 6.7).
    s.alien_move_countdown = std::min(s.aliens.Count(), s.alien_move_interval);
    const uint16_t cols = Columns(s.aliens);
    const bool at_edge = (s.direction == kLeftward && (cols & 1u)) ||
                         (s.direction == kRightward && (cols & (1u << (kCols - 1))));
    if (at_edge) {
      s.direction = -s.direction;
      if (s.aliens.rows[kLastRow] != 0) s.terminal = true;
      // Quirk: a cyclic shift, so row 9 wraps to row 0 (only on a terminal step).
      std::rotate(s.aliens.rows.begin(), s.aliens.rows.end() - 1, s.aliens.rows.end());
    } else if (s.direction == kLeftward) {
      for (uint16_t& r : s.aliens.rows) r = static_cast<uint16_t>(r >> 1);
    } else {
      for (uint16_t& r : s.aliens.rows) r = static_cast<uint16_t>((r << 1) & kRowMask);
    }
    if (s.aliens.Get(kLastRow, s.cannon_col)) s.terminal = true;
  }

  if (s.alien_shot_countdown == 0) {
    s.alien_shot_countdown = kAlienShotInterval;
    // Columns by increasing distance from the cannon, the smaller column first on a tie;
    // the lowest alien of the first non-empty column fires from its own cell.
    const uint16_t cols = Columns(s.aliens);
    int shooter_col = -1;
    for (int dist = 0; dist < kCols && shooter_col < 0; ++dist) {
      const int left = s.cannon_col - dist;
      const int right = s.cannon_col + dist;
      if (left >= 0 && ((cols >> left) & 1u)) {
        shooter_col = left;
      } else if (right < kCols && ((cols >> right) & 1u)) {
        shooter_col = right;
      }
    }
    // The reference requires aliens here; an empty block (only reachable by injecting a
    // state) fires nothing.
    if (shooter_col >= 0) {
      for (int r = kLastRow; r >= 0; --r) {
        if (s.aliens.Get(r, shooter_col)) {
          s.enemy_bullets.Set(r, shooter_col);
          break;
        }
      }
    }
  }

  for (int r = 0; r < kRows; ++r) {
    const uint16_t hits = s.aliens.rows[r] & s.friendly_bullets.rows[r];
    if (hits == 0) continue;
    reward += __builtin_popcount(hits);
    s.aliens.rows[r] = static_cast<uint16_t>(s.aliens.rows[r] & ~hits);
    s.friendly_bullets.rows[r] = static_cast<uint16_t>(s.friendly_bullets.rows[r] & ~hits);
  }

  if (s.shot_cooldown > 0) --s.shot_cooldown;
  --s.alien_move_countdown;
  --s.alien_shot_countdown;

  if (s.aliens.Empty()) {
    if (ramping_ && s.alien_move_interval > kMinAlienMoveInterval) {
      --s.alien_move_interval;
      ++s.ramp_level;
    }
    s.aliens = InitialAliens();
  }
  return reward;
}

void SpaceInvaders::WriteObservation(uint8_t* dst) const {
  ClearObservation<kChannels>(dst);
  const State& s = state_;
  dst[ObsIndex(kLastRow, s.cannon_col, kChCannon, kChannels)] = 1;
  const int direction_channel = s.direction == kLeftward ? kChAlienLeft : kChAlienRight;
  for (int r = 0; r < kRows; ++r) {
    const uint16_t aliens = s.aliens.rows[r] & kRowMask;
    const uint16_t friendly = s.friendly_bullets.rows[r] & kRowMask;
    const uint16_t enemy = s.enemy_bullets.rows[r] & kRowMask;
    if ((aliens | friendly | enemy) == 0) continue;
    // Visit set bits only: a row holds at most 6 aliens and a few bullets.
    uint8_t* row = dst + ObsIndex(r, 0, 0, kChannels);
    for (uint16_t m = aliens; m != 0; m &= m - 1) {
      uint8_t* cell = row + __builtin_ctz(m) * kChannels;
      cell[kChAlien] = 1;
      cell[direction_channel] = 1;
    }
    for (uint16_t m = friendly; m != 0; m &= m - 1) {
      row[__builtin_ctz(m) * kChannels + kChFriendlyBullet] = 1;
    }
    for (uint16_t m = enemy; m != 0; m &= m - 1) {
      row[__builtin_ctz(m) * kChannels + kChEnemyBullet] = 1;
    }
  }
}

std::unique_ptr<Game> MakeSpaceInvaders(bool ramping) {
  return std::make_unique<SpaceInvaders>(ramping);
}

}  // namespace engram::envs::minatar
