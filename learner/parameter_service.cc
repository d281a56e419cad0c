#include "learner/parameter_service.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/check.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/tensor_proto.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/slice.h"

namespace engram::learner {
namespace {

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
}

// Parses a raw request. The copy shares the request's slices; Deserialize consumes it.
template <typename Message>
absl::Status ParseRaw(const grpc::ByteBuffer& raw, Message* message, absl::string_view method) {
  grpc::ByteBuffer copy(raw);
  if (!grpc::SerializationTraits<Message>::Deserialize(&copy, message).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(method, ": request is not a valid ", Message::descriptor()->full_name()));
  }
  return absl::OkStatus();
}

template <typename Message>
grpc::ByteBuffer SerializeSmall(const Message& message) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  // Serializing a small, initialized message into a fresh buffer cannot fail.
  ENGRAM_CHECK(grpc::SerializationTraits<Message>::Serialize(message, &buffer, &own_buffer).ok());
  return buffer;
}

// GetParametersRequest.max_wait, INVALID_ARGUMENT when negative or malformed.
absl::StatusOr<absl::Duration> MaxWait(const v1::GetParametersRequest& request) {
  if (!request.has_max_wait()) return absl::ZeroDuration();
  const google::protobuf::Duration& d = request.max_wait();
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() >= 1000000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("get_parameters: max_wait must be a duration >= 0, got ", d.seconds(), "s ",
                     d.nanos(), "ns"));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

absl::Status ValidateParameterSet(const v1::ParameterSet& set) {
  if (set.version() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameters.version: must be >= 0 (0: the server assigns one), got ", set.version()));
  }
  if (set.experiment_id().empty()) {
    return absl::InvalidArgumentError(
        "parameters.experiment_id: required (the ExperimentSpec.id the weights belong to)");
  }
  if (set.learner_updates() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameters.learner_updates: must be >= 0, got ", set.learner_updates()));
  }
  if (set.frames() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameters.frames: must be >= 0, got ", set.frames()));
  }
  switch (set.content_case()) {
    case v1::ParameterSet::kNamed: {
      const auto& tensors = set.named().tensors();
      if (tensors.empty()) {
        return absl::InvalidArgumentError("parameters.named.tensors: must not be empty");
      }
      absl::flat_hash_map<absl::string_view, int> index_of;
      for (int i = 0; i < tensors.size(); ++i) {
        const v1::NamedTensor& named = tensors[i];
        if (named.name().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("parameters.named.tensors[", i, "].name: must not be empty"));
        }
        auto [it, inserted] = index_of.emplace(named.name(), i);
        if (!inserted) {
          return absl::InvalidArgumentError(
              absl::StrCat("parameters.named.tensors[", i, "].name: \"", named.name(),
                           "\" is already the name of tensors[", it->second, "]"));
        }
        ENGRAM_RETURN_IF_ERROR(
            ValidateTensor(named.tensor(), absl::StrCat("parameters.named.tensors[", i, "] (\"",
                                                        named.name(), "\")"))
                .status());
      }
      return absl::OkStatus();
    }
    case v1::ParameterSet::kSerialized: {
      const v1::SerializedParameters& serialized = set.serialized();
      if (serialized.format() == v1::PARAMETER_FORMAT_UNSPECIFIED ||
          !v1::ParameterFormat_IsValid(serialized.format())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameters.serialized.format: must be PARAMETER_FORMAT_TORCH_ARCHIVE, got ",
            static_cast<int>(serialized.format())));
      }
      if (serialized.data().empty()) {
        return absl::InvalidArgumentError("parameters.serialized.data: must not be empty");
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          "parameters: no content; set exactly one of parameters.named and "
          "parameters.serialized");
  }
}

