#ifndef ENGRAM_BENCH_EPISODIC_PROJECTED_KEYS_H_
#define ENGRAM_BENCH_EPISODIC_PROJECTED_KEYS_H_

// Keys like the episodic control agent's, for the episodic benchmarks: a fixed Gaussian
// random projection (input x dim, entries N(0, 1/dim)) of observations, either
//   - synthetic: sparse binary 400-cell observations, each cell set with probability 0.05
//     (i.i.d. cells: a high intrinsic dimension, the hard case for approximate search), or
//   - real: distinct observations of a MinAtar game (e.g. "minatar/breakout") met by a
//     uniformly random policy, the distribution an episodic control actor's keys start from.

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "actor/envs/registry.h"

namespace engram::episodic {

inline std::vector<float> RandomProjectionMatrix(int64_t input_size, int dim, absl::BitGen& gen) {
  std::vector<float> projection(input_size * dim);
  for (float& x : projection) x = absl::Gaussian<float>(gen) / std::sqrt(static_cast<float>(dim));
  return projection;
}

// Adds row `j` of `projection` to `key` for every nonzero byte j of the observation.
inline void ProjectBinary(const uint8_t* observation, int64_t input_size, int dim,
                          const std::vector<float>& projection, float* key) {
  for (int64_t j = 0; j < input_size; ++j) {
    if (observation[j] == 0) continue;
    for (int d = 0; d < dim; ++d) key[d] += projection[j * dim + d];
  }
}

// n keys projected from synthetic sparse binary observations.
inline std::vector<float> ProjectedKeys(int64_t n, int dim, absl::BitGen& gen) {
  static constexpr int kCells = 400;
  const std::vector<float> projection = RandomProjectionMatrix(kCells, dim, gen);
  std::vector<float> keys(n * dim, 0);
  std::vector<uint8_t> observation(kCells);
  for (int64_t i = 0; i < n; ++i) {
    for (uint8_t& cell : observation) cell = absl::Bernoulli(gen, 0.05) ? 1 : 0;
    ProjectBinary(observation.data(), kCells, dim, projection, keys.data() + i * dim);
  }
  return keys;
}

// n keys projected from distinct observations of `game` under a uniformly random policy
// (episodes seeded 0, 1, ...). Fails if the game has fewer than n distinct observations
// within 200 * n steps.
inline absl::StatusOr<std::vector<float>> GameKeys(const std::string& game, int64_t n, int dim,
                                                   absl::BitGen& gen) {
  absl::StatusOr<std::unique_ptr<envs::Env>> env = envs::MakeEnv(game);
  if (!env.ok()) return env.status();
  const int64_t input_size = (*env)->spec().observation_elements();
  if ((*env)->spec().observation_dtype != envs::DType::kUint8) {
    return absl::InvalidArgumentError(game + " does not have binary observations");
  }
  const std::vector<float> projection = RandomProjectionMatrix(input_size, dim, gen);
  std::vector<float> keys;
  keys.reserve(n * dim);
  std::unordered_set<std::string> seen;
  uint64_t episode = 0;
  envs::StepResult step = (*env)->Reset(episode);
  for (int64_t steps = 0; static_cast<int64_t>(seen.size()) < n; ++steps) {
    if (steps > 200 * n) {
      return absl::FailedPreconditionError(game + " gave fewer distinct observations than asked");
    }
    std::string observation(step.observation.begin(), step.observation.end());
    if (seen.insert(std::move(observation)).second) {
      keys.resize(keys.size() + dim, 0.0f);
      ProjectBinary(step.observation.data(), input_size, dim, projection,
                    keys.data() + keys.size() - dim);
    }
    if (step.terminated || step.truncated) {
      step = (*env)->Reset(++episode);
    } else {
      step = (*env)->Step(absl::Uniform<int>(gen, 0, (*env)->spec().num_actions));
    }
  }
  return keys;
}

}  // namespace engram::episodic

#endif  // ENGRAM_BENCH_EPISODIC_PROJECTED_KEYS_H_
