#include "episodic_store/memory.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "absl/random/random.h"
#include "bench/episodic/projected_keys.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::episodic {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::MemorySpec Spec(v1::IndexKind index = v1::INDEX_KIND_EXACT, int dim = 2,
                    int64_t capacity = 100) {
  v1::MemorySpec spec;
  spec.set_name("test");
  spec.set_key_dim(dim);
  spec.set_num_actions(3);
  spec.set_capacity_per_action(capacity);
  spec.set_update_rule(v1::UPDATE_RULE_MFEC_MAX);
  spec.set_kernel(v1::KERNEL_MEAN);
  spec.set_index(index);
  return spec;
}

std::unique_ptr<Memory> Make(const v1::MemorySpec& spec) {
  absl::StatusOr<std::unique_ptr<Memory>> memory = Memory::Create(spec);
  EXPECT_TRUE(memory.ok()) << memory.status();
  return *std::move(memory);
}

WriteResult WriteOne(Memory& memory, std::vector<float> key, int32_t action, float value) {
  absl::StatusOr<WriteResult> result = memory.Write(key.data(), 1, &action, &value);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : WriteResult{};
}

TEST(MemorySpecTest, NamesTheBadField) {
  auto problem = [](auto mutate) {
    v1::MemorySpec spec = Spec();
    mutate(spec);
    return std::string(ValidateMemorySpec(spec).message());
  };
  EXPECT_TRUE(ValidateMemorySpec(Spec()).ok());
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_name("Bad-Name"); }), HasSubstr("spec.name"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_key_dim(0); }), HasSubstr("spec.key_dim"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_num_actions(0); }),
              HasSubstr("spec.num_actions"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_capacity_per_action(0); }),
              HasSubstr("spec.capacity_per_action"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_update_rule(v1::UPDATE_RULE_UNSPECIFIED); }),
              HasSubstr("spec.update_rule"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_nec_alpha(0); }), HasSubstr("spec.nec_alpha"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_kernel(v1::KERNEL_UNSPECIFIED); }),
              HasSubstr("spec.kernel"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_kernel_delta(-1); }),
              HasSubstr("spec.kernel_delta"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_index(v1::INDEX_KIND_UNSPECIFIED); }),
              HasSubstr("spec.index"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_default_k(0); }), HasSubstr("spec.default_k"));
  EXPECT_THAT(problem([](v1::MemorySpec& s) { s.set_exact_match_distance(-1); }),
              HasSubstr("spec.exact_match_distance"));
}

TEST(MemoryTest, MfecKeepsTheMaxAndExactMatchesReturnTheStoredValue) {
  auto memory = Make(Spec());
  EXPECT_EQ(WriteOne(*memory, {0, 0}, 1, 5).inserted, 1);
  EXPECT_EQ(WriteOne(*memory, {0, 0}, 1, 3).updated, 1);  // max(5, 3) stays 5
  EXPECT_EQ(WriteOne(*memory, {0, 0}, 1, 7).updated, 1);  // max(5, 7) = 7
  WriteOne(*memory, {3, 4}, 1, 1);                        // squared distance 25
  std::vector<float> query = {0, 0};
  absl::StatusOr<LookupResult> result = memory->Lookup(query.data(), 1, {}, 2, false);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->m, 3);
  // Action 1: both keys, nearest first; the estimate is the exact match's value.
  EXPECT_EQ(result->counts[1], 2);
  EXPECT_FLOAT_EQ(result->distances[1 * 2 + 0], 0);
  EXPECT_FLOAT_EQ(result->distances[1 * 2 + 1], 25);
  EXPECT_FLOAT_EQ(result->values[1 * 2 + 0], 7);
  EXPECT_FLOAT_EQ(result->estimates[1], 7);
  // Actions 0 and 2 hold nothing: count 0, estimate 0, padding +inf.
  EXPECT_EQ(result->counts[0], 0);
  EXPECT_EQ(result->estimates[0], 0);
  EXPECT_TRUE(std::isinf(result->distances[0]));
  // Away from any stored key the kernel averages: mean of 7 and 1.
  std::vector<float> off = {1, 1};
  result = memory->Lookup(off.data(), 1, {1}, 2, false);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->m, 1);
  EXPECT_FLOAT_EQ(result->estimates[0], 4);
}

