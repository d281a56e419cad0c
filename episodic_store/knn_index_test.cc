#include "episodic_store/knn_index.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/random/random.h"
#include "gtest/gtest.h"

namespace engram::episodic {
namespace {

constexpr int kDim = 24;

std::vector<float> RandomKey(absl::BitGen& gen) {
  std::vector<float> key(kDim);
  for (float& x : key) x = absl::Gaussian<float>(gen);
  return key;
}

// Both indices' answers to the same queries: the same labels in the same order, and
// distances that agree to float rounding.
void ExpectSameAnswers(const KnnIndex& expected, const KnnIndex& actual, int k, absl::BitGen& gen) {
  constexpr int kQueries = 20;
  std::vector<float> queries;
  for (int q = 0; q < kQueries; ++q) {
    const std::vector<float> key = RandomKey(gen);
    queries.insert(queries.end(), key.begin(), key.end());
  }
  std::vector<float> d1(kQueries * k), d2(kQueries * k);
  std::vector<int64_t> l1(kQueries * k), l2(kQueries * k);
  expected.Search(queries.data(), kQueries, k, d1.data(), l1.data());
  actual.Search(queries.data(), kQueries, k, d2.data(), l2.data());
  for (int i = 0; i < kQueries * k; ++i) {
    ASSERT_EQ(l1[i], l2[i]) << "query " << i / k << ", neighbour " << i % k;
    if (l1[i] < 0) {
      EXPECT_EQ(d2[i], std::numeric_limits<float>::infinity());
    } else {
      EXPECT_NEAR(d1[i], d2[i], 1e-3f * std::max(1.0f, d1[i]));
    }
  }
}

IvfOptions SmallIvf(int nprobe) {
  IvfOptions options;
  options.list_size = 16;
  options.nprobe = nprobe;
  options.train_at = 200;
  return options;
}

TEST(IvfIndexTest, ScansExactlyBeforeTrainingAndFillsMissingNeighbours) {
  absl::BitGen gen(std::seed_seq{1});
  auto flat = MakeFlatIndex(kDim, 1000);
  auto ivf = MakeIvfIndex(kDim, 1000, SmallIvf(1));
  for (int64_t slot = 0; slot < 30; ++slot) {
    const std::vector<float> key = RandomKey(gen);
    flat->Set(slot, key.data());
    ivf->Set(slot, key.data());
  }
  EXPECT_EQ(ivf->size(), 30);
  ExpectSameAnswers(*flat, *ivf, 40, gen);  // k > size: labels -1, distances +inf
}

// With every list probed, the inverted file is an exact index: each key sits in exactly one
// list, through trainings as it grows and keys replaced in place (moved between lists).
TEST(IvfIndexTest, ProbingEveryListIsExactThroughTrainingAndReplacement) {
  absl::BitGen gen(std::seed_seq{2});
  constexpr int64_t kCapacity = 3000;
  auto flat = MakeFlatIndex(kDim, kCapacity);
  auto ivf = MakeIvfIndex(kDim, kCapacity, SmallIvf(1 << 20));
  for (int64_t slot = 0; slot < kCapacity; ++slot) {
    const std::vector<float> key = RandomKey(gen);
    flat->Set(slot, key.data());
    ivf->Set(slot, key.data());
    if (slot == 150 || slot == 900) ExpectSameAnswers(*flat, *ivf, 10, gen);
  }
  ExpectSameAnswers(*flat, *ivf, 50, gen);
  for (int i = 0; i < 5000; ++i) {  // LRU-style replacement of random slots
    const int64_t slot = absl::Uniform<int64_t>(gen, 0, kCapacity);
    const std::vector<float> key = RandomKey(gen);
    flat->Set(slot, key.data());
    ivf->Set(slot, key.data());
    ASSERT_EQ(std::vector<float>(ivf->Key(slot), ivf->Key(slot) + kDim), key);
  }
  EXPECT_EQ(ivf->size(), kCapacity);
  ExpectSameAnswers(*flat, *ivf, 50, gen);
}

// A key replaced by itself, or by a far-away key, is found where it now is.
TEST(IvfIndexTest, AReplacedKeyIsFoundAtItsNewPlace) {
  absl::BitGen gen(std::seed_seq{3});
  auto ivf = MakeIvfIndex(kDim, 1000, SmallIvf(2));
  for (int64_t slot = 0; slot < 1000; ++slot) ivf->Set(slot, RandomKey(gen).data());
  std::vector<float> far(kDim, 100.0f);
  ivf->Set(17, far.data());
  float distance = -1;
  int64_t label = -2;
  ivf->Search(far.data(), 1, 1, &distance, &label);
  EXPECT_EQ(label, 17);
  EXPECT_FLOAT_EQ(distance, 0);
  ivf->Set(17, far.data());  // the same key again
  ivf->Search(far.data(), 1, 1, &distance, &label);
  EXPECT_EQ(label, 17);
}

}  // namespace
}  // namespace engram::episodic
