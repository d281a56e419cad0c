#include "learner/experiment_manager.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/status.h"
#include "common/status_macros.h"
#include "common/text_proto.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "learner/experiment_spec.h"

namespace engram::learner {
namespace {

namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

constexpr char kStatusFile[] = "experiment.textproto";
constexpr char kCheckpointPrefix[] = "checkpoint/";
constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr size_t kChunkBytes = 1 << 20;

google::protobuf::Timestamp ToProto(absl::Time time) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

int64_t Nanos(const google::protobuf::Timestamp& t) { return TimeUtil::TimestampToNanoseconds(t); }

bool IsTerminal(v1::ExperimentState state) {
  return state == v1::EXPERIMENT_STATE_SUCCEEDED || state == v1::EXPERIMENT_STATE_FAILED ||
         state == v1::EXPERIMENT_STATE_CANCELLED;
}

std::string StateName(v1::ExperimentState state) {
  std::string name = v1::ExperimentState_Name(state);
  return name.substr(std::string("EXPERIMENT_STATE_").size());
}

// A relative path in the spec is taken relative to the experiment's directory.
void Rebase(std::string* path, const std::string& dir) {
  if (!path->empty() && fs::path(*path).is_relative()) *path = (fs::path(dir) / *path).string();
}

// An id for a spec submitted without one: "<game>-<UTC yyyymmdd-hhmmss>", made unique by
// the caller.
std::string GeneratedId(const v1::ExperimentSpec& resolved) {
  std::string base = "exp";
  const std::string& env = TaskEnvironment(resolved).name();
  if (!env.empty()) base = env.substr(env.rfind('/') + 1);
  std::replace(base.begin(), base.end(), '_', '-');
  return absl::StrCat(base, "-",
                      absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::UTCTimeZone()));
}

// List page tokens: "<create_time nanos>/<id>/<states filter>" of the last item returned.
std::string FilterKey(const v1::ListExperimentsRequest& request) {
  std::vector<int> states(request.states().begin(), request.states().end());
  std::sort(states.begin(), states.end());
  return absl::StrJoin(states, ",");
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExperimentManager>> ExperimentManager::Create(
    ExperimentManagerOptions options) {
  std::error_code error;
  fs::create_directories(options.runs_dir, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("runs directory ", options.runs_dir, ": ", error.message()));
  }
  const bool reload = options.reload;
  std::unique_ptr<ExperimentManager> manager(new ExperimentManager(std::move(options)));
  if (reload) {
    absl::Status status = manager->Reload();
    if (!status.ok()) return status;
  }
  return manager;
}

ExperimentManager::ExperimentManager(ExperimentManagerOptions options)
    : options_(std::move(options)) {
  if (options_.registry == nullptr) return;
  auto& experiments =
      AddGauge(*options_.registry, "experiments", "Experiments known to this learner, by state.");
  for (v1::ExperimentState state :
       {v1::EXPERIMENT_STATE_QUEUED, v1::EXPERIMENT_STATE_RUNNING, v1::EXPERIMENT_STATE_SUCCEEDED,
        v1::EXPERIMENT_STATE_FAILED, v1::EXPERIMENT_STATE_CANCELLED}) {
    state_gauges_[state] = &experiments.Add({{"state", absl::AsciiStrToLower(StateName(state))}});
  }
  auto& assigned = AddGauge(*options_.registry, "actors_assigned",
                            "Actor slots of the running experiment held by a live actor.");
  training_assigned_ = &assigned.Add({{"role", "training"}});
  evaluation_assigned_ = &assigned.Add({{"role", "evaluation"}});
}

ExperimentManager::~ExperimentManager() { Shutdown(); }

absl::Status ExperimentManager::Reload() {
  std::vector<Record> found;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.runs_dir, error)) {
    const fs::path file = entry.path() / kStatusFile;
    if (!entry.is_directory() || !fs::exists(file)) continue;
    Record record;
    record.dir = entry.path().string();
    absl::Status status = ReadTextProtoFile(file.string(), &record.status);
    if (!status.ok()) {
      return absl::DataLossError(absl::StrCat("persisted experiment ", file.string(), ": ",
                                              status.message(), " (move it away to start)"));
    }
    found.push_back(std::move(record));
  }
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("runs directory ", options_.runs_dir, ": ", error.message()));
  }
  // The one that was running first, then the queue in submission order.
  std::sort(found.begin(), found.end(), [](const Record& a, const Record& b) {
    const bool ra = a.status.state() == v1::EXPERIMENT_STATE_RUNNING;
    const bool rb = b.status.state() == v1::EXPERIMENT_STATE_RUNNING;
    if (ra != rb) return ra;
    return Nanos(a.status.create_time()) < Nanos(b.status.create_time());
  });
  absl::MutexLock lock(&mu_);
  for (Record& record : found) {
    const std::string id = record.status.id();
    if (record.status.cancel_requested() && !IsTerminal(record.status.state())) {
      // Cancelled before the process stopped: it ends as cancelled, not run again.
      record.status.set_state(v1::EXPERIMENT_STATE_CANCELLED);
      *record.status.mutable_end_time() = ToProto(absl::Now());
      (void)PersistLocked(record);
    } else if (!IsTerminal(record.status.state())) {
      Log(absl::StrCat("experiment \"", id, "\" was ", StateName(record.status.state()),
                       ": queued again"));
      record.status.set_state(v1::EXPERIMENT_STATE_QUEUED);
      record.status.set_cancel_requested(false);
      queue_.push_back(id);
    }
    records_[id] = std::move(record);
  }
  UpdateGaugesLocked();
  return absl::OkStatus();
}

