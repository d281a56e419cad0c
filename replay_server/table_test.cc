#include "replay_server/table.h"

#include <cmath>
#include <map>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay_server/testing/test_items.h"

namespace engram::replay {
namespace {

using ::engram::replay::testing::TestObservation;
using ::engram::replay::testing::TestTransition;

using ::testing::HasSubstr;

constexpr absl::Time kNow = absl::InfinitePast();  // "do not wait"

v1::TableSpec Spec(v1::Selector selector = v1::SELECTOR_PRIORITIZED, int64_t max_size = 100) {
  v1::TableSpec spec;
  spec.set_name("test_table");
  spec.set_selector(selector);
  spec.set_priority_exponent(1.0);
  spec.set_max_size(max_size);
  spec.mutable_signature()->mutable_observation()->set_dtype(v1::DTYPE_UINT8);
  spec.mutable_signature()->mutable_observation()->add_shape(2);
  spec.mutable_signature()->mutable_observation()->add_shape(3);
  spec.mutable_signature()->set_num_actions(4);
  return spec;
}

google::protobuf::RepeatedPtrField<v1::Item> Batch(std::vector<v1::Item> items) {
  google::protobuf::RepeatedPtrField<v1::Item> batch;
  for (auto& item : items) *batch.Add() = std::move(item);
  return batch;
}

absl::StatusOr<int> Insert(Table& table, std::vector<v1::Item> items, absl::Time deadline = kNow) {
  auto batch = Batch(std::move(items));
  return table.Insert(&batch, deadline);
}

void Fill(Table& table, int n, uint64_t first_key = 1) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(Insert(table, {TestTransition(first_key + i, 1.0, i, i + 1)}).ok());
  }
}

std::vector<uint64_t> SampledKeys(const v1::SampleResponse& r) {
  std::vector<uint64_t> keys;
  for (const auto& s : r.items()) keys.push_back(s.item().key());
  return keys;
}

TEST(TableTest, CreateRejectsBadSpecsNamingTheField) {
  struct Case {
    std::function<void(v1::TableSpec&)> edit;
    const char* field;
  };
  const Case cases[] = {
      {[](v1::TableSpec& s) { s.set_name(""); }, "spec.name"},
      {[](v1::TableSpec& s) { s.set_name("Bad-Name"); }, "spec.name"},
      {[](v1::TableSpec& s) { s.set_selector(v1::SELECTOR_UNSPECIFIED); }, "spec.selector"},
      {[](v1::TableSpec& s) { s.set_priority_exponent(1.5); }, "spec.priority_exponent"},
      {[](v1::TableSpec& s) { s.set_max_size(0); }, "spec.max_size"},
      {[](v1::TableSpec& s) { s.set_max_times_sampled(-1); }, "spec.max_times_sampled"},
      {[](v1::TableSpec& s) { s.mutable_rate_limiter()->set_min_size_to_sample(101); },
       "min_size_to_sample"},
      {[](v1::TableSpec& s) { s.mutable_rate_limiter()->set_samples_per_insert(-2); },
       "samples_per_insert"},
  };
  for (const Case& c : cases) {
    v1::TableSpec spec = Spec();
    c.edit(spec);
    auto table = Table::Create(spec);
    ASSERT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(table.status().message(), HasSubstr(c.field));
  }
}

TEST(TableTest, SampledItemsEqualWhatWasInserted) {
  auto table = Table::Create(Spec()).value();
  v1::Item original = TestTransition(7, 2.0, 5, 9);
  original.mutable_transition()->mutable_provenance()->set_actor_index(3);
  ASSERT_EQ(Insert(*table, {original}).value(), 1);
  v1::SampleResponse response;
  ASSERT_TRUE(table->Sample(1, 0.4, kNow, &response).ok());
  ASSERT_EQ(response.items_size(), 1);
  EXPECT_EQ(response.items(0).item().SerializeAsString(), original.SerializeAsString());
  EXPECT_EQ(response.items(0).times_sampled(), 1);
  EXPECT_EQ(response.items(0).probability(), 1.0);
  EXPECT_EQ(response.table_size(), 1);
  EXPECT_EQ(response.priority_total(), 2.0);
}

