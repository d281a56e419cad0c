#include "replay_server/client/sampler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/backoff.h"
#include "common/status.h"
#include "common/status_macros.h"
#include "google/protobuf/duration.pb.h"

namespace engram::replay {
namespace {

// Stream failures worth only a reconnect; anything else is also reported by Next.
bool IsTransientSampleError(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

absl::Duration Backoff(const ShardedSamplerOptions& options, int failed_attempts,
                       absl::BitGen& rng) {
  return JitteredBackoff(failed_attempts, options.initial_backoff, options.max_backoff, rng);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardedSampler>> ShardedSampler::Create(
    std::vector<std::shared_ptr<grpc::ChannelInterface>> shards, ShardedSamplerOptions options) {
  if (shards.empty()) return absl::InvalidArgumentError("shards: need at least one channel");
  for (size_t i = 0; i < shards.size(); ++i) {
    if (shards[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("shards[", i, "]: channel is null"));
    }
  }
  if (options.table.empty()) return absl::InvalidArgumentError("table: must not be empty");
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size: must be >= 1, got ", options.batch_size));
  }
  if (options.prefetch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefetch: must be >= 1, got ", options.prefetch));
  }
  if (!(options.importance_beta >= 0 && options.importance_beta <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance_beta: must be in [0, 1], got ", options.importance_beta));
  }
  if (options.rate_limiter_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("rate_limiter_timeout: must be >= 0");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateBackoff(options.initial_backoff, options.max_backoff));
  if (options.startup_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("startup_wait: must be >= 0");
  }
  if (options.key_memory_batches < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("key_memory_batches: must be >= 1, got ", options.key_memory_batches));
  }
  if (options.update_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("update_timeout: must be > 0");
  }
  return std::unique_ptr<ShardedSampler>(new ShardedSampler(std::move(shards), std::move(options)));
}

ShardedSampler::ShardedSampler(std::vector<std::shared_ptr<grpc::ChannelInterface>> channels,
                               ShardedSamplerOptions options)
    : options_(std::move(options)), created_(absl::Now()), beta_(options_.importance_beta) {
  for (size_t i = 0; i < channels.size(); ++i) {
    auto shard = std::make_unique<Shard>();
    shard->index = static_cast<int>(i);
    shard->stub = v1::ReplayService::NewStub(channels[i]);
    shards_.push_back(std::move(shard));
  }
  for (auto& shard : shards_) {
    Shard* s = shard.get();
    s->thread = std::thread([this, s] { RunShard(s); });
  }
}

ShardedSampler::~ShardedSampler() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& shard : shards_) {
      if (shard->context != nullptr) shard->context->TryCancel();
    }
  }
  for (auto& shard : shards_) shard->thread.join();
}

// ---- shard streams --------------------------------------------------------------------------

int64_t ShardedSampler::CreditsDueLocked(const Shard& shard) const {
  // A batch's credit is renewed as soon as its first item is consumed (rounding up), so that
  // buffered + in-flight items never drop below prefetch * batch_size >= what one draw can
  // ask of a shard: a draw never waits for items no credit will bring.
  const int64_t b = options_.batch_size;
  const int64_t wanted = options_.prefetch + (shard.items_consumed + b - 1) / b;
  return std::max<int64_t>(0, wanted - (shard.credit_base + shard.credits_granted));
}

void ShardedSampler::RunShard(Shard* shard) {
  absl::BitGen rng;
  while (true) {
    absl::Status status = RunShardStream(shard);
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (status.ok()) status = absl::UnavailableError("the server ended the sample stream");
    shard->last_error = status;
    if (!IsTransientSampleError(status.code())) {
      shard->pending_error =
          absl::Status(status.code(), absl::StrCat("shard ", shard->index, " (table \"",
                                                   options_.table, "\"): ", status.message()));
    }
    ++shard->failed_attempts;
    ++shard->reconnects;
    mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                         Backoff(options_, shard->failed_attempts, rng));
    if (stopping_) return;
  }
}

