#ifndef ENGRAM_ACTOR_ACTOR_COMMON_H_
#define ENGRAM_ACTOR_ACTOR_COMMON_H_

// What every algorithm's network-driven actor shares: the connection to the learner
// (ParameterService for weights, ActorService for progress), loading the first weights and
// swapping in newer ones, and the actor's Prometheus metrics.
//
// A Policy is the actor's copy of a network: `absl::Status Load(const v1::ParameterSet&)`
// (INVALID_ARGUMENT when the weights do not fit) and `int64_t version() const`.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/envs/registry.h"
#include "actor/envs/vector_env.h"
#include "actor/reporter.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "engram/v1/experiment.pb.h"
#include "learner/experiment_spec.h"
#include "learner/parameter_client.h"
#include "replay_server/client/writer.h"

namespace engram::actor {

// The `num_envs` environments of task `task_index` (learner::TaskEnvironment; 0 without a
// task sequence), not yet reset. In a task sequence their observations are padded to the
// channels every task's network input has (learner::SharedEnvironment).
inline absl::StatusOr<std::unique_ptr<envs::VectorEnv>> MakeTaskEnvs(
    const v1::ExperimentSpec& resolved, int task_index, int num_envs) {
  const v1::EnvironmentSpec& env = learner::TaskEnvironment(resolved, task_index);
  const envs::EnvOptions options(env.options().begin(), env.options().end());
  if (!resolved.has_task_sequence()) return envs::VectorEnv::Create(env.name(), options, num_envs);
  ENGRAM_ASSIGN_OR_RETURN(learner::EnvironmentInfo shared, learner::SharedEnvironment(resolved));
  std::vector<std::unique_ptr<envs::Env>> copies;
  for (int i = 0; i < num_envs; ++i) {
    ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<envs::Env> copy, envs::MakeEnv(env.name(), options));
    copies.push_back(envs::PadChannels(std::move(copy), shared.observation_shape.back()));
  }
  return envs::VectorEnv::FromEnvs(std::move(copies));
}

// The learner connection and the environment's spec.
template <typename Policy>
struct ActorConnection {
  std::unique_ptr<learner::ParameterClient> parameters;
  std::unique_ptr<ProgressReporter> reporter;
  std::unique_ptr<Policy> policy;
  envs::EnvSpec env_spec;
};

struct ConnectOptions {
  std::string learner_address;
  ChannelOptions channel;
  std::string client_id;  // "actor-3", "eval-0"
  int actor_index = 0;
  v1::ActorRole role = v1::ACTOR_ROLE_TRAINING;
  uint64_t incarnation = 0;
};

// Connects to the learner and builds the environment (task 0's) once to learn its spec;
// `policy` is set by the caller afterwards.
template <typename Policy>
absl::StatusOr<ActorConnection<Policy>> ConnectToLearner(const v1::ExperimentSpec& spec,
                                                         const ConnectOptions& options) {
  ActorConnection<Policy> c;
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                          CreateChannel(options.learner_address, options.channel));
  ENGRAM_ASSIGN_OR_RETURN(
      c.parameters, learner::ParameterClient::Create(
                        channel, {.experiment_id = spec.id(), .client_id = options.client_id}));
  ENGRAM_ASSIGN_OR_RETURN(c.reporter,
                          ProgressReporter::Create(channel, {.experiment_id = spec.id(),
                                                             .actor_index = options.actor_index,
                                                             .role = options.role,
                                                             .incarnation = options.incarnation}));
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<envs::VectorEnv> probe, MakeTaskEnvs(spec, 0, 1));
  c.env_spec = probe->spec();
  return c;
}

// Blocks until the learner has published weights and loads them (OK without weights when
// `stop` becomes true first); UNAVAILABLE after `timeout`.
template <typename Policy>
absl::Status LoadFirstWeights(ActorConnection<Policy>& c, const std::string& learner_address,
                              absl::Duration timeout, const std::atomic<bool>& stop) {
  const absl::Time give_up = absl::Now() + timeout;
  Log(absl::StrCat("waiting for weights from the learner at ", learner_address));
  while (!stop.load()) {
    absl::StatusOr<std::shared_ptr<const v1::ParameterSet>> first =
        c.parameters->WaitForVersionOtherThan(0, std::min(give_up, absl::Now() + absl::Seconds(1)));
    if (first.ok()) {
      ENGRAM_RETURN_IF_ERROR(c.policy->Load(**first));
      c.reporter->SetPolicyVersion(c.policy->version());
      Log(absl::StrCat("acting with weights version ", c.policy->version()));
      return absl::OkStatus();
    }
    if (absl::Now() >= give_up) {
      return absl::UnavailableError(absl::StrCat("no weights from the learner at ", learner_address,
                                                 " within ", absl::FormatDuration(timeout), ": ",
                                                 first.status().message()));
    }
  }
  return absl::OkStatus();
}