TEST(TableTest, DuplicateKeysAreAcknowledgedNotStoredTwice) {
  auto table = Table::Create(Spec()).value();
  EXPECT_EQ(
      Insert(*table, {TestTransition(1, 1), TestTransition(2, 1), TestTransition(1, 5)}).value(),
      2);
  EXPECT_EQ(Insert(*table, {TestTransition(2, 1)}).value(), 0);
  const v1::TableInfo info = table->Info();
  EXPECT_EQ(info.size(), 2);
  EXPECT_EQ(info.inserts_total(), 2);
  EXPECT_EQ(info.duplicate_inserts_total(), 2);
}

TEST(TableTest, ABadItemRejectsTheWholeBatch) {
  auto table = Table::Create(Spec()).value();
  Fill(*table, 3);
  struct Case {
    std::function<void(v1::Item&)> edit;
    const char* message;
  };
  const Case cases[] = {
      {[](v1::Item& i) { i.set_priority(std::nan("")); }, "priority must be finite"},
      {[](v1::Item& i) { i.set_priority(-1); }, "priority must be finite and >= 0"},
      {[](v1::Item& i) { i.set_priority(INFINITY); }, "priority must be finite"},
      {[](v1::Item& i) { i.set_key(0); }, "key must not be 0"},
      {[](v1::Item& i) { i.clear_payload(); }, "payload must be"},
      {[](v1::Item& i) { i.mutable_transition()->set_action(4); }, "action 4 outside [0, 4)"},
      {[](v1::Item& i) { i.mutable_transition()->set_reward(NAN); }, "reward must be finite"},
      {[](v1::Item& i) { i.mutable_transition()->set_discount(1.5f); }, "discount"},
      {[](v1::Item& i) { i.mutable_transition()->mutable_observation()->add_shape(1); },
       "observation shape [2,3,1] does not match signature [2,3] of table \"test_table\""},
      {[](v1::Item& i) { i.mutable_transition()->mutable_observation()->set_data("xx"); },
       "truncated"},
      {[](v1::Item& i) {
         i.mutable_transition()->mutable_next_observation()->set_dtype(v1::DTYPE_FLOAT32);
       },
       "next_observation"},
  };
  for (const Case& c : cases) {
    v1::Item bad = TestTransition(102, 1);
    c.edit(bad);
    auto result = Insert(*table, {TestTransition(100, 1), TestTransition(101, 1), bad});
    ASSERT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(result.status().message(), HasSubstr("insert item 2"));
    EXPECT_THAT(result.status().message(), HasSubstr(c.message));
    EXPECT_EQ(table->size(), 3) << "nothing of the batch may be stored";
  }
}

TEST(TableTest, FullTableEvictsTheOldestByDefault) {
  auto table = Table::Create(Spec(v1::SELECTOR_UNIFORM, 3)).value();
  Fill(*table, 5);  // keys 1..5
  EXPECT_EQ(table->size(), 3);
  v1::UpdatePrioritiesRequest probe;
  for (uint64_t k = 1; k <= 5; ++k) {
    probe.add_keys(k);
    probe.add_priorities(1);
  }
  probe.set_table("test_table");
  const auto result = table->UpdatePriorities(probe).value();
  EXPECT_EQ(result.updated(), 3);  // 3, 4, 5 are live
  EXPECT_EQ(result.missing(), 2);  // 1 and 2 were evicted
  EXPECT_EQ(table->Info().removals_total(), 2);
}

TEST(TableTest, LowestPriorityRemoverEvictsLowestThenOldest) {
  v1::TableSpec spec = Spec(v1::SELECTOR_UNIFORM, 3);
  spec.set_remover(v1::REMOVER_LOWEST_PRIORITY);
  auto table = Table::Create(spec).value();
  ASSERT_TRUE(
      Insert(*table, {TestTransition(1, 5), TestTransition(2, 1), TestTransition(3, 1)}).ok());
  ASSERT_TRUE(Insert(*table, {TestTransition(4, 9)}).ok());  // evicts 2 (lowest, older than 3)
  ASSERT_TRUE(Insert(*table, {TestTransition(5, 9)}).ok());  // evicts 3
  v1::UpdatePrioritiesRequest probe;
  for (uint64_t k : {1, 2, 3, 4, 5}) {
    probe.add_keys(k);
    probe.add_priorities(1);
  }
  const auto result = table->UpdatePriorities(probe).value();
  EXPECT_EQ(result.missing(), 2);
  // Now every priority is 1: the oldest (key 1) goes first.
  ASSERT_TRUE(Insert(*table, {TestTransition(6, 2)}).ok());
  v1::UpdatePrioritiesRequest one;
  one.add_keys(1);
  one.add_priorities(1);
  EXPECT_EQ(table->UpdatePriorities(one).value().missing(), 1);
}

