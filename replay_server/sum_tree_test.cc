#include "replay_server/sum_tree.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "absl/random/distributions.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::replay {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

uint64_t Bits(double x) {
  uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

std::vector<double> Leaves(const SumTree& tree) {
  std::vector<double> v(tree.capacity());
  for (int64_t i = 0; i < tree.capacity(); ++i) v[i] = tree.Get(i);
  return v;
}

SumTree TreeFrom(const std::vector<double>& values) {
  SumTree tree(static_cast<int64_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) tree.Set(static_cast<int64_t>(i), values[i]);
  return tree;
}

// The tree's definition, independent of its code: leaves padded with zeros to a power of two,
// each internal value the sum of its two halves.
double PairwiseSum(const std::vector<double>& leaves, size_t lo, size_t hi) {
  if (hi - lo == 1) return lo < leaves.size() ? leaves[lo] : 0.0;
  const size_t mid = lo + (hi - lo) / 2;
  return PairwiseSum(leaves, lo, mid) + PairwiseSum(leaves, mid, hi);
}

double PairwiseSum(const std::vector<double>& leaves) {
  size_t width = 1;
  while (width < leaves.size()) width *= 2;
  return PairwiseSum(leaves, 0, width);
}

// The brute-force model: leaf i covers [prefix(i), prefix(i) + value(i)), prefix sums exact
// for the integer-valued data these tests give it (sums below 2^53).
int64_t LinearFind(const std::vector<double>& values, double u) {
  double prefix = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] > 0 && prefix <= u && u < prefix + values[i]) return static_cast<int64_t>(i);
    prefix += values[i];
  }
  return -2;  // u outside [0, total)
}

int64_t FirstNonZero(const std::vector<double>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] > 0) return static_cast<int64_t>(i);
  }
  return -1;
}

int64_t LastNonZero(const std::vector<double>& values) {
  for (size_t i = values.size(); i-- > 0;) {
    if (values[i] > 0) return static_cast<int64_t>(i);
  }
  return -1;
}

TEST(SumTreeTest, StartsAllZero) {
  SumTree tree(5);
  EXPECT_EQ(tree.capacity(), 5);
  EXPECT_EQ(tree.total(), 0.0);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(tree.Get(i), 0.0);
}

TEST(SumTreeTest, EmptyTotalFindsNothing) {
  SumTree tree(6);
  for (double u : {0.0, 0.5, -1.0, kInf, kNaN}) EXPECT_EQ(tree.Find(u), -1) << u;
  std::mt19937_64 gen(1);
  std::vector<int64_t> out(4, 7);
  tree.SampleStratified(4, gen, out.data());
  EXPECT_THAT(out, ::testing::Each(-1));
  // Back to all-zero after holding values: still nothing to find.
  tree.Set(3, 2.5);
  EXPECT_EQ(tree.Find(0.0), 3);
  tree.Set(3, 0.0);
  EXPECT_EQ(tree.total(), 0.0);
  EXPECT_EQ(tree.Find(0.0), -1);
}

TEST(SumTreeTest, CapacityOne) {
  SumTree tree(1);
  tree.Set(0, 4.0);
  EXPECT_EQ(tree.total(), 4.0);
  for (double u : {-1.0, 0.0, 3.9, 4.0, kInf, kNaN}) EXPECT_EQ(tree.Find(u), 0) << u;
  tree.Set(0, 0.0);
  EXPECT_EQ(tree.Find(1.0), -1);
}

TEST(SumTreeTest, SetGetAndTotal) {
  SumTree tree(4);
  tree.Set(0, 1.0);
  tree.Set(1, 2.0);
  tree.Set(3, 4.0);
  EXPECT_EQ(tree.total(), 7.0);
  tree.Set(1, 0.5);
  EXPECT_EQ(tree.Get(1), 0.5);
  EXPECT_EQ(tree.total(), 5.5);
  // [0,1) -> 0, [1,1.5) -> 1, leaf 2 is empty, [1.5,5.5) -> 3.
  EXPECT_EQ(tree.Find(0.0), 0);
  EXPECT_EQ(tree.Find(0.999), 0);
  EXPECT_EQ(tree.Find(1.0), 1);
  EXPECT_EQ(tree.Find(1.49), 1);
  EXPECT_EQ(tree.Find(1.5), 3);
  EXPECT_EQ(tree.Find(5.49), 3);
}

