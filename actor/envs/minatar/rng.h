#ifndef ENGRAM_ACTOR_ENVS_MINATAR_RNG_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_RNG_H_

#include <cmath>
#include <cstdint>

namespace engram::envs::minatar {

// The random stream shared by the MinAtar wrapper (sticky draws) and the game.
//
// Bit-compatible with numpy's legacy RandomState as used by the reference MinAtar
// (spec section 8): MT19937 with the standard single-integer seeding, 53-bit doubles
// built from two 32-bit outputs, and bounded integers by masked rejection. For the same
// seed and the same sequence of calls, the values equal the reference's.
//
// MT19937 (Matsumoto & Nishimura 1998): the same 32-bit output stream as std::mt19937.
// Kept here rather than using std::mt19937 because libstdc++ stores the state in 64-bit
// words and regenerates it with a loop the compiler cannot vectorize; this version's
// regeneration is three modulo-free loops over 32-bit words, which made the sticky draw
// plus game draws of a MinAtar step measurably cheaper.
class Mt19937 {
 public:
  explicit Mt19937(uint32_t seed = 5489u) { Seed(seed); }

  void Seed(uint32_t seed) {
    state_[0] = seed;
    for (uint32_t i = 1; i < kN; ++i) {
      state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + i;
    }
    index_ = kN;
  }

  uint32_t operator()() {
    if (index_ >= kN) Regenerate();
    uint32_t y = state_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

 private:
  static constexpr uint32_t kN = 624;
  static constexpr uint32_t kM = 397;

  static uint32_t Twist(uint32_t upper, uint32_t lower, uint32_t far) {
    const uint32_t y = (upper & 0x80000000u) | (lower & 0x7fffffffu);
    return far ^ (y >> 1) ^ ((0u - (y & 1u)) & 0x9908b0dfu);
  }

  void Regenerate() {
    uint32_t i = 0;
    for (; i < kN - kM; ++i) state_[i] = Twist(state_[i], state_[i + 1], state_[i + kM]);
    for (; i < kN - 1; ++i) state_[i] = Twist(state_[i], state_[i + 1], state_[i + kM - kN]);
    state_[kN - 1] = Twist(state_[kN - 1], state_[0], state_[kM - 1]);
    index_ = 0;
  }

  uint32_t state_[kN];
  uint32_t index_;
};

// Not thread-safe; each environment owns one.
class Rng {
 public:
  explicit Rng(uint32_t seed = 5489u) : gen_(seed) {}

  void Seed(uint32_t seed) { gen_.Seed(seed); }

  // A double in [0, 1): ((a >> 5) * 2^26 + (b >> 6)) / 2^53 for outputs a then b.
  double Uniform() { return static_cast<double>(Uniform53()) / 9007199254740992.0; }

  // The integer numerator of Uniform(), k in [0, 2^53): Uniform() == k / 2^53. Consumes
  // the same two outputs.
  uint64_t Uniform53() {
    const uint64_t a = gen_() >> 5;
    const uint64_t b = gen_() >> 6;
    return (a << 26) | b;
  }

  // The k with Uniform() < p  <=>  Uniform53() < k, for p in [0, 1]: ceil(p * 2^53).
  // Lets a hot "draw < p" test skip the conversion to double with the same outcome.
  static uint64_t Threshold53(double p) {
    return static_cast<uint64_t>(std::ceil(p * 9007199254740992.0));
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
      value = gen_() & mask;
    } while (value > range);
    return lo + static_cast<int>(value);
  }

  // The raw 32-bit output, for tests that compare against std::mt19937.
  uint32_t Next() { return gen_(); }

 private:
  Mt19937 gen_;
};

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_RNG_H_
