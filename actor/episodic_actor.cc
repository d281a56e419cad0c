#include "actor/episodic_actor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/envs/vector_env.h"
#include "actor/evaluation.h"
#include "actor/reporter.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/status.h"
#include "common/status_macros.h"
#include "episodic_store/client.h"
#include "learner/experiment_spec.h"

namespace engram::actor {
namespace {

// A connection to the store's memory, the projection, and the progress reporter.
struct Episodic {
  std::unique_ptr<episodic::EpisodicClient> store;
  std::unique_ptr<ProgressReporter> reporter;
  std::unique_ptr<RandomProjection> projection;
  envs::EnvSpec env_spec;
  int k = 50;
};

absl::StatusOr<Episodic> Connect(const ApexActorOptions& options) {
  Episodic e;
  const v1::EnvironmentSpec& env = options.spec.environment();
  {
    ENGRAM_ASSIGN_OR_RETURN(
        auto probe, envs::MakeEnv(env.name(), {env.options().begin(), env.options().end()}));
    e.env_spec = probe->spec();
  }
  const v1::EpisodicControlConfig& config = options.spec.episodic_control();
  e.k = config.has_k() ? config.k() : 50;
  e.projection = std::make_unique<RandomProjection>(e.env_spec.observation_elements(),
                                                    config.has_key_dim() ? config.key_dim() : 64,
                                                    options.spec.seed());
  ENGRAM_ASSIGN_OR_RETURN(e.store, ConnectEpisodicMemory(options.episodic_address, options.channel,
                                                         options.spec, e.env_spec.num_actions));
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> learner,
                          CreateChannel(options.learner_address, options.channel));
  ENGRAM_ASSIGN_OR_RETURN(e.reporter,
                          ProgressReporter::Create(learner, {.experiment_id = options.spec.id(),
                                                             .actor_index = options.actor_index,
                                                             .role = options.role,
                                                             .incarnation = options.incarnation}));
  return e;
}

// Greedy on the estimates (an action with no memories counts as best), epsilon-random.
template <typename Rng>
int Act(const episodic::ActionValues& values, int row, double epsilon, Rng& rng) {
  const int num_actions = values.num_actions;
  if (std::uniform_real_distribution<double>(0, 1)(rng) < epsilon) {
    return std::uniform_int_distribution<int>(0, num_actions - 1)(rng);
  }
  int best = 0;
  float best_value = -std::numeric_limits<float>::infinity();
  int ties = 0;
  for (int a = 0; a < num_actions; ++a) {
    const size_t cell = static_cast<size_t>(row) * num_actions + a;
    const float v =
        values.counts[cell] == 0 ? std::numeric_limits<float>::infinity() : values.estimates[cell];
    if (v > best_value) {
      best_value = v;
      best = a;
      ties = 1;
    } else if (v == best_value && std::uniform_int_distribution<int>(0, ties++)(rng) == 0) {
      best = a;  // uniform among equals (reservoir)
    }
  }
  return best;
}

// Values of `n` queries with no memories at all (every action ties).
episodic::ActionValues NoEstimates(int64_t n, int num_actions) {
  episodic::ActionValues values;
  values.n = n;
  values.num_actions = num_actions;
  values.estimates.assign(static_cast<size_t>(n) * num_actions, 0.0f);
  values.counts.assign(static_cast<size_t>(n) * num_actions, 0);
  return values;
}

// Keys of all environments' current observations, [B, key_dim].
void ProjectAll(const Episodic& e, const envs::VectorEnv& vec, std::vector<float>* keys) {
  const int dim = e.projection->key_dim();
  keys->resize(static_cast<size_t>(vec.num_envs()) * dim);
  const bool is_float = e.env_spec.observation_dtype == envs::DType::kFloat32;
  for (int j = 0; j < vec.num_envs(); ++j) {
    e.projection->Project(vec.observation(j), is_float, keys->data() + j * dim);
  }
}

absl::Status RunTraining(const ApexActorOptions& options, Episodic e, const std::atomic<bool>& stop,
                         prometheus::Registry* registry) {
  const v1::EpisodicControlConfig& config = options.spec.episodic_control();
  const double epsilon = config.has_epsilon() ? config.epsilon() : 0.005;
  const double gamma = config.has_gamma() ? config.gamma() : 0.99;
  const v1::EnvironmentSpec& env = options.spec.environment();
  const int num_envs = options.spec.actors().envs_per_actor();
  ENGRAM_ASSIGN_OR_RETURN(
      std::unique_ptr<envs::VectorEnv> vec,
      envs::VectorEnv::Create(env.name(), {env.options().begin(), env.options().end()}, num_envs));
  vec->Reset(learner::TrainingEnvSeed(options.spec, options.actor_index, 0));
  std::mt19937_64 rng(learner::TrainingEnvSeed(options.spec, options.actor_index, 0) ^ 0xec);
  const int dim = e.projection->key_dim();
  prometheus::Counter* frames_metric = nullptr;
  prometheus::Counter* episodes_metric = nullptr;
  if (registry != nullptr) {
    frames_metric = &AddCounter(*registry, "actor_frames_total",
                                "Environment steps taken, summed over the actor's environments.")
                         .Add({{"role", "training"}});
    episodes_metric = &AddCounter(*registry, "actor_episodes_total", "Episodes finished.")
                           .Add({{"role", "training"}});
  }
  EpisodeWriter writer(e.store.get(), e.projection.get(), num_envs, gamma,
                       e.env_spec.observation_dtype == envs::DType::kFloat32);
  std::vector<double> totals(num_envs, 0);
  std::vector<int64_t> lengths(num_envs, 0);
  std::vector<float> keys;
  std::vector<int> actions(num_envs);
  int64_t frames = 0, finished = 0;
  double recent = 0;
  absl::Time next_log = absl::Now() + options.log_interval;
  Log(absl::StrFormat("episodic control actor %d: %d x %s, epsilon %g, k %d, key dim %d",
                      options.actor_index, num_envs, env.name(), epsilon, e.k, dim));
  // Store outages are logged once a minute, not per step.
  absl::Time complained = absl::InfinitePast();
  const auto complain = [&complained](const absl::Status& status, absl::string_view what) {
    if (absl::Now() - complained < absl::Minutes(1)) return;
    Log(absl::StrCat("episodic store: ", what, ": ", status.ToString()));
    complained = absl::Now();
  };
  // The loop is a function so that every way out flushes the progress report below.
  auto loop = [&]() -> absl::Status {
    while (!stop.load() && !e.reporter->stop_requested()) {
      ProjectAll(e, *vec, &keys);
      absl::StatusOr<episodic::ActionValues> values =
          e.store->LookupAll(keys.data(), num_envs, e.k);
      if (!values.ok()) {
        // The store is down (or refused): no estimates, so every action ties and the
        // actor acts at random until it answers again. Nothing to learn from is lost but
        // the episodes it cannot write meanwhile.
        if (!IsTransient(values.status())) return values.status();
        complain(values.status(), "lookup failed; acting at random until it answers");
        values = NoEstimates(num_envs, e.env_spec.num_actions);
      }
      for (int j = 0; j < num_envs; ++j) actions[j] = Act(*values, j, epsilon, rng);
      ENGRAM_RETURN_IF_ERROR(vec->Step(actions));
      for (int j = 0; j < num_envs; ++j) {
        // The key of the observation acted on: projected once, for the lookup above.
        writer.RecordKey(j, keys.data() + j * dim, actions[j], vec->rewards()[j]);
        totals[j] += vec->rewards()[j];
        ++lengths[j];
        if (!vec->done(j)) continue;
        if (absl::Status written = writer.Finish(j); !written.ok()) {
          if (!IsTransient(written)) return written;
          complain(written, "episode not written");
        }
        v1::EpisodeResult result;
        result.set_episode_return(totals[j]);
        result.set_length(lengths[j]);
        result.set_env_index(j);
        result.set_epsilon(epsilon);
        result.set_truncated(vec->truncated()[j] != 0);
        e.reporter->AddEpisode(result);
        if (episodes_metric != nullptr) episodes_metric->Increment();
        recent = finished == 0 ? totals[j] : 0.95 * recent + 0.05 * totals[j];
        ++finished;
        totals[j] = 0;
        lengths[j] = 0;
      }
      frames += num_envs;
      e.reporter->AddFrames(num_envs);
      if (frames_metric != nullptr) frames_metric->Increment(num_envs);
      if (options.log_interval > absl::ZeroDuration() && absl::Now() >= next_log) {
        Log(absl::StrFormat("actor %d: %d frames, %d episodes, recent return %.2f",
                            options.actor_index, frames, finished, recent));
        next_log = absl::Now() + options.log_interval;
      }
    }
    return absl::OkStatus();
  };
  const absl::Status ended = loop();
  Log(absl::StrFormat("actor %d: stopping after %d frames (%s)", options.actor_index, frames,
                      e.reporter->stop_requested() ? "the run is over" : "asked to stop"));
  absl::Status flushed = e.reporter->Flush(absl::Now() + absl::Seconds(5));
  if (!flushed.ok()) Log(absl::StrCat("progress report: ", flushed.ToString()));
  return ended;
}

absl::Status RunEvaluations(const ApexActorOptions& options, Episodic e,
                            const std::atomic<bool>& stop, prometheus::Registry* registry) {
  std::vector<float> keys;
  std::mt19937_64 rng;
  return ServeEvaluations(
      options.spec, options.evaluation_max_episode_steps, *e.reporter,
      [&](int64_t index) -> absl::StatusOr<EvaluationPolicy> {
        rng.seed(static_cast<uint64_t>(index));  // ties only: greedy, no epsilon here
        return EvaluationPolicy{
            0, [&](const envs::VectorEnv& vec, std::vector<int>* actions) -> absl::Status {
              ProjectAll(e, vec, &keys);
              ENGRAM_ASSIGN_OR_RETURN(episodic::ActionValues values,
                                      e.store->LookupAll(keys.data(), vec.num_envs(), e.k));
              for (int j = 0; j < vec.num_envs(); ++j) (*actions)[j] = Act(values, j, 0, rng);
              return absl::OkStatus();
            }};
      },
      stop, registry);
}

}  // namespace