TEST(SumTreeTest, NegativeZeroIsStoredAsZero) {
  SumTree a(3);
  SumTree b(3);
  a.Set(1, -0.0);
  b.Set(1, 0.0);
  EXPECT_EQ(Bits(a.Get(1)), Bits(0.0));
  EXPECT_EQ(Bits(a.total()), Bits(b.total()));
}

// Integer-valued data keeps every sum exact, so the tree must agree with the linear model
// exactly, at every interval boundary and at random points.
TEST(SumTreeTest, FindMatchesBruteForceOnExactData) {
  std::mt19937_64 gen(7);
  for (int64_t capacity : {1, 2, 3, 5, 7, 8, 9, 100, 1000, 1025}) {
    SumTree tree(capacity);
    std::vector<double> model(capacity, 0.0);
    std::uniform_int_distribution<int64_t> index(0, capacity - 1);
    for (int round = 0; round < 20; ++round) {
      for (int s = 0; s < 50; ++s) {
        const int64_t i = index(gen);
        const int kind = static_cast<int>(gen() % 4);
        model[i] = kind == 0 ? 0.0 : static_cast<double>(gen() % (kind == 1 ? 3 : 1000000));
        tree.Set(i, model[i]);
      }
      double total = 0;
      for (double v : model) total += v;
      ASSERT_EQ(tree.total(), total);
      ASSERT_EQ(Leaves(tree), model);
      if (total == 0) continue;
      double prefix = 0;
      for (int64_t i = 0; i < capacity; ++i) {
        if (model[i] > 0) {
          ASSERT_EQ(tree.Find(prefix), i) << "capacity " << capacity;
          ASSERT_EQ(tree.Find(prefix + model[i] - 0.5), i);
        }
        prefix += model[i];
      }
      std::uniform_real_distribution<double> uniform(0.0, total);
      for (int q = 0; q < 200; ++q) {
        const double u = uniform(gen);
        ASSERT_EQ(tree.Find(u), LinearFind(model, u)) << "u " << u;
      }
      EXPECT_EQ(tree.Find(-1.0), FirstNonZero(model));
      EXPECT_EQ(tree.Find(total), LastNonZero(model));
    }
  }
}

// Values spread over many magnitudes: the tree's prefix sums round differently from a
// sequential sum, so Find is checked against long-double prefix sums with a tolerance of a
// few ulps of the total per tree level.
TEST(SumTreeTest, FindMatchesBruteForceOnWideRangeData) {
  std::mt19937_64 gen(11);
  struct Mix {
    const char* name;
    double tiny;
    double huge;
  };
  for (const Mix& mix : {Mix{"denormal..1", 4.9e-324, 1.0}, Mix{"1e-300..1e-290", 1e-300, 1e-290},
                         Mix{"1e-12..1e12", 1e-12, 1e12}, Mix{"1..1e300", 1.0, 1e300}}) {
    constexpr int64_t kCapacity = 777;
    std::vector<double> values(kCapacity);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (double& v : values) {
      const double r = unit(gen);
      if (r < 0.3) {
        v = 0.0;
      } else if (r < 0.6) {
        v = mix.tiny * (1 + 3 * unit(gen));
      } else if (r < 0.8) {
        v = mix.huge * unit(gen);
      } else {
        // Log-uniform between the extremes.
        v = std::exp(std::log(mix.tiny) + unit(gen) * (std::log(mix.huge) - std::log(mix.tiny)));
      }
    }
    const SumTree tree = TreeFrom(values);
    std::vector<long double> prefix(kCapacity + 1, 0.0L);
    for (int64_t i = 0; i < kCapacity; ++i) prefix[i + 1] = prefix[i] + values[i];
    const double total = tree.total();
    ASSERT_GT(total, 0.0) << mix.name;
    const long double tol = 4 * 11 * std::numeric_limits<double>::epsilon() * total;
    EXPECT_NEAR(static_cast<double>(prefix[kCapacity]), total, static_cast<double>(tol))
        << mix.name;
    for (int q = 0; q < 20000; ++q) {
      const double u = unit(gen) * total;
      const int64_t i = tree.Find(u);
      ASSERT_GE(i, 0);
      ASSERT_LT(i, kCapacity);
      ASSERT_GT(values[i], 0.0) << mix.name;
      ASSERT_LE(prefix[i], u + tol) << mix.name << " u " << u << " leaf " << i;
      ASSERT_LT(u, prefix[i + 1] + tol) << mix.name << " u " << u << " leaf " << i;
    }
  }
}