// One GetParameters call. Its fields other than service_ and response_ are guarded by the
// service's mu_; `waiting` says whether the call is in the service's waiting sets. Whoever
// takes it out of them (publish, timer, cancellation, shutdown) owns its response and its
// Finish; a call that never waited is finished by its handler. gRPC calls OnDone, and so
// deletes it, only after Finish.
class ParameterServiceImpl::Poll final : public grpc::ServerUnaryReactor {
 public:
  Poll(ParameterServiceImpl* service, grpc::ByteBuffer* response)
      : service_(service), response_(response) {}

  void OnCancel() override { service_->CancelPoll(this); }
  void OnDone() override { delete this; }

  grpc::ByteBuffer* response() { return response_; }

  bool waiting = false;
  std::string key;  // what it waits on (ParameterServiceImpl::waiting_)
  int64_t known_version = 0;
  absl::Time deadline;

 private:
  ParameterServiceImpl* const service_;
  grpc::ByteBuffer* const response_;
};

ParameterServiceImpl::ParameterServiceImpl(Options options, prometheus::Registry* registry)
    : options_(std::move(options)) {
  ENGRAM_CHECK(options_.max_poll_wait > absl::ZeroDuration());
  ENGRAM_CHECK(options_.max_waiters >= 0);
  if (registry != nullptr) {
    publishes_ = &AddCounter(*registry, "parameter_publishes_total",
                             "Parameter versions published (all experiments).")
                      .Add({});
    version_family_ =
        &AddGauge(*registry, "parameter_version", "Latest published parameter version.");
    auto& requests = AddCounter(*registry, "parameter_requests_total",
                                "GetParameters answers: weights sent, not_modified, or an error "
                                "(cancelled calls included).");
    sent_ = &requests.Add({{"result", "sent"}});
    not_modified_ = &requests.Add({{"result", "not_modified"}});
    errors_ = &requests.Add({{"result", "error"}});
    waiters_gauge_ =
        &AddGauge(*registry, "parameter_waiters", "GetParameters calls waiting for a publish.")
             .Add({});
    bytes_sent_ = &AddCounter(*registry, "parameter_bytes_sent_total",
                              "Bytes of GetParameters responses (weights and not_modified).")
                       .Add({});
  }
  absl::MutexLock lock(&timer_join_mu_);
  timer_ = std::thread([this] { TimerLoop(); });
}

ParameterServiceImpl::ParameterServiceImpl() : ParameterServiceImpl(Options()) {}

ParameterServiceImpl::~ParameterServiceImpl() { Shutdown(); }

