#include "replay_server/client/sampler.h"

#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "replay_server/service.h"
#include "replay_server/testing/test_items.h"

namespace engram::replay {
namespace {

using ::engram::replay::testing::FastReconnectChannel;
using ::engram::replay::testing::TestObservation;
using ::engram::replay::testing::TestTransition;

using ::testing::HasSubstr;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

v1::TableSpec PrioritizedSpec(const std::string& name, double alpha) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_selector(v1::SELECTOR_PRIORITIZED);
  spec.set_priority_exponent(alpha);
  spec.set_max_size(10000);
  return spec;
}

// One replay shard: a service with one table, served on a loopback port.
class Shard {
 public:
  explicit Shard(const v1::TableSpec& spec) : service_(ReplayServiceImpl::Options()) {
    EXPECT_TRUE(service_.CreateTableFromSpec(spec).ok());
    Start(0);
  }
  ~Shard() { Stop(); }

  void Start(int port) {
    ServerOptions options;
    options.address = absl::StrCat("127.0.0.1:", port);
    auto server = Server::Start(options, {&service_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
  }
  void Stop() {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
  }

  void Insert(const std::vector<std::pair<uint64_t, double>>& items) {
    google::protobuf::RepeatedPtrField<v1::Item> batch;
    for (const auto& [key, priority] : items) *batch.Add() = TestTransition(key, priority);
    ASSERT_TRUE(table().Insert(&batch, In(absl::Seconds(10))).ok());
  }

  int port() const { return server_->port(); }
  std::shared_ptr<grpc::ChannelInterface> channel() const { return server_->InProcessChannel(); }
  Table& table() { return *service_.Tables().front(); }
  v1::TableInfo info() { return table().Info(); }

 private:
  ReplayServiceImpl service_;
  std::unique_ptr<Server> server_;
};

ShardedSamplerOptions Options(const std::string& table, int batch_size, double beta = 1.0) {
  ShardedSamplerOptions options;
  options.table = table;
  options.batch_size = batch_size;
  options.importance_beta = beta;
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(100);
  return options;
}

std::vector<std::shared_ptr<grpc::ChannelInterface>> Channels(
    const std::vector<std::unique_ptr<Shard>>& shards) {
  std::vector<std::shared_ptr<grpc::ChannelInterface>> channels;
  for (const auto& shard : shards) channels.push_back(shard->channel());
  return channels;
}

// Pearson's statistic of observed key counts against probabilities `expected` (every key).
double ChiSquare(const absl::flat_hash_map<uint64_t, int64_t>& counts,
                 const std::map<uint64_t, double>& expected, int64_t n) {
  double chi2 = 0;
  for (const auto& [key, p] : expected) {
    const auto it = counts.find(key);
    const double observed = it == counts.end() ? 0.0 : static_cast<double>(it->second);
    const double e = p * static_cast<double>(n);
    chi2 += (observed - e) * (observed - e) / e;
  }
  return chi2;
}

// Upper critical value of chi-square with `df` degrees of freedom at p = 0.001, by the
// Wilson–Hilferty approximation (z = 3.0902, the standard normal's upper 0.001 quantile).
double ChiSquareCritical001(int df) {
  const double z = 3.090232;
  const double k = static_cast<double>(df);
  const double v = 1.0 - 2.0 / (9.0 * k) + z * std::sqrt(2.0 / (9.0 * k));
  return k * v * v * v;
}

// Waits for `done` to hold, checking every few milliseconds, for at most `timeout`.
// For state only visible by asking, never as a substitute for an event.
template <typename F>
bool WaitFor(F done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = In(timeout);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

bool Near(double a, double b, double relative = 1e-9) {
  return std::abs(a - b) <= relative * std::max(std::abs(a), std::abs(b));
}

TEST(ChiSquareTest, WilsonHilfertyMatchesTables) {
  // Tabulated 0.999 quantiles: df 10 -> 29.588, df 74 -> 117.35 (approx), df 100 -> 149.449.
  EXPECT_NEAR(ChiSquareCritical001(10), 29.588, 0.01 * 29.588);
  EXPECT_NEAR(ChiSquareCritical001(100), 149.449, 0.001 * 149.449);
}

// ---- the distribution of merged batches ------------------------------------------------------

// 75 items with distinct priorities on three shards of 5, 20 and 50 items, alpha 0.7.
class ThreeShardDistributionTest : public ::testing::Test {
 protected:
  static constexpr double kAlpha = 0.7;
  static constexpr int kSizes[3] = {5, 20, 50};

  void SetUp() override {
    uint64_t key = 1;
    for (int s = 0; s < 3; ++s) {
      shards_.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", kAlpha)));
      std::vector<std::pair<uint64_t, double>> items;
      for (int i = 0; i < kSizes[s]; ++i, ++key) {
        // 44 is coprime with 75: priorities are a permutation of 0.25 + 0.13 * {0..74}.
        const double priority = 0.25 + 0.13 * static_cast<double>((key * 44) % 75);
        items.push_back({key, priority});
        shard_of_[key] = s;
        weight_[key] = std::pow(priority, kAlpha);
        total_ += weight_[key];
      }
      shards_.back()->Insert(items);
    }
    for (const auto& [k, w] : weight_) expected_[k] = w / total_;
  }

  std::vector<std::unique_ptr<Shard>> shards_;
  std::map<uint64_t, int> shard_of_;
  std::map<uint64_t, double> weight_;    // priority^alpha
  std::map<uint64_t, double> expected_;  // priority^alpha / sum over all 75 items
  double total_ = 0;
};

TEST_F(ThreeShardDistributionTest, MergedBatchesFollowOneGlobalPrioritizedTable) {
  constexpr int kBatches = 2000;
  constexpr int kBatchSize = 32;
  constexpr double kBeta = 0.4;
  auto sampler = ShardedSampler::Create(Channels(shards_), Options("replay", kBatchSize, kBeta));
  ASSERT_TRUE(sampler.ok()) << sampler.status();

  absl::flat_hash_map<uint64_t, int64_t> counts;
  absl::flat_hash_map<uint64_t, int64_t> shard_counts;
  int64_t n = 0;
  int64_t bad_probability = 0, bad_weight = 0, bad_shard = 0, bad_totals = 0;
  for (int b = 0; b < kBatches; ++b) {
    absl::StatusOr<ShardedSampler::Batch> batch = (*sampler)->Next(In(absl::Seconds(10)));
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->items.size(), static_cast<size_t>(kBatchSize));
    ASSERT_EQ(batch->shard.size(), static_cast<size_t>(kBatchSize));
    if (batch->total_size != 75 || !Near(batch->priority_total, total_)) ++bad_totals;
    double max_raw = 0;
    for (const v1::SampledItem& item : batch->items) {
      max_raw = std::max(max_raw, std::pow(75.0 * expected_[item.item().key()], -kBeta));
    }
    for (int i = 0; i < kBatchSize; ++i) {
      const v1::SampledItem& item = batch->items[i];
      const uint64_t key = item.item().key();
      ++counts[key];
      ++shard_counts[batch->shard[i]];
      ++n;
      if (!Near(item.probability(), expected_[key])) ++bad_probability;
      const double weight = std::pow(75.0 * expected_[key], -kBeta) / max_raw;
      if (!Near(item.importance_weight(), weight)) ++bad_weight;
      if (batch->shard[i] != shard_of_[key]) ++bad_shard;
    }
  }
  EXPECT_EQ(bad_totals, 0);
  EXPECT_EQ(bad_probability, 0);
  EXPECT_EQ(bad_weight, 0);
  EXPECT_EQ(bad_shard, 0);

  const double chi2 = ChiSquare(counts, expected_, n);
  const int df = static_cast<int>(expected_.size()) - 1;
  const double critical = ChiSquareCritical001(df);
  std::cout << "merged: chi2 = " << chi2 << " over " << n << " items, df = " << df
            << ", critical(p=0.001) = " << critical << std::endl;
  EXPECT_LT(chi2, critical);
  EXPECT_EQ((*sampler)->stats().batches_returned, kBatches);

  // Per key the statistic runs below its mean (df): each shard samples its batch stratified,
  // which has less variance than independent draws, so the test above is conservative. The
  // shard of each slot is an exact multinomial draw, so the per-shard test is exact.
  std::map<uint64_t, double> shard_expected;
  for (const auto& [key, p] : expected_) shard_expected[shard_of_[key]] += p;
  const double shard_chi2 = ChiSquare(shard_counts, shard_expected, n);
  std::cout << "merged, per shard: chi2 = " << shard_chi2
            << ", df = 2, critical(p=0.001) = " << ChiSquareCritical001(2) << std::endl;
  EXPECT_LT(shard_chi2, ChiSquareCritical001(2));
}

// The same test has power: equal counts per shard (a naive merge) fails it by far.
TEST_F(ThreeShardDistributionTest, NaiveEqualCountsMergeFailsTheSameTest) {
  constexpr int kRounds = 600;
  constexpr int kPerShard = 11;
  std::vector<std::unique_ptr<ShardedSampler>> single;
  for (const auto& shard : shards_) {
    single.push_back(
        ShardedSampler::Create({shard->channel()}, Options("replay", kPerShard)).value());
  }
  absl::flat_hash_map<uint64_t, int64_t> counts;
  int64_t n = 0;
  for (int r = 0; r < kRounds; ++r) {
    for (auto& sampler : single) {
      absl::StatusOr<ShardedSampler::Batch> batch = sampler->Next(In(absl::Seconds(10)));
      ASSERT_TRUE(batch.ok()) << batch.status();
      for (const v1::SampledItem& item : batch->items) {
        ++counts[item.item().key()];
        ++n;
      }
    }
  }
  const double chi2 = ChiSquare(counts, expected_, n);
  const double critical = ChiSquareCritical001(static_cast<int>(expected_.size()) - 1);
  std::cout << "naive: chi2 = " << chi2 << " over " << n
            << " items, critical(p=0.001) = " << critical << std::endl;
  EXPECT_GT(chi2, critical);
}

// ---- weights, beta, routing ---------------------------------------------------------------------

TEST(ShardedSamplerTest, SetBetaChangesTheWeightsOfLaterBatches) {
  std::vector<std::unique_ptr<Shard>> shards;
  double total = 0;
  std::map<uint64_t, double> p;
  for (int s = 0; s < 2; ++s) {
    shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));
    std::vector<std::pair<uint64_t, double>> items;
    for (int i = 1; i <= 5; ++i) {
      const uint64_t key = 10 * s + i;
      items.push_back({key, static_cast<double>(i * (s + 1))});
      p[key] = i * (s + 1);
      total += p[key];
    }
    shards.back()->Insert(items);
  }
  auto sampler = ShardedSampler::Create(Channels(shards), Options("replay", 16, 0.0)).value();
  absl::StatusOr<ShardedSampler::Batch> batch = sampler->Next(In(absl::Seconds(10)));
  ASSERT_TRUE(batch.ok()) << batch.status();
  for (const v1::SampledItem& item : batch->items) EXPECT_EQ(item.importance_weight(), 1.0);

