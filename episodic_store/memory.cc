#include "episodic_store/memory.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <string>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace engram::episodic {
namespace {

constexpr int kMaxKeyDim = 4096;
constexpr int kMaxActions = 1024;
constexpr int kMaxK = 1024;
constexpr int64_t kMaxCapacity = int64_t{1} << 31;
constexpr int64_t kMaxAnswerBytes = int64_t{48} << 20;  // under the default 64 MiB messages
constexpr char kMagic[8] = {'E', 'N', 'G', 'R', 'M', 'E', 'M', '1'};
constexpr uint64_t kEndMarker = 0x454e44454d454d31;  // "1MEMEDNE"

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

uint64_t KeyHash(const float* key, int dim) {
  return absl::HashOf(absl::string_view(reinterpret_cast<const char*>(key), dim * sizeof(float)));
}

bool AllFinite(const float* data, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(data[i])) return false;
  }
  return true;
}

template <typename T>
void Put(std::ostream& out, const T& value) {
  out.write(reinterpret_cast<const char*>(&value), sizeof(T));
}
template <typename T>
void PutVector(std::ostream& out, const std::vector<T>& values) {
  Put<uint64_t>(out, values.size());
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(T)));
}
template <typename T>
bool Get(std::istream& in, T* value) {
  return static_cast<bool>(in.read(reinterpret_cast<char*>(value), sizeof(T)));
}
template <typename T>
bool GetVector(std::istream& in, std::vector<T>* values, uint64_t max_size) {
  uint64_t size = 0;
  if (!Get(in, &size) || size > max_size) return false;
  // Grown as the data arrives, so that a damaged size cannot make it allocate more than
  // the stream holds (plus one chunk).
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  values->clear();
  for (uint64_t done = 0; done < size;) {
    const uint64_t n = std::min(kChunk, size - done);
    values->resize(done + n);
    if (!in.read(reinterpret_cast<char*>(values->data() + done),
                 static_cast<std::streamsize>(n * sizeof(T)))) {
      return false;
    }
    done += n;
  }
  return true;
}

}  // namespace