absl::StatusOr<int64_t> ParameterServiceImpl::Publish(v1::ParameterSet set) {
  if (absl::Status status = ValidateParameterSet(set); !status.ok()) {
    return absl::Status(status.code(), absl::StrCat("publish: ", status.message()));
  }
  absl::MutexLock publish_lock(&publish_mu_);
  const std::string id = set.experiment_id();
  int64_t current = 0;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::UnavailableError("publish: the parameter service is shut down");
    auto it = experiments_.find(id);
    if (it != experiments_.end()) current = it->second.version;
  }
  // publish_mu_ keeps `current` current while mu_ is released for the serialization.
  if (set.version() != 0 && set.version() <= current) {
    return absl::FailedPreconditionError(absl::StrCat(
        "publish: parameters.version ", set.version(), " is not greater than the current version ",
        current, " of experiment \"", id, "\" (0 assigns ", current + 1, ")"));
  }
  const int64_t version = set.version() != 0 ? set.version() : current + 1;
  const absl::Time publish_time = absl::Now();
  const int64_t learner_updates = set.learner_updates();
  set.set_version(version);
  SetTimestamp(publish_time, set.mutable_publish_time());

  // The one serialization of this version: every actor gets these bytes.
  v1::GetParametersResponse response;
  *response.mutable_parameters() = std::move(set);
  response.set_latest_version(version);
  const size_t size = response.ByteSizeLong();
  if (size > static_cast<size_t>(options_.max_response_bytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("publish: parameters of experiment \"", id, "\" serialize to ", size,
                     " bytes, more than the largest message actors accept (",
                     options_.max_response_bytes, " bytes)"));
  }
  auto bytes = std::make_unique<std::string>();
  if (!response.SerializeToString(bytes.get())) {
    return absl::InternalError(absl::StrCat("publish: cannot serialize parameters of experiment \"",
                                            id, "\" (", size, " bytes)"));
  }
  std::string* raw = bytes.release();
  grpc::Slice slice(
      raw->data(), raw->size(), [](void* p) { delete static_cast<std::string*>(p); }, raw);
  grpc::ByteBuffer serialized(&slice, 1);

  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::UnavailableError("publish: the parameter service is shut down");
    Experiment& experiment = experiments_[id];
    experiment.version = version;
    experiment.publish_time = publish_time;
    experiment.learner_updates = learner_updates;
    experiment.response = std::move(serialized);
    if (version_family_ != nullptr && experiment.version_gauge == nullptr) {
      experiment.version_gauge = &version_family_->Add({{"experiment", id}});
    }
    if (experiment.version_gauge != nullptr) {
      experiment.version_gauge->Set(static_cast<double>(version));
    }
    // Calls with an empty experiment_id wait under "" only while no experiment exists, so
    // the first publish resolves all of them to this one.
    std::vector<std::string> keys = {id};
    if (experiments_.size() == 1) keys.push_back("");
    for (const std::string& key : keys) {
      auto it = waiting_.find(key);
      if (it == waiting_.end()) continue;
      const std::vector<Poll*> polls(it->second.begin(), it->second.end());
      for (Poll* poll : polls) {
        if (poll->known_version != version) {
          RemoveWaiterLocked(poll);
          done.push_back({poll, grpc::Status::OK, experiment.response, Result::kSent});
        } else if (key != id) {
          // Holds exactly this version already: keep waiting, now on the experiment.
          waiting_[key].erase(poll);
          if (waiting_[key].empty()) waiting_.erase(key);
          poll->key = id;
          waiting_[id].insert(poll);
        }
      }
    }
  }
  if (publishes_ != nullptr) publishes_->Increment();
  Deliver(std::move(done));
  return version;
}

void ParameterServiceImpl::Shutdown() {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    if (!shutdown_) {
      shutdown_ = true;
      while (!deadlines_.empty()) {
        Poll* poll = deadlines_.begin()->second;
        RemoveWaiterLocked(poll);
        done.push_back({poll,
                        grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                     "get_parameters: the parameter service is shutting down"),
                        {},
                        Result::kError});
      }
      timer_cv_.SignalAll();
    }
  }
  Deliver(std::move(done));
  absl::MutexLock lock(&timer_join_mu_);
  if (timer_.joinable()) timer_.join();
}

int ParameterServiceImpl::num_waiters() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(deadlines_.size());
}

absl::StatusOr<ParameterServiceImpl::Resolved> ParameterServiceImpl::ResolveLocked(
    const std::string& experiment_id) const {
  if (experiment_id.empty()) {
    if (experiments_.empty()) return Resolved{nullptr, ""};
    if (experiments_.size() == 1) {
      return Resolved{&experiments_.begin()->second, experiments_.begin()->first};
    }
    std::vector<absl::string_view> ids;
    for (const auto& [id, experiment] : experiments_) ids.push_back(id);
    return absl::InvalidArgumentError(
        absl::StrCat("experiment_id: required, this server holds weights of ", ids.size(),
                     " experiments (\"", absl::StrJoin(ids, "\", \""), "\")"));
  }
  auto it = experiments_.find(experiment_id);
  if (it != experiments_.end()) return Resolved{&it->second, experiment_id};
  if (options_.wait_for_unknown_experiments) return Resolved{nullptr, experiment_id};
  return absl::NotFoundError(absl::StrCat(
      "experiment_id: no weights were published for experiment \"", experiment_id, "\""));
}

