#include "replay_server/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace engram::replay {

absl::StatusOr<RateLimiter> RateLimiter::Create(const v1::RateLimiterSpec& spec) {
  if (!std::isfinite(spec.samples_per_insert()) || spec.samples_per_insert() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.rate_limiter.samples_per_insert: must be finite and >= 0, got ",
                     spec.samples_per_insert()));
  }
  if (spec.min_size_to_sample() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.rate_limiter.min_size_to_sample: must be >= 0, got ", spec.min_size_to_sample()));
  }
  if (!std::isfinite(spec.error_buffer()) || spec.error_buffer() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.rate_limiter.error_buffer: must be finite and >= 0, got ", spec.error_buffer()));
  }
  if (spec.samples_per_insert() > 0 && 2 * spec.error_buffer() < spec.samples_per_insert()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.rate_limiter.error_buffer: must be >= samples_per_insert / 2 (",
                     spec.samples_per_insert() / 2,
                     ") or inserts and samples can block each other, got ", spec.error_buffer()));
  }
  return RateLimiter(spec.samples_per_insert(), std::max<int64_t>(1, spec.min_size_to_sample()),
                     spec.error_buffer());
}

RateLimiter::RateLimiter(double samples_per_insert, int64_t min_size, double error_buffer)
    : samples_per_insert_(samples_per_insert),
      min_size_(min_size),
      min_diff_(min_size * samples_per_insert - error_buffer),
      max_diff_(min_size * samples_per_insert + error_buffer) {}

absl::Status RateLimiter::CheckBatchSize(int batch_size) const {
  if (samples_per_insert_ > 0 && batch_size > max_diff_ - min_diff_ - samples_per_insert_) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size ", batch_size, " exceeds 2 * error_buffer - samples_per_insert (",
                     max_diff_ - min_diff_ - samples_per_insert_,
                     "): the rate limiter could block inserts and samples at once"));
  }
  return absl::OkStatus();
}

double RateLimiter::diff() const {
  return static_cast<double>(inserts_) * samples_per_insert_ - static_cast<double>(samples_);
}

bool RateLimiter::CanInsert(int64_t size) const {
  if (samples_per_insert_ <= 0 || size < min_size_) return true;
  return diff() + samples_per_insert_ <= max_diff_;
}

bool RateLimiter::CanSample(int64_t size, int batch_size) const {
  if (size < min_size_) return false;
  if (samples_per_insert_ <= 0) return true;
  return diff() - batch_size >= min_diff_;
}

}  // namespace engram::replay