absl::Status ShardedSampler::RunShardStream(Shard* shard) {
  grpc::ClientContext context;
  v1::SampleRequest first;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("sampler stopping");
    shard->context = &context;
    shard->stream_ended = false;
    shard->streaming = false;
    // Batches in flight on a broken stream are lost, so credit restarts from what arrived.
    shard->credit_base = shard->batches_received;
    shard->credits_granted = 0;
    // At least one credit: a shard takes part in draws again only once its new stream has
    // delivered (proof that it serves, with fresh totals), even if its old buffer is full.
    const int64_t due = std::max<int64_t>(1, CreditsDueLocked(*shard));
    first.set_table(options_.table);
    first.set_batch_size(options_.batch_size);
    first.set_credits(static_cast<int32_t>(due));
    first.set_importance_beta(beta_);
    if (options_.rate_limiter_timeout > absl::ZeroDuration()) {
      const absl::Duration t = options_.rate_limiter_timeout;
      const int64_t seconds = absl::IDivDuration(t, absl::Seconds(1), nullptr);
      first.mutable_rate_limiter_timeout()->set_seconds(seconds);
      first.mutable_rate_limiter_timeout()->set_nanos(
          static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::Seconds(seconds))));
    }
    shard->credits_granted = due;
    shard->beta_sent = beta_;
  }
  std::unique_ptr<grpc::ClientReaderWriter<v1::SampleRequest, v1::SampleResponse>> stream =
      shard->stub->Sample(&context);
  std::thread reader([this, shard, &stream] { ReadBatches(shard, stream.get()); });

  bool ok = stream->Write(first);
  while (ok) {
    v1::SampleRequest request;
    {
      absl::MutexLock lock(&mu_);
      const auto has_work = [this, shard]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || shard->stream_ended || CreditsDueLocked(*shard) > 0 ||
               beta_ != shard->beta_sent;
      };
      mu_.Await(absl::Condition(&has_work));
      if (stopping_ || shard->stream_ended) break;
      const int64_t due = CreditsDueLocked(*shard);
      request.set_credits(static_cast<int32_t>(due));
      shard->credits_granted += due;
      if (beta_ != shard->beta_sent) {
        request.set_importance_beta(beta_);
        shard->beta_sent = beta_;
      }
    }
    // Not cancelled on failure: the reader collects the server's status.
    ok = stream->Write(request);
  }
  reader.join();
  const absl::Status status = FromGrpc(stream->Finish());
  absl::MutexLock lock(&mu_);
  shard->context = nullptr;
  shard->streaming = false;
  return status;
}

void ShardedSampler::ReadBatches(
    Shard* shard, grpc::ClientReaderWriter<v1::SampleRequest, v1::SampleResponse>* stream) {
  absl::BitGen rng;
  v1::SampleResponse response;
  while (stream->Read(&response)) {
    // A prioritized shard samples its batch stratified, in sum-tree order; a random order
    // makes each buffered item, taken alone, a draw from the shard's whole distribution.
    auto* items = response.mutable_items();
    for (int i = items->size() - 1; i > 0; --i) {
      items->SwapElements(i, absl::Uniform(rng, 0, i + 1));
    }
    absl::MutexLock lock(&mu_);
    ++shard->batches_received;
    shard->known = true;
    shard->streaming = true;
    shard->table_size = response.table_size();
    shard->priority_total = response.priority_total();
    shard->failed_attempts = 0;
    for (v1::SampledItem& item : *items) {
      shard->buffer.push_back(
          Buffered{std::move(item), response.table_size(), response.priority_total()});
    }
  }
  absl::MutexLock lock(&mu_);
  shard->stream_ended = true;
}

// ---- merging --------------------------------------------------------------------------------

bool ShardedSampler::TakesPartLocked(const Shard& shard) const {
  return shard.known && shard.streaming;
}

double ShardedSampler::DrawWeightsLocked(std::vector<double>* weights, bool* by_size) const {
  weights->assign(shards_.size(), 0.0);
  double total = 0;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (!TakesPartLocked(*shards_[s])) continue;
    (*weights)[s] = std::max(0.0, shards_[s]->priority_total);
    total += (*weights)[s];
  }
  *by_size = false;
  if (total > 0) return total;
  // Every priority is 0: each shard samples uniformly, and so does the union.
  *by_size = true;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (!TakesPartLocked(*shards_[s])) continue;
    (*weights)[s] = static_cast<double>(shards_[s]->table_size);
    total += (*weights)[s];
  }
  return total;
}