absl::StatusOr<v1::SubmitExperimentResponse> ExperimentManager::Submit(
    const v1::SubmitExperimentRequest& request, absl::string_view dir) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::UnavailableError("the learner is shutting down");
  }
  v1::ExperimentSpec spec = request.spec();
  const int shards = static_cast<int>(options_.replay_addresses.size());
  if (shards > 0 && !spec.replay().has_num_shards()) spec.mutable_replay()->set_num_shards(shards);
  absl::StatusOr<v1::ExperimentSpec> resolved = ResolveExperimentSpec(spec);
  if (!resolved.ok()) return resolved.status();
  if (shards > 0 && resolved->replay().num_shards() != shards) {
    return absl::InvalidArgumentError(absl::StrCat("replay.num_shards: this learner's cluster has ",
                                                   shards, " replay shard(s), the spec asks for ",
                                                   resolved->replay().num_shards(),
                                                   " (leave it unset to use the cluster's)"));
  }
  if (options_.supports) {
    absl::Status supported = options_.supports(*resolved);
    if (!supported.ok()) return supported;
  }
  v1::SubmitExperimentResponse response;
  if (request.validate_only()) {
    *response.mutable_resolved_spec() = *std::move(resolved);
    return response;
  }

  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("the learner is shutting down");
  std::string id = resolved->id();
  if (id.empty()) {
    const std::string base = GeneratedId(*resolved);
    id = base;
    for (int n = 2; records_.count(id) > 0; ++n) id = absl::StrCat(base, "-", n);
    resolved->set_id(id);
  } else if (const Record* existing = FindLocked(id); existing != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat(
        "id: experiment \"", id, "\" already exists (", StateName(existing->status.state()),
        "); submit with another id (engram submit --id=...)"));
  }
  if (static_cast<int>(queue_.size()) >= options_.max_queued) {
    return absl::ResourceExhaustedError(absl::StrCat("the queue is full (", options_.max_queued,
                                                     " experiments waiting); cancel one or wait"));
  }
  Record record;
  record.dir = dir.empty() ? (fs::path(options_.runs_dir) / id).string() : std::string(dir);
  Rebase(resolved->mutable_checkpoint()->mutable_directory(), record.dir);
  Rebase(resolved->mutable_checkpoint()->mutable_restore_from(), record.dir);
  if (!resolved->has_checkpoint() || resolved->checkpoint().ByteSizeLong() == 0) {
    resolved->clear_checkpoint();
  }
  std::error_code error;
  fs::create_directories(record.dir, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", record.dir, ": ", error.message()));
  }
  record.status.set_id(id);
  record.status.set_name(resolved->name());
  record.status.set_state(v1::EXPERIMENT_STATE_QUEUED);
  *record.status.mutable_spec() = *resolved;
  *record.status.mutable_create_time() = ToProto(absl::Now());
  absl::Status persisted = PersistLocked(record);
  if (!persisted.ok()) return persisted;
  records_[id] = std::move(record);
  queue_.push_back(id);
  ++submitted_;
  UpdateGaugesLocked();
  changed_.SignalAll();
  Log(absl::StrCat("experiment \"", id, "\" queued (", queue_.size(), " waiting)"));
  response.set_id(id);
  *response.mutable_resolved_spec() = *std::move(resolved);
  return response;
}

