#include "actor/envs/minatar/minatar_env.h"

#include <cmath>
#include <cstring>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace engram::envs::minatar {
namespace {

struct GameInfo {
  const char* name;
  int channels;
  std::unique_ptr<Game> (*make)(bool ramping);
  std::vector<int> minimal_actions;  // spec 1.1, in index order
};

const std::vector<GameInfo>& Games() {
  static const auto* games = new std::vector<GameInfo>{
      {"asterix", 4, &MakeAsterix, {kNoop, kLeft, kUp, kRight, kDown}},
      {"breakout", 4, &MakeBreakout, {kNoop, kLeft, kRight}},
      {"freeway", 7, &MakeFreeway, {kNoop, kUp, kDown}},
      {"seaquest", 10, &MakeSeaquest, {kNoop, kLeft, kUp, kRight, kDown, kFire}},
      {"space_invaders", 6, &MakeSpaceInvaders, {kNoop, kLeft, kRight, kFire}},
  };
  return *games;
}

const char* const kActionNames[kNumActions] = {"noop", "left", "up", "right", "down", "fire"};

}  // namespace

const std::vector<std::string>& MinAtarEnv::GameNames() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>;
    for (const GameInfo& g : Games()) v->push_back(g.name);
    return v;
  }();
  return *names;
}

absl::StatusOr<std::unique_ptr<MinAtarEnv>> MinAtarEnv::Create(absl::string_view game,
                                                               const MinAtarOptions& options) {
  const GameInfo* info = nullptr;
  for (const GameInfo& g : Games()) {
    if (game == g.name) info = &g;
  }
  if (info == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown MinAtar game \"", game,
                     "\"; expected one of: ", absl::StrJoin(GameNames(), ", ")));
  }
  if (!(options.sticky_action_prob >= 0.0 && options.sticky_action_prob <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sticky_action_prob must be in [0, 1], got ", options.sticky_action_prob));
  }
  if (options.max_episode_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_episode_steps must be >= 0 (0 = no limit), got ", options.max_episode_steps));
  }
  std::vector<int> action_map;
  if (options.minimal_action_set) {
    action_map = info->minimal_actions;
  } else {
    for (int a = 0; a < kNumActions; ++a) action_map.push_back(a);
  }
  EnvSpec spec;
  spec.name = absl::StrCat("minatar/", info->name);
  spec.observation_shape = {kRows, kCols, info->channels};
  spec.observation_dtype = DType::kUint8;
  spec.num_actions = static_cast<int>(action_map.size());
  for (int a : action_map) spec.action_names.push_back(kActionNames[a]);
  spec.max_episode_steps = options.max_episode_steps;
  return std::unique_ptr<MinAtarEnv>(new MinAtarEnv(
      std::move(spec), info->make(options.difficulty_ramping), options, std::move(action_map)));
}

MinAtarEnv::MinAtarEnv(EnvSpec spec, std::unique_ptr<Game> game, const MinAtarOptions& options,
                       std::vector<int> action_map)
    : Env(std::move(spec)),
      game_(std::move(game)),
      options_(options),
      action_map_(std::move(action_map)),
      sticky_threshold_(Rng::Threshold53(options.sticky_action_prob)) {
  if (options.cell_permutation_seed != 0) {
    permutation_ = PermutedCells(options.cell_permutation_seed);
    unpermuted_.resize(this->spec().observation_bytes());
  }
}

std::vector<int> PermutedCells(int seed) {
  std::vector<int> perm(kRows * kCols);
  for (int i = 0; i < kRows * kCols; ++i) perm[i] = i;
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  for (int i = kRows * kCols - 1; i >= 1; --i) {
    std::swap(perm[i], perm[rng() % static_cast<uint64_t>(i + 1)]);
  }
  return perm;
}

void MinAtarEnv::DoSeed(uint64_t seed) {
  // Seeds below 2^32 pass through unchanged (reference parity); larger ones fold.
  rng_.Seed(static_cast<uint32_t>(seed ^ (seed >> 32)));
}

void MinAtarEnv::DoReset() { game_->Reset(rng_); }

Env::Outcome MinAtarEnv::DoStep(int action) {
  int executed = action_map_[action];
  // The sticky draw is taken on every call, first, even when the game is over (spec 1.2).
  if (rng_.Uniform53() < sticky_threshold_) executed = last_action_;  // Uniform() < p
  last_action_ = executed;
  const int reward = game_->Act(executed, rng_);
  return Outcome{static_cast<float>(reward), game_->terminal(), false};
}

void MinAtarEnv::WriteObservation(uint8_t* dst) const {
  if (permutation_.empty()) {
    game_->WriteObservation(dst);
    return;
  }
  game_->WriteObservation(unpermuted_.data());
  const size_t channels = static_cast<size_t>(spec().observation_shape[2]);
  for (size_t cell = 0; cell < permutation_.size(); ++cell) {
    std::memcpy(dst + permutation_[cell] * channels, unpermuted_.data() + cell * channels,
                channels);
  }
}

}  // namespace engram::envs::minatar