bool ShardedSampler::StartupDoneLocked() const {
  bool all = true;
  bool any = false;
  for (const auto& shard : shards_) {
    all = all && shard->known;
    any = any || shard->known;
  }
  return all || (any && absl::Now() >= created_ + options_.startup_wait);
}

absl::Status ShardedSampler::TakePendingErrorLocked() {
  for (auto& shard : shards_) {
    if (!shard->pending_error.ok()) {
      absl::Status error = std::move(shard->pending_error);
      shard->pending_error = absl::OkStatus();
      return error;
    }
  }
  return absl::OkStatus();
}

std::string ShardedSampler::DescribeShardsLocked(const std::vector<int>* counts) const {
  std::vector<std::string> parts;
  for (size_t s = 0; s < shards_.size(); ++s) {
    const Shard& shard = *shards_[s];
    std::string part = absl::StrCat("shard ", s, ": ");
    if (!shard.known) {
      absl::StrAppend(&part, "no batch yet");
    } else {
      absl::StrAppend(&part, "size ", shard.table_size, ", priority_total ", shard.priority_total,
                      ", ", shard.buffer.size(), " items buffered");
      if (counts != nullptr && (*counts)[s] > 0)
        absl::StrAppend(&part, " (need ", (*counts)[s], ")");
    }
    absl::StrAppend(&part, shard.streaming ? ", streaming" : ", not streaming");
    if (!shard.last_error.ok())
      absl::StrAppend(&part, ", last error: ", shard.last_error.ToString());
    parts.push_back(std::move(part));
  }
  return absl::StrJoin(parts, "; ");
}

absl::StatusOr<ShardedSampler::Batch> ShardedSampler::Next(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const auto any_error = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& shard : shards_) {
      if (!shard->pending_error.ok()) return true;
    }
    return false;
  };
  const int batch_size = options_.batch_size;
  while (true) {
    if (stopping_) return absl::CancelledError("sampler is shutting down");
    ENGRAM_RETURN_IF_ERROR(TakePendingErrorLocked());

    if (pending_draw_.empty()) {
      std::vector<double> weights;
      bool by_size = false;
      const auto can_draw = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || any_error() ||
               (StartupDoneLocked() && DrawWeightsLocked(&weights, &by_size) > 0);
      };
      if (!can_draw()) {
        // The startup wait ends by time alone, which no Condition notices: wake for it.
        absl::Time wake = deadline;
        const absl::Time startup_end = created_ + options_.startup_wait;
        if (absl::Now() < startup_end) wake = std::min(wake, startup_end);
        if (!mu_.AwaitWithDeadline(absl::Condition(&can_draw), wake) && absl::Now() >= deadline) {
          return absl::DeadlineExceededError(
              absl::StrCat("no batch of ", batch_size, " from table \"", options_.table,
                           "\" before the deadline: no shard has items to sample (",
                           DescribeShardsLocked(nullptr), ")"));
        }
        continue;
      }
      // One categorical draw per slot: counts ~ Multinomial(B, weights / total), in a random
      // slot order.
      const double total = DrawWeightsLocked(&weights, &by_size);
      pending_draw_.resize(batch_size);
      for (int j = 0; j < batch_size; ++j) {
        const double u = absl::Uniform(rng_, 0.0, total);
        double acc = 0;
        int chosen = -1;
        for (size_t s = 0; s < weights.size(); ++s) {
          if (weights[s] <= 0) continue;
          chosen = static_cast<int>(s);  // the last positive one absorbs rounding
          acc += weights[s];
          if (u < acc) break;
        }
        pending_draw_[j] = chosen;
      }
    }

    std::vector<int> counts(shards_.size(), 0);
    for (int s : pending_draw_) ++counts[s];
    bool stuck = false;
    const auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (stopping_ || any_error()) return true;
      bool all = true;
      stuck = false;
      for (size_t s = 0; s < shards_.size(); ++s) {
        if (static_cast<int>(shards_[s]->buffer.size()) >= counts[s]) continue;
        all = false;
        // A shard whose stream is not delivering may never fill this draw.
        if (!shards_[s]->streaming) stuck = true;
      }
      return all || stuck;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      // The draw is kept for the next call: giving up on it would bias against slow shards.
      return absl::DeadlineExceededError(absl::StrCat("no batch of ", batch_size, " from table \"",
                                                      options_.table, "\" before the deadline (",
                                                      DescribeShardsLocked(&counts), ")"));
    }
    if (stopping_ || any_error()) continue;
    if (stuck) {
      pending_draw_.clear();  // redraw without the shard that dropped out
      continue;
    }
    Batch batch = AssembleLocked(pending_draw_);
    pending_draw_.clear();
    RememberKeysLocked(batch);
    ++batches_returned_;
    return batch;
  }
}