absl::StatusOr<v1::ListExperimentsResponse> ExperimentManager::List(
    const v1::ListExperimentsRequest& request) const {
  for (int i = 0; i < request.states_size(); ++i) {
    const int state = request.states(i);
    if (state == v1::EXPERIMENT_STATE_UNSPECIFIED || !v1::ExperimentState_IsValid(state)) {
      return absl::InvalidArgumentError(
          absl::StrCat("states[", i, "]: not a filterable state: ", state));
    }
  }
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be >= 0, got ", request.page_size()));
  }
  const int page_size =
      request.page_size() == 0 ? kDefaultPageSize : std::min(request.page_size(), kMaxPageSize);
  const std::string filter = FilterKey(request);
  // Position after the token's item in (create_time desc, id asc) order.
  std::optional<std::pair<int64_t, std::string>> after;
  if (!request.page_token().empty()) {
    std::vector<std::string> parts = absl::StrSplit(request.page_token(), absl::MaxSplits('/', 2));
    int64_t nanos = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &nanos) || parts[2] != filter) {
      return absl::InvalidArgumentError(
          "page_token: not a token of this listing (tokens are valid only with the same states)");
    }
    after.emplace(nanos, parts[1]);
  }
  absl::MutexLock lock(&mu_);
  std::vector<const Record*> matching;
  for (const auto& [id, record] : records_) {
    if (request.states_size() > 0 && std::find(request.states().begin(), request.states().end(),
                                               record.status.state()) == request.states().end()) {
      continue;
    }
    matching.push_back(&record);
  }
  auto key = [](const Record* r) {
    return std::make_pair(-Nanos(r->status.create_time()), r->status.id());
  };
  std::sort(matching.begin(), matching.end(),
            [&](const Record* a, const Record* b) { return key(a) < key(b); });
  v1::ListExperimentsResponse response;
  for (const Record* record : matching) {
    if (after.has_value() && key(record) <= std::make_pair(-after->first, after->second)) continue;
    if (response.experiments_size() == page_size) {
      const v1::ExperimentStatus& last = response.experiments(page_size - 1);
      response.set_next_page_token(
          absl::StrCat(Nanos(last.create_time()), "/", last.id(), "/", filter));
      break;
    }
    *response.add_experiments() = StatusLocked(*record, /*with_spec=*/false);
  }
  return response;
}

absl::StatusOr<v1::ExperimentStatus> ExperimentManager::Get(absl::string_view id) const {
  absl::MutexLock lock(&mu_);
  const Record* record = FindLocked(id);
  if (record == nullptr) {
    return absl::NotFoundError(absl::StrCat("id: no experiment \"", id, "\" on this learner"));
  }
  return StatusLocked(*record, /*with_spec=*/true);
}

absl::StatusOr<v1::ExperimentStatus> ExperimentManager::Cancel(absl::string_view id,
                                                               absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(std::string(id));
  if (it == records_.end()) {
    return absl::NotFoundError(absl::StrCat("id: no experiment \"", id, "\" on this learner"));
  }
  Record& record = it->second;
  const std::string why = reason.empty() ? "" : absl::StrCat(": ", reason);
  switch (record.status.state()) {
    case v1::EXPERIMENT_STATE_QUEUED:
      queue_.erase(std::remove(queue_.begin(), queue_.end(), record.status.id()), queue_.end());
      if (running_ == record.status.id()) running_.clear();  // taken by Next, not started
      record.cancel_reason = std::string(reason);
      SetStateLocked(record, v1::EXPERIMENT_STATE_CANCELLED);
      Log(absl::StrCat("experiment \"", id, "\" cancelled while queued", why));
      break;
    case v1::EXPERIMENT_STATE_RUNNING:
      if (!record.status.cancel_requested()) {
        record.status.set_cancel_requested(true);
        record.cancel_reason = std::string(reason);
        stop_running_ = true;
        Log(absl::StrCat("experiment \"", id, "\" cancel requested", why));
        (void)PersistLocked(record);
        changed_.SignalAll();
      }
      break;
    default:
      break;  // terminal: unchanged
  }
  return StatusLocked(record, /*with_spec=*/true);
}

