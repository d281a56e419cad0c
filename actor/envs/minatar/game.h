#ifndef ENGRAM_ACTOR_ENVS_MINATAR_GAME_H_
#define ENGRAM_ACTOR_ENVS_MINATAR_GAME_H_

#include <cstdint>
#include <cstring>
#include <memory>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "actor/envs/minatar/rng.h"

namespace engram::envs::minatar {

// Grid size of every MinAtar game (spec section 0).
inline constexpr int kRows = 10;
inline constexpr int kCols = 10;

// Full action indices (spec 1.1).
enum Action : int { kNoop = 0, kLeft = 1, kUp = 2, kRight = 3, kDown = 4, kFire = 5 };
inline constexpr int kNumActions = 6;

// One MinAtar game's rules, without the wrapper (sticky actions, action sets and seeding
// live in MinAtarEnv). Every random draw comes from the Rng passed in, in the order the
// spec gives, so that the shared stream matches the reference's.
//
// Not thread-safe; owned by one MinAtarEnv.
class Game {
 public:
  virtual ~Game() = default;

  // Number of observation channels C (the observation is 10 x 10 x C, channels last).
  virtual int num_channels() const = 0;

  // Re-initialises the game (spec "Reset" subsection of each game).
  virtual void Reset(Rng& rng) = 0;

  // Advances one frame with full action index `action` in [0, 6). Returns the reward of
  // the step. When already terminal it changes nothing and returns 0.
  virtual int Act(int action, Rng& rng) = 0;

  virtual bool terminal() const = 0;

  // Writes the 10 x 10 x C observation (row, column, channel; 0 or 1 per byte) to `dst`,
  // all 100 * C bytes. Draws no random numbers and has no side effects.
  virtual void WriteObservation(uint8_t* dst) const = 0;
};

// Index of (row, col, channel) in a channels-last observation with `channels` channels.
inline constexpr int ObsIndex(int row, int col, int channel, int channels) {
  return (row * kCols + col) * channels + channel;
}

// Zeroes an observation of kChannels channels (100 * kChannels bytes, always >= 16).
// GCC turns a fixed-size std::memset of a few hundred bytes into `rep stos`, whose start-up
// cost was the largest single item of a whole Breakout step; unrolled 16-byte stores (the
// last one overlapping the tail) are several times faster. The library is compiled with
// -fno-tree-loop-distribute-patterns so the loop is not turned back into a memset.
template <int kChannels>
inline void ClearObservation(uint8_t* dst) {
  constexpr int kBytes = kRows * kCols * kChannels;
  static_assert(kBytes >= 16);
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
#pragma GCC unroll 64
  for (int i = 0; i + 16 <= kBytes; i += 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), zero);
  }
  if constexpr (kBytes % 16 != 0) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + kBytes - 16), zero);
  }
#else
  std::memset(dst, 0, kBytes);
#endif
}

// Factories, one per game. `ramping` is the difficulty-ramping flag (spec 1.3); games
// without a ramp ignore it.
std::unique_ptr<Game> MakeAsterix(bool ramping);
std::unique_ptr<Game> MakeBreakout(bool ramping);
std::unique_ptr<Game> MakeFreeway(bool ramping);
std::unique_ptr<Game> MakeSeaquest(bool ramping);
std::unique_ptr<Game> MakeSpaceInvaders(bool ramping);

}  // namespace engram::envs::minatar

#endif  // ENGRAM_ACTOR_ENVS_MINATAR_GAME_H_
