#include "replay_server/rate_limiter.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::replay {
namespace {

v1::RateLimiterSpec Spec(double spi, int64_t min_size, double error_buffer) {
  v1::RateLimiterSpec spec;
  spec.set_samples_per_insert(spi);
  spec.set_min_size_to_sample(min_size);
  spec.set_error_buffer(error_buffer);
  return spec;
}

TEST(RateLimiterTest, BoundsFollowTheReverbFormulas) {
  const RateLimiter limiter = RateLimiter::Create(Spec(4, 100, 50)).value();
  EXPECT_EQ(limiter.min_diff(), 350);  // 100 * 4 - 50
  EXPECT_EQ(limiter.max_diff(), 450);  // 100 * 4 + 50
  EXPECT_EQ(limiter.min_size_to_sample(), 100);
}

TEST(RateLimiterTest, SamplingWaitsForMinSize) {
  RateLimiter limiter = RateLimiter::Create(Spec(0, 10, 0)).value();
  EXPECT_FALSE(limiter.CanSample(9, 1));
  EXPECT_TRUE(limiter.CanSample(10, 1));
  EXPECT_TRUE(limiter.CanSample(10, 1000));  // no ratio control
  EXPECT_TRUE(limiter.CanInsert(1000000));
}

TEST(RateLimiterTest, RatioHoldsBothSidesWithinTheBuffer) {
  RateLimiter limiter = RateLimiter::Create(Spec(2, 10, 20)).value();
  // Warm-up: inserts never wait below min size.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(limiter.CanInsert(i));
    limiter.Inserted(1);
  }
  EXPECT_EQ(limiter.diff(), 20);  // min_diff 0, max_diff 40
  // Inserting: allowed while diff + 2 <= 40.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(limiter.CanInsert(10 + i)) << i;
    limiter.Inserted(1);
  }
  EXPECT_EQ(limiter.diff(), 40);
  EXPECT_FALSE(limiter.CanInsert(20));
  // Sampling a batch of 8 is allowed while diff - 8 >= 0.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(limiter.CanSample(20, 8)) << i;
    limiter.Sampled(8);
  }
  EXPECT_EQ(limiter.diff(), 0);
  EXPECT_FALSE(limiter.CanSample(20, 8));
  EXPECT_TRUE(limiter.CanInsert(20));
}

TEST(RateLimiterTest, RejectsSpecsAndBatchesThatCouldDeadlock) {
  auto bad = RateLimiter::Create(Spec(4, 10, 1));
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("spec.rate_limiter.error_buffer"));
  const RateLimiter limiter = RateLimiter::Create(Spec(4, 10, 100)).value();
  EXPECT_TRUE(limiter.CheckBatchSize(196).ok());  // 2 * 100 - 4
  EXPECT_EQ(limiter.CheckBatchSize(197).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(RateLimiter::Create(Spec(0, 1, 0)).value().CheckBatchSize(1 << 20).ok());
}

TEST(RateLimiterTest, RejectsNegativeAndNonFiniteValues) {
  EXPECT_FALSE(RateLimiter::Create(Spec(-1, 1, 0)).ok());
  EXPECT_FALSE(RateLimiter::Create(Spec(std::nan(""), 1, 0)).ok());
  EXPECT_FALSE(RateLimiter::Create(Spec(1, -1, 1)).ok());
  EXPECT_FALSE(RateLimiter::Create(Spec(1, 1, -1)).ok());
  EXPECT_FALSE(RateLimiter::Create(Spec(1, 1, INFINITY)).ok());
  EXPECT_EQ(RateLimiter::Create(Spec(0, 0, 0)).value().min_size_to_sample(), 1);
}

}  // namespace
}  // namespace engram::replay
