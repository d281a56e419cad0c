#ifndef ENGRAM_BENCH_EPISODIC_PROJECTED_KEYS_H_
#define ENGRAM_BENCH_EPISODIC_PROJECTED_KEYS_H_

// Keys like the episodic control agent's, for the episodic benchmarks: a fixed Gaussian
// random projection (400 x dim, entries N(0, 1/dim)) of sparse binary observations
// (MinAtar-like: 400 cells, each set with probability 0.05).

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/random/random.h"

namespace engram::episodic {

inline std::vector<float> RandomProjectionMatrix(int dim, absl::BitGen& gen) {
  std::vector<float> projection(400 * dim);
  for (float& x : projection) x = absl::Gaussian<float>(gen) / std::sqrt(static_cast<float>(dim));
  return projection;
}

inline std::vector<float> ProjectedKeys(int64_t n, int dim, absl::BitGen& gen,
                                        const std::vector<float>& projection) {
  std::vector<float> keys(n * dim, 0);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 400; ++j) {
      if (!absl::Bernoulli(gen, 0.05)) continue;
      for (int d = 0; d < dim; ++d) keys[i * dim + d] += projection[j * dim + d];
    }
  }
  return keys;
}

}  // namespace engram::episodic

#endif  // ENGRAM_BENCH_EPISODIC_PROJECTED_KEYS_H_
