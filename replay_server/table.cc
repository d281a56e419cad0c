#include "replay_server/table.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/metrics.h"
#include "common/status_macros.h"
#include "common/tensor_proto.h"

namespace engram::replay {
namespace {

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

TensorSignature ToSignature(const v1::TensorSpec& spec) {
  return TensorSignature{spec.dtype(), {spec.shape().begin(), spec.shape().end()}};
}

// The leading time dimension T of a chunk tensor, after validating it.
absl::Status CheckTimeMajor(const v1::Tensor& t, int64_t steps, absl::string_view what) {
  ENGRAM_RETURN_IF_ERROR(ValidateTensor(t, what).status());
  if (t.shape_size() < 1 || t.shape(0) != steps) {
    return absl::InvalidArgumentError(absl::StrCat(what, " shape ", ShapeString(t.shape()),
                                                   " must start with the chunk length ", steps));
  }
  return absl::OkStatus();
}

}  // namespace

TableMetrics TableMetrics::Create(prometheus::Registry& registry, const std::string& table) {
  const std::map<std::string, std::string> labels = {{"table", table}};
  TableMetrics m;
  m.items = &AddGauge(registry, "replay_items", "Items in the table.").Add(labels);
  m.bytes =
      &AddGauge(registry, "replay_bytes", "Bytes of payload stored by the table.").Add(labels);
  m.inserts = &AddCounter(registry, "replay_inserts_total", "Items stored (duplicates excluded).")
                   .Add(labels);
  m.duplicate_inserts = &AddCounter(registry, "replay_duplicate_inserts_total",
                                    "Inserted items acknowledged as duplicates of a live key.")
                             .Add(labels);
  m.samples = &AddCounter(registry, "replay_samples_total", "Items sampled (one per batch slot).")
                   .Add(labels);
  auto& removals = AddCounter(registry, "replay_removals_total", "Items removed, by reason.");
  m.evictions = &removals.Add({{"table", table}, {"reason", "evicted"}});
  m.sampled_out = &removals.Add({{"table", table}, {"reason", "max_times_sampled"}});
  m.deletions = &removals.Add({{"table", table}, {"reason", "deleted"}});
  m.priority_updates =
      &AddCounter(registry, "replay_priority_updates_total", "Priorities set by updates.")
           .Add(labels);
  auto& blocked = AddCounter(registry, "replay_rate_limiter_blocked_seconds_total",
                             "Time inserts and samples waited for the rate limiter.");
  m.insert_blocked_seconds = &blocked.Add({{"table", table}, {"side", "insert"}});
  m.sample_blocked_seconds = &blocked.Add({{"table", table}, {"side", "sample"}});
  return m;
}

absl::Status ValidateTableSpec(const v1::TableSpec& spec) {
  if (!ValidName(spec.name())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.name: must be 1 to 64 characters from [a-z0-9_], got \"", spec.name(), "\""));
  }
  if (spec.selector() == v1::SELECTOR_UNSPECIFIED || !v1::Selector_IsValid(spec.selector())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.selector: must be PRIORITIZED, UNIFORM, FIFO or LIFO, got ", spec.selector()));
  }
  if (!v1::Remover_IsValid(spec.remover())) {
    return absl::InvalidArgumentError(absl::StrCat("spec.remover: unknown value ", spec.remover()));
  }
  if (!(spec.priority_exponent() >= 0 && spec.priority_exponent() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.priority_exponent: must be in [0, 1], got ", spec.priority_exponent()));
  }
  if (spec.max_size() < 1 || spec.max_size() > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.max_size: must be in [1, 2^31], got ", spec.max_size()));
  }
  if (spec.max_times_sampled() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.max_times_sampled: must be >= 0 (0 = unlimited), got ", spec.max_times_sampled()));
  }
  if (spec.rate_limiter().min_size_to_sample() > spec.max_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.rate_limiter.min_size_to_sample: ", spec.rate_limiter().min_size_to_sample(),
        " exceeds spec.max_size ", spec.max_size(), " (sampling could never start)"));
  }
  ENGRAM_RETURN_IF_ERROR(RateLimiter::Create(spec.rate_limiter()).status());
  const v1::TrajectorySignature& sig = spec.signature();
  if (sig.num_actions() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.signature.num_actions: must be >= 0 (0 = unchecked), got ", sig.num_actions()));
  }
  if (sig.sequence_length() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.signature.sequence_length: must be >= 0, got ", sig.sequence_length()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Table>> Table::Create(const v1::TableSpec& spec,
                                                     TableMetrics metrics) {
  ENGRAM_RETURN_IF_ERROR(ValidateTableSpec(spec));
  ENGRAM_ASSIGN_OR_RETURN(RateLimiter limiter, RateLimiter::Create(spec.rate_limiter()));
  return std::unique_ptr<Table>(new Table(spec, limiter, metrics));
}