TEST(SumTreeTest, FindIsMonotone) {
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<double> values(513);
  for (double& v : values) v = unit(gen) < 0.4 ? 0.0 : std::pow(10.0, 20 * unit(gen) - 10);
  const SumTree tree = TreeFrom(values);
  std::vector<double> us(5000);
  for (double& u : us) u = (1.2 * unit(gen) - 0.1) * tree.total();
  std::sort(us.begin(), us.end());
  int64_t last = -1;
  for (double u : us) {
    const int64_t i = tree.Find(u);
    ASSERT_GE(i, last) << "u " << u;
    last = i;
  }
}

// The edges where rounding can push the search off the end of a subtree: u at, just below
// and just above the total and every interval boundary, negative, infinite or NaN. The
// result must always be a leaf with a value > 0.
TEST(SumTreeTest, FindNeverReturnsAZeroLeaf) {
  std::mt19937_64 gen(5);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<std::vector<double>> cases = {
      {1.0, 1e-17, 0.0, 0.0, 0.0},          // the total rounds the tiny leaf away
      {0.0, 0.0, 0.0, 1e-17, 1.0, 0.0},     // zeros on both sides
      {0.1, 0.2, 0.0, 0.0, 0.3, 0.0, 0.0},  // 0.1 + 0.2 != 0.3 territory
      {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.9e-324},
      {1e300, 0.0, 1.0, 0.0, 1e-300, 0.0},
  };
  for (int r = 0; r < 300; ++r) {
    std::vector<double> values(1 + gen() % 70);
    for (double& v : values) {
      const double x = unit(gen);
      v = x < 0.5 ? 0.0 : x < 0.6 ? 1e-17 * unit(gen) : x < 0.7 ? 1e17 * unit(gen) : unit(gen);
    }
    cases.push_back(values);
  }
  for (const std::vector<double>& values : cases) {
    const SumTree tree = TreeFrom(values);
    const double total = tree.total();
    if (total == 0) {
      EXPECT_EQ(tree.Find(0.0), -1);
      continue;
    }
    std::vector<double> us = {total,
                              std::nextafter(total, 0.0),
                              std::nextafter(total, kInf),
                              std::nextafter(std::nextafter(total, 0.0), 0.0),
                              total * (1 - 1e-16),
                              2 * total,
                              kInf,
                              0.0,
                              -0.0,
                              -4.9e-324,
                              -1e-300,
                              -1.0,
                              -kInf,
                              kNaN};
    double prefix = 0;
    for (double v : values) {
      prefix += v;
      us.push_back(prefix);
      us.push_back(std::nextafter(prefix, 0.0));
      us.push_back(std::nextafter(prefix, kInf));
    }
    for (double u : us) {
      const int64_t i = tree.Find(u);
      ASSERT_GE(i, 0) << "u " << u;
      ASSERT_LT(i, static_cast<int64_t>(values.size())) << "u " << u;
      ASSERT_GT(values[i], 0.0) << "u " << u << " total " << total;
    }
    // The documented clamping.
    EXPECT_EQ(tree.Find(-1e-300), FirstNonZero(values));
    EXPECT_EQ(tree.Find(kNaN), FirstNonZero(values));
    EXPECT_EQ(tree.Find(total), LastNonZero(values));
    EXPECT_EQ(tree.Find(kInf), LastNonZero(values));
  }
}

