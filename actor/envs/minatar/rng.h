#ifndef ENGRAM_ACTOR_ENVS_MINATAR_RNG_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_RNG_H_

#include <cstdint>
#include <random>

namespace engram::envs::minatar {

// The random stream shared by the MinAtar wrapper (sticky draws) and the game.
//
// Bit-compatible with numpy's legacy RandomState as used by the reference MinAtar
// (spec section 8): MT19937 with the standard single-integer seeding, 53-bit doubles
// built from two 32-bit outputs, and bounded integers by masked rejection. For the same
// seed and the same sequence of calls, the values equal the reference's.
//
// Not thread-safe; each environment owns one.
class Rng {
 public:
  explicit Rng(uint32_t seed = 5489u) : gen_(seed) {}

  void Seed(uint32_t seed) { gen_.seed(seed); }

  // A double in [0, 1): ((a >> 5) * 2^26 + (b >> 6)) / 2^53 for outputs a then b.
  double Uniform() {
    const uint32_t a = static_cast<uint32_t>(gen_()) >> 5;
    const uint32_t b = static_cast<uint32_t>(gen_()) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }

  // An integer in [lo, hi], both ends included (lo <= hi). Consumes no output when lo == hi;
  // otherwise draws 32-bit outputs masked to the smallest 2^k - 1 >= hi - lo until one
  // is <= hi - lo.
  int Integer(int lo, int hi) {
    const uint32_t range = static_cast<uint32_t>(hi - lo);
    if (range == 0) return lo;
    uint32_t mask = range;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    uint32_t value;
    do {
      value = static_cast<uint32_t>(gen_()) & mask;
    } while (value > range);
    return lo + static_cast<int>(value);
  }

  // The raw 32-bit output, for tests that compare against std::mt19937.
  uint32_t Next() { return static_cast<uint32_t>(gen_()); }

 private:
  std::mt19937 gen_;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_RNG_H_