Table::Table(v1::TableSpec spec, RateLimiter limiter, TableMetrics metrics)
    : spec_(std::move(spec)),
      metrics_(metrics),
      limiter_(limiter),
      slots_(spec_.max_size()),
      live_pos_(spec_.max_size()),
      priorities_(spec_.max_size()) {
  free_slots_.reserve(spec_.max_size());
  for (int64_t i = spec_.max_size() - 1; i >= 0; --i) {
    free_slots_.push_back(static_cast<uint32_t>(i));
  }
  live_.reserve(spec_.max_size());
  by_key_.reserve(spec_.max_size());
  if (spec_.remover() == v1::REMOVER_LOWEST_PRIORITY) {
    lowest_ = std::make_unique<MinTree>(spec_.max_size());
  }
}

Table::~Table() { Close(absl::UnavailableError("table destroyed")); }

// ---- validation ---------------------------------------------------------------------------

bool Table::WithoutReplacement() const {
  return spec_.selector() == v1::SELECTOR_FIFO || spec_.selector() == v1::SELECTOR_LIFO ||
         spec_.max_times_sampled() > 0;
}

int64_t Table::SizeNeededToSample(int batch_size) const {
  // Batches without replacement (ordered selectors, or items that leave after being
  // sampled) need that many distinct items.
  return WithoutReplacement() ? batch_size : 1;
}

double Table::SelectorWeight(double priority) const {
  const double alpha = spec_.priority_exponent();
  if (alpha == 0) return 1.0;
  return priority == 0 ? 0.0 : std::pow(priority, alpha);
}

namespace {

// Whether `t` passes ValidateTensor and matches `spec` (dtype unless UNSPECIFIED, shape with
// -1 as a wildcard), without building any error message.
bool TensorMatches(const v1::Tensor& t, const v1::TensorSpec* spec) {
  if (!ValidateTensor(t, absl::string_view()).ok()) return false;
  if (spec == nullptr) return true;
  if (spec->dtype() != v1::DTYPE_UNSPECIFIED && t.dtype() != spec->dtype()) return false;
  if (t.shape_size() != spec->shape_size()) return false;
  for (int i = 0; i < t.shape_size(); ++i) {
    if (spec->shape(i) != -1 && spec->shape(i) != t.shape(i)) return false;
  }
  return true;
}

}  // namespace