absl::Status ExperimentManager::WaitForChange(absl::string_view id,
                                              const v1::ExperimentStatus& seen,
                                              absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  while (true) {
    const Record* record = FindLocked(id);
    if (record == nullptr)
      return absl::NotFoundError(absl::StrCat("id: no experiment \"", id, "\""));
    if (shut_down_) return absl::UnavailableError("the learner is shutting down");
    if (record->status.state() != seen.state() ||
        record->status.cancel_requested() != seen.cancel_requested()) {
      return absl::OkStatus();
    }
    if (changed_.WaitWithDeadline(&mu_, deadline)) return absl::OkStatus();  // timed out
  }
}

absl::StatusOr<std::vector<v1::ResultFile>> ExperimentManager::ListResults(
    absl::string_view id) const {
  std::string dir, checkpoint;
  {
    absl::MutexLock lock(&mu_);
    const Record* record = FindLocked(id);
    if (record == nullptr) {
      return absl::NotFoundError(absl::StrCat("id: no experiment \"", id, "\" on this learner"));
    }
    dir = record->dir;
    checkpoint = StatusLocked(*record, false).last_checkpoint();
  }
  std::vector<v1::ResultFile> files;
  std::error_code error;
  for (const char* name : {"progress.csv", "evaluations.csv", kStatusFile}) {
    const fs::path path = fs::path(dir) / name;
    if (!fs::is_regular_file(path, error)) continue;
    v1::ResultFile& file = files.emplace_back();
    file.set_name(name);
    file.set_size_bytes(static_cast<int64_t>(fs::file_size(path, error)));
  }
  if (!checkpoint.empty() && fs::is_directory(checkpoint, error)) {
    std::vector<fs::path> inside;
    for (const fs::directory_entry& entry : fs::directory_iterator(checkpoint, error)) {
      if (entry.is_regular_file()) inside.push_back(entry.path());
    }
    std::sort(inside.begin(), inside.end());
    for (const fs::path& path : inside) {
      v1::ResultFile& file = files.emplace_back();
      file.set_name(absl::StrCat(kCheckpointPrefix, path.filename().string()));
      file.set_size_bytes(static_cast<int64_t>(fs::file_size(path, error)));
    }
  }
  return files;
}

absl::StatusOr<std::string> ExperimentManager::ResultPath(absl::string_view id,
                                                          absl::string_view name) const {
  ENGRAM_ASSIGN_OR_RETURN(std::vector<v1::ResultFile> files, ListResults(id));
  for (const v1::ResultFile& file : files) {
    if (file.name() != name) continue;
    absl::MutexLock lock(&mu_);
    const Record* record = FindLocked(id);
    if (absl::StartsWith(name, kCheckpointPrefix)) {
      return (fs::path(StatusLocked(*record, false).last_checkpoint()) /
              std::string(name.substr(std::string(kCheckpointPrefix).size())))
          .string();
    }
    return (fs::path(record->dir) / std::string(name)).string();
  }
  std::vector<std::string> names;
  for (const v1::ResultFile& file : files) names.push_back(file.name());
  return absl::NotFoundError(absl::StrCat("name: experiment \"", id, "\" has no result \"", name,
                                          "\" (it has: ", absl::StrJoin(names, ", "), ")"));
}