// Batched exact search (>= 20 queries goes through BLAS) need not give identical keys a
// distance of exactly 0; MFEC's exact match is found by the key itself.
TEST(MemoryTest, MfecExactMatchHoldsInLargeBatches) {
  auto memory = Make(Spec(v1::INDEX_KIND_EXACT, 8, 1000));
  absl::BitGen gen(std::seed_seq{3});
  constexpr int kKeys = 64;
  std::vector<float> keys(kKeys * 8);
  for (float& x : keys) x = absl::Uniform<float>(gen, 100, 1000);  // large norms
  std::vector<int32_t> actions(kKeys, 0);
  std::vector<float> values(kKeys);
  for (int i = 0; i < kKeys; ++i) values[i] = static_cast<float>(i);
  ASSERT_TRUE(memory->Write(keys.data(), kKeys, actions.data(), values.data()).ok());
  absl::StatusOr<LookupResult> result = memory->Lookup(keys.data(), kKeys, actions, 5, false);
  ASSERT_TRUE(result.ok());
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(result->estimates[i], values[i]) << i;
}

TEST(MemoryTest, RefusesAnswersTooLargeToSend) {
  auto memory = Make(Spec(v1::INDEX_KIND_EXACT, 64, 10));
  std::vector<float> queries(16384 * 64, 0);
  absl::StatusOr<LookupResult> huge = memory->Lookup(queries.data(), 16384, {}, 1024, true);
  EXPECT_TRUE(absl::IsResourceExhausted(huge.status())) << huge.status();
}

TEST(MemoryTest, NecMovesTowardTheWrittenValueAndWeightsByInverseDistance) {
  v1::MemorySpec spec = Spec();
  spec.set_update_rule(v1::UPDATE_RULE_NEC);
  spec.set_nec_alpha(0.5);
  spec.set_kernel(v1::KERNEL_INVERSE_DISTANCE);
  spec.set_kernel_delta(1);
  auto memory = Make(spec);
  WriteOne(*memory, {0, 0}, 0, 10);
  WriteOne(*memory, {0, 0}, 0, 20);  // 10 + 0.5 * (20 - 10) = 15
  WriteOne(*memory, {2, 0}, 0, 0);   // squared distance 4 from the origin
  std::vector<float> query = {0, 0};
  absl::StatusOr<LookupResult> result = memory->Lookup(query.data(), 1, {0}, 2, false);
  ASSERT_TRUE(result.ok());
  EXPECT_FLOAT_EQ(result->values[0], 15);
  // Weights 1/(0+1) and 1/(4+1): (15 * 1 + 0 * 0.2) / 1.2.
  EXPECT_NEAR(result->estimates[0], 15 / 1.2, 1e-5);
}

TEST(MemoryTest, EvictsTheLeastRecentlyUsedAndLookupsCountAsUse) {
  auto memory = Make(Spec(v1::INDEX_KIND_EXACT, 2, /*capacity=*/3));
  WriteOne(*memory, {0, 0}, 2, 1);
  WriteOne(*memory, {10, 0}, 2, 2);
  WriteOne(*memory, {20, 0}, 2, 3);
  // Using {0,0} as a neighbour makes {10,0} the least recently used.
  std::vector<float> near_origin = {0.1f, 0};
  ASSERT_TRUE(memory->Lookup(near_origin.data(), 1, {2}, 1, false).ok());
  EXPECT_EQ(WriteOne(*memory, {30, 0}, 2, 4).evicted, 1);
  std::vector<float> queries = {10, 0, 0, 0};
  absl::StatusOr<LookupResult> result = memory->Lookup(queries.data(), 2, {2, 2}, 1, false);
  ASSERT_TRUE(result.ok());
  EXPECT_GT(result->distances[0], 0);        // {10,0} is gone
  EXPECT_FLOAT_EQ(result->distances[1], 0);  // {0,0} stayed
  v1::MemoryInfo info = memory->Info();
  EXPECT_THAT(info.sizes(), ElementsAre(0, 0, 3));
  EXPECT_EQ(info.evictions_total(), 1);
  EXPECT_EQ(info.inserts_total(), 4);
  EXPECT_EQ(info.writes_total(), 4);
  EXPECT_EQ(info.lookups_total(), 3);
}