grpc::ServerUnaryReactor* ParameterServiceImpl::Publish(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Parsed into a message of our own so the weights can be moved, not copied, into the
  // serialized answer.
  v1::PublishRequest parsed;
  absl::Status status = ParseRaw(*request, &parsed, "publish");
  if (status.ok() && !parsed.has_parameters()) {
    status = absl::InvalidArgumentError("publish: parameters is required");
  }
  if (!status.ok()) {
    reactor->Finish(ToGrpc(status));
    return reactor;
  }
  absl::StatusOr<int64_t> version = Publish(std::move(*parsed.mutable_parameters()));
  if (!version.ok()) {
    reactor->Finish(ToGrpc(version.status()));
    return reactor;
  }
  v1::PublishResponse answer;
  answer.set_version(*version);
  *response = SerializeSmall(answer);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ParameterServiceImpl::GetParameters(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request,
                                                              grpc::ByteBuffer* response) {
  auto* poll = new Poll(this, response);
  std::optional<Completion> answer = BeginPoll(context, poll, *request);
  if (answer.has_value()) {
    std::vector<Completion> done;
    done.push_back(std::move(*answer));
    Deliver(std::move(done));
  }
  // A waiting call may already be finished by now (a publish on another thread): gRPC
  // keeps such a Finish until the reactor is returned, and nothing here touches it again.
  return poll;
}

std::optional<ParameterServiceImpl::Completion> ParameterServiceImpl::BeginPoll(
    grpc::CallbackServerContext* context, Poll* poll, const grpc::ByteBuffer& raw) {
  auto error = [poll](const absl::Status& status) {
    return Completion{poll, ToGrpc(status), {}, Result::kError};
  };
  v1::GetParametersRequest request;
  if (absl::Status status = ParseRaw(raw, &request, "get_parameters"); !status.ok()) {
    return error(status);
  }
  if (request.known_version() < 0) {
    return error(absl::InvalidArgumentError(
        absl::StrCat("get_parameters: known_version must be >= 0 (0: none held), got ",
                     request.known_version())));
  }
  absl::StatusOr<absl::Duration> max_wait = MaxWait(request);
  if (!max_wait.ok()) return error(max_wait.status());
  const absl::Duration wait = std::min(*max_wait, options_.max_poll_wait);

  absl::MutexLock lock(&mu_);
  if (shutdown_) {
    return error(absl::UnavailableError("get_parameters: the parameter service is shut down"));
  }
  absl::StatusOr<Resolved> resolved = ResolveLocked(request.experiment_id());
  if (!resolved.ok()) {
    return error(absl::Status(resolved.status().code(),
                              absl::StrCat("get_parameters: ", resolved.status().message())));
  }
  const Experiment* experiment = resolved->experiment;
  if (experiment != nullptr && experiment->version != request.known_version()) {
    return Completion{poll, grpc::Status::OK, experiment->response, Result::kSent};
  }
  if (wait <= absl::ZeroDuration()) return NotModifiedLocked(poll, resolved->key);
  if (context->IsCancelled()) {
    return error(absl::CancelledError("get_parameters: cancelled"));
  }
  if (static_cast<int64_t>(deadlines_.size()) >= options_.max_waiters) {
    return error(absl::ResourceExhaustedError(absl::StrCat(
        "get_parameters: ", deadlines_.size(),
        " calls are already waiting for weights (the server's limit); retry with backoff")));
  }
  poll->waiting = true;
  poll->key = resolved->key;
  poll->known_version = request.known_version();
  poll->deadline = absl::Now() + wait;
  waiting_[poll->key].insert(poll);
  auto [it, inserted] = deadlines_.emplace(poll->deadline, poll);
  if (it == deadlines_.begin()) timer_cv_.Signal();  // a new earliest deadline
  UpdateWaitersGaugeLocked();
  return std::nullopt;
}

grpc::ServerUnaryReactor* ParameterServiceImpl::GetVersion(grpc::CallbackServerContext* context,
                                                           const v1::GetVersionRequest* request,
                                                           v1::GetVersionResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) {
      status = absl::UnavailableError("get_version: the parameter service is shut down");
    } else if (absl::StatusOr<Resolved> resolved = ResolveLocked(request->experiment_id());
               !resolved.ok()) {
      status = absl::Status(resolved.status().code(),
                            absl::StrCat("get_version: ", resolved.status().message()));
    } else if (resolved->experiment != nullptr) {
      response->set_version(resolved->experiment->version);
      SetTimestamp(resolved->experiment->publish_time, response->mutable_publish_time());
      response->set_learner_updates(resolved->experiment->learner_updates);
    }
  }
  reactor->Finish(ToGrpc(status));
  return reactor;
}