absl::Status Table::ValidateItem(int index, const v1::Item& item) const {
  // Fast path for a valid transition: the same checks as below, but no strings are built.
  // Anything it does not accept goes through the checks below, which name the problem.
  const v1::TrajectorySignature& fast_sig = spec_.signature();
  if (item.key() != 0 && std::isfinite(item.priority()) && item.priority() >= 0 &&
      item.payload_case() == v1::Item::kTransition &&
      fast_sig.payload() != v1::PAYLOAD_KIND_CHUNK) {
    const v1::Transition& t = item.transition();
    const v1::TensorSpec* obs_spec = fast_sig.has_observation() ? &fast_sig.observation() : nullptr;
    const int num_actions = fast_sig.num_actions();
    if (TensorMatches(t.observation(), obs_spec) && TensorMatches(t.next_observation(), obs_spec) &&
        t.observation().dtype() == t.next_observation().dtype() &&
        std::equal(t.observation().shape().begin(), t.observation().shape().end(),
                   t.next_observation().shape().begin(), t.next_observation().shape().end()) &&
        t.action() >= 0 && (num_actions == 0 || t.action() < num_actions) &&
        std::isfinite(t.reward()) && t.discount() >= 0 && t.discount() <= 1 && t.steps() >= 0) {
      return absl::OkStatus();
    }
  }
  const auto where = [&] { return absl::StrCat("insert item ", index, " (key ", item.key(), ")"); };
  if (item.key() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("insert item ", index, ": key must not be 0"));
  }
  if (!std::isfinite(item.priority()) || item.priority() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(), ": priority must be finite and >= 0, got ", item.priority()));
  }
  const v1::TrajectorySignature& sig = spec_.signature();
  const int num_actions = sig.num_actions();
  const TensorSignature obs_sig = ToSignature(sig.observation());
  const bool check_obs = sig.has_observation();
  const std::string table = absl::StrCat(" table \"", spec_.name(), "\" signature");
  const auto check_obs_tensor = [&](const v1::Tensor& t, absl::string_view field) -> absl::Status {
    const std::string what = absl::StrCat(where(), ": ", field);
    ENGRAM_RETURN_IF_ERROR(ValidateTensor(t, what).status());
    if (check_obs) {
      absl::Status s = CheckSignature(t, obs_sig, what);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(s.message(), " of", table));
    }
    return absl::OkStatus();
  };
  switch (item.payload_case()) {
    case v1::Item::kTransition: {
      if (sig.payload() == v1::PAYLOAD_KIND_CHUNK) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), ": a transition, but the", table, " requires chunks"));
      }
      const v1::Transition& t = item.transition();
      ENGRAM_RETURN_IF_ERROR(check_obs_tensor(t.observation(), "observation"));
      ENGRAM_RETURN_IF_ERROR(check_obs_tensor(t.next_observation(), "next_observation"));
      if (t.observation().dtype() != t.next_observation().dtype() ||
          !std::equal(t.observation().shape().begin(), t.observation().shape().end(),
                      t.next_observation().shape().begin(), t.next_observation().shape().end())) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), ": next_observation ", ShapeString(t.next_observation().shape()),
                         " differs from observation ", ShapeString(t.observation().shape())));
      }
      if (t.action() < 0 || (num_actions > 0 && t.action() >= num_actions)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), ": action ", t.action(), " outside [0, ", num_actions, ")"));
      }
      if (!std::isfinite(t.reward())) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), ": reward must be finite, got ", t.reward()));
      }
      if (!(t.discount() >= 0 && t.discount() <= 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), ": discount must be in [0, 1], got ", t.discount()));
      }
      if (t.steps() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), ": steps must be >= 0, got ", t.steps()));
      }
      return absl::OkStatus();
    }
    case v1::Item::kChunk: {
      if (sig.payload() == v1::PAYLOAD_KIND_TRANSITION) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), ": a chunk, but the", table, " requires transitions"));
      }
      const v1::TrajectoryChunk& c = item.chunk();
      const std::string prefix = absl::StrCat(where(), ": ");
      ENGRAM_RETURN_IF_ERROR(
          ValidateTensor(c.observations(), absl::StrCat(prefix, "observations")).status());
      if (c.observations().shape_size() < 1 || c.observations().shape(0) < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, "observations must have a leading time dimension T >= 1"));
      }
      const int64_t steps = c.observations().shape(0);
      if (sig.sequence_length() > 0 && steps != sig.sequence_length()) {
        return absl::InvalidArgumentError(absl::StrCat(prefix, "chunk length ", steps,
                                                       " differs from the", table,
                                                       " sequence_length ", sig.sequence_length()));
      }
      if (check_obs) {
        TensorSignature with_time = obs_sig;
        with_time.shape.insert(with_time.shape.begin(), steps);
        absl::Status s =
            CheckSignature(c.observations(), with_time, absl::StrCat(prefix, "observations"));
        if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(s.message(), " of", table));
      }
      ENGRAM_RETURN_IF_ERROR(CheckTimeMajor(c.actions(), steps, absl::StrCat(prefix, "actions")));
      ENGRAM_RETURN_IF_ERROR(CheckTimeMajor(c.rewards(), steps, absl::StrCat(prefix, "rewards")));
      ENGRAM_RETURN_IF_ERROR(
          CheckTimeMajor(c.discounts(), steps, absl::StrCat(prefix, "discounts")));
      ENGRAM_RETURN_IF_ERROR(check_obs_tensor(c.bootstrap_observation(), "bootstrap_observation"));
      return absl::OkStatus();
    }
    case v1::Item::PAYLOAD_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where(), ": payload must be a transition or a chunk"));
}