  EXPECT_EQ(sampler->SetBeta(1.5).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(sampler->SetBeta(1.0).ok());
  EXPECT_EQ(sampler->beta(), 1.0);
  bool some_below_one = false;
  for (int b = 0; b < 5; ++b) {
    batch = sampler->Next(In(absl::Seconds(10)));
    ASSERT_TRUE(batch.ok()) << batch.status();
    EXPECT_EQ(batch->total_size, 10);
    double max_raw = 0;
    for (const v1::SampledItem& item : batch->items) {
      EXPECT_TRUE(Near(item.probability(), p[item.item().key()] / total));
      max_raw = std::max(max_raw, 1.0 / (10.0 * item.probability()));
    }
    for (const v1::SampledItem& item : batch->items) {
      EXPECT_TRUE(Near(item.importance_weight(), 1.0 / (10.0 * item.probability()) / max_raw));
      some_below_one = some_below_one || item.importance_weight() < 0.999;
    }
  }
  EXPECT_TRUE(some_below_one);
}

TEST(ShardedSamplerTest, PriorityUpdatesGoToTheShardThatOwnsTheKey) {
  constexpr int kBatchSize = 8;
  constexpr int kPrefetch = 2;
  std::vector<std::unique_ptr<Shard>> shards;
  for (int s = 0; s < 3; ++s) {
    shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));
    shards.back()->Insert(
        {{100 + 10 * s, 1.0}, {101 + 10 * s, 1.0}, {102 + 10 * s, 1.0}, {103 + 10 * s, 1.0}});
  }
  ShardedSamplerOptions options = Options("replay", kBatchSize);
  options.prefetch = kPrefetch;
  auto sampler = ShardedSampler::Create(Channels(shards), options).value();
  constexpr uint64_t kKey = 111;  // on shard 1