// After millions of updates over values of very different magnitudes, the tree equals one
// built from scratch over the same leaves, bit for bit; emptying it gives a total of exactly 0.
TEST(SumTreeTest, NoDriftAfterMillionsOfUpdates) {
  constexpr int64_t kCapacity = 1000;
  constexpr int kUpdates = 3'000'000;
  std::mt19937_64 gen(13);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  SumTree tree(kCapacity);
  for (int s = 0; s < kUpdates; ++s) {
    const int64_t i = static_cast<int64_t>(gen() % kCapacity);
    const uint64_t kind = gen() % 4;
    const double v = kind == 0   ? 0.0
                     : kind == 1 ? 1e12 * unit(gen)
                     : kind == 2 ? 1e-9 * unit(gen)
                                 : unit(gen);
    tree.Set(i, v);
  }
  std::vector<double> leaves = Leaves(tree);
  EXPECT_EQ(Bits(tree.total()), Bits(PairwiseSum(leaves)));
  const SumTree fresh = TreeFrom(leaves);
  EXPECT_EQ(Bits(tree.total()), Bits(fresh.total()));
  // Inserting the same leaves in reverse order gives the same tree, too.
  SumTree reversed(kCapacity);
  for (int64_t i = kCapacity; i-- > 0;) reversed.Set(i, leaves[i]);
  EXPECT_EQ(Bits(tree.total()), Bits(reversed.total()));
  // Same internal nodes: every search agrees.
  for (int q = 0; q < 10000; ++q) {
    const double u = unit(gen) * tree.total();
    ASSERT_EQ(tree.Find(u), fresh.Find(u));
  }
  long double exact = 0;
  for (double v : leaves) exact += v;
  EXPECT_NEAR(tree.total(), static_cast<double>(exact), 1e-12 * static_cast<double>(exact));

  for (int64_t i = 0; i < kCapacity; ++i) tree.Set(i, 0.0);
  EXPECT_EQ(Bits(tree.total()), Bits(0.0));
  EXPECT_EQ(tree.Find(0.0), -1);
}

// Checks one stratified batch: one index per stratum, nondecreasing, never a zero leaf, and
// out[k]'s interval overlaps stratum k (up to the rounding tolerance).
void CheckStratifiedBatch(const std::vector<double>& values, const SumTree& tree,
                          const std::vector<int64_t>& out) {
  const int n = static_cast<int>(out.size());
  std::vector<long double> prefix(values.size() + 1, 0.0L);
  for (size_t i = 0; i < values.size(); ++i) prefix[i + 1] = prefix[i] + values[i];
  const long double total = tree.total();
  const long double tol = 1e-12L * total;
  for (int k = 0; k < n; ++k) {
    const int64_t i = out[k];
    ASSERT_GE(i, 0);
    ASSERT_LT(i, static_cast<int64_t>(values.size()));
    ASSERT_GT(values[i], 0.0) << "stratum " << k;
    if (k > 0) {
      ASSERT_LE(out[k - 1], i) << "stratum " << k;
    }
    const long double lo = total * k / n;
    const long double hi = total * (k + 1) / n;
    ASSERT_LT(prefix[i], hi + tol) << "stratum " << k << " leaf " << i;
    ASSERT_GT(prefix[i + 1], lo - tol) << "stratum " << k << " leaf " << i;
  }
}

TEST(SumTreeTest, StratifiedReturnsOneIndexPerStratumInOrder) {
  std::mt19937_64 gen(17);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t capacity : {1, 6, 100, 1000}) {
    std::vector<double> values(capacity);
    for (double& v : values) v = unit(gen) < 0.3 ? 0.0 : std::pow(10.0, 6 * unit(gen) - 3);
    values[0] = 1.0;
    const SumTree tree = TreeFrom(values);
    for (int n : {1, 2, 7, 64, 256, 3000}) {
      for (int rep = 0; rep < 10; ++rep) {
        std::vector<int64_t> out(n, -7);
        tree.SampleStratified(n, gen, out.data());
        CheckStratifiedBatch(values, tree, out);
      }
    }
  }
  // n = 0 writes nothing.
  SumTree tree(3);
  tree.Set(1, 1.0);
  int64_t sentinel = 42;
  tree.SampleStratified(0, gen, &sentinel);
  EXPECT_EQ(sentinel, 42);
}