absl::Status Table::Validate(const google::protobuf::RepeatedPtrField<v1::Item>& items) const {
  if (items.empty()) return absl::InvalidArgumentError("insert: no items");
  for (int i = 0; i < items.size(); ++i) ENGRAM_RETURN_IF_ERROR(ValidateItem(i, items[i]));
  return absl::OkStatus();
}

// ---- storage --------------------------------------------------------------------------------

void Table::SetPriorityLocked(uint32_t slot, double priority) {
  Slot& s = slots_[slot];
  s.priority = priority;
  if (spec_.selector() == v1::SELECTOR_PRIORITIZED) priorities_.Set(slot, SelectorWeight(priority));
  if (lowest_ != nullptr) lowest_->Set(slot, priority, s.seq);
}

uint32_t Table::StoreLocked(v1::Item* item, int32_t times_sampled) {
  if (free_slots_.empty()) RemoveLocked(VictimLocked());
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  Slot& s = slots_[slot];
  s.key = item->key();
  s.seq = next_seq_++;
  s.times_sampled = times_sampled;
  if (item->has_transition()) {
    v1::Transition* t = item->mutable_transition();
    s.is_chunk = false;
    s.observation = frames_.Acquire(t->observation());
    s.next_observation = frames_.Acquire(t->next_observation());
    // The frames hold the data; the slot keeps the rest (headers, scalars, provenance).
    t->mutable_observation()->clear_data();
    t->mutable_next_observation()->clear_data();
    t->SerializeToString(&s.rest);
  } else {
    s.is_chunk = true;
    s.observation = s.next_observation = FrameStore::kNoFrame;
    item->chunk().SerializeToString(&s.rest);
  }
  rest_bytes_ += static_cast<int64_t>(s.rest.size());
  by_key_[s.key] = slot;
  live_pos_[slot] = static_cast<uint32_t>(live_.size());
  live_.push_back(slot);
  order_.emplace_back(s.seq, slot);
  SetPriorityLocked(slot, item->priority());
  return slot;
}

void Table::RemoveLocked(uint32_t slot) {
  Slot& s = slots_[slot];
  ENGRAM_CHECK(s.seq != 0) << "removing free slot " << slot;
  by_key_.erase(s.key);
  const uint32_t pos = live_pos_[slot];
  live_[pos] = live_.back();
  live_pos_[live_[pos]] = pos;
  live_.pop_back();
  if (spec_.selector() == v1::SELECTOR_PRIORITIZED) priorities_.Set(slot, 0.0);
  if (lowest_ != nullptr) lowest_->Clear(slot);
  if (s.observation != FrameStore::kNoFrame) frames_.Release(s.observation);
  if (s.next_observation != FrameStore::kNoFrame) frames_.Release(s.next_observation);
  s.observation = s.next_observation = FrameStore::kNoFrame;
  rest_bytes_ -= static_cast<int64_t>(s.rest.size());
  s.rest.clear();  // keeps the buffer for the next item in this slot
  s.seq = 0;
  s.key = 0;
  free_slots_.push_back(slot);
  ++counters_.removals;
  // Drop stale entries at both ends now; the middle is compacted when it grows.
  while (!order_.empty() && slots_[order_.front().second].seq != order_.front().first) {
    order_.pop_front();
  }
  while (!order_.empty() && slots_[order_.back().second].seq != order_.back().first) {
    order_.pop_back();
  }
  if (order_.size() > 2 * live_.size() + 1024) CompactOrderLocked();
}