void ParameterServiceImpl::RemoveWaiterLocked(Poll* poll) {
  ENGRAM_CHECK(poll->waiting);
  auto it = waiting_.find(poll->key);
  ENGRAM_CHECK(it != waiting_.end());
  it->second.erase(poll);
  if (it->second.empty()) waiting_.erase(it);
  deadlines_.erase({poll->deadline, poll});
  poll->waiting = false;
  UpdateWaitersGaugeLocked();
}

ParameterServiceImpl::Completion ParameterServiceImpl::NotModifiedLocked(
    Poll* poll, const std::string& key) const {
  v1::GetParametersResponse response;
  response.set_not_modified(true);
  auto it = key.empty() ? experiments_.end() : experiments_.find(key);
  response.set_latest_version(it != experiments_.end() ? it->second.version : 0);
  return Completion{poll, grpc::Status::OK, SerializeSmall(response), Result::kNotModified};
}

void ParameterServiceImpl::CancelPoll(Poll* poll) {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    // Not waiting: it never waited, or it was finished already (gRPC may report a
    // cancellation after Finish). Either way its Finish is someone else's.
    if (!poll->waiting) return;
    RemoveWaiterLocked(poll);
    done.push_back({poll,
                    grpc::Status(grpc::StatusCode::CANCELLED, "get_parameters: cancelled"),
                    {},
                    Result::kError});
  }
  Deliver(std::move(done));
}

void ParameterServiceImpl::Deliver(std::vector<Completion> completions) {
  for (Completion& c : completions) {
    if (c.status.ok()) {
      if (bytes_sent_ != nullptr) bytes_sent_->Increment(static_cast<double>(c.payload.Length()));
      c.poll->response()->Swap(&c.payload);
    }
    prometheus::Counter* counter = c.result == Result::kSent          ? sent_
                                   : c.result == Result::kNotModified ? not_modified_
                                                                      : errors_;
    if (counter != nullptr) counter->Increment();
    c.poll->Finish(std::move(c.status));
  }
}

void ParameterServiceImpl::UpdateWaitersGaugeLocked() {
  if (waiters_gauge_ != nullptr) waiters_gauge_->Set(static_cast<double>(deadlines_.size()));
}

void ParameterServiceImpl::TimerLoop() {
  mu_.Lock();
  while (!shutdown_) {
    const absl::Time now = absl::Now();
    if (deadlines_.empty() || deadlines_.begin()->first > now) {
      // Woken early by a new earliest deadline or Shutdown; spurious wake-ups re-check.
      timer_cv_.WaitWithDeadline(
          &mu_, deadlines_.empty() ? absl::InfiniteFuture() : deadlines_.begin()->first);
      continue;
    }
    std::vector<Completion> done;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      Poll* poll = deadlines_.begin()->second;
      const std::string key = poll->key;
      RemoveWaiterLocked(poll);
      done.push_back(NotModifiedLocked(poll, key));
    }
    mu_.Unlock();
    Deliver(std::move(done));
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace engram::learner
