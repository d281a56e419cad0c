#include "common/client_limits.h"

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::testing::HasSubstr;

TEST(ClientRateLimiterTest, EachClientGetsItsOwnBucketOfOneSecond) {
  ClientRateLimiter limiter(3);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("ipv4:10.0.0.1:5000", "M", t0).ok());
  const absl::Status refused = limiter.Admit("ipv4:10.0.0.1:5000", "ReplayService.Insert", t0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("ReplayService.Insert: client ipv4:10.0.0.1:5000 is "
                                           "over its limit of 3 requests/s"));
  // Another client is not affected.
  EXPECT_TRUE(limiter.Admit("ipv4:10.0.0.1:5001", "M", t0).ok());
  // A third of a second refills one request, not more.
  const absl::Time t1 = t0 + absl::Milliseconds(334);
  EXPECT_TRUE(limiter.Admit("ipv4:10.0.0.1:5000", "M", t1).ok());
  EXPECT_FALSE(limiter.Admit("ipv4:10.0.0.1:5000", "M", t1).ok());
  // Idle for long: one second's worth again, never more.
  const absl::Time t2 = t1 + absl::Minutes(5);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("ipv4:10.0.0.1:5000", "M", t2).ok());
  EXPECT_FALSE(limiter.Admit("ipv4:10.0.0.1:5000", "M", t2).ok());
}

TEST(ClientRateLimiterTest, SlowRatesStillAllowOneRequestAndIdleClientsAreForgotten) {
  ClientRateLimiter limiter(0.5);  // one request every 2 s
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(limiter.Admit("a", "M", t0).ok());
  EXPECT_FALSE(limiter.Admit("a", "M", t0 + absl::Seconds(1)).ok());
  EXPECT_TRUE(limiter.Admit("a", "M", t0 + absl::Seconds(2)).ok());
  // Many short-lived connections do not grow the table without bound.
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(limiter.Admit(std::to_string(i), "M", t0 + absl::Seconds(10 + 3 * i)).ok());
  }
  EXPECT_LT(limiter.clients(), 5000u);
}

}  // namespace
}  // namespace engram