void Table::CompactOrderLocked() {
  std::deque<std::pair<uint64_t, uint32_t>> compact;
  for (const auto& [seq, slot] : order_) {
    if (slots_[slot].seq == seq) compact.emplace_back(seq, slot);
  }
  order_.swap(compact);
}

uint32_t Table::VictimLocked() {
  if (lowest_ != nullptr) return static_cast<uint32_t>(lowest_->ArgMin());
  // FIFO: the oldest live entry (stale ones are popped eagerly, so the front is live).
  return order_.front().second;
}

void Table::FillItemLocked(uint32_t slot, v1::Item* out) const {
  const Slot& s = slots_[slot];
  out->set_key(s.key);
  out->set_priority(s.priority);
  if (s.is_chunk) {
    out->mutable_chunk()->ParseFromString(s.rest);
    return;
  }
  v1::Transition* t = out->mutable_transition();
  t->ParseFromString(s.rest);
  frames_.CopyTo(s.observation, t->mutable_observation());
  frames_.CopyTo(s.next_observation, t->mutable_next_observation());
}

void Table::UpdateGaugesLocked() {
  if (metrics_.items != nullptr) metrics_.items->Set(static_cast<double>(live_.size()));
  if (metrics_.bytes != nullptr)
    metrics_.bytes->Set(static_cast<double>(frames_.bytes() + rest_bytes_));
}

// ---- insert ---------------------------------------------------------------------------------

absl::StatusOr<int> Table::Insert(google::protobuf::RepeatedPtrField<v1::Item>* items,
                                  absl::Time deadline) {
  ENGRAM_RETURN_IF_ERROR(Validate(*items));
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return closed_;
  const auto admitted = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !closed_.ok() || limiter_.CanInsert(static_cast<int64_t>(live_.size()));
  };
  if (!admitted()) {
    // The whole request is admitted together once the limiter allows one insert, so a
    // batch can overshoot max_diff by at most its own size (and can never wait forever).
    ++waiting_inserts_;
    const absl::Time start = absl::Now();
    const bool ok = mu_.AwaitWithDeadline(absl::Condition(&admitted), deadline);
    const double waited = absl::ToDoubleSeconds(absl::Now() - start);
    --waiting_inserts_;
    counters_.insert_wait_seconds += waited;
    if (metrics_.insert_blocked_seconds != nullptr)
      metrics_.insert_blocked_seconds->Increment(waited);
    if (!closed_.ok()) return closed_;
    if (!ok) {
      return absl::DeadlineExceededError(absl::StrCat(
          "table \"", spec_.name(), "\": the rate limiter held inserts back past the deadline"));
    }
  }
  return StoreBatchLocked(items, /*count_in_limiter=*/true);
}

absl::StatusOr<int> Table::InsertRecovered(google::protobuf::RepeatedPtrField<v1::Item>* items) {
  ENGRAM_RETURN_IF_ERROR(Validate(*items));
  absl::MutexLock lock(&mu_);
  return StoreBatchLocked(items, /*count_in_limiter=*/false);
}

int Table::StoreBatchLocked(google::protobuf::RepeatedPtrField<v1::Item>* items,
                            bool count_in_limiter) {
  int stored = 0;
  const int64_t removals_before = counters_.removals;
  for (v1::Item& item : *items) {
    if (by_key_.contains(item.key())) {
      ++counters_.duplicate_inserts;
      continue;
    }
    StoreLocked(&item, 0);
    ++stored;
  }
  counters_.inserts += stored;
  if (count_in_limiter) limiter_.Inserted(stored);
  if (metrics_.inserts != nullptr) {
    metrics_.inserts->Increment(stored);
    metrics_.duplicate_inserts->Increment(items->size() - stored);
    metrics_.evictions->Increment(static_cast<double>(counters_.removals - removals_before));
  }
  UpdateGaugesLocked();
  return stored;
}