ShardedSampler::Batch ShardedSampler::AssembleLocked(const std::vector<int>& assignment) {
  const size_t num_shards = shards_.size();
  std::vector<bool> used(num_shards, false);
  for (int s : assignment) used[s] = true;
  // The union this batch stands for: shards taking part now, and any the draw chose.
  double priority_total = 0;
  double total_size = 0;
  for (size_t s = 0; s < num_shards; ++s) {
    if (!TakesPartLocked(*shards_[s]) && !used[s]) continue;
    priority_total += std::max(0.0, shards_[s]->priority_total);
    total_size += static_cast<double>(shards_[s]->table_size);
  }
  const bool by_size = !(priority_total > 0);
  const double weight_total = by_size ? total_size : priority_total;
  const double beta = beta_;

  Batch batch;
  batch.items.reserve(assignment.size());
  batch.shard.reserve(assignment.size());
  batch.total_size = static_cast<int64_t>(total_size);
  batch.priority_total = priority_total;
  double max_weight = 0;
  for (int s : assignment) {
    Shard& shard = *shards_[s];
    Buffered buffered = std::move(shard.buffer.front());
    shard.buffer.pop_front();
    ++shard.items_consumed;
    // p_s(i) * W_s(its batch) is priority_i^alpha (or 1 when weighting by size).
    const double batch_weight =
        by_size ? static_cast<double>(buffered.table_size) : buffered.priority_total;
    double probability = buffered.item.probability() * batch_weight / weight_total;
    if (!(probability > 0) || !std::isfinite(probability)) {
      // The item came in a batch whose totals are of the other kind (priorities were all 0
      // then); the shard's latest totals are the best estimate.
      const double latest = by_size ? static_cast<double>(shard.table_size) : shard.priority_total;
      probability = buffered.item.probability() * latest / weight_total;
      if (!(probability > 0) || !std::isfinite(probability)) probability = 1.0 / total_size;
    }
    const double weight = beta == 0 ? 1.0 : std::pow(total_size * probability, -beta);
    max_weight = std::max(max_weight, weight);
    buffered.item.set_probability(probability);
    buffered.item.set_importance_weight(weight);
    batch.items.push_back(std::move(buffered.item));
    batch.shard.push_back(s);
  }
  for (v1::SampledItem& item : batch.items) {
    item.set_importance_weight(item.importance_weight() / max_weight);
  }
  return batch;
}

void ShardedSampler::RememberKeysLocked(const Batch& batch) {
  const int64_t number = batches_returned_;
  std::vector<uint64_t> keys;
  keys.reserve(batch.items.size());
  for (size_t i = 0; i < batch.items.size(); ++i) {
    const uint64_t key = batch.items[i].item().key();
    key_shard_[key] = {batch.shard[i], number};
    keys.push_back(key);
  }
  recent_keys_.emplace_back(number, std::move(keys));
  while (static_cast<int>(recent_keys_.size()) > options_.key_memory_batches) {
    const auto& [old_number, old_keys] = recent_keys_.front();
    for (uint64_t key : old_keys) {
      auto it = key_shard_.find(key);
      // Keep keys that a later batch returned again.
      if (it != key_shard_.end() && it->second.second == old_number) key_shard_.erase(it);
    }
    recent_keys_.pop_front();
  }
}