// SampleStratified runs its searches side by side; each must give exactly what Find gives
// for the documented u_k = (k + U_k) * (total / n), U_k = absl::Uniform(rng, 0.0, 1.0),
// including on trees full of zeros and rounding edges, and for n not a multiple of the lanes.
TEST(SumTreeTest, StratifiedEqualsFindAtTheDocumentedPoints) {
  std::mt19937_64 gen(29);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int r = 0; r < 200; ++r) {
    std::vector<double> values(1 + gen() % 3000);
    for (double& v : values) {
      const double x = unit(gen);
      v = x < 0.6 ? 0.0 : x < 0.7 ? 1e-17 * unit(gen) : x < 0.8 ? 1e17 * unit(gen) : unit(gen);
    }
    values[gen() % values.size()] = 1.0;
    const SumTree tree = TreeFrom(values);
    const int n = 1 + static_cast<int>(gen() % 300);
    const uint64_t seed = gen();
    std::mt19937_64 sample_gen(seed);
    std::mt19937_64 replay_gen(seed);
    std::vector<int64_t> out(n);
    tree.SampleStratified(n, sample_gen, out.data());
    const double width = tree.total() / n;
    for (int k = 0; k < n; ++k) {
      const double u = (k + absl::Uniform(replay_gen, 0.0, 1.0)) * width;
      ASSERT_EQ(out[k], tree.Find(u)) << "capacity " << values.size() << " n " << n << " k " << k;
    }
  }
}

// The empirical distribution over many batches matches value / total: a chi-square test
// (stratification only lowers the variance, so the multinomial threshold is conservative)
// plus a per-leaf relative tolerance for the large leaves.
TEST(SumTreeTest, StratifiedDistributionMatchesValues) {
  std::mt19937_64 gen(19);
  const std::vector<double> values = {5.0, 0.0,  1.0, 0.25, 3.0, 0.0,  0.0, 12.0, 0.5, 2.0,
                                      7.5, 1e-3, 0.0, 4.0,  6.0, 0.75, 9.0, 0.0,  1.5, 3.3};
  const SumTree tree = TreeFrom(values);
  std::vector<int64_t> counts(values.size(), 0);
  constexpr int kBatches = 20000;
  constexpr int kBatch = 37;
  std::vector<int64_t> out(kBatch);
  for (int b = 0; b < kBatches; ++b) {
    tree.SampleStratified(kBatch, gen, out.data());
    for (int64_t i : out) ++counts[i];
  }
  const double draws = static_cast<double>(kBatches) * kBatch;
  double chi2 = 0;
  int dof = -1;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "leaf " << i;
      continue;
    }
    const double expected = draws * values[i] / tree.total();
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++dof;
    if (expected > 10000) {
      EXPECT_NEAR(counts[i] / expected, 1.0, 0.02) << "leaf " << i;
    }
  }
  // 14 degrees of freedom: P(chi2 > 36.12) = 0.001.
  ASSERT_EQ(dof, 14);
  EXPECT_LT(chi2, 36.12);
}

TEST(SumTreeDeathTest, RejectsProgrammerErrors) {
  EXPECT_DEATH(SumTree(0), "capacity");
  SumTree tree(5);
  EXPECT_DEATH(tree.Set(5, 1.0), "index 5");
  EXPECT_DEATH(tree.Set(-1, 1.0), "index -1");
  EXPECT_DEATH(tree.Set(0, -1.0), "value");
  EXPECT_DEATH(tree.Set(0, kNaN), "value");
  EXPECT_DEATH(tree.Set(0, kInf), "value");
  EXPECT_DEATH(tree.Get(5), "index 5");
  std::mt19937_64 gen(1);
  EXPECT_DEATH(tree.SampleStratified(-1, gen, nullptr), "n -1");
}

}  // namespace
}  // namespace engram::replay