EpisodeWriter::EpisodeWriter(episodic::EpisodicClient* store, const RandomProjection* projection,
                             int num_envs, double gamma, bool float_observations)
    : store_(store),
      projection_(projection),
      gamma_(gamma),
      float_observations_(float_observations),
      episodes_(num_envs) {}

void EpisodeWriter::Record(int j, const uint8_t* observation, int action, float reward) {
  Episode& episode = episodes_[j];
  const int dim = projection_->key_dim();
  episode.keys.resize(episode.keys.size() + dim);
  projection_->Project(observation, float_observations_,
                       episode.keys.data() + episode.keys.size() - dim);
  episode.actions.push_back(action);
  episode.rewards.push_back(reward);
}

void EpisodeWriter::RecordKey(int j, const float* key, int action, float reward) {
  Episode& episode = episodes_[j];
  episode.keys.insert(episode.keys.end(), key, key + projection_->key_dim());
  episode.actions.push_back(action);
  episode.rewards.push_back(reward);
}

absl::Status EpisodeWriter::Finish(int j) {
  Episode episode = std::move(episodes_[j]);
  episodes_[j] = Episode();
  const int dim = projection_->key_dim();
  const int64_t length = static_cast<int64_t>(episode.actions.size());
  double g = 0;
  std::vector<float> returns(length);
  for (int64_t t = length - 1; t >= 0; --t) {
    g = episode.rewards[t] + gamma_ * g;
    returns[t] = static_cast<float>(g);
  }
  for (int64_t t = 0; t < length; ++t) {
    ENGRAM_RETURN_IF_ERROR(
        store_->Write(episode.keys.data() + t * dim, episode.actions[t], returns[t]));
  }
  written_ += length;
  return store_->Flush();
}