// ---- sample ---------------------------------------------------------------------------------

uint32_t Table::DrawLocked(double* probability) {
  const double n = static_cast<double>(live_.size());
  if (spec_.selector() == v1::SELECTOR_PRIORITIZED && priorities_.total() > 0) {
    const double total = priorities_.total();
    const int64_t slot = priorities_.Find(absl::Uniform(rng_, 0.0, total));
    *probability = priorities_.Get(slot) / total;
    return static_cast<uint32_t>(slot);
  }
  // Uniform, or prioritized with every priority 0.
  *probability = 1.0 / n;
  return live_[absl::Uniform<size_t>(rng_, 0, live_.size())];
}

void Table::PickOrderedLocked(int n, bool newest_first, std::vector<uint32_t>* out) {
  out->clear();
  if (newest_first) {
    for (auto it = order_.rbegin(); it != order_.rend() && static_cast<int>(out->size()) < n;
         ++it) {
      if (slots_[it->second].seq == it->first) out->push_back(it->second);
    }
  } else {
    for (auto it = order_.begin(); it != order_.end() && static_cast<int>(out->size()) < n; ++it) {
      if (slots_[it->second].seq == it->first) out->push_back(it->second);
    }
  }
}

absl::Status Table::Sample(int batch_size, double beta, absl::Time deadline,
                           v1::SampleResponse* out) {
  if (batch_size < 1 || batch_size > kMaxSampleBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be in [1, ", kMaxSampleBatch, "], got ", batch_size));
  }
  if (!(beta >= 0 && beta <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance_beta must be in [0, 1], got ", beta));
  }
  if (batch_size > spec_.max_size() && WithoutReplacement()) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size ", batch_size, " exceeds table \"",
                                                   spec_.name(), "\" max_size ", spec_.max_size(),
                                                   " (batches of this table hold distinct items)"));
  }
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return closed_;
  ENGRAM_RETURN_IF_ERROR(limiter_.CheckBatchSize(batch_size));
  const int64_t needed = SizeNeededToSample(batch_size);
  const auto ready = [this, batch_size, needed]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto size = static_cast<int64_t>(live_.size());
    return !closed_.ok() || (size >= needed && limiter_.CanSample(size, batch_size));
  };
  if (!ready()) {
    ++waiting_samples_;
    const absl::Time start = absl::Now();
    const bool ok = mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    const double waited = absl::ToDoubleSeconds(absl::Now() - start);
    --waiting_samples_;
    counters_.sample_wait_seconds += waited;
    if (metrics_.sample_blocked_seconds != nullptr)
      metrics_.sample_blocked_seconds->Increment(waited);
    if (!closed_.ok()) return closed_;
    if (!ok) {
      return absl::DeadlineExceededError(absl::StrCat(
          "table \"", spec_.name(), "\": no batch of ", batch_size,
          " could be sampled before the deadline (size ", live_.size(), ", min_size_to_sample ",
          limiter_.min_size_to_sample(), ", rate limiter diff ", limiter_.diff(), ")"));
    }
  }

  const int64_t table_size = static_cast<int64_t>(live_.size());
  const bool prioritized = spec_.selector() == v1::SELECTOR_PRIORITIZED;
  const double priority_total = prioritized ? priorities_.total() : static_cast<double>(table_size);
  out->set_table_size(table_size);
  out->set_priority_total(priority_total);
  auto* items = out->mutable_items();
  items->Clear();
  items->Reserve(batch_size);

  std::vector<uint32_t> picks;
  std::vector<double> probabilities;
  const bool ordered =
      spec_.selector() == v1::SELECTOR_FIFO || spec_.selector() == v1::SELECTOR_LIFO;
  if (ordered) {
    PickOrderedLocked(batch_size, spec_.selector() == v1::SELECTOR_LIFO, &picks);
    probabilities.assign(picks.size(), 1.0);
  } else if (prioritized && priority_total > 0) {
    // Stratified draws over the tree as it is before this batch (Schaul et al.).
    std::vector<int64_t> strata(batch_size);
    priorities_.SampleStratified(batch_size, rng_, strata.data());
    for (int64_t slot : strata) {
      picks.push_back(static_cast<uint32_t>(slot));
      probabilities.push_back(priorities_.Get(slot) / priority_total);
    }
  } else {
    for (int i = 0; i < batch_size; ++i) {
      double p;
      picks.push_back(DrawLocked(&p));
      probabilities.push_back(p);
    }
  }

  const int max_times = spec_.max_times_sampled();
  const int64_t removals_before = counters_.removals;
  double max_weight = 0;
  for (int i = 0; i < batch_size; ++i) {
    uint32_t slot = picks[i];
    // An item that left earlier in this batch (max_times_sampled reached) is replaced by
    // a fresh draw from what is left; needed >= batch_size guarantees something is left.
    if (!ordered && slots_[slot].seq == 0) slot = DrawLocked(&probabilities[i]);
    Slot& s = slots_[slot];
    ++s.times_sampled;
    v1::SampledItem* sampled = items->Add();
    FillItemLocked(slot, sampled->mutable_item());
    sampled->set_times_sampled(s.times_sampled);
    sampled->set_probability(ordered ? 1.0 : probabilities[i]);
    const double weight =
        ordered || beta == 0 ? 1.0 : std::pow(table_size * probabilities[i], -beta);
    sampled->set_importance_weight(weight);
    max_weight = std::max(max_weight, weight);
    if (max_times > 0 && s.times_sampled >= max_times) RemoveLocked(slot);
  }
  for (v1::SampledItem& sampled : *items) {
    sampled.set_importance_weight(sampled.importance_weight() / max_weight);
  }
  counters_.samples += batch_size;
  limiter_.Sampled(batch_size);
  if (metrics_.samples != nullptr) {
    metrics_.samples->Increment(batch_size);
    metrics_.sampled_out->Increment(static_cast<double>(counters_.removals - removals_before));
  }
  UpdateGaugesLocked();
  return absl::OkStatus();
}