// Swaps in the newest weights if they differ from the policy's. Sets *changed.
template <typename Policy>
absl::Status SyncWeights(ActorConnection<Policy>& c, bool* changed = nullptr) {
  std::shared_ptr<const v1::ParameterSet> latest = c.parameters->Latest();
  if (changed != nullptr) *changed = false;
  if (latest == nullptr || latest->version() == c.policy->version()) return absl::OkStatus();
  ENGRAM_RETURN_IF_ERROR(c.policy->Load(*latest));
  c.reporter->SetPolicyVersion(c.policy->version());
  if (changed != nullptr) *changed = true;
  return absl::OkStatus();
}

// engram_actor_* metrics, labelled by role; all null without a registry.
struct ActorMetrics {
  ActorMetrics(prometheus::Registry* registry, const std::string& role) {
    if (registry == nullptr) return;
    const std::map<std::string, std::string> labels = {{"role", role}};
    frames = &AddCounter(*registry, "actor_frames_total",
                         "Environment steps taken, summed over the actor's environments.")
                  .Add(labels);
    episodes = &AddCounter(*registry, "actor_episodes_total", "Episodes finished.").Add(labels);
    items = &AddCounter(*registry, "actor_items_appended_total",
                        "Items (transitions or chunks) handed to the replay writer.")
                 .Add(labels);
    weight_updates = &AddCounter(*registry, "actor_weight_updates_total",
                                 "Parameter versions swapped into the actor's network.")
                          .Add(labels);
    policy_version =
        &AddGauge(*registry, "actor_policy_version", "Parameter version the actor acts with.")
             .Add(labels);
    episode_return = &AddGauge(*registry, "actor_episode_return",
                               "Return of the actor's most recent finished episode.")
                          .Add(labels);
  }
  prometheus::Counter* frames = nullptr;
  prometheus::Counter* episodes = nullptr;
  prometheus::Counter* items = nullptr;
  prometheus::Counter* weight_updates = nullptr;
  prometheus::Gauge* policy_version = nullptr;
  prometheus::Gauge* episode_return = nullptr;
};

// Appends `item` to `writer`, waiting out backpressure (a full queue towards a slow,
// rate-limited or unreachable shard) until `stopping()`; rejections by the shard are
// returned (they end the actor). An earlier request's authentication error is logged and
// retried by the writer: this item was appended.
inline absl::Status AppendItem(replay::ReplayWriter& writer, const v1::Item& item,
                               const std::function<bool()>& stopping) {
  while (true) {
    absl::Status status = writer.Append(item, absl::Now() + absl::Seconds(1));
    if (status.ok()) return status;
    if (absl::IsDeadlineExceeded(status) && absl::StrContains(status.message(), "not appended")) {
      if (stopping()) return absl::OkStatus();
      continue;
    }
    if (absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status)) {
      Log(absl::StrCat("replay writer (retrying): ", status.ToString()));
      return absl::OkStatus();
    }
    return status;
  }
}

// Mean return of the last 100 finished episodes, for progress lines.
class RecentReturns {
 public:
  void Add(double episode_return) {
    returns_.push_back(episode_return);
    if (returns_.size() > 100) returns_.pop_front();
  }
  double Mean() const {
    if (returns_.empty()) return 0;
    double sum = 0;
    for (double r : returns_) sum += r;
    return sum / returns_.size();
  }

 private:
  std::deque<double> returns_;
};

inline v1::DType WireDType(envs::DType dtype) {
  return dtype == envs::DType::kUint8 ? v1::DTYPE_UINT8 : v1::DTYPE_FLOAT32;
}

// A random nonzero id (episode ids: 0 means none).
inline uint64_t NonZeroRandom(absl::BitGen& gen) {
  uint64_t value = 0;
  while (value == 0) value = absl::Uniform<uint64_t>(gen);
  return value;
}

inline void Increment(prometheus::Counter* counter, double by = 1) {
  if (counter != nullptr) counter->Increment(by);
}
inline void Set(prometheus::Gauge* gauge, double value) {
  if (gauge != nullptr) gauge->Set(value);
}

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_ACTOR_COMMON_H_
