#ifndef ENGRAM_REPLAY_SERVER_RATE_LIMITER_H_
#define ENGRAM_REPLAY_SERVER_RATE_LIMITER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "engram/v1/replay.pb.h"

namespace engram::replay {

// The sample/insert ratio control of one table, as Reverb's SampleToInsertRatio (the
// formulas are in engram.v1.RateLimiterSpec):
//
//   diff     = inserts * samples_per_insert - samples          (items, not batches)
//   min_diff = min_size_to_sample * samples_per_insert - error_buffer
//   max_diff = min_size_to_sample * samples_per_insert + error_buffer
//
// Sampling a batch of B waits while size < max(min_size_to_sample, 1) or, with ratio
// control on, while diff - B < min_diff. Inserting waits while ratio control is on,
// size >= min_size_to_sample and diff + samples_per_insert > max_diff.
//
// Pure bookkeeping: it never blocks. The owning Table asks CanInsert/CanSample under its
// mutex and waits on that mutex itself. Not thread-safe.
class RateLimiter {
 public:
  // INVALID_ARGUMENT (naming `rate_limiter.<field>`) for negative or non-finite values,
  // or 2 * error_buffer < samples_per_insert (both sides could wait forever).
  static absl::StatusOr<RateLimiter> Create(const v1::RateLimiterSpec& spec);

  // INVALID_ARGUMENT when a batch of `batch_size` could deadlock this limiter
  // (batch_size > 2 * error_buffer - samples_per_insert with ratio control on).
  absl::Status CheckBatchSize(int batch_size) const;

  bool CanInsert(int64_t size) const;
  bool CanSample(int64_t size, int batch_size) const;

  void Inserted(int64_t n) { inserts_ += n; }
  void Sampled(int64_t n) { samples_ += n; }

  double diff() const;
  double min_diff() const { return min_diff_; }
  double max_diff() const { return max_diff_; }
  int64_t min_size_to_sample() const { return min_size_; }
  int64_t inserts() const { return inserts_; }
  int64_t samples() const { return samples_; }
  // For restoring a checkpoint.
  void SetCounts(int64_t inserts, int64_t samples) {
    inserts_ = inserts;
    samples_ = samples;
  }

 private:
  RateLimiter(double samples_per_insert, int64_t min_size, double error_buffer);

  double samples_per_insert_;
  int64_t min_size_;
  double min_diff_;
  double max_diff_;
  int64_t inserts_ = 0;
  int64_t samples_ = 0;
};

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_RATE_LIMITER_H_
