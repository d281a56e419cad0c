#include "episodic_store/service.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/tensor_proto.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"

namespace engram::episodic {
namespace {

namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

constexpr char kSnapshotPrefix[] = "snapshot-";
constexpr char kMemorySuffix[] = ".memory";

// The float32 [n, dim] payload of `tensor` (copied: proto bytes carry no alignment).
absl::StatusOr<std::vector<float>> Rows(const v1::Tensor& tensor, int dim, const char* what) {
  if (tensor.dtype() != v1::DTYPE_FLOAT32 || tensor.shape_size() != 2 || tensor.shape(1) != dim ||
      tensor.shape(0) < 1) {
    std::vector<int64_t> shape(tensor.shape().begin(), tensor.shape().end());
    return absl::InvalidArgumentError(
        absl::StrCat(what, ".shape: expected float32 [N, ", dim, "] with N >= 1, got ",
                     v1::DType_Name(tensor.dtype()), " ", ShapeString(shape)));
  }
  absl::StatusOr<int64_t> elements = ValidateTensor(tensor, what);
  if (!elements.ok()) return elements.status();
  std::vector<float> rows(*elements);
  std::memcpy(rows.data(), tensor.data().data(), rows.size() * sizeof(float));
  return rows;
}

void Encode(const std::vector<float>& values, std::vector<int64_t> shape, v1::Tensor* out) {
  out->set_dtype(v1::DTYPE_FLOAT32);
  for (int64_t d : shape) out->add_shape(d);
  out->set_data(values.data(), values.size() * sizeof(float));
}

// The keys a memory holds when full, counted twice for an approximate index (IVF keeps each
// key in its row and in its list; HNSW in its row and its graph, whose links add more).
int64_t KeyBytes(const v1::MemorySpec& spec) {
  return spec.capacity_per_action() * spec.num_actions() * spec.key_dim() *
         static_cast<int64_t>(sizeof(float)) * (spec.index() == v1::INDEX_KIND_EXACT ? 1 : 2);
}

}  // namespace

EpisodicStoreServiceImpl::EpisodicStoreServiceImpl(Options options) : options_(std::move(options)) {
  if (options_.registry == nullptr) return;
  prometheus::Registry& registry = *options_.registry;
  entries_ = &AddGauge(registry, "episodic_entries", "Keys stored, by memory and action.");
  writes_ = &AddCounter(registry, "episodic_writes_total", "Write items applied.").Add({});
  inserts_ =
      &AddCounter(registry, "episodic_inserts_total", "Write items that stored a new key.").Add({});
  evictions_ =
      &AddCounter(registry, "episodic_evictions_total", "Keys evicted to make room.").Add({});
  lookups_ = &AddCounter(registry, "episodic_lookups_total", "Query rows answered.").Add({});
  lookup_seconds_ =
      &AddHistogram(registry, "episodic_lookup_latency_seconds", "Time to answer one Lookup batch.")
           .Add({}, LatencyBuckets());
  write_seconds_ =
      &AddHistogram(registry, "episodic_write_latency_seconds", "Time to apply one Write batch.")
           .Add({}, LatencyBuckets());
}

std::shared_ptr<Memory> EpisodicStoreServiceImpl::Find(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = memories_.find(name);
  return it == memories_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<Memory>> EpisodicStoreServiceImpl::FindOrNotFound(
    const std::string& name) const {
  std::shared_ptr<Memory> memory = Find(name);
  if (memory == nullptr) {
    return absl::NotFoundError(absl::StrCat("memory: no memory \"", name, "\""));
  }
  return memory;
}

int64_t EpisodicStoreServiceImpl::BytesLocked() const {
  int64_t bytes = 0;
  for (const auto& [name, memory] : memories_) bytes += KeyBytes(memory->spec());
  return bytes;
}

absl::StatusOr<bool> EpisodicStoreServiceImpl::CreateMemoryFromSpec(const v1::MemorySpec& spec) {
  if (absl::Status valid = ValidateMemorySpec(spec); !valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  if (auto it = memories_.find(spec.name()); it != memories_.end()) {
    if (google::protobuf::util::MessageDifferencer::Equals(it->second->spec(), spec)) return false;
    return absl::AlreadyExistsError(
        absl::StrCat("spec.name: memory \"", spec.name(), "\" exists with a different spec"));
  }
  if (BytesLocked() + KeyBytes(spec) > options_.max_memory_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "spec.capacity_per_action: the memory would need ", KeyBytes(spec) >> 20,
        " MiB of keys and the server has ", (options_.max_memory_bytes - BytesLocked()) >> 20,
        " MiB left (--max_memory_bytes)"));
  }
  absl::StatusOr<std::unique_ptr<Memory>> memory = Memory::Create(spec, options_.index);
  if (!memory.ok()) return memory.status();
  memories_[spec.name()] = std::move(*memory);
  return true;
}

grpc::Status EpisodicStoreServiceImpl::CreateMemory(grpc::ServerContext*,
                                                    const v1::CreateMemoryRequest* request,
                                                    v1::CreateMemoryResponse* response) {
  absl::StatusOr<bool> created = CreateMemoryFromSpec(request->spec());
  if (!created.ok()) return ToGrpc(created.status());
  response->set_created(*created);
  return grpc::Status::OK;
}

grpc::Status EpisodicStoreServiceImpl::DeleteMemory(grpc::ServerContext* context,
                                                    const v1::DeleteMemoryRequest* request,
                                                    v1::DeleteMemoryResponse* response) {
  if (grpc::Status allowed =
          options_.authorizer->Check(*context, Role::kAdmin, "EpisodicStore.DeleteMemory");
      !allowed.ok()) {
    return allowed;
  }
  std::shared_ptr<Memory> memory;
  {
    absl::MutexLock lock(&mu_);
    auto it = memories_.find(request->name());
    if (it == memories_.end()) {
      return ToGrpc(absl::NotFoundError(absl::StrCat("name: no memory \"", request->name(), "\"")));
    }
    memory = std::move(it->second);
    memories_.erase(it);
  }
  int64_t keys = 0;
  const v1::MemoryInfo info = memory->Info();  // (not a temporary: the loop reads it)
  for (int64_t size : info.sizes()) keys += size;
  response->set_keys_removed(keys);
  return grpc::Status::OK;
}

grpc::Status EpisodicStoreServiceImpl::Write(grpc::ServerContext* context,
                                             const v1::WriteRequest* request,
                                             v1::WriteResponse* response) {
  if (absl::Status admitted =
          AdmitClient(options_.client_limiter.get(), *context, "EpisodicStore.Write");
      !admitted.ok()) {
    return ToGrpc(admitted);
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::shared_ptr<Memory>> memory = FindOrNotFound(request->memory());
  if (!memory.ok()) return ToGrpc(memory.status());
  const int dim = (*memory)->spec().key_dim();
  absl::StatusOr<std::vector<float>> keys = Rows(request->keys(), dim, "keys");
  if (!keys.ok()) return ToGrpc(keys.status());
  const int64_t n = static_cast<int64_t>(keys->size()) / dim;
  if (n > options_.max_batch) {
    return ToGrpc(absl::ResourceExhaustedError(
        absl::StrCat("keys: ", n, " writes in one request, at most ", options_.max_batch)));
  }
  if (request->actions_size() != n || request->values_size() != n) {
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("actions, values: must have ", n, " entries each (one per key), got ",
                     request->actions_size(), " and ", request->values_size())));
  }
  absl::StatusOr<WriteResult> result =
      (*memory)->Write(keys->data(), n, request->actions().data(), request->values().data());
  if (!result.ok()) return ToGrpc(result.status());
  response->set_inserted(result->inserted);
  response->set_updated(result->updated);
  response->set_evicted(result->evicted);
  if (writes_ != nullptr) {
    writes_->Increment(static_cast<double>(n));
    inserts_->Increment(static_cast<double>(result->inserted));
    evictions_->Increment(static_cast<double>(result->evicted));
    write_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
  return grpc::Status::OK;
}

grpc::Status EpisodicStoreServiceImpl::Lookup(grpc::ServerContext* context,
                                              const v1::LookupRequest* request,
                                              v1::LookupResponse* response) {
  if (absl::Status admitted =
          AdmitClient(options_.client_limiter.get(), *context, "EpisodicStore.Lookup");
      !admitted.ok()) {
    return ToGrpc(admitted);
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::shared_ptr<Memory>> memory = FindOrNotFound(request->memory());
  if (!memory.ok()) return ToGrpc(memory.status());
  const int dim = (*memory)->spec().key_dim();
  absl::StatusOr<std::vector<float>> queries = Rows(request->queries(), dim, "queries");
  if (!queries.ok()) return ToGrpc(queries.status());
  const int64_t n = static_cast<int64_t>(queries->size()) / dim;
  if (n > options_.max_batch) {
    return ToGrpc(absl::ResourceExhaustedError(
        absl::StrCat("queries: ", n, " queries in one request, at most ", options_.max_batch)));
  }
  const std::vector<int32_t> actions(request->actions().begin(), request->actions().end());
  absl::StatusOr<LookupResult> result =
      (*memory)->Lookup(queries->data(), n, actions, request->k(), request->return_keys());
  if (!result.ok()) return ToGrpc(result.status());
  const std::vector<int64_t> cube = {result->n, result->m, result->k};
  Encode(result->distances, cube, response->mutable_distances());
  Encode(result->values, cube, response->mutable_values());
  Encode(result->estimates, {result->n, result->m}, response->mutable_value_estimates());
  v1::Tensor* counts = response->mutable_counts();
  counts->set_dtype(v1::DTYPE_INT32);
  counts->add_shape(result->n);
  counts->add_shape(result->m);
  counts->set_data(result->counts.data(), result->counts.size() * sizeof(int32_t));
  if (request->return_keys()) {
    Encode(result->keys, {result->n, result->m, result->k, dim}, response->mutable_keys());
  }
  if (lookups_ != nullptr) {
    lookups_->Increment(static_cast<double>(n));
    lookup_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
  return grpc::Status::OK;
}

grpc::Status EpisodicStoreServiceImpl::Info(grpc::ServerContext*,
                                            const v1::MemoryInfoRequest* request,
                                            v1::MemoryInfoResponse* response) {
  std::vector<std::shared_ptr<Memory>> selected;
  {
    absl::MutexLock lock(&mu_);
    if (request->memories().empty()) {
      for (const auto& [name, memory] : memories_) selected.push_back(memory);
    } else {
      std::vector<std::string> names(request->memories().begin(), request->memories().end());
      std::sort(names.begin(), names.end());
      for (const std::string& name : names) {
        auto it = memories_.find(name);
        if (it == memories_.end()) {
          return ToGrpc(absl::NotFoundError(absl::StrCat("memories: no memory \"", name, "\"")));
        }
        selected.push_back(it->second);
      }
    }
  }
  for (const auto& memory : selected) *response->add_memories() = memory->Info();
  *response->mutable_time() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now()));
  return grpc::Status::OK;
}

absl::StatusOr<v1::SnapshotResponse> EpisodicStoreServiceImpl::SnapshotNow() {
  if (options_.snapshot_dir.empty()) {
    return absl::FailedPreconditionError("the server has no --snapshot_dir");
  }
  if (snapshotting_.exchange(true)) {
    return absl::ResourceExhaustedError("another snapshot is in progress");
  }
  struct Reset {
    std::atomic<bool>* flag;
    ~Reset() { *flag = false; }
  } reset{&snapshotting_};
  std::vector<std::shared_ptr<Memory>> memories;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, memory] : memories_) memories.push_back(memory);
  }
  const absl::Time now = absl::Now();
  const std::string name =
      absl::StrCat(kSnapshotPrefix, absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()),
                   "-", snapshots_taken_.fetch_add(1));
  const fs::path final_dir = fs::path(options_.snapshot_dir) / name;
  const fs::path tmp_dir = fs::path(options_.snapshot_dir) / (".tmp-" + name);
  std::error_code error;
  fs::create_directories(tmp_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create ", tmp_dir.string(), ": ", error.message()));
  }
  v1::SnapshotResponse response;
  for (const auto& memory : memories) {
    const fs::path file = tmp_dir / (memory->spec().name() + kMemorySuffix);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    absl::Status saved = memory->Save(out);
    out.close();
    if (!saved.ok() || !out) {
      fs::remove_all(tmp_dir, error);
      return absl::InternalError(absl::StrCat("writing ", file.string(), " failed"));
    }
    const v1::MemoryInfo info = memory->Info();
    for (int64_t size : info.sizes()) response.set_keys(response.keys() + size);
    response.set_bytes(response.bytes() + static_cast<int64_t>(fs::file_size(file, error)));
  }
  fs::rename(tmp_dir, final_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp_dir.string(), ": ", error.message()));
  }
  // Keep the newest snapshot_keep.
  std::vector<fs::path> snapshots;
  for (const auto& entry : fs::directory_iterator(options_.snapshot_dir, error)) {
    if (absl::StartsWith(entry.path().filename().string(), kSnapshotPrefix)) {
      snapshots.push_back(entry.path());
    }
  }
  std::sort(snapshots.begin(), snapshots.end());
  for (size_t i = 0; i + options_.snapshot_keep < snapshots.size(); ++i) {
    fs::remove_all(snapshots[i], error);
  }
  response.set_path(final_dir.string());
  *response.mutable_time() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));
  return response;
}

