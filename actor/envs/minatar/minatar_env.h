#ifndef ENGRAM_ACTOR_ENVS_MINATAR_MINATAR_ENV_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_MINATAR_ENV_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "actor/envs/env.h"
#include "actor/envs/minatar/game.h"
#include "actor/envs/minatar/rng.h"

namespace engram::envs::minatar {

struct MinAtarOptions {
  double sticky_action_prob = 0.1;  // spec 1.2; in [0, 1]
  bool difficulty_ramping = true;   // spec 1.3
  bool minimal_action_set = false;  // spec 1.1: the "-v1" action set instead of all six
  int max_episode_steps = 0;        // external time limit (truncation); 0 = none (as MinAtar)
  // Not MinAtar: a fixed permutation of the 100 grid cells applied to every observation (the
  // same for all channels), for continual-learning task pairs whose dynamics are equal and
  // whose inputs differ. 0 = none; any other value seeds the permutation (PermutedCells).
  int cell_permutation_seed = 0;
};

// The cell permutation of `seed` (> 0): perm[i] is where cell i (row-major, row * 10 +
// column) of the game's grid is written. A Fisher-Yates shuffle of 0..99 driven by
// std::mt19937_64(seed), drawing j = rng() % (i + 1) for i = 99 down to 1 (portable: the
// same permutation on every platform).
std::vector<int> PermutedCells(int seed);

// The MinAtar wrapper (spec section 1) around one game: sticky actions, the action set,
// and one MT19937 stream shared by the sticky draw and the game (spec 1.6, section 8).
//
// Observation: uint8 [10, 10, C] channels last, each element 0 or 1, exactly the
// reference's boolean state. Reset(seed) is the reference's seed(seed) + reset(); like the
// reference, neither clears the remembered sticky action (spec 1.2 quirk); a new
// MinAtarEnv starts from no-op. Seeds below 2^32 seed MT19937 exactly as the reference.
//
// Not thread-safe.
class MinAtarEnv : public Env {
 public:
  // `game` is one of "asterix", "breakout", "freeway", "seaquest", "space_invaders".
  // INVALID_ARGUMENT for an unknown game or options out of range.
  static absl::StatusOr<std::unique_ptr<MinAtarEnv>> Create(absl::string_view game,
                                                            const MinAtarOptions& options);

  void WriteObservation(uint8_t* dst) const override;

  // The game itself, for tests that inspect rules.
  const Game& game() const { return *game_; }
  // The action most recently passed to the game (full index), i.e. the sticky memory.
  int last_action() const { return last_action_; }

  static const std::vector<std::string>& GameNames();

 protected:
  void DoSeed(uint64_t seed) override;
  void DoReset() override;
  Outcome DoStep(int action) override;

 private:
  MinAtarEnv(EnvSpec spec, std::unique_ptr<Game> game, const MinAtarOptions& options,
             std::vector<int> action_map);

  std::unique_ptr<Game> game_;
  MinAtarOptions options_;
  std::vector<int> action_map_;   // agent action -> full action index
  std::vector<int> permutation_;  // empty: none (see MinAtarOptions::cell_permutation_seed)
  mutable std::vector<uint8_t> unpermuted_;
  uint64_t sticky_threshold_;  // Rng::Threshold53(sticky_action_prob)
  Rng rng_;
  int last_action_ = kNoop;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_MINATAR_ENV_H_