absl::StatusOr<std::unique_ptr<episodic::EpisodicClient>> ConnectEpisodicMemory(
    const std::string& address, const ChannelOptions& channel, const v1::ExperimentSpec& resolved,
    int num_actions) {
  if (address.empty()) {
    return absl::InvalidArgumentError(
        "episodic_address: this experiment uses the episodic store; give the actors its "
        "address (--episodic_address)");
  }
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> store, CreateChannel(address, channel));
  // A short timeout per call: while the store is down an actor acts without it (episodic
  // control at random, Ape-X by its network) instead of waiting.
  return episodic::EpisodicClient::Connect(store,
                                           {.spec = EpisodicMemorySpec(resolved, num_actions),
                                            .write_batch = 4096,
                                            .timeout = absl::Seconds(2)});
}

RandomProjection::RandomProjection(int64_t input_size, int key_dim, uint64_t seed)
    : input_size_(input_size), key_dim_(key_dim), matrix_(input_size * key_dim) {
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::normal_distribution<float> normal(0, 1.0f / std::sqrt(static_cast<float>(key_dim)));
  for (float& x : matrix_) x = normal(rng);
}

void RandomProjection::Project(const uint8_t* observation, bool is_float, float* key) const {
  std::fill(key, key + key_dim_, 0.0f);
  for (int64_t i = 0; i < input_size_; ++i) {
    float x;
    if (is_float) {
      std::memcpy(&x, observation + i * sizeof(float), sizeof(float));
    } else {
      x = observation[i];
    }
    if (x == 0) continue;  // MinAtar observations are mostly zeros
    const float* row = matrix_.data() + i * key_dim_;
    for (int d = 0; d < key_dim_; ++d) key[d] += x * row[d];
  }
}