  bool seen = false;
  for (int b = 0; b < 1000 && !seen; ++b) {
    absl::StatusOr<ShardedSampler::Batch> batch = sampler->Next(In(absl::Seconds(10)));
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (const v1::SampledItem& item : batch->items) seen = seen || item.item().key() == kKey;
  }
  ASSERT_TRUE(seen);

  const uint64_t key = kKey;
  const double zero = 0.0;
  ASSERT_TRUE(sampler->UpdatePriorities({&key, 1}, {&zero, 1}).ok());
  EXPECT_EQ(shards[0]->info().priority_total(), 4.0);
  EXPECT_EQ(shards[1]->info().priority_total(), 3.0);
  EXPECT_EQ(shards[2]->info().priority_total(), 4.0);

  // Batches shard 1 drew before the update may still be buffered or in flight: fewer than
  // (prefetch + 1) * batch_size of its items (credit follows consumption). Then never again.
  int64_t from_shard1 = 0;
  int64_t after_window = 0;
  int64_t sampled_again = 0;
  absl::flat_hash_set<uint64_t> others;
  for (int b = 0; b < 400; ++b) {
    absl::StatusOr<ShardedSampler::Batch> batch = sampler->Next(In(absl::Seconds(10)));
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (size_t i = 0; i < batch->items.size(); ++i) {
      const uint64_t k = batch->items[i].item().key();
      if (batch->shard[i] != 1) {
        others.insert(k);
        continue;
      }
      if (++from_shard1 <= (kPrefetch + 1) * kBatchSize) continue;
      ++after_window;
      if (k == kKey) ++sampled_again;
    }
  }
  EXPECT_GT(after_window, 200);
  EXPECT_EQ(sampled_again, 0);
  EXPECT_EQ(others.size(), 8u);  // the other shards are untouched