absl::Status ValidateMemorySpec(const v1::MemorySpec& spec) {
  if (!ValidName(spec.name())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.name: must be 1 to 64 characters from [a-z0-9_], got \"", spec.name(), "\""));
  }
  if (spec.key_dim() < 1 || spec.key_dim() > kMaxKeyDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.key_dim: must be in [1, ", kMaxKeyDim, "], got ", spec.key_dim()));
  }
  if (spec.num_actions() < 1 || spec.num_actions() > kMaxActions) {
    return absl::InvalidArgumentError(absl::StrCat("spec.num_actions: must be in [1, ", kMaxActions,
                                                   "], got ", spec.num_actions()));
  }
  if (spec.capacity_per_action() < 1 || spec.capacity_per_action() > kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrCat("spec.capacity_per_action: must be in [1, ",
                                                   kMaxCapacity, "], got ",
                                                   spec.capacity_per_action()));
  }
  if (spec.update_rule() != v1::UPDATE_RULE_MFEC_MAX && spec.update_rule() != v1::UPDATE_RULE_NEC) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.update_rule: must be UPDATE_RULE_MFEC_MAX or UPDATE_RULE_NEC, got ",
                     spec.update_rule()));
  }
  if (spec.has_nec_alpha() && !(spec.nec_alpha() > 0 && spec.nec_alpha() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.nec_alpha: must be in (0, 1], got ", spec.nec_alpha()));
  }
  if (spec.kernel() != v1::KERNEL_MEAN && spec.kernel() != v1::KERNEL_INVERSE_DISTANCE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.kernel: must be KERNEL_MEAN or KERNEL_INVERSE_DISTANCE, got ", spec.kernel()));
  }
  if (spec.has_kernel_delta() && !(spec.kernel_delta() > 0 && std::isfinite(spec.kernel_delta()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.kernel_delta: must be > 0, got ", spec.kernel_delta()));
  }
  if (spec.index() != v1::INDEX_KIND_EXACT && spec.index() != v1::INDEX_KIND_APPROXIMATE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.index: must be INDEX_KIND_EXACT or INDEX_KIND_APPROXIMATE, got ", spec.index()));
  }
  if (spec.has_default_k() && (spec.default_k() < 1 || spec.default_k() > kMaxK)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.default_k: must be in [1, ", kMaxK, "], got ", spec.default_k()));
  }
  if (spec.has_exact_match_distance() &&
      !(spec.exact_match_distance() >= 0 && std::isfinite(spec.exact_match_distance()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.exact_match_distance: must be >= 0, got ", spec.exact_match_distance()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Memory>> Memory::Create(const v1::MemorySpec& spec,
                                                       const IndexOptions& index_options) {
  if (absl::Status valid = ValidateMemorySpec(spec); !valid.ok()) return valid;
  try {
    return std::unique_ptr<Memory>(new Memory(spec, index_options));
  } catch (const std::exception& e) {  // std::bad_alloc, hnswlib's "Not enough memory"
    return absl::ResourceExhaustedError(
        absl::StrCat("spec.capacity_per_action: cannot allocate the memory: ", e.what()));
  }
}

Memory::Memory(v1::MemorySpec spec, const IndexOptions& index_options)
    : spec_(std::move(spec)),
      dim_(spec_.key_dim()),
      nec_alpha_(spec_.has_nec_alpha() ? spec_.nec_alpha() : 0.1),
      kernel_delta_(spec_.has_kernel_delta() ? spec_.kernel_delta() : 1e-3),
      exact_match_distance_(spec_.has_exact_match_distance() ? spec_.exact_match_distance() : 0) {
  actions_.resize(spec_.num_actions());
  for (Action& action : actions_) {
    const int64_t capacity = spec_.capacity_per_action();
    if (spec_.index() == v1::INDEX_KIND_EXACT) {
      action.index = MakeFlatIndex(dim_, capacity);
    } else if (index_options.approximate == IndexOptions::Approximate::kHnsw) {
      action.index = MakeHnswIndex(dim_, capacity, index_options.hnsw);
    } else {
      action.index = MakeIvfIndex(dim_, capacity, index_options.ivf);
    }
  }
}

int64_t Memory::FindExactLocked(const Action& action, const float* key, uint64_t hash) const {
  if (action.index->size() == 0) return -1;
  if (exact_match_distance_ == 0) {
    auto it = action.by_hash.find(hash);
    if (it == action.by_hash.end()) return -1;
    return std::memcmp(action.index->Key(it->second), key, dim_ * sizeof(float)) == 0 ? it->second
                                                                                      : -1;
  }
  float distance = 0;
  int64_t label = -1;
  action.index->Search(key, 1, 1, &distance, &label);
  return label >= 0 && distance <= exact_match_distance_ ? label : -1;
}

void Memory::UnlinkLocked(Action& action, int64_t slot) {
  const int64_t p = action.prev[slot], n = action.next[slot];
  (p >= 0 ? action.next[p] : action.head) = n;
  (n >= 0 ? action.prev[n] : action.tail) = p;
  action.prev[slot] = action.next[slot] = -1;
}

void Memory::TouchLocked(Action& action, int64_t slot) {
  if (action.head == slot) return;
  const bool linked = action.prev[slot] >= 0 || action.next[slot] >= 0;
  if (linked) UnlinkLocked(action, slot);
  action.next[slot] = action.head;
  if (action.head >= 0) action.prev[action.head] = slot;
  action.head = slot;
  if (action.tail < 0) action.tail = slot;
}

void Memory::WriteOneLocked(Action& action, const float* key, float value, WriteResult* result) {
  const uint64_t hash = KeyHash(key, dim_);
  const int64_t found = FindExactLocked(action, key, hash);
  if (found >= 0) {
    float& stored = action.values[found];
    stored = spec_.update_rule() == v1::UPDATE_RULE_MFEC_MAX
                 ? std::max(stored, value)
                 : static_cast<float>(stored + nec_alpha_ * (value - stored));
    TouchLocked(action, found);
    ++result->updated;
    return;
  }
  int64_t slot = action.index->size();
  if (slot < spec_.capacity_per_action()) {
    action.values.push_back(value);
    action.prev.push_back(-1);
    action.next.push_back(-1);
  } else {
    slot = action.tail;  // the least recently used
    if (exact_match_distance_ == 0) {
      auto it = action.by_hash.find(KeyHash(action.index->Key(slot), dim_));
      if (it != action.by_hash.end() && it->second == slot) action.by_hash.erase(it);
    }
    UnlinkLocked(action, slot);
    action.values[slot] = value;
    ++result->evicted;
    ++evictions_total_;
  }
  action.index->Set(slot, key);
  if (exact_match_distance_ == 0) action.by_hash[hash] = slot;
  TouchLocked(action, slot);
  ++result->inserted;
  ++inserts_total_;
}

absl::StatusOr<WriteResult> Memory::Write(const float* keys, int64_t n, const int32_t* actions,
                                          const float* values) {
  if (n < 1) return absl::InvalidArgumentError("keys: at least one write is required");
  for (int64_t i = 0; i < n; ++i) {
    if (actions[i] < 0 || actions[i] >= spec_.num_actions()) {
      return absl::InvalidArgumentError(absl::StrCat("actions[", i, "]: ", actions[i],
                                                     " is not in [0, ", spec_.num_actions(), ")"));
    }
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("values[", i, "]: must be finite, got ", values[i]));
    }
    if (!AllFinite(keys + i * dim_, dim_)) {
      return absl::InvalidArgumentError(absl::StrCat("keys[", i, "]: must be finite (NaN or inf)"));
    }
  }
  WriteResult result;
  absl::MutexLock lock(&mu_);
  absl::MutexLock recency_lock(&recency_mu_);
  for (int64_t i = 0; i < n; ++i) {
    WriteOneLocked(actions_[actions[i]], keys + i * dim_, values[i], &result);
  }
  for (Action& action : actions_) action.index->Flush();
  writes_total_ += n;
  return result;
}

absl::StatusOr<LookupResult> Memory::Lookup(const float* queries, int64_t n,
                                            const std::vector<int32_t>& actions, int k,
                                            bool return_keys) {
  if (n < 1) return absl::InvalidArgumentError("queries: at least one query is required");
  if (k < 0 || k > kMaxK) {
    return absl::InvalidArgumentError(absl::StrCat("k: must be in [0, ", kMaxK, "], got ", k));
  }
  if (k == 0) k = spec_.has_default_k() ? spec_.default_k() : 50;
  if (!actions.empty() && static_cast<int64_t>(actions.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "actions: must be empty or have ", n, " entries (one per query), got ", actions.size()));
  }
  for (size_t i = 0; i < actions.size(); ++i) {
    if (actions[i] < 0 || actions[i] >= spec_.num_actions()) {
      return absl::InvalidArgumentError(absl::StrCat("actions[", i, "]: ", actions[i],
                                                     " is not in [0, ", spec_.num_actions(), ")"));
    }
  }
  if (!AllFinite(queries, n * dim_)) {
    return absl::InvalidArgumentError("queries: must be finite (NaN or inf)");
  }
  LookupResult result;
  result.n = n;
  result.m = actions.empty() ? spec_.num_actions() : 1;
  result.k = k;
  // distances, values (and keys) of every (query, column, neighbour): keep answers bounded.
  const int64_t answer_bytes =
      n * result.m * k * static_cast<int64_t>(sizeof(float)) * (2 + (return_keys ? dim_ : 0));
  if (answer_bytes > kMaxAnswerBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("queries: the answer would be ", answer_bytes >> 20,
                     " MiB (queries x actions x k", return_keys ? " x key_dim" : "", "); at most ",
                     kMaxAnswerBytes >> 20, " MiB: send fewer queries or a smaller k"));
  }
  const int64_t cells = n * result.m;
  result.distances.assign(cells * k, std::numeric_limits<float>::infinity());
  result.values.assign(cells * k, 0);
  result.counts.assign(cells, 0);
  result.estimates.assign(cells, 0);
  if (return_keys) result.keys.assign(cells * k * dim_, 0);

  // Queries grouped by the action they are answered for: (action, query rows, column).
  std::vector<std::vector<int64_t>> rows(spec_.num_actions());
  if (actions.empty()) {
    for (auto& r : rows) {
      r.resize(n);
      for (int64_t q = 0; q < n; ++q) r[q] = q;
    }
  } else {
    for (int64_t q = 0; q < n; ++q) rows[actions[q]].push_back(q);
  }
  // MFEC exact matches are looked up by key: hash each query once for all actions.
  const bool exact_by_hash =
      spec_.update_rule() == v1::UPDATE_RULE_MFEC_MAX && exact_match_distance_ == 0;
  std::vector<uint64_t> hashes;
  if (exact_by_hash) {
    hashes.resize(n);
    for (int64_t q = 0; q < n; ++q) hashes[q] = KeyHash(queries + q * dim_, dim_);
  }
  std::vector<float> block, distances;
  std::vector<int64_t> labels;
  // Searches share the lock (concurrent Lookups run in parallel); the neighbours' recency is
  // updated afterwards under recency_mu_ (writes are excluded throughout).
  std::vector<std::pair<int, int64_t>> used;  // (action, slot)
  absl::ReaderMutexLock lock(&mu_);
  for (int a = 0; a < spec_.num_actions(); ++a) {
    const std::vector<int64_t>& qs = rows[a];
    if (qs.empty()) continue;
    const Action& action = actions_[a];
    const float* batch = queries;
    if (!actions.empty()) {  // gather this action's queries
      block.resize(qs.size() * dim_);
      for (size_t i = 0; i < qs.size(); ++i) {
        std::memcpy(block.data() + i * dim_, queries + qs[i] * dim_, dim_ * sizeof(float));
      }
      batch = block.data();
    }
    distances.resize(qs.size() * k);
    labels.resize(qs.size() * k);
    action.index->Search(batch, static_cast<int64_t>(qs.size()), k, distances.data(),
                         labels.data());
    const int column = actions.empty() ? a : 0;
    for (size_t i = 0; i < qs.size(); ++i) {
      const int64_t cell = qs[i] * result.m + column;
      int count = 0;
      double weighted = 0, weights = 0;
      for (int j = 0; j < k; ++j) {
        const int64_t label = labels[i * k + j];
        if (label < 0) break;
        const float d = distances[i * k + j];
        const float v = action.values[label];
        result.distances[cell * k + j] = d;
        result.values[cell * k + j] = v;
        if (return_keys) {
          std::memcpy(result.keys.data() + (cell * k + j) * dim_, action.index->Key(label),
                      dim_ * sizeof(float));
        }
        const double w =
            spec_.kernel() == v1::KERNEL_INVERSE_DISTANCE ? 1.0 / (d + kernel_delta_) : 1.0;
        weighted += w * v;
        weights += w;
        used.emplace_back(a, label);
        ++count;
      }
      result.counts[cell] = count;
      if (count == 0) continue;
      result.estimates[cell] = static_cast<float>(weighted / weights);
      if (spec_.update_rule() != v1::UPDATE_RULE_MFEC_MAX) continue;
      // MFEC: a stored exact match gives its own value. Identical keys are found by hash
      // (search distances of identical keys need not be exactly 0: batched exact search
      // computes |x|^2 + |y|^2 - 2xy).
      if (exact_by_hash) {
        const int64_t slot = FindExactLocked(action, queries + qs[i] * dim_, hashes[qs[i]]);
        if (slot >= 0) result.estimates[cell] = action.values[slot];
      } else if (result.distances[cell * k] <= exact_match_distance_) {
        result.estimates[cell] = result.values[cell * k];
      }
    }
  }
  absl::MutexLock recency_lock(&recency_mu_);
  for (const auto& [a, slot] : used) TouchLocked(actions_[a], slot);
  lookups_total_ += n;
  return result;
}

v1::MemoryInfo Memory::Info() const {
  v1::MemoryInfo info;
  *info.mutable_spec() = spec_;
  absl::MutexLock lock(&mu_);
  absl::MutexLock recency_lock(&recency_mu_);
  for (const Action& action : actions_) info.add_sizes(action.index->size());
  info.set_writes_total(writes_total_);
  info.set_inserts_total(inserts_total_);
  info.set_evictions_total(evictions_total_);
  info.set_lookups_total(lookups_total_);
  return info;
}

absl::Status Memory::Save(std::ostream& out) const {
  const std::string spec = spec_.SerializeAsString();
  out.write(kMagic, sizeof(kMagic));
  Put<uint64_t>(out, spec.size());
  out.write(spec.data(), static_cast<std::streamsize>(spec.size()));
  absl::MutexLock lock(&mu_);
  absl::MutexLock recency_lock(&recency_mu_);
  for (int64_t counter : {writes_total_, inserts_total_, evictions_total_, lookups_total_}) {
    Put<int64_t>(out, counter);
  }
  for (const Action& action : actions_) {
    const int64_t size = action.index->size();
    std::vector<float> keys(size * dim_);
    for (int64_t slot = 0; slot < size; ++slot) {
      std::memcpy(keys.data() + slot * dim_, action.index->Key(slot), dim_ * sizeof(float));
    }
    std::vector<int64_t> order;  // oldest first
    order.reserve(size);
    for (int64_t slot = action.tail; slot >= 0; slot = action.prev[slot]) order.push_back(slot);
    PutVector(out, keys);
    PutVector(out, action.values);
    PutVector(out, order);
  }
  Put<uint64_t>(out, kEndMarker);
  if (!out) return absl::InternalError("writing the memory failed");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Memory>> Memory::Load(std::istream& in,
                                                     const IndexOptions& index_options) {
  char magic[sizeof(kMagic)];
  uint64_t spec_size = 0;
  if (!in.read(magic, sizeof(magic)) || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0 ||
      !Get(in, &spec_size) || spec_size > (1 << 20)) {
    return absl::DataLossError("not an episodic memory snapshot (bad header)");
  }
  std::string spec_bytes(spec_size, '\0');
  v1::MemorySpec spec;
  if (!in.read(spec_bytes.data(), static_cast<std::streamsize>(spec_size)) ||
      !spec.ParseFromString(spec_bytes)) {
    return absl::DataLossError("episodic memory snapshot: unreadable spec");
  }
  absl::StatusOr<std::unique_ptr<Memory>> memory = Create(spec, index_options);
  if (!memory.ok()) {
    return absl::DataLossError(
        absl::StrCat("episodic memory snapshot: bad spec: ", memory.status().message()));
  }
  Memory& m = **memory;
  absl::MutexLock lock(&m.mu_);
  absl::MutexLock recency_lock(&m.recency_mu_);
  for (int64_t* counter :
       {&m.writes_total_, &m.inserts_total_, &m.evictions_total_, &m.lookups_total_}) {
    if (!Get(in, counter)) return absl::DataLossError("episodic memory snapshot: truncated");
  }
  const uint64_t capacity = static_cast<uint64_t>(spec.capacity_per_action());
  for (Action& action : m.actions_) {
    std::vector<float> keys;
    std::vector<int64_t> order;
    if (!GetVector(in, &keys, capacity * m.dim_) || !GetVector(in, &action.values, capacity) ||
        !GetVector(in, &order, capacity) || keys.size() != action.values.size() * m.dim_ ||
        order.size() != action.values.size()) {
      return absl::DataLossError(
          absl::StrCat("episodic memory snapshot of \"", spec.name(), "\": truncated or damaged"));
    }
    const int64_t size = static_cast<int64_t>(action.values.size());
    action.prev.assign(size, -1);
    action.next.assign(size, -1);
    std::vector<bool> seen(size, false);
    for (int64_t slot = 0; slot < size; ++slot) {
      action.index->Set(slot, keys.data() + slot * m.dim_);
      if (m.exact_match_distance_ == 0) {
        action.by_hash[KeyHash(keys.data() + slot * m.dim_, m.dim_)] = slot;
      }
    }
    action.index->Flush();
    for (int64_t slot : order) {
      if (slot < 0 || slot >= size || seen[slot]) {
        return absl::DataLossError(
            absl::StrCat("episodic memory snapshot of \"", spec.name(), "\": bad recency order"));
      }
      seen[slot] = true;
      m.TouchLocked(action, slot);
    }
  }
  uint64_t end = 0;
  if (!Get(in, &end) || end != kEndMarker) {
    return absl::DataLossError(
        absl::StrCat("episodic memory snapshot of \"", spec.name(), "\": truncated"));
  }
  return memory;
}

}  // namespace engram::episodic