TEST(TableTest, PrioritizedSamplingFollowsPriorityToTheAlpha) {
  v1::TableSpec spec = Spec();
  spec.set_priority_exponent(0.5);
  auto table = Table::Create(spec).value();
  // Priorities 1, 4, 9, 16 -> weights 1, 2, 3, 4 (sum 10).
  ASSERT_TRUE(Insert(*table, {TestTransition(1, 1), TestTransition(2, 4), TestTransition(3, 9),
                              TestTransition(4, 16)})
                  .ok());
  std::map<uint64_t, int> counts;
  v1::SampleResponse response;
  constexpr int kBatches = 4000, kBatch = 10;
  for (int b = 0; b < kBatches; ++b) {
    ASSERT_TRUE(table->Sample(kBatch, 1.0, kNow, &response).ok());
    EXPECT_DOUBLE_EQ(response.priority_total(), 10.0);
    for (const auto& s : response.items()) {
      ++counts[s.item().key()];
      EXPECT_DOUBLE_EQ(s.probability(), static_cast<double>(s.item().key()) / 10.0);
    }
  }
  double chi2 = 0;
  for (uint64_t k = 1; k <= 4; ++k) {
    const double expected = kBatches * kBatch * k / 10.0;
    chi2 += (counts[k] - expected) * (counts[k] - expected) / expected;
  }
  EXPECT_LT(chi2, 16.27);  // chi-square, 3 degrees of freedom, p = 0.001
}

TEST(TableTest, ImportanceWeightsFollowSchaul) {
  auto table = Table::Create(Spec()).value();
  ASSERT_TRUE(Insert(*table, {TestTransition(1, 1), TestTransition(2, 3)}).ok());
  v1::SampleResponse response;
  const double beta = 0.5;
  bool saw_both = false;
  for (int attempt = 0; attempt < 50 && !saw_both; ++attempt) {
    ASSERT_TRUE(table->Sample(8, beta, kNow, &response).ok());
    std::set<uint64_t> keys;
    for (const auto& s : response.items()) keys.insert(s.item().key());
    saw_both = keys.size() == 2;
  }
  ASSERT_TRUE(saw_both);
  // w = (N P)^-beta / max w: P = 1/4 and 3/4, N = 2 -> raw 2^0.5 and (1.5)^-0.5.
  const double w1 = std::pow(2 * 0.25, -beta), w2 = std::pow(2 * 0.75, -beta);
  for (const auto& s : response.items()) {
    const double expected = (s.item().key() == 1 ? w1 : w2) / std::max(w1, w2);
    EXPECT_NEAR(s.importance_weight(), expected, 1e-12);
  }
}

TEST(TableTest, ZeroPriorityItemsAreNeverSampledUnlessAllAreZero) {
  auto table = Table::Create(Spec()).value();
  ASSERT_TRUE(Insert(*table, {TestTransition(1, 0), TestTransition(2, 1)}).ok());
  v1::SampleResponse response;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(table->Sample(4, 1, kNow, &response).ok());
    for (const auto& s : response.items()) ASSERT_EQ(s.item().key(), 2u);
  }
  v1::UpdatePrioritiesRequest zero;
  zero.add_keys(2);
  zero.add_priorities(0);
  ASSERT_TRUE(table->UpdatePriorities(zero).ok());
  std::set<uint64_t> seen;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(table->Sample(4, 1, kNow, &response).ok());
    for (const auto& s : response.items()) seen.insert(s.item().key());
    EXPECT_EQ(response.items(0).probability(), 0.5);
  }
  EXPECT_EQ(seen.size(), 2u);  // uniform fallback
}

TEST(TableTest, UniformSelectorReportsOneOverN) {
  auto table = Table::Create(Spec(v1::SELECTOR_UNIFORM)).value();
  Fill(*table, 5);
  v1::SampleResponse response;
  ASSERT_TRUE(table->Sample(3, 1, kNow, &response).ok());
  for (const auto& s : response.items()) {
    EXPECT_DOUBLE_EQ(s.probability(), 0.2);
    EXPECT_DOUBLE_EQ(s.importance_weight(), 1.0);
  }
}