absl::StatusOr<v1::GetAssignmentResponse> ExperimentManager::Assign(
    const v1::GetAssignmentRequest& request) {
  if (request.role() != v1::ACTOR_ROLE_TRAINING && request.role() != v1::ACTOR_ROLE_EVALUATION) {
    return absl::InvalidArgumentError("role: must be ACTOR_ROLE_TRAINING or ACTOR_ROLE_EVALUATION");
  }
  if (request.incarnation() == 0) return absl::InvalidArgumentError("incarnation: must be != 0");
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("the learner is shutting down");
  v1::GetAssignmentResponse response;
  *response.mutable_retry_after() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(options_.assignment_retry));
  const Record* record = running_.empty() ? nullptr : FindLocked(running_);
  if (record == nullptr || record->state == nullptr ||
      record->status.state() != v1::EXPERIMENT_STATE_RUNNING || record->status.cancel_requested()) {
    return response;
  }
  // Once the budget is spent, training actors are done (the final evaluation may still run).
  if (request.role() == v1::ACTOR_ROLE_TRAINING && record->state->training_stopped()) {
    return response;
  }
  const absl::Time now = absl::Now();
  auto free = [&](const Slot& slot) {
    return slot.incarnation == 0 || slot.last_seen + options_.actor_lease < now;
  };
  int index = -1;
  Slot* slot = nullptr;
  if (request.role() == v1::ACTOR_ROLE_EVALUATION) {
    if (evaluation_slot_.incarnation == request.incarnation() || free(evaluation_slot_)) {
      index = 0;
      slot = &evaluation_slot_;
    }
  } else {
    // The actor's own slot if it already has one, else the first free one.
    for (int i = 0; i < static_cast<int>(training_slots_.size()) && slot == nullptr; ++i) {
      if (training_slots_[i].incarnation == request.incarnation()) {
        index = i;
        slot = &training_slots_[i];
      }
    }
    for (int i = 0; i < static_cast<int>(training_slots_.size()) && slot == nullptr; ++i) {
      if (free(training_slots_[i])) {
        index = i;
        slot = &training_slots_[i];
      }
    }
  }
  if (slot == nullptr) return response;
  if (slot->incarnation != request.incarnation()) {
    Log(absl::StrCat(request.role() == v1::ACTOR_ROLE_EVALUATION ? "evaluation" : "training",
                     " slot ", index, " of \"", running_, "\" assigned to ",
                     request.actor_name().empty() ? "an actor" : request.actor_name()));
  }
  slot->incarnation = request.incarnation();
  slot->actor_name = request.actor_name();
  slot->last_seen = now;
  const v1::ExperimentSpec& spec = record->status.spec();
  response.set_assigned(true);
  response.set_experiment_id(spec.id());
  *response.mutable_spec() = spec;
  response.set_actor_index(index);
  response.set_replay_shard(request.role() == v1::ACTOR_ROLE_TRAINING ? ShardOfActor(spec, index)
                                                                      : 0);
  for (const std::string& address : options_.replay_addresses) {
    response.add_replay_addresses(address);
  }
  response.clear_retry_after();
  UpdateGaugesLocked();
  return response;
}

absl::StatusOr<v1::ActorReportResponse> ExperimentManager::Report(
    const v1::ActorReportRequest& request) {
  std::shared_ptr<RunState> state;
  {
    absl::MutexLock lock(&mu_);
    const Record* record = FindLocked(request.experiment_id());
    if (record == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "experiment_id: this learner has no experiment \"", request.experiment_id(), "\""));
    }
    if (record->state == nullptr) {
      if (!IsTerminal(record->status.state())) {
        // Queued, or being set up (tables, first weights): the actor retries.
        return absl::UnavailableError(
            absl::StrCat("experiment \"", request.experiment_id(), "\" is not running yet"));
      }
      v1::ActorReportResponse response;  // ended before this process
      response.set_stop(true);
      response.set_frames(record->status.frames());
      return response;
    }
    state = record->state;
    // The report keeps the actor's slot (also for actors given a fixed --actor_index).
    if (record->status.id() == running_) {
      Slot* slot = nullptr;
      if (request.role() == v1::ACTOR_ROLE_EVALUATION) {
        slot = &evaluation_slot_;
      } else if (request.actor_index() >= 0 &&
                 request.actor_index() < static_cast<int>(training_slots_.size())) {
        slot = &training_slots_[request.actor_index()];
      }
      // Only the slot's holder keeps it alive (a free slot is taken by the first report of
      // an actor started with a fixed index).
      if (slot != nullptr &&
          (slot->incarnation == 0 || slot->incarnation == request.incarnation() ||
           slot->last_seen + options_.actor_lease < absl::Now())) {
        slot->incarnation = request.incarnation();
        slot->last_seen = absl::Now();
      }
    }
  }
  return state->ApplyReport(request);
}

