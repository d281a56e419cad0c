#ifndef ENGRAM_COMMON_BACKOFF_H_
#define ENGRAM_COMMON_BACKOFF_H_

// Retry backoff shared by every client (replay writer and sampler, parameter client,
// progress reporter): the n-th consecutive failure waits
//   min(max_backoff, initial_backoff * 2^(n-1)) * U[0.5, 1)
// so that many clients that lost the same server do not come back in lockstep.

#include <algorithm>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace engram {

// INVALID_ARGUMENT unless 0 < initial <= max.
inline absl::Status ValidateBackoff(absl::Duration initial, absl::Duration max) {
  if (initial <= absl::ZeroDuration() || max < initial) {
    return absl::InvalidArgumentError(
        absl::StrCat("initial_backoff/max_backoff: need 0 < initial_backoff <= max_backoff, got ",
                     absl::FormatDuration(initial), " and ", absl::FormatDuration(max)));
  }
  return absl::OkStatus();
}

// The wait after `failed_attempts` (>= 1) consecutive failures.
inline absl::Duration JitteredBackoff(int64_t failed_attempts, absl::Duration initial,
                                      absl::Duration max, absl::BitGen& rng) {
  absl::Duration base = initial;
  for (int64_t i = 1; i < failed_attempts && base < max; ++i) base *= 2;
  return std::min(base, max) * absl::Uniform(rng, 0.5, 1.0);
}

}  // namespace engram

#endif  // ENGRAM_COMMON_BACKOFF_H_