  // Unknown keys are counted, not sent; malformed calls send nothing.
  const uint64_t unknown = 999;
  const double one = 1.0;
  const absl::Status status = sampler->UpdatePriorities({&unknown, 1}, {&one, 1});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("1 of 1 keys"));
  EXPECT_EQ(sampler->stats().unknown_keys, 1);
  const std::vector<double> two = {1.0, 2.0};
  EXPECT_EQ(sampler->UpdatePriorities({&key, 1}, two).code(), absl::StatusCode::kInvalidArgument);
  const double negative = -1.0;
  const absl::Status bad = sampler->UpdatePriorities({&key, 1}, {&negative, 1});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("priorities[0]"));
  EXPECT_EQ(shards[1]->info().priority_total(), 3.0);
}

TEST(ShardedSamplerTest, KeyMemoryIsBoundedToTheLastBatches) {
  std::vector<std::unique_ptr<Shard>> shards;
  shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));
  std::vector<std::pair<uint64_t, double>> items;
  for (uint64_t key = 1; key <= 500; ++key) items.push_back({key, 1.0});
  shards[0]->Insert(items);
  ShardedSamplerOptions options = Options("replay", 4);
  options.key_memory_batches = 1;
  auto sampler = ShardedSampler::Create(Channels(shards), options).value();
  ShardedSampler::Batch first = sampler->Next(In(absl::Seconds(10))).value();
  ShardedSampler::Batch second = sampler->Next(In(absl::Seconds(10))).value();
  absl::flat_hash_set<uint64_t> in_second;
  for (const auto& item : second.items) in_second.insert(item.item().key());
  std::vector<uint64_t> keys;
  int64_t forgotten = 0;
  for (const auto& item : first.items) {
    keys.push_back(item.item().key());
    if (!in_second.contains(item.item().key())) ++forgotten;
  }
  const std::vector<double> priorities(keys.size(), 2.0);
  const absl::Status status = sampler->UpdatePriorities(keys, priorities);
  if (forgotten == 0) {
    EXPECT_TRUE(status.ok()) << status;
  } else {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(forgotten, " of 4 keys")));
  }
}

// ---- startup, errors, reconnects ----------------------------------------------------------------