std::optional<ExperimentManager::Run> ExperimentManager::Next(const std::atomic<bool>& stop) {
  absl::MutexLock lock(&mu_);
  while (queue_.empty() && !shut_down_ && !stop.load()) {
    changed_.WaitWithTimeout(&mu_, absl::Milliseconds(200));
  }
  if (shut_down_ || stop.load()) return std::nullopt;
  const std::string id = queue_.front();
  queue_.erase(queue_.begin());
  running_ = id;
  stop_running_ = false;
  const Record& record = records_.at(id);
  return Run{record.status.spec(), record.dir};
}

bool ExperimentManager::Started(const std::string& id, std::shared_ptr<RunState> state) {
  absl::MutexLock lock(&mu_);
  Record& record = records_.at(id);
  if (record.status.state() != v1::EXPERIMENT_STATE_QUEUED || shut_down_) return false;
  running_ = id;
  record.state = std::move(state);
  training_slots_.assign(record.status.spec().actors().num_actors(), Slot{});
  evaluation_slot_ = Slot{};
  SetStateLocked(record, v1::EXPERIMENT_STATE_RUNNING);
  Log(absl::StrCat("experiment \"", id, "\" running (", training_slots_.size(),
                   " training actor slot(s) and 1 evaluation slot for pool actors)"));
  return true;
}

void ExperimentManager::Ended(const std::string& id, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  Record& record = records_.at(id);
  if (record.state == nullptr && IsTerminal(record.status.state())) {
    // Cancelled while it was being set up: it stays as it is.
    if (running_ == id) running_.clear();
    return;
  }
  if (running_ == id) running_.clear();
  training_slots_.clear();
  evaluation_slot_ = Slot{};
  v1::ExperimentState final_state = v1::EXPERIMENT_STATE_UNSPECIFIED;
  if (record.state != nullptr) {
    if (!status.ok()) record.state->Finish(v1::EXPERIMENT_STATE_FAILED, status.ToString());
    v1::ExperimentStatus live = record.state->Status();
    if (!IsTerminal(live.state()) && record.status.cancel_requested()) {
      record.state->Finish(
          v1::EXPERIMENT_STATE_CANCELLED,
          record.cancel_reason.empty() ? "" : absl::StrCat("cancelled: ", record.cancel_reason));
      live = record.state->Status();
    }
    final_state = live.state();
    if (IsTerminal(final_state)) {
      // Keep the run's final counters; the lifecycle fields stay the manager's.
      v1::ExperimentStatus kept = record.status;
      record.status = std::move(live);
      *record.status.mutable_create_time() = kept.create_time();
      *record.status.mutable_start_time() = kept.start_time();
      record.status.set_cancel_requested(kept.cancel_requested());
    }
  } else if (!status.ok()) {
    final_state = v1::EXPERIMENT_STATE_FAILED;
    record.status.set_error_message(status.ToString());
  }
  if (IsTerminal(final_state)) {
    SetStateLocked(record, final_state);
    Log(absl::StrCat("experiment \"", id, "\" ", StateName(final_state),
                     record.status.error_message().empty()
                         ? ""
                         : absl::StrCat(": ", record.status.error_message())));
  } else {
    // The process is stopping: it stays RUNNING on disk and resumes after a restart.
    (void)PersistLocked(record);
  }
  stop_running_ = shut_down_;
  changed_.SignalAll();
}

void ExperimentManager::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  stop_running_ = true;
  changed_.SignalAll();
}