// ---- updates, info, lifecycle --------------------------------------------------------------

absl::StatusOr<v1::UpdatePrioritiesResponse> Table::UpdatePriorities(
    const v1::UpdatePrioritiesRequest& request) {
  if (request.keys_size() != request.priorities_size()) {
    return absl::InvalidArgumentError(absl::StrCat("update: ", request.keys_size(), " keys but ",
                                                   request.priorities_size(), " priorities"));
  }
  for (int i = 0; i < request.priorities_size(); ++i) {
    const double p = request.priorities(i);
    if (!std::isfinite(p) || p < 0) {
      return absl::InvalidArgumentError(absl::StrCat("update: priorities[", i, "] (key ",
                                                     request.keys(i),
                                                     ") must be finite and >= 0, got ", p));
    }
  }
  v1::UpdatePrioritiesResponse response;
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return closed_;
  for (int i = 0; i < request.keys_size(); ++i) {
    auto it = by_key_.find(request.keys(i));
    if (it == by_key_.end()) {
      response.set_missing(response.missing() + 1);
      continue;
    }
    SetPriorityLocked(it->second, request.priorities(i));
    response.set_updated(response.updated() + 1);
  }
  int64_t deleted = 0;
  for (uint64_t key : request.delete_keys()) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) continue;
    RemoveLocked(it->second);
    ++deleted;
  }
  response.set_deleted(deleted);
  counters_.priority_updates += response.updated();
  if (metrics_.priority_updates != nullptr) {
    metrics_.priority_updates->Increment(static_cast<double>(response.updated()));
    metrics_.deletions->Increment(static_cast<double>(deleted));
  }
  UpdateGaugesLocked();
  return response;
}