v1::MemorySpec EpisodicMemorySpec(const v1::ExperimentSpec& resolved, int num_actions) {
  const v1::EpisodicControlConfig& config = resolved.episodic_control();
  v1::MemorySpec spec;
  std::string name = absl::StrCat("ec_", resolved.id());
  std::replace(name.begin(), name.end(), '-', '_');
  spec.set_name(name.substr(0, 64));
  spec.set_key_dim(config.has_key_dim() ? config.key_dim() : 64);
  spec.set_num_actions(num_actions);
  spec.set_capacity_per_action(config.has_capacity_per_action() ? config.capacity_per_action()
                                                                : 1000000);
  spec.set_update_rule(config.update_rule() == v1::UPDATE_RULE_UNSPECIFIED
                           ? v1::UPDATE_RULE_MFEC_MAX
                           : config.update_rule());
  spec.set_kernel(config.kernel() == v1::KERNEL_UNSPECIFIED ? v1::KERNEL_MEAN : config.kernel());
  spec.set_index(config.index() == v1::INDEX_KIND_UNSPECIFIED ? v1::INDEX_KIND_APPROXIMATE
                                                              : config.index());
  spec.set_default_k(config.has_k() ? config.k() : 50);
  return spec;
}

absl::Status RunEpisodicActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                              prometheus::Registry* registry) {
  if (!options.spec.has_episodic_control()) {
    return absl::InvalidArgumentError("algorithm: this actor loop runs episodic_control only");
  }
  const bool training = options.role == v1::ACTOR_ROLE_TRAINING;
  ENGRAM_RETURN_IF_ERROR(CheckActorIndex(options));
  ENGRAM_ASSIGN_OR_RETURN(Episodic e, Connect(options));
  if (!training) return RunEvaluations(options, std::move(e), stop, registry);
  return RunTraining(options, std::move(e), stop, registry);
}

}  // namespace engram::actor