grpc::Status EpisodicStoreServiceImpl::Snapshot(grpc::ServerContext* context,
                                                const v1::SnapshotRequest*,
                                                v1::SnapshotResponse* response) {
  if (grpc::Status allowed =
          options_.authorizer->Check(*context, Role::kAdmin, "EpisodicStore.Snapshot");
      !allowed.ok()) {
    return allowed;
  }
  absl::StatusOr<v1::SnapshotResponse> result = SnapshotNow();
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

std::string EpisodicStoreServiceImpl::LatestSnapshot() const {
  if (options_.snapshot_dir.empty()) return "";
  std::error_code error;
  std::string latest;
  for (const auto& entry : fs::directory_iterator(options_.snapshot_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, kSnapshotPrefix) && entry.path().string() > latest) {
      latest = entry.path().string();
    }
  }
  return latest;
}

absl::Status EpisodicStoreServiceImpl::Restore(const std::string& snapshot_path) {
  std::error_code error;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(snapshot_path, error)) {
    if (absl::EndsWith(entry.path().string(), kMemorySuffix)) files.push_back(entry.path());
  }
  if (error) {
    return absl::NotFoundError(
        absl::StrCat("snapshot ", snapshot_path, " cannot be read: ", error.message()));
  }
  std::sort(files.begin(), files.end());
  std::map<std::string, std::shared_ptr<Memory>> loaded;
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    absl::StatusOr<std::unique_ptr<Memory>> memory = Memory::Load(in, options_.index);
    if (!memory.ok()) {
      return absl::DataLossError(absl::StrCat(file.string(), ": ", memory.status().message()));
    }
    loaded[(*memory)->spec().name()] = std::move(*memory);
  }
  absl::MutexLock lock(&mu_);
  for (auto& [name, memory] : loaded) memories_[name] = std::move(memory);
  return absl::OkStatus();
}

void EpisodicStoreServiceImpl::UpdateGauges() {
  if (entries_ == nullptr) return;
  std::vector<std::shared_ptr<Memory>> memories;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, memory] : memories_) memories.push_back(memory);
  }
  for (const auto& memory : memories) {
    const v1::MemoryInfo info = memory->Info();
    for (int a = 0; a < info.sizes_size(); ++a) {
      entries_->Add({{"memory", memory->spec().name()}, {"action", absl::StrCat(a)}})
          .Set(static_cast<double>(info.sizes(a)));
    }
  }
}

}  // namespace engram::episodic