// ---- updates, beta, stats -------------------------------------------------------------------

absl::Status ShardedSampler::UpdatePriorities(absl::Span<const uint64_t> keys,
                                              absl::Span<const double> priorities) {
  if (keys.size() != priorities.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update: ", keys.size(), " keys but ", priorities.size(), " priorities"));
  }
  for (size_t i = 0; i < priorities.size(); ++i) {
    if (!std::isfinite(priorities[i]) || priorities[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("update: priorities[", i, "] (key ", keys[i],
                                                     ") must be finite and >= 0, got ",
                                                     priorities[i]));
    }
  }
  const size_t num_shards = shards_.size();
  std::vector<v1::UpdatePrioritiesRequest> requests(num_shards);
  int64_t unknown = 0;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = key_shard_.find(keys[i]);
      if (it == key_shard_.end()) {
        ++unknown;
        continue;
      }
      v1::UpdatePrioritiesRequest& request = requests[it->second.first];
      request.add_keys(keys[i]);
      request.add_priorities(priorities[i]);
      ++priority_updates_sent_;
    }
    unknown_keys_ += unknown;
  }

  // One RPC per shard, all in flight at once (callback API: no thread per call).
  const absl::Time deadline = absl::Now() + options_.update_timeout;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts(num_shards);
  std::vector<v1::UpdatePrioritiesResponse> responses(num_shards);
  std::vector<grpc::Status> statuses(num_shards);
  int calls = 0;
  for (size_t s = 0; s < num_shards; ++s) {
    if (requests[s].keys_size() > 0) ++calls;
  }
  absl::BlockingCounter done(calls);
  for (size_t s = 0; s < num_shards; ++s) {
    if (requests[s].keys_size() == 0) continue;
    requests[s].set_table(options_.table);
    contexts[s] = std::make_unique<grpc::ClientContext>();
    contexts[s]->set_deadline(absl::ToChronoTime(deadline));
    shards_[s]->stub->async()->UpdatePriorities(contexts[s].get(), &requests[s], &responses[s],
                                                [&statuses, &done, s](grpc::Status status) {
                                                  statuses[s] = std::move(status);
                                                  done.DecrementCount();
                                                });
  }
  done.Wait();

  for (size_t s = 0; s < num_shards; ++s) {
    const absl::Status status = FromGrpc(statuses[s]);
    if (!status.ok()) {
      return absl::Status(
          status.code(),
          absl::StrCat("update priorities on shard ", s, " (table \"", options_.table, "\", ",
                       requests[s].keys_size(), " keys): ", status.message()));
    }
  }
  if (unknown > 0) {
    return absl::NotFoundError(
        absl::StrCat("update: ", unknown, " of ", keys.size(),
                     " keys were not returned by this sampler's last ", options_.key_memory_batches,
                     " batches, so their shard is unknown; they were not sent (the other ",
                     keys.size() - unknown, " were)"));
  }
  return absl::OkStatus();
}

absl::Status ShardedSampler::SetBeta(double beta) {
  if (!(beta >= 0 && beta <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance_beta: must be in [0, 1], got ", beta));
  }
  absl::MutexLock lock(&mu_);
  beta_ = beta;
  return absl::OkStatus();
}

double ShardedSampler::beta() const {
  absl::MutexLock lock(&mu_);
  return beta_;
}

ShardedSampler::Stats ShardedSampler::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.batches_returned = batches_returned_;
  stats.priority_updates_sent = priority_updates_sent_;
  stats.unknown_keys = unknown_keys_;
  for (const auto& shard : shards_) {
    ShardStats s;
    s.batches_received = shard->batches_received;
    s.items_consumed = shard->items_consumed;
    s.buffered_items = static_cast<int64_t>(shard->buffer.size());
    s.reconnects = shard->reconnects;
    s.table_size = shard->table_size;
    s.priority_total = shard->priority_total;
    s.streaming = shard->streaming;
    s.last_error = shard->last_error;
    stats.shards.push_back(std::move(s));
  }
  return stats;
}

}  // namespace engram::replay