v1::ExperimentStatus ExperimentManager::StatusLocked(const Record& record, bool with_spec) const {
  v1::ExperimentStatus status;
  if (record.status.state() == v1::EXPERIMENT_STATE_RUNNING && record.state != nullptr) {
    status = record.state->Status();
    if (!IsTerminal(status.state())) status.set_state(v1::EXPERIMENT_STATE_RUNNING);
    *status.mutable_create_time() = record.status.create_time();
    *status.mutable_start_time() = record.status.start_time();
    status.set_cancel_requested(record.status.cancel_requested());
  } else {
    status = record.status;
    *status.mutable_update_time() = ToProto(absl::Now());
  }
  if (!with_spec) status.clear_spec();
  return status;
}

absl::Status ExperimentManager::PersistLocked(const Record& record) const {
  std::string text;
  google::protobuf::TextFormat::PrintToString(StatusLocked(record, /*with_spec=*/true), &text);
  absl::Status status =
      WriteFileAtomically((fs::path(record.dir) / kStatusFile).string(),
                          absl::StrCat("# Written by engram_learner at each change of state.\n"
                                       "# proto-file: proto/engram/v1/experiment.proto\n"
                                       "# proto-message: engram.v1.ExperimentStatus\n\n",
                                       text));
  if (!status.ok())
    Log(absl::StrCat("experiment \"", record.status.id(), "\": ", status.message()));
  return status;
}

void ExperimentManager::SetStateLocked(Record& record, v1::ExperimentState state) {
  const absl::Time now = absl::Now();
  record.status.set_state(state);
  if (state == v1::EXPERIMENT_STATE_RUNNING && !record.status.has_start_time()) {
    *record.status.mutable_start_time() = ToProto(now);
  }
  if (IsTerminal(state)) *record.status.mutable_end_time() = ToProto(now);
  (void)PersistLocked(record);
  UpdateGaugesLocked();
  changed_.SignalAll();
}

const ExperimentManager::Record* ExperimentManager::FindLocked(absl::string_view id) const {
  auto it = records_.find(std::string(id));
  return it == records_.end() ? nullptr : &it->second;
}

void ExperimentManager::UpdateGaugesLocked() {
  if (state_gauges_.empty()) return;
  std::map<v1::ExperimentState, int> counts;
  for (const auto& [id, record] : records_) ++counts[record.status.state()];
  for (auto& [state, gauge] : state_gauges_) gauge->Set(counts[state]);
  const absl::Time now = absl::Now();
  int live = 0;
  for (const Slot& slot : training_slots_) {
    live += slot.incarnation != 0 && slot.last_seen + options_.actor_lease >= now;
  }
  training_assigned_->Set(live);
  evaluation_assigned_->Set(evaluation_slot_.incarnation != 0 &&
                            evaluation_slot_.last_seen + options_.actor_lease >= now);
}

// ---- services ---------------------------------------------------------------------------