TEST(TableTest, FifoAndLifoSelectorsAndAQueue) {
  auto fifo = Table::Create(Spec(v1::SELECTOR_FIFO)).value();
  auto lifo = Table::Create(Spec(v1::SELECTOR_LIFO)).value();
  Fill(*fifo, 5);
  Fill(*lifo, 5);
  v1::SampleResponse response;
  ASSERT_TRUE(fifo->Sample(3, 1, kNow, &response).ok());
  EXPECT_THAT(SampledKeys(response), ::testing::ElementsAre(1, 2, 3));
  ASSERT_TRUE(lifo->Sample(3, 1, kNow, &response).ok());
  EXPECT_THAT(SampledKeys(response), ::testing::ElementsAre(5, 4, 3));

  v1::TableSpec queue_spec = Spec(v1::SELECTOR_FIFO);
  queue_spec.set_max_times_sampled(1);
  auto queue = Table::Create(queue_spec).value();
  Fill(*queue, 5);
  ASSERT_TRUE(queue->Sample(2, 1, kNow, &response).ok());
  EXPECT_THAT(SampledKeys(response), ::testing::ElementsAre(1, 2));
  ASSERT_TRUE(queue->Sample(2, 1, kNow, &response).ok());
  EXPECT_THAT(SampledKeys(response), ::testing::ElementsAre(3, 4));
  EXPECT_EQ(queue->size(), 1);
  // One item left: a batch of 2 cannot be served without waiting.
  EXPECT_EQ(queue->Sample(2, 1, kNow, &response).code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(TableTest, MaxTimesSampledNeverRepeatsAnItemPastItsLimit) {
  v1::TableSpec spec = Spec();
  spec.set_max_times_sampled(1);
  auto table = Table::Create(spec).value();
  Fill(*table, 20);
  v1::SampleResponse response;
  std::set<uint64_t> seen;
  for (int b = 0; b < 4; ++b) {
    ASSERT_TRUE(table->Sample(5, 1, kNow, &response).ok());
    for (uint64_t key : SampledKeys(response)) EXPECT_TRUE(seen.insert(key).second) << key;
  }
  EXPECT_EQ(seen.size(), 20u);
  EXPECT_EQ(table->size(), 0);
}

TEST(TableTest, SampleBlocksUntilMinSizeThenReturns) {
  v1::TableSpec spec = Spec();
  spec.mutable_rate_limiter()->set_min_size_to_sample(2);
  auto table = Table::Create(spec).value();
  absl::Notification sampled;
  std::thread t([&] {
    v1::SampleResponse response;
    EXPECT_TRUE(table->Sample(1, 1, absl::InfiniteFuture(), &response).ok());
    sampled.Notify();
  });
  ASSERT_TRUE(Insert(*table, {TestTransition(1, 1)}).ok());
  EXPECT_FALSE(sampled.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  ASSERT_TRUE(Insert(*table, {TestTransition(2, 1)}).ok());
  EXPECT_TRUE(sampled.WaitForNotificationWithTimeout(absl::Seconds(5)));
  t.join();
}

TEST(TableTest, InsertBlocksWhenAheadOfTheRatioUntilSamplesCatchUp) {
  v1::TableSpec spec = Spec();
  spec.mutable_rate_limiter()->set_samples_per_insert(1);
  spec.mutable_rate_limiter()->set_min_size_to_sample(2);
  spec.mutable_rate_limiter()->set_error_buffer(2);  // diff in [0, 4]
  auto table = Table::Create(spec).value();
  Fill(*table, 4);  // diff 4: the next insert would make 5 > 4
  const auto blocked =
      Insert(*table, {TestTransition(50, 1)}, absl::Now() + absl::Milliseconds(30));
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(table->size(), 4);
  EXPECT_EQ(table->Info().rate_limiter().waiting_inserts(), 0);
  EXPECT_GT(table->Info().rate_limiter().insert_wait_seconds_total(), 0.02);

  absl::Notification inserted;
  std::thread t([&] {
    EXPECT_TRUE(Insert(*table, {TestTransition(51, 1)}, absl::InfiniteFuture()).ok());
    inserted.Notify();
  });
  EXPECT_FALSE(inserted.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  v1::SampleResponse response;
  ASSERT_TRUE(table->Sample(1, 1, kNow, &response).ok());
  EXPECT_TRUE(inserted.WaitForNotificationWithTimeout(absl::Seconds(5)));
  t.join();
}

// Items recovered from the write-ahead log were admitted (and balanced by samples that the
// log does not hold) before the crash: they must not hold new inserts back.
TEST(TableTest, RecoveredItemsAreStoredButDoNotCountInTheRateLimiter) {
  v1::TableSpec spec = Spec();
  spec.mutable_rate_limiter()->set_samples_per_insert(1);
  spec.mutable_rate_limiter()->set_min_size_to_sample(2);
  spec.mutable_rate_limiter()->set_error_buffer(2);  // diff in [0, 4]
  auto table = Table::Create(spec).value();
  auto recovered = Batch({TestTransition(1), TestTransition(2), TestTransition(3),
                          TestTransition(4), TestTransition(5), TestTransition(6)});
  ASSERT_EQ(table->InsertRecovered(&recovered).value_or(-1), 6);
  EXPECT_EQ(table->size(), 6);
  EXPECT_EQ(table->Info().inserts_total(), 6);
  // Without the limiter counting them, a new insert is admitted at once.
  EXPECT_TRUE(Insert(*table, {TestTransition(7)}).ok());
  // Also after a checkpoint round trip: the limiter's own counts travel with it (the Info
  // counters, which include the recovered items, would hold inserts back).
  TableCounters counters;
  table->Export([](const v1::Item&, int32_t) {}, &counters);
  EXPECT_EQ(counters.inserts, 7);
  EXPECT_EQ(counters.limiter_inserts, 1);
  auto restored = Table::Create(spec).value();
  restored->RestoreCounters(counters);
  EXPECT_TRUE(Insert(*restored, {TestTransition(8)}).ok());
  EXPECT_EQ(restored->Info().inserts_total(), 8);
  // Recovery validates like Insert.
  auto bad = Batch({TestTransition(0)});
  EXPECT_EQ(table->InsertRecovered(&bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TableTest, CloseWakesWaitersWithItsStatus) {
  v1::TableSpec spec = Spec();
  spec.mutable_rate_limiter()->set_min_size_to_sample(5);
  auto table = Table::Create(spec).value();
  absl::Status status;
  std::thread t([&] {
    v1::SampleResponse response;
    status = table->Sample(1, 1, absl::InfiniteFuture(), &response);
  });
  absl::SleepFor(absl::Milliseconds(20));
  table->Close(absl::NotFoundError("table \"test_table\" was deleted"));
  t.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Insert(*table, {TestTransition(1, 1)}).status().code(), absl::StatusCode::kNotFound);
}

TEST(TableTest, BadSampleArguments) {
  v1::TableSpec spec = Spec();
  spec.mutable_rate_limiter()->set_samples_per_insert(1);
  spec.mutable_rate_limiter()->set_error_buffer(10);
  auto table = Table::Create(spec).value();
  Fill(*table, 5);
  v1::SampleResponse response;
  EXPECT_EQ(table->Sample(0, 1, kNow, &response).code(), absl::StatusCode::kInvalidArgument);
  // A huge batch is refused before anything is allocated for it (found by fuzzing).
  absl::Status huge = table->Sample(590'000'000, 1, kNow, &response);
  EXPECT_EQ(huge.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(huge.message(), HasSubstr("batch_size must be in [1, 16384]"));
  EXPECT_EQ(table->Sample(1, 1.5, kNow, &response).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table->Sample(1, std::nan(""), kNow, &response).code(),
            absl::StatusCode::kInvalidArgument);
  // 2 * error_buffer - samples_per_insert = 19: a batch of 20 could deadlock.
  EXPECT_EQ(table->Sample(20, 1, kNow, &response).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TableTest, UpdatePrioritiesValidatesFirstThenApplies) {
  auto table = Table::Create(Spec()).value();
  Fill(*table, 3);
  v1::UpdatePrioritiesRequest bad;
  bad.add_keys(1);
  bad.add_priorities(7);
  bad.add_keys(2);
  bad.add_priorities(std::nan(""));
  auto result = table->UpdatePriorities(bad);
  ASSERT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("priorities[1] (key 2)"));
  EXPECT_EQ(table->Info().priority_total(), 3.0) << "nothing applied";

  v1::UpdatePrioritiesRequest mismatch;
  mismatch.add_keys(1);
  EXPECT_EQ(table->UpdatePriorities(mismatch).status().code(), absl::StatusCode::kInvalidArgument);

  v1::UpdatePrioritiesRequest good;
  good.add_keys(1);
  good.add_priorities(7);
  good.add_keys(99);
  good.add_priorities(1);
  good.add_delete_keys(3);
  good.add_delete_keys(98);
  const auto applied = table->UpdatePriorities(good).value();
  EXPECT_EQ(applied.updated(), 1);
  EXPECT_EQ(applied.missing(), 1);
  EXPECT_EQ(applied.deleted(), 1);
  EXPECT_EQ(table->Info().priority_total(), 8.0);  // 7 + 1
  EXPECT_EQ(table->size(), 2);
}

TEST(TableTest, ConsecutiveTransitionsShareObservationFrames) {
  auto table = Table::Create(Spec(v1::SELECTOR_UNIFORM, 1000)).value();
  Fill(*table, 100);  // transition i: obs i -> obs i + 1
  // 101 distinct observations of 6 bytes, not 200.
  EXPECT_LT(table->payload_bytes(), 101 * 6 + 100 * 64);
  v1::SampleResponse response;
  ASSERT_TRUE(table->Sample(20, 1, kNow, &response).ok());
  for (const auto& s : response.items()) {
    const int i = static_cast<int>(s.item().key()) - 1;
    EXPECT_EQ(s.item().transition().observation().data(), std::string(6, static_cast<char>(i)));
    EXPECT_EQ(s.item().transition().next_observation().data(),
              std::string(6, static_cast<char>(i + 1)));
  }
}

TEST(TableTest, ExportThenRestoreGivesTheSameTable) {
  auto table = Table::Create(Spec(v1::SELECTOR_FIFO, 10)).value();
  Fill(*table, 12);  // keys 3..12 remain
  v1::SampleResponse response;
  ASSERT_TRUE(table->Sample(2, 1, kNow, &response).ok());
  std::vector<std::pair<v1::Item, int32_t>> exported;
  TableCounters counters;
  table->Export([&](const v1::Item& item, int32_t times) { exported.emplace_back(item, times); },
                &counters);
  ASSERT_EQ(exported.size(), 10u);
  EXPECT_EQ(exported[0].first.key(), 3u);
  EXPECT_EQ(exported[0].second, 1);
  EXPECT_EQ(counters.inserts, 12);
  EXPECT_EQ(counters.samples, 2);

  auto restored = Table::Create(Spec(v1::SELECTOR_FIFO, 10)).value();
  for (auto& [item, times] : exported) ASSERT_TRUE(restored->Restore(item, times).ok());
  restored->RestoreCounters(counters);
  EXPECT_EQ(restored->Restore(exported[0].first, 0).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(restored->Info().inserts_total(), 12);
  v1::SampleResponse a, b;
  ASSERT_TRUE(table->Sample(4, 1, kNow, &a).ok());
  ASSERT_TRUE(restored->Sample(4, 1, kNow, &b).ok());
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
}

TEST(TableTest, ConcurrentInsertsAndSamplesKeepInvariants) {
  v1::TableSpec spec = Spec(v1::SELECTOR_PRIORITIZED, 500);
  spec.mutable_rate_limiter()->set_min_size_to_sample(10);
  auto table = Table::Create(spec).value();
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 2000; ++i) {
        const uint64_t key = 1 + w * 100000 + i;
        ASSERT_TRUE(Insert(*table, {TestTransition(key, 1 + i % 7, i % 50, (i + 1) % 50)},
                           absl::InfiniteFuture())
                        .ok());
      }
    });
  }
  threads.emplace_back([&] {
    v1::SampleResponse response;
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(table->Sample(8, 0.5, absl::InfiniteFuture(), &response).ok());
      ASSERT_EQ(response.items_size(), 8);
      v1::UpdatePrioritiesRequest update;
      for (const auto& s : response.items()) {
        update.add_keys(s.item().key());
        update.add_priorities(0.5);
      }
      ASSERT_TRUE(table->UpdatePriorities(update).ok());
    }
  });
  for (auto& t : threads) t.join();
  const v1::TableInfo info = table->Info();
  EXPECT_EQ(info.size(), 500);
  EXPECT_EQ(info.inserts_total(), 4000);
  EXPECT_EQ(info.removals_total(), 3500);
  EXPECT_EQ(info.samples_total(), 4000);
}

}  // namespace
}  // namespace engram::replay