TEST(ShardedSamplerTest, StartupWaitsForEveryShardThenMergesThoseWithData) {
  std::vector<std::unique_ptr<Shard>> shards;
  shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));
  shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));  // empty
  shards[0]->Insert({{1, 1.0}, {2, 2.0}, {3, 3.0}});

  {
    auto patient = ShardedSampler::Create(Channels(shards), Options("replay", 4)).value();
    const absl::Status status = patient->Next(In(absl::Milliseconds(300))).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_THAT(status.message(), HasSubstr("shard 1: no batch yet"));
  }

  ShardedSamplerOptions options = Options("replay", 4);
  options.startup_wait = absl::Milliseconds(100);
  auto sampler = ShardedSampler::Create(Channels(shards), options).value();
  absl::StatusOr<ShardedSampler::Batch> batch = sampler->Next(In(absl::Seconds(10)));
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->total_size, 3);
  for (int s : batch->shard) EXPECT_EQ(s, 0);

  // The late shard joins as soon as it delivers.
  shards[1]->Insert({{11, 100.0}});
  bool joined = false;
  for (const absl::Time end = In(absl::Seconds(10)); !joined && absl::Now() < end;) {
    batch = sampler->Next(In(absl::Seconds(10)));
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (int s : batch->shard) joined = joined || s == 1;
  }
  EXPECT_TRUE(joined);
  EXPECT_EQ(batch->total_size, 4);
}

TEST(ShardedSamplerTest, MissingTableIsReportedByNextWithTheShard) {
  std::vector<std::unique_ptr<Shard>> shards;
  shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));
  auto sampler = ShardedSampler::Create(Channels(shards), Options("missing", 4)).value();
  const absl::Status status = sampler->Next(In(absl::Seconds(10))).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("shard 0"));
}

TEST(ShardedSamplerTest, CreateRejectsBadOptions) {
  std::vector<std::unique_ptr<Shard>> shards;
  shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));
  auto no_batch = ShardedSampler::Create(Channels(shards), Options("replay", 0));
  EXPECT_EQ(no_batch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_batch.status().message(), HasSubstr("batch_size"));
  EXPECT_EQ(ShardedSampler::Create({}, Options("replay", 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardedSampler::Create(Channels(shards), Options("replay", 4, 2.0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShardedSamplerTest, KeepsSamplingWhileAShardRestartsAndTakesItBackAfter) {
  std::vector<std::unique_ptr<Shard>> shards;
  for (int s = 0; s < 2; ++s) {
    shards.push_back(std::make_unique<Shard>(PrioritizedSpec("replay", 1.0)));
    shards.back()->Insert({{100 * s + 1, 1.0}, {100 * s + 2, 1.0}, {100 * s + 3, 1.0}});
  }
  std::vector<std::shared_ptr<grpc::ChannelInterface>> channels = {
      FastReconnectChannel(shards[0]->port()), FastReconnectChannel(shards[1]->port())};
  auto sampler = ShardedSampler::Create(channels, Options("replay", 4)).value();
  ASSERT_TRUE(sampler->Next(In(absl::Seconds(10))).ok());

  const int port = shards[1]->port();
  shards[1]->Stop();
  ASSERT_TRUE(WaitFor([&] { return !sampler->stats().shards[1].streaming; }));
  for (int b = 0; b < 50; ++b) {
    absl::StatusOr<ShardedSampler::Batch> batch = sampler->Next(In(absl::Seconds(10)));
    ASSERT_TRUE(batch.ok()) << batch.status();
  }
  const ShardedSampler::Batch alone = sampler->Next(In(absl::Seconds(10))).value();
  for (int s : alone.shard) EXPECT_EQ(s, 0);
  EXPECT_EQ(alone.total_size, 3);

  shards[1]->Start(port);
  bool back = false;
  for (const absl::Time end = In(absl::Seconds(10)); !back && absl::Now() < end;) {
    absl::StatusOr<ShardedSampler::Batch> batch = sampler->Next(In(absl::Seconds(10)));
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (int s : batch->shard) back = back || s == 1;
  }
  EXPECT_TRUE(back);
  EXPECT_GE(sampler->stats().shards[1].reconnects, 1);
}

}  // namespace
}  // namespace engram::replay
