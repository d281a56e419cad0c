#include "actor/envs/minatar/rng.h"

#include <random>

#include "gtest/gtest.h"

namespace engram::envs::minatar {
namespace {

// Reference values: numpy's legacy RandomState (np.random.seed(s); np.random.rand(3) and
// np.random.randint(10, size=10)), which MinAtar uses (spec section 8).
TEST(RngTest, UniformMatchesNumpyLegacyRandomState) {
  Rng rng(0);
  EXPECT_DOUBLE_EQ(rng.Uniform(), 0.5488135039273248);
  EXPECT_DOUBLE_EQ(rng.Uniform(), 0.7151893663724195);
  EXPECT_DOUBLE_EQ(rng.Uniform(), 0.6027633760716439);
  Rng rng42(42);
  EXPECT_DOUBLE_EQ(rng42.Uniform(), 0.3745401188473625);
  EXPECT_DOUBLE_EQ(rng42.Uniform(), 0.9507143064099162);
  EXPECT_DOUBLE_EQ(rng42.Uniform(), 0.7319939418114051);
}

TEST(RngTest, IntegerMatchesNumpyLegacyRandint) {
  Rng rng(0);
  const int expected[] = {5, 0, 3, 3, 7, 9, 3, 5, 2, 4};
  for (int e : expected) EXPECT_EQ(rng.Integer(0, 9), e);
}

TEST(RngTest, RawStreamIsStdMt19937) {
  Rng rng(12345);
  std::mt19937 reference(12345);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(rng.Next(), reference());
}

TEST(RngTest, DegenerateRangeConsumesNothing) {
  Rng a(7), b(7);
  EXPECT_EQ(a.Integer(3, 3), 3);
  EXPECT_EQ(a.Next(), b.Next());
}

TEST(RngTest, IntegerStaysInRangeAndCoversIt) {
  Rng rng(1);
  int counts[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < 5000; ++i) {
    const int v = rng.Integer(1, 5);
    ASSERT_GE(v, 1);
    ASSERT_LE(v, 5);
    ++counts[v - 1];
  }
  for (int c : counts) EXPECT_GT(c, 800);
}

TEST(RngTest, IntegerThresholdAgreesWithTheDoubleComparison) {
  for (double p : {0.0, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.999, 1.0}) {
    const uint64_t threshold = Rng::Threshold53(p);
    Rng a(5), b(5);
    for (int i = 0; i < 20000; ++i) {
      ASSERT_EQ(a.Uniform() < p, b.Uniform53() < threshold) << p;
    }
    // Exactly at the boundary: k / 2^53 < p must match k < threshold.
    for (uint64_t k : {threshold - 1, threshold, threshold + 1}) {
      if (k >= (uint64_t{1} << 53)) continue;
      EXPECT_EQ(static_cast<double>(k) / 9007199254740992.0 < p, k < threshold) << p << " " << k;
    }
  }
}

TEST(RngTest, SeedRestartsTheStream) {
  Rng rng(3);
  const double first = rng.Uniform();
  rng.Uniform();
  rng.Seed(3);
  EXPECT_EQ(rng.Uniform(), first);
}

}  // namespace
}  // namespace engram::envs::minatar
