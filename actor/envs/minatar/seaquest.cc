#include "actor/envs/minatar/seaquest.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace engram::envs::minatar {
namespace {

bool OnGrid(int row, int col) { return row >= 0 && row < kRows && col >= 0 && col < kCols; }
bool OffGridColumn(int col) { return col < 0 || col >= kCols; }

template <typename T>
void EraseAt(std::vector<T>& v, int i) {
  v.erase(v.begin() + i);
}

// Floor division for a positive divisor; oxygen can be negative in injected states.
int FloorDiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

Seaquest::Seaquest(bool ramping) : ramping_(ramping) {
  state_.friendly_bullets.reserve(kListCapacity);
  state_.enemy_bullets.reserve(kListCapacity);
  state_.fish.reserve(kListCapacity);
  state_.subs.reserve(kListCapacity);
  state_.divers.reserve(kListCapacity);
}

void Seaquest::Reset(Rng& /*rng*/) {
  // Field by field rather than `state_ = State{}` so that the lists keep their capacity.
  State& s = state_;
  const State fresh;
  s.player_row = fresh.player_row;
  s.player_col = fresh.player_col;
  s.facing = fresh.facing;
  s.oxygen = fresh.oxygen;
  s.divers_carried = fresh.divers_carried;
  s.surfaced = fresh.surfaced;
  s.shot_cooldown = fresh.shot_cooldown;
  s.friendly_bullets.clear();
  s.enemy_bullets.clear();
  s.fish.clear();
  s.subs.clear();
  s.divers.clear();
  s.enemy_spawn_countdown = fresh.enemy_spawn_countdown;
  s.diver_spawn_countdown = fresh.diver_spawn_countdown;
  s.enemy_spawn_interval = fresh.enemy_spawn_interval;
  s.enemy_move_interval = fresh.enemy_move_interval;
  s.ramp_level = fresh.ramp_level;
  s.terminal = fresh.terminal;
}

void Seaquest::SpawnEnemy(Rng& rng) {
  // Spec 5.8: direction, kind, row, in this order; all three are drawn even when the
  // spawn is then cancelled.
  State& s = state_;
  const bool rightward = rng.Uniform() < 0.5;
  const bool is_sub = rng.Uniform() < 1.0 / 3.0;
  const int row = rng.Integer(1, 8);
  const int dir = rightward ? kRightward : kLeftward;
  const int col = rightward ? 0 : kCols - 1;
  for (const Fish& f : s.fish) {
    if (f.row == row && f.dir != dir) return;
  }
  for (const EnemySub& e : s.subs) {
    if (e.row == row && e.dir != dir) return;
  }
  if (is_sub) {
    s.subs.push_back({row, col, dir, s.enemy_move_interval, kEnemyShotInterval});
  } else {
    s.fish.push_back({row, col, dir, s.enemy_move_interval});
  }
}

void Seaquest::SpawnDiver(Rng& rng) {
  const bool rightward = rng.Uniform() < 0.5;
  const int row = rng.Integer(1, 8);
  state_.divers.push_back(
      {row, rightward ? 0 : kCols - 1, rightward ? kRightward : kLeftward, kDiverMoveInterval});
}

int Seaquest::Surface() {
  State& s = state_;
  s.surfaced = true;
  int reward = 0;
  if (s.divers_carried == kMaxDivers) {
    s.divers_carried = 0;
    reward = FloorDiv(s.oxygen * 10, kMaxOxygen);
  }
  s.oxygen = kMaxOxygen;
  // Quirk (spec 5.9 step 4): also after the six-diver case, so d becomes -1.
  --s.divers_carried;
  if (ramping_ && (s.enemy_spawn_interval > 1 || s.enemy_move_interval > 2)) {
    if (s.enemy_move_interval > 2 && s.ramp_level % 2 == 1) --s.enemy_move_interval;
    if (s.enemy_spawn_interval > 1) --s.enemy_spawn_interval;
    ++s.ramp_level;
  }
  return reward;
}

int Seaquest::Act(int action, Rng& rng) {
  State& s = state_;
  if (s.terminal) return 0;
  int reward = 0;

  if (s.enemy_spawn_countdown == 0) {
    SpawnEnemy(rng);
    s.enemy_spawn_countdown = s.enemy_spawn_interval;
  }
  if (s.diver_spawn_countdown == 0) {
    SpawnDiver(rng);
    s.diver_spawn_countdown = kDiverSpawnInterval;
  }

  switch (action) {
    case kFire:
      if (s.shot_cooldown == 0) {
        s.friendly_bullets.push_back({s.player_row, s.player_col, s.facing});
        s.shot_cooldown = kShotCooldown;
      }
      break;
    case kLeft:
      s.player_col = std::max(0, s.player_col - 1);
      s.facing = kLeftward;  // also when blocked by the wall
      break;
    case kRight:
      s.player_col = std::min(kCols - 1, s.player_col + 1);
      s.facing = kRightward;
      break;
    case kUp:
      s.player_row = std::max(0, s.player_row - 1);
      break;
    case kDown:
      s.player_row = std::min(kRows - 2, s.player_row + 1);
      break;
    default:
      break;
  }
  const int pr = s.player_row;
  const int pc = s.player_col;
  auto at_player = [pr, pc](int row, int col) { return row == pr && col == pc; };

  // Friendly bullets, newest first; each kills at most one enemy, fish before subs, oldest
  // first within each list (spec 5.7 phase 5).
  for (int i = static_cast<int>(s.friendly_bullets.size()) - 1; i >= 0; --i) {
    Bullet& b = s.friendly_bullets[i];
    b.col += b.dir;
    if (OffGridColumn(b.col)) {
      EraseAt(s.friendly_bullets, i);
      continue;
    }
    bool hit = false;
    for (int j = 0; j < static_cast<int>(s.fish.size()); ++j) {
      if (s.fish[j].row == b.row && s.fish[j].col == b.col) {
        EraseAt(s.fish, j);
        hit = true;
        break;
      }
    }
    if (!hit) {
      for (int j = 0; j < static_cast<int>(s.subs.size()); ++j) {
        if (s.subs[j].row == b.row && s.subs[j].col == b.col) {
          EraseAt(s.subs, j);
          hit = true;
          break;
        }
      }
    }
    if (hit) {
      EraseAt(s.friendly_bullets, i);
      ++reward;
    }
  }

  // Removes the oldest friendly bullet on (row, col), if any; true when one was there.
  auto shoot_down = [&s](int row, int col) {
    for (int j = 0; j < static_cast<int>(s.friendly_bullets.size()); ++j) {
      if (s.friendly_bullets[j].row == row && s.friendly_bullets[j].col == col) {
        EraseAt(s.friendly_bullets, j);
        return true;
      }
    }
    return false;
  };

  // Divers, newest first (phase 6). With d = 6 a diver on the player's cell is left alone.
  for (int i = static_cast<int>(s.divers.size()) - 1; i >= 0; --i) {
    Diver& d = s.divers[i];
    if (at_player(d.row, d.col) && s.divers_carried < kMaxDivers) {
      EraseAt(s.divers, i);
      ++s.divers_carried;
      continue;
    }
    if (d.move_countdown == 0) {
      d.move_countdown = kDiverMoveInterval;
      d.col += d.dir;
      if (OffGridColumn(d.col)) {
        EraseAt(s.divers, i);
      } else if (at_player(d.row, d.col) && s.divers_carried < kMaxDivers) {
        EraseAt(s.divers, i);
        ++s.divers_carried;
      }
    } else {
      --d.move_countdown;
    }
  }

  // Enemy subs, newest first (phase 7). Works on a copy so that the firing part can run
  // after the sub is removed: quirk, a sub shot down while moving still fires.
  for (int i = static_cast<int>(s.subs.size()) - 1; i >= 0; --i) {
    EnemySub e = s.subs[i];
    bool removed = false;
    if (at_player(e.row, e.col)) s.terminal = true;
    if (e.move_countdown == 0) {
      e.move_countdown = s.enemy_move_interval;
      e.col += e.dir;
      if (OffGridColumn(e.col)) {
        removed = true;
      } else if (at_player(e.row, e.col)) {
        s.terminal = true;
      } else if (shoot_down(e.row, e.col)) {
        removed = true;
        ++reward;
      }
    } else {
      --e.move_countdown;
    }
    if (e.shot_countdown == 0) {
      e.shot_countdown = kEnemyShotInterval;
      // May lie off the grid for a sub that just left it; phase 8 discards such a bullet.
      s.enemy_bullets.push_back({e.row, e.col, e.dir});
    } else {
      --e.shot_countdown;
    }
    if (removed) {
      EraseAt(s.subs, i);
    } else {
      s.subs[i] = e;
    }
  }

  // Enemy bullets, newest first, including those fired above (phase 8).
  for (int i = static_cast<int>(s.enemy_bullets.size()) - 1; i >= 0; --i) {
    Bullet& b = s.enemy_bullets[i];
    if (at_player(b.row, b.col)) s.terminal = true;
    b.col += b.dir;
    if (OffGridColumn(b.col)) {
      EraseAt(s.enemy_bullets, i);
    } else if (at_player(b.row, b.col)) {
      s.terminal = true;
    }
  }

  // Fish, newest first: as subs, without firing (phase 9).
  for (int i = static_cast<int>(s.fish.size()) - 1; i >= 0; --i) {
    Fish& f = s.fish[i];
    if (at_player(f.row, f.col)) s.terminal = true;
    if (f.move_countdown == 0) {
      f.move_countdown = s.enemy_move_interval;
      f.col += f.dir;
      if (OffGridColumn(f.col)) {
        EraseAt(s.fish, i);
      } else if (at_player(f.row, f.col)) {
        s.terminal = true;
      } else if (shoot_down(f.row, f.col)) {
        EraseAt(s.fish, i);
        ++reward;
      }
    } else {
      --f.move_countdown;
    }
  }

  if (s.enemy_spawn_countdown > 0) --s.enemy_spawn_countdown;
  if (s.diver_spawn_countdown > 0) --s.diver_spawn_countdown;
  if (s.shot_cooldown > 0) --s.shot_cooldown;

  // Oxygen (phase 11, v1.0.11 rule): the check precedes this step's use and the surfacing
  // logic, and does not stop them.
  if (s.oxygen <= 0) s.terminal = true;
  if (s.player_row > 0) {
    --s.oxygen;
    s.surfaced = false;
  } else if (!s.surfaced) {
    if (s.divers_carried == 0) {
      s.terminal = true;
    } else {
      reward += Surface();
    }
  }
  return reward;
}

void Seaquest::WriteObservation(uint8_t* dst) const {
  ClearObservation<kChannels>(dst);
  const State& s = state_;
  auto set = [dst](int row, int col, int channel) {
    if (OnGrid(row, col)) dst[ObsIndex(row, col, channel, kChannels)] = 1;
  };
  set(s.player_row, s.player_col, kChPlayerFront);
  set(s.player_row, s.player_col - s.facing, kChPlayerBack);
  for (const Bullet& b : s.friendly_bullets) set(b.row, b.col, kChFriendlyBullet);
  for (const Bullet& b : s.enemy_bullets) set(b.row, b.col, kChEnemyBullet);
  for (const Fish& f : s.fish) {
    set(f.row, f.col, kChFish);
    set(f.row, f.col - f.dir, kChTrail);
  }
  for (const EnemySub& e : s.subs) {
    set(e.row, e.col, kChEnemySub);
    set(e.row, e.col - e.dir, kChTrail);
  }
  for (const Diver& d : s.divers) {
    set(d.row, d.col, kChDiver);
    set(d.row, d.col - d.dir, kChTrail);
  }
  // Gauges in row 9 (spec 5.11): oxygen clamped at zero (v1.0.11), divers end at column 8.
  const int oxygen_cells = std::min(kCols, std::max(s.oxygen, 0) * kCols / kMaxOxygen);
  for (int c = 0; c < oxygen_cells; ++c) set(kRows - 1, c, kChOxygenGauge);
  const int diver_cells = std::min(s.divers_carried, kCols - 1);
  for (int c = kCols - 1 - diver_cells; c < kCols - 1; ++c) set(kRows - 1, c, kChDiverGauge);
}

std::unique_ptr<Game> MakeSeaquest(bool ramping) { return std::make_unique<Seaquest>(ramping); }

}  // namespace engram::envs::minatar