grpc::Status ExperimentServiceImpl::Submit(grpc::ServerContext* context,
                                           const v1::SubmitExperimentRequest* request,
                                           v1::SubmitExperimentResponse* response) {
  if (grpc::Status allowed =
          authorizer_->Check(*context, Role::kSubmit, "ExperimentService.Submit");
      !allowed.ok()) {
    return allowed;
  }
  if (absl::Status admitted =
          AdmitClient(client_limiter_.get(), *context, "ExperimentService.Submit");
      !admitted.ok()) {
    return ToGrpc(admitted);
  }
  absl::StatusOr<v1::SubmitExperimentResponse> result = manager_->Submit(*request);
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::List(grpc::ServerContext*,
                                         const v1::ListExperimentsRequest* request,
                                         v1::ListExperimentsResponse* response) {
  absl::StatusOr<v1::ListExperimentsResponse> result = manager_->List(*request);
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::Get(grpc::ServerContext*,
                                        const v1::GetExperimentRequest* request,
                                        v1::ExperimentStatus* response) {
  absl::StatusOr<v1::ExperimentStatus> result = manager_->Get(request->id());
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::Cancel(grpc::ServerContext* context,
                                           const v1::CancelExperimentRequest* request,
                                           v1::ExperimentStatus* response) {
  if (grpc::Status allowed =
          authorizer_->Check(*context, Role::kSubmit, "ExperimentService.Cancel");
      !allowed.ok()) {
    return allowed;
  }
  absl::StatusOr<v1::ExperimentStatus> result = manager_->Cancel(request->id(), request->reason());
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::Watch(grpc::ServerContext* context,
                                          const v1::WatchExperimentRequest* request,
                                          grpc::ServerWriter<v1::ExperimentStatus>* writer) {
  absl::Duration interval = absl::Seconds(1);
  if (request->has_min_interval()) {
    const int64_t nanos = TimeUtil::DurationToNanoseconds(request->min_interval());
    if (nanos < 0) {
      return ToGrpc(absl::InvalidArgumentError("min_interval: must be >= 0"));
    }
    if (nanos > 0) interval = absl::Nanoseconds(nanos);
  }
  absl::StatusOr<v1::ExperimentStatus> last = manager_->Get(request->id());
  if (!last.ok()) return ToGrpc(last.status());
  if (!writer->Write(*last)) return grpc::Status::OK;  // the client went away
  auto comparable = [](v1::ExperimentStatus status) {
    status.clear_update_time();
    status.clear_spec();
    return status;
  };
  while (!IsTerminal(last->state())) {
    absl::Time next = absl::Now() + interval;
    // Wake early for a change of state; otherwise one update per interval at most.
    while (absl::Now() < next) {
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
      const absl::Time until = std::min(next, absl::Now() + absl::Milliseconds(500));
      absl::Status waited = manager_->WaitForChange(request->id(), *last, until);
      if (!waited.ok()) return ToGrpc(waited);
      absl::StatusOr<v1::ExperimentStatus> peek = manager_->Get(request->id());
      if (peek.ok() && (peek->state() != last->state() ||
                        peek->cancel_requested() != last->cancel_requested())) {
        break;
      }
    }
    absl::StatusOr<v1::ExperimentStatus> status = manager_->Get(request->id());
    if (!status.ok()) return ToGrpc(status.status());
    if (google::protobuf::util::MessageDifferencer::Equals(comparable(*status),
                                                           comparable(*last))) {
      continue;
    }
    status->clear_spec();
    if (!writer->Write(*status)) return grpc::Status::OK;
    last = std::move(status);
  }
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::ListResults(grpc::ServerContext*,
                                                const v1::ListResultsRequest* request,
                                                v1::ListResultsResponse* response) {
  absl::StatusOr<std::vector<v1::ResultFile>> files = manager_->ListResults(request->id());
  if (!files.ok()) return ToGrpc(files.status());
  for (v1::ResultFile& file : *files) *response->add_files() = std::move(file);
  return grpc::Status::OK;
}

grpc::Status ExperimentServiceImpl::ReadResult(grpc::ServerContext* context,
                                               const v1::ReadResultRequest* request,
                                               grpc::ServerWriter<v1::ResultChunk>* writer) {
  absl::StatusOr<std::string> path = manager_->ResultPath(request->id(), request->name());
  if (!path.ok()) return ToGrpc(path.status());
  std::ifstream in(*path, std::ios::binary);
  if (!in) return ToGrpc(absl::UnavailableError(absl::StrCat("cannot open ", request->name())));
  std::string buffer(kChunkBytes, '\0');
  int64_t offset = 0;
  while (in && !context->IsCancelled()) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in.gcount();
    if (got <= 0) break;
    v1::ResultChunk chunk;
    chunk.set_data(buffer.data(), static_cast<size_t>(got));
    chunk.set_offset(offset);
    offset += got;
    if (!writer->Write(chunk)) return grpc::Status::OK;
  }
  if (in.bad()) {
    return ToGrpc(absl::DataLossError(absl::StrCat("reading ", request->name(), " failed")));
  }
  return grpc::Status::OK;
}

grpc::Status ActorServiceImpl::GetAssignment(grpc::ServerContext*,
                                             const v1::GetAssignmentRequest* request,
                                             v1::GetAssignmentResponse* response) {
  absl::StatusOr<v1::GetAssignmentResponse> result = manager_->Assign(*request);
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status ActorServiceImpl::Report(grpc::ServerContext*, const v1::ActorReportRequest* request,
                                      v1::ActorReportResponse* response) {
  absl::StatusOr<v1::ActorReportResponse> result = manager_->Report(*request);
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace engram::learner