TEST(MemoryTest, BadInputChangesNothing) {
  auto memory = Make(Spec());
  std::vector<float> keys = {0, 0, 1, 1};
  std::vector<int32_t> actions = {0, 3};
  std::vector<float> values = {1, 2};
  absl::StatusOr<WriteResult> bad = memory->Write(keys.data(), 2, actions.data(), values.data());
  EXPECT_THAT(bad.status().message(), HasSubstr("actions[1]: 3 is not in [0, 3)"));
  actions = {0, 1};
  values = {1, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_THAT(memory->Write(keys.data(), 2, actions.data(), values.data()).status().message(),
              HasSubstr("values[1]"));
  values = {1, 2};
  keys[3] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(memory->Write(keys.data(), 2, actions.data(), values.data()).status().message(),
              HasSubstr("keys[1]"));
  EXPECT_THAT(memory->Info().sizes(), ElementsAre(0, 0, 0));  // nothing stored
  std::vector<float> query = {0, 0};
  EXPECT_THAT(memory->Lookup(query.data(), 1, {}, -1, false).status().message(), HasSubstr("k:"));
  EXPECT_THAT(memory->Lookup(query.data(), 1, {5}, 1, false).status().message(),
              HasSubstr("actions[0]"));
  EXPECT_THAT(memory->Lookup(query.data(), 1, {0, 1}, 1, false).status().message(),
              HasSubstr("actions: must be empty or have 1"));
  query[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(absl::IsInvalidArgument(memory->Lookup(query.data(), 1, {}, 1, false).status()));
  EXPECT_EQ(memory->Info().lookups_total(), 0);
}

TEST(MemoryTest, SnapshotRoundTripKeepsKeysValuesAndRecency) {
  auto memory = Make(Spec(v1::INDEX_KIND_EXACT, 2, /*capacity=*/3));
  WriteOne(*memory, {0, 0}, 0, 1);
  WriteOne(*memory, {1, 0}, 0, 2);
  WriteOne(*memory, {2, 0}, 0, 3);
  WriteOne(*memory, {5, 5}, 2, 9);
  std::vector<float> touch = {0, 0};
  ASSERT_TRUE(memory->Lookup(touch.data(), 1, {0}, 1, false).ok());  // {1,0} is now oldest
  std::stringstream saved;
  ASSERT_TRUE(memory->Save(saved).ok());
  const std::string bytes = saved.str();
  absl::StatusOr<std::unique_ptr<Memory>> loaded = Memory::Load(saved);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT((*loaded)->Info().sizes(), ElementsAre(3, 0, 1));
  EXPECT_EQ((*loaded)->Info().lookups_total(), 1);
  // The same recency: the next insert evicts {1,0}.
  WriteOne(**loaded, {9, 9}, 0, 4);
  std::vector<float> query = {1, 0};
  absl::StatusOr<LookupResult> result = (*loaded)->Lookup(query.data(), 1, {0}, 1, false);
  ASSERT_TRUE(result.ok());
  EXPECT_FLOAT_EQ(result->distances[0], 1);  // nearest is now {0,0} or {2,0}
  // A damaged snapshot is DATA_LOSS, never a half-loaded memory.
  std::stringstream truncated(bytes.substr(0, bytes.size() - 12));
  EXPECT_TRUE(absl::IsDataLoss(Memory::Load(truncated).status()));
  std::stringstream garbage("not a snapshot at all");
  EXPECT_TRUE(absl::IsDataLoss(Memory::Load(garbage).status()));
}

// Lookups share the memory's lock and writes (with eviction and IVF retraining) exclude
// them: under a writer and two lookup threads, every answer is well-formed, and afterwards
// every key written last is found (at distance 0 up to rounding) with its value.
TEST(MemoryTest, ConcurrentLookupsAndWritesKeepTheMemoryConsistent) {
  constexpr int kDim = 16, kCapacity = 3000;
  v1::MemorySpec spec = Spec(v1::INDEX_KIND_APPROXIMATE, kDim, kCapacity);
  IndexOptions options;
  options.ivf.train_at = 500;
  options.ivf.list_size = 32;
  options.ivf.nprobe = 1 << 20;  // every list: the answers must be exact
  absl::StatusOr<std::unique_ptr<Memory>> created = Memory::Create(spec, options);
  ASSERT_TRUE(created.ok()) << created.status();
  Memory& memory = **created;
  std::atomic<bool> done{false};
  std::atomic<int> bad_answers{0};
  auto lookups = [&](uint32_t seed) {
    absl::BitGen gen(std::seed_seq{seed});
    std::vector<float> queries(8 * kDim);
    while (!done) {
      for (float& x : queries) x = absl::Gaussian<float>(gen);
      absl::StatusOr<LookupResult> result = memory.Lookup(queries.data(), 8, {}, 5, false);
      if (!result.ok()) {
        ++bad_answers;
        continue;
      }
      for (size_t c = 0; c < result->counts.size(); ++c) {
        for (int j = 1; j < result->counts[c]; ++j) {  // ascending distances
          if (result->distances[c * 5 + j] < result->distances[c * 5 + j - 1]) ++bad_answers;
        }
      }
    }
  };
  std::thread reader1(lookups, 1), reader2(lookups, 2);
  absl::BitGen gen(std::seed_seq{3});
  std::vector<float> last_keys(3 * 500 * kDim);  // the last 500 keys of each action
  for (int i = 0; i < 3 * 4000; ++i) {
    std::vector<float> key(kDim);
    for (float& x : key) x = absl::Gaussian<float>(gen);
    const int32_t action = i % 3;
    const int last = i / 3 - (4000 - 500);
    if (last >= 0) {
      std::copy(key.begin(), key.end(), last_keys.begin() + (action * 500 + last) * kDim);
    }
    WriteOne(memory, key, action, static_cast<float>(i));
  }
  done = true;
  reader1.join();
  reader2.join();
  EXPECT_EQ(bad_answers, 0);
  EXPECT_THAT(memory.Info().sizes(), ElementsAre(kCapacity, kCapacity, kCapacity));
  for (int32_t action = 0; action < 3; ++action) {
    std::vector<int32_t> actions(500, action);
    absl::StatusOr<LookupResult> result =
        memory.Lookup(last_keys.data() + action * 500 * kDim, 500, actions, 1, false);
    ASSERT_TRUE(result.ok());
    for (int q = 0; q < 500; ++q) {
      ASSERT_LT(result->distances[q], 1e-4) << "action " << action << ", key " << q;
      EXPECT_EQ(result->values[q], static_cast<float>(3 * (4000 - 500 + q) + action));
    }
  }
}

struct RecallCase {
  std::string name;
  IndexOptions::Approximate index;
  // "synthetic" (projected i.i.d. sparse binary observations, a high intrinsic dimension)
  // or a MinAtar game (projected distinct observations, like the agent's keys).
  std::string keys;
};

class ApproximateRecallTest : public ::testing::TestWithParam<RecallCase> {};

// The approximate index against the exact one: recall@50 of the same queries, at the
// store's default settings.
TEST_P(ApproximateRecallTest, RecallAt50IsAtLeast95Percent) {
  constexpr int kDim = 64, kKeys = 20000, kQueries = 200, kK = 50;
  absl::BitGen gen(std::seed_seq{7});
  std::vector<float> all;
  if (GetParam().keys == "synthetic") {
    all = ProjectedKeys(kKeys + kQueries, kDim, gen);
  } else {
    absl::StatusOr<std::vector<float>> game =
        GameKeys(GetParam().keys, kKeys + kQueries, kDim, gen);
    ASSERT_TRUE(game.ok()) << game.status();
    all = *std::move(game);
  }
  const std::vector<float> keys(all.begin(), all.begin() + kKeys * kDim);
  const std::vector<float> queries(all.begin() + kKeys * kDim, all.end());
  IndexOptions options;
  options.approximate = GetParam().index;
  auto exact = Make(Spec(v1::INDEX_KIND_EXACT, kDim, kKeys));
  absl::StatusOr<std::unique_ptr<Memory>> approximate =
      Memory::Create(Spec(v1::INDEX_KIND_APPROXIMATE, kDim, kKeys), options);
  ASSERT_TRUE(approximate.ok()) << approximate.status();
  std::vector<int32_t> actions(kKeys, 0);
  std::vector<float> values(kKeys);
  for (int i = 0; i < kKeys; ++i) values[i] = static_cast<float>(i);  // value = key id
  ASSERT_TRUE(exact->Write(keys.data(), kKeys, actions.data(), values.data()).ok());
  ASSERT_TRUE((*approximate)->Write(keys.data(), kKeys, actions.data(), values.data()).ok());
  std::vector<int32_t> query_actions(kQueries, 0);
  auto truth = exact->Lookup(queries.data(), kQueries, query_actions, kK, false);
  auto found = (*approximate)->Lookup(queries.data(), kQueries, query_actions, kK, false);
  ASSERT_TRUE(truth.ok() && found.ok());
  int64_t hits = 0;
  for (int q = 0; q < kQueries; ++q) {
    std::set<float> ids(truth->values.begin() + q * kK, truth->values.begin() + (q + 1) * kK);
    for (int j = 0; j < kK; ++j) hits += ids.count(found->values[q * kK + j]);
  }
  const double recall = static_cast<double>(hits) / (kQueries * kK);
  EXPECT_GE(recall, 0.95);
  RecordProperty("recall_at_50", std::to_string(recall));
}

INSTANTIATE_TEST_SUITE_P(
    Indices, ApproximateRecallTest,
    ::testing::Values(RecallCase{"ivf_space_invaders", IndexOptions::Approximate::kIvf,
                                 "minatar/space_invaders"},
                      RecallCase{"hnsw_space_invaders", IndexOptions::Approximate::kHnsw,
                                 "minatar/space_invaders"},
                      RecallCase{"hnsw_synthetic", IndexOptions::Approximate::kHnsw, "synthetic"}),
    [](const ::testing::TestParamInfo<RecallCase>& info) { return info.param.name; });

}  // namespace
}  // namespace engram::episodic