int64_t Table::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(live_.size());
}

int64_t Table::payload_bytes() const {
  absl::MutexLock lock(&mu_);
  return frames_.bytes() + rest_bytes_;
}

v1::TableInfo Table::Info() const {
  v1::TableInfo info;
  *info.mutable_spec() = spec_;
  absl::MutexLock lock(&mu_);
  info.set_size(static_cast<int64_t>(live_.size()));
  info.set_inserts_total(counters_.inserts);
  info.set_duplicate_inserts_total(counters_.duplicate_inserts);
  info.set_samples_total(counters_.samples);
  info.set_removals_total(counters_.removals);
  info.set_priority_total(spec_.selector() == v1::SELECTOR_PRIORITIZED
                              ? priorities_.total()
                              : static_cast<double>(live_.size()));
  // Rates over the window kept by rate_points_ (refreshed here, about one point a second).
  const absl::Time now = absl::Now();
  auto& points = rate_points_;
  if (points.empty() || now - std::get<0>(points.back()) >= absl::Seconds(1)) {
    points.emplace_back(now, counters_.inserts, counters_.samples);
  }
  while (points.size() > 2 && now - std::get<0>(points.front()) > absl::Seconds(10)) {
    points.pop_front();
  }
  const auto& [t0, inserts0, samples0] = points.front();
  const double span = absl::ToDoubleSeconds(now - t0);
  if (span > 0) {
    info.set_insert_rate((counters_.inserts - inserts0) / span);
    info.set_sample_rate((counters_.samples - samples0) / span);
  }
  v1::RateLimiterInfo* rl = info.mutable_rate_limiter();
  rl->set_diff(limiter_.diff());
  rl->set_min_diff(limiter_.min_diff());
  rl->set_max_diff(limiter_.max_diff());
  rl->set_waiting_inserts(waiting_inserts_);
  rl->set_waiting_samples(waiting_samples_);
  rl->set_insert_wait_seconds_total(counters_.insert_wait_seconds);
  rl->set_sample_wait_seconds_total(counters_.sample_wait_seconds);
  return info;
}

void Table::Close(absl::Status status) {
  absl::MutexLock lock(&mu_);
  if (closed_.ok()) closed_ = std::move(status);
}

void Table::Export(const std::function<void(const v1::Item&, int32_t)>& fn,
                   TableCounters* counters) const {
  absl::MutexLock lock(&mu_);
  v1::Item item;
  for (const auto& [seq, slot] : order_) {
    if (slots_[slot].seq != seq) continue;
    item.Clear();
    FillItemLocked(slot, &item);
    fn(item, slots_[slot].times_sampled);
  }
  *counters = counters_;
  counters->limiter_inserts = limiter_.inserts();
  counters->limiter_samples = limiter_.samples();
}

absl::Status Table::Restore(v1::Item item, int32_t times_sampled) {
  google::protobuf::RepeatedPtrField<v1::Item> one;
  *one.Add() = std::move(item);
  ENGRAM_RETURN_IF_ERROR(Validate(one));
  absl::MutexLock lock(&mu_);
  if (by_key_.contains(one[0].key())) {
    return absl::AlreadyExistsError(
        absl::StrCat("restore: key ", one[0].key(), " is already in table \"", spec_.name(), "\""));
  }
  StoreLocked(one.Mutable(0), times_sampled);
  UpdateGaugesLocked();
  return absl::OkStatus();
}

void Table::RestoreCounters(const TableCounters& counters) {
  absl::MutexLock lock(&mu_);
  counters_ = counters;
  limiter_.SetCounts(counters.limiter_inserts >= 0 ? counters.limiter_inserts : counters.inserts,
                     counters.limiter_samples >= 0 ? counters.limiter_samples : counters.samples);
}

}  // namespace engram::replay
