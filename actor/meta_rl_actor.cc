#include "actor/meta_rl_actor.h"

#include <cmath>
#include <cstring>
#include <deque>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/actor_common.h"
#include "actor/envs/vector_env.h"
#include "actor/evaluation.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/tensor_proto.h"
#include "learner/apex_config.h"
#include "learner/core/compute_threads.h"
#include "learner/core/meta_rl.h"
#include "learner/experiment_spec.h"
#include "learner/weights.h"
#include "replay_server/client/writer.h"
#include "torch/torch.h"

namespace engram::actor {
namespace {

// Insert requests a training actor keeps in flight: few, so that when the learner's queue is
// full the actor waits rather than buffering chunks that would age (policy lag).
constexpr int kMaxRequestsInFlight = 4;

// The actor's copy of the LSTM actor-critic and the version it holds.
class RecurrentPolicy {
 public:
  explicit RecurrentPolicy(const learner::MetaRlNetConfig& config) : network_(config) {
    network_->eval();
  }

  absl::Status Load(const v1::ParameterSet& set) {
    ENGRAM_ASSIGN_OR_RETURN(learner::NamedWeights weights, learner::DecodeWeights(set));
    if (const std::string error = learner::ImportWeights(*network_, weights); !error.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights version ", set.version(), " do not fit this actor's network: ", error,
          " (do the learner and actor run the same experiment spec?)"));
    }
    version_ = set.version();
    return absl::OkStatus();
  }

  int64_t version() const { return version_; }
  learner::MetaRlNetImpl& network() { return *network_; }

 private:
  learner::MetaRlNet network_;
  int64_t version_ = 0;
};

using Connection = ActorConnection<RecurrentPolicy>;

// B environments acting on one recurrent policy: the state, previous action and reward of
// each, reset where an episode ends.
class RecurrentActing {
 public:
  RecurrentActing(learner::MetaRlNetImpl* network, const envs::EnvSpec& spec, int num_envs,
                  uint64_t seed)
      : network_(network),
        spec_(spec),
        num_envs_(num_envs),
        state_(network->InitialState(num_envs, torch::kCPU)),
        previous_actions_(torch::full({num_envs}, -1, torch::kInt64)),
        previous_rewards_(torch::zeros({num_envs})),
        rng_(seed) {}

  // Samples actions for the current observations; keeps the logits and the state before the
  // step for the caller.
  void Act(const uint8_t* observations, std::vector<int>* actions) {
    std::vector<int64_t> shape = {num_envs_};
    shape.insert(shape.end(), spec_.observation_shape.begin(), spec_.observation_shape.end());
    const torch::Tensor input = torch::from_blob(
        const_cast<uint8_t*>(observations), shape,
        spec_.observation_dtype == envs::DType::kUint8 ? torch::kUInt8 : torch::kFloat32);
    torch::NoGradGuard no_grad;
    state_before_ = state_;
    learner::MetaRlNetImpl::Output out =
        network_->Step(input, previous_actions_, previous_rewards_, state_);
    logits_ = out.logits.contiguous();
    values_ = out.values.contiguous();
    state_ = out.state;
    const torch::Tensor probabilities = torch::softmax(logits_, 1).contiguous();
    const int num_actions = spec_.num_actions;
    const float* p = probabilities.data_ptr<float>();
    actions->resize(num_envs_);
    for (int j = 0; j < num_envs_; ++j) {
      double u = std::uniform_real_distribution<double>(0, 1)(rng_);
      int a = 0;
      for (; a < num_actions - 1; ++a) {
        u -= p[j * num_actions + a];
        if (u < 0) break;
      }
      (*actions)[j] = a;
    }
  }

  // After the environments stepped: the inputs of the next step.
  void Observe(const envs::VectorEnv& vec, const std::vector<int>& actions) {
    int64_t* previous_actions = previous_actions_.data_ptr<int64_t>();
    float* previous_rewards = previous_rewards_.data_ptr<float>();
    for (int j = 0; j < num_envs_; ++j) {
      if (vec.done(j)) {
        previous_actions[j] = -1;
        previous_rewards[j] = 0;
        state_.h[j].zero_();
        state_.c[j].zero_();
      } else {
        previous_actions[j] = actions[j];
        previous_rewards[j] = vec.rewards()[j];
      }
    }
  }

  const torch::Tensor& logits() const { return logits_; }  // [B, A] of the last Act
  const torch::Tensor& values() const { return values_; }  // [B]
  const learner::MetaRlNetImpl::State& state_before() const { return state_before_; }
  int64_t previous_action(int j) const { return previous_actions_[j].item<int64_t>(); }
  float previous_reward(int j) const { return previous_rewards_[j].item<float>(); }

 private:
  learner::MetaRlNetImpl* network_;
  const envs::EnvSpec& spec_;
  const int num_envs_;
  learner::MetaRlNetImpl::State state_;
  learner::MetaRlNetImpl::State state_before_;
  torch::Tensor previous_actions_;
  torch::Tensor previous_rewards_;
  torch::Tensor logits_;
  torch::Tensor values_;
  std::mt19937_64 rng_;
};

// One environment's chunk under construction.
struct ChunkBuffer {
  std::vector<uint8_t> observations;
  std::vector<int32_t> actions;
  std::vector<float> rewards;
  std::vector<float> discounts;
  std::vector<float> logits;
  std::vector<float> values;
  std::vector<uint8_t> episode_starts;
  std::vector<float> initial_h, initial_c;
  int32_t previous_action = -1;
  float previous_reward = 0;
  int64_t policy_version = 0;
  uint64_t episode_id = 0;
  int64_t episode_step = 0;

  void Clear() {
    observations.clear();
    actions.clear();
    rewards.clear();
    discounts.clear();
    logits.clear();
    values.clear();
    episode_starts.clear();
  }
};

template <typename T>
void Encode(v1::DType dtype, std::vector<int64_t> shape, const std::vector<T>& values,
            v1::Tensor* out) {
  const absl::Status status =
      EncodeRaw(dtype, shape,
                absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()),
                                          values.size() * sizeof(T)),
                out);
  (void)status;  // sizes are the actor's own: always consistent
}

class TrainingActor {
 public:
  TrainingActor(const ApexActorOptions& options, Connection connection,
                std::unique_ptr<replay::ReplayWriter> writer, prometheus::Registry* registry)
      : options_(options),
        c_(std::move(connection)),
        writer_(std::move(writer)),
        metrics_(registry, "training"),
        num_envs_(options.spec.actors().envs_per_actor()),
        unroll_(options.spec.meta_rl().unroll_length()),
        obs_bytes_(c_.env_spec.observation_bytes()),
        acting_(&c_.policy->network(), c_.env_spec, num_envs_,
                learner::TrainingEnvSeed(options.spec, options.actor_index, 0) ^ 0x5eed),
        chunks_(num_envs_),
        episode_id_(num_envs_),
        episode_step_(num_envs_, 0) {
    for (uint64_t& id : episode_id_) id = NonZeroRandom(id_gen_);
  }

  absl::Status Run(const std::atomic<bool>& stop) {
    const v1::ExperimentSpec& spec = options_.spec;
    const std::string& family = spec.meta_rl().task_family();
    // The task family's own environment when it is the spec's, with its options.
    envs::EnvOptions env_options;
    if (family == spec.environment().name()) {
      env_options = {spec.environment().options().begin(), spec.environment().options().end()};
    }
    ENGRAM_ASSIGN_OR_RETURN(vec_, envs::VectorEnv::Create(family, env_options, num_envs_));
    vec_->Reset(learner::TrainingEnvSeed(spec, options_.actor_index, 0));
    Log(absl::StrFormat("actor %d: %d x %s, chunks of %d steps, writing to %s",
                        options_.actor_index, num_envs_, family, unroll_, writer_target_));
    absl::Time next_log = absl::Now() + options_.log_interval;
    int64_t logged_frames = 0;
    absl::Time logged_at = absl::Now();
    std::vector<uint8_t> starts(num_envs_, 1);
    for (int64_t step = 0; !Stopping(stop); ++step) {
      const int t = static_cast<int>(step % unroll_);
      if (t == 0) {
        // Chunk boundary: one policy version per chunk.
        bool changed = false;
        ENGRAM_RETURN_IF_ERROR(SyncWeights(c_, &changed));
        if (changed) {
          Increment(metrics_.weight_updates);
          Set(metrics_.policy_version, static_cast<double>(c_.policy->version()));
        }
      }
      acting_.Act(vec_->observations(), &actions_);
      if (t == 0) StartChunks();
      Record(starts);
      ENGRAM_RETURN_IF_ERROR(vec_->Step(actions_));
      frames_ += num_envs_;
      c_.reporter->AddFrames(num_envs_);
      Increment(metrics_.frames, num_envs_);
      for (int j = 0; j < num_envs_; ++j) {
        ChunkBuffer& chunk = chunks_[j];
        chunk.rewards.push_back(vec_->rewards()[j]);
        chunk.discounts.push_back(vec_->done(j) ? 0.0f : 1.0f);
        starts[j] = vec_->done(j) ? 1 : 0;
        ++episode_step_[j];
        if (vec_->done(j)) FinishEpisode(j);
      }
      acting_.Observe(*vec_, actions_);
      if (t == unroll_ - 1) ENGRAM_RETURN_IF_ERROR(EmitChunks(stop));
      if (options_.log_interval > absl::ZeroDuration() && absl::Now() >= next_log) {
        const absl::Time now = absl::Now();
        Log(absl::StrFormat(
            "actor %d: %d frames (%.0f/s), %d episodes, recent return %.2f, weights v%d, %d "
            "chunks unacknowledged",
            options_.actor_index, frames_,
            (frames_ - logged_frames) / absl::ToDoubleSeconds(now - logged_at), episodes_,
            recent_returns_.Mean(), c_.policy->version(), writer_->stats().unacked_items));
        logged_frames = frames_;
        logged_at = now;
        next_log = now + options_.log_interval;
      }
    }
    const bool run_over = c_.reporter->stop_requested();
    Log(absl::StrCat("actor ", options_.actor_index, ": stopping after ", frames_, " frames (",
                     run_over ? "the run is over" : "asked to stop", ")"));
    absl::Status flushed = c_.reporter->Flush(absl::Now() + absl::Seconds(run_over ? 2 : 10));
    if (!flushed.ok()) Log(absl::StrCat("progress report: ", flushed.ToString()));
    absl::Status closed =
        writer_->Close(absl::Now() + (run_over ? absl::Seconds(5) : absl::Seconds(30)));
    if (!closed.ok()) Log(absl::StrCat("replay writer: ", closed.ToString()));
    return absl::OkStatus();
  }

  void set_writer_target(std::string target) { writer_target_ = std::move(target); }

 private:
  // The recurrent state, previous action and reward before the chunk's first step.
  void StartChunks() {
    const learner::MetaRlNetImpl::State& state = acting_.state_before();
    const torch::Tensor h = state.h.contiguous(), c = state.c.contiguous();
    const int64_t size = h.size(1);
    for (int j = 0; j < num_envs_; ++j) {
      ChunkBuffer& chunk = chunks_[j];
      chunk.Clear();
      chunk.initial_h.assign(h.data_ptr<float>() + j * size, h.data_ptr<float>() + (j + 1) * size);
      chunk.initial_c.assign(c.data_ptr<float>() + j * size, c.data_ptr<float>() + (j + 1) * size);
      chunk.previous_action = static_cast<int32_t>(acting_.previous_action(j));
      chunk.previous_reward = acting_.previous_reward(j);
      chunk.policy_version = c_.policy->version();
      chunk.episode_id = episode_id_[j];
      chunk.episode_step = episode_step_[j];
    }
  }

  void Record(const std::vector<uint8_t>& starts) {
    const int num_actions = c_.env_spec.num_actions;
    const float* logits = acting_.logits().data_ptr<float>();
    const float* values = acting_.values().data_ptr<float>();
    for (int j = 0; j < num_envs_; ++j) {
      ChunkBuffer& chunk = chunks_[j];
      const uint8_t* observation = vec_->observation(j);
      chunk.observations.insert(chunk.observations.end(), observation, observation + obs_bytes_);
      chunk.actions.push_back(actions_[j]);
      chunk.logits.insert(chunk.logits.end(), logits + j * num_actions,
                          logits + (j + 1) * num_actions);
      chunk.values.push_back(values[j]);
      chunk.episode_starts.push_back(starts[j]);
    }
  }

  absl::Status EmitChunks(const std::atomic<bool>& stop) {
    const envs::EnvSpec& env = c_.env_spec;
    const v1::DType obs_dtype = WireDType(env.observation_dtype);
    std::vector<int64_t> obs_shape = {unroll_};
    obs_shape.insert(obs_shape.end(), env.observation_shape.begin(), env.observation_shape.end());
    for (int j = 0; j < num_envs_; ++j) {
      const ChunkBuffer& buffer = chunks_[j];
      v1::Item item;
      item.set_key(keys_.Next());
      item.set_priority(1.0);
      v1::TrajectoryChunk* chunk = item.mutable_chunk();
      Encode(obs_dtype, obs_shape, buffer.observations, chunk->mutable_observations());
      Encode(v1::DTYPE_INT32, {unroll_}, buffer.actions, chunk->mutable_actions());
      Encode(v1::DTYPE_FLOAT32, {unroll_}, buffer.rewards, chunk->mutable_rewards());
      Encode(v1::DTYPE_FLOAT32, {unroll_}, buffer.discounts, chunk->mutable_discounts());
      Encode(v1::DTYPE_FLOAT32, {unroll_, env.num_actions}, buffer.logits,
             chunk->mutable_behaviour_logits());
      Encode(v1::DTYPE_FLOAT32, {unroll_}, buffer.values, chunk->mutable_behaviour_values());
      Encode(v1::DTYPE_BOOL, {unroll_}, buffer.episode_starts, chunk->mutable_episode_starts());
      const int64_t size = static_cast<int64_t>(buffer.initial_h.size());
      Encode(v1::DTYPE_FLOAT32, {size}, buffer.initial_h, chunk->add_initial_recurrent_state());
      Encode(v1::DTYPE_FLOAT32, {size}, buffer.initial_c, chunk->add_initial_recurrent_state());
      chunk->set_previous_action(buffer.previous_action);
      chunk->set_previous_reward(buffer.previous_reward);
      // After an episode end the row holds the next episode's first observation; its value
      // is multiplied by discount 0.
      const std::vector<uint8_t> bootstrap(vec_->observation(j), vec_->observation(j) + obs_bytes_);
      std::vector<int64_t> one_shape(env.observation_shape.begin(), env.observation_shape.end());
      Encode(obs_dtype, one_shape, bootstrap, chunk->mutable_bootstrap_observation());
      v1::Provenance* provenance = chunk->mutable_provenance();
      provenance->set_actor_index(options_.actor_index);
      provenance->set_env_index(j);
      provenance->set_episode_id(buffer.episode_id);
      provenance->set_episode_step(buffer.episode_step);
      provenance->set_policy_version(buffer.policy_version);
      ENGRAM_RETURN_IF_ERROR(Append(std::move(item), stop));
    }
    return absl::OkStatus();
  }

  void FinishEpisode(int j) {
    v1::EpisodeResult episode;
    episode.set_episode_return(vec_->episode_return(j));
    episode.set_length(vec_->episode_length(j));
    episode.set_env_index(j);
    episode.set_policy_version(c_.policy->version());
    episode.set_truncated(vec_->truncated()[j] != 0);
    recent_returns_.Add(episode.episode_return());
    Set(metrics_.episode_return, episode.episode_return());
    c_.reporter->AddEpisode(std::move(episode));
    Increment(metrics_.episodes);
    ++episodes_;
    episode_id_[j] = NonZeroRandom(id_gen_);
    episode_step_[j] = 0;
  }

  absl::Status Append(v1::Item item, const std::atomic<bool>& stop) {
    ENGRAM_RETURN_IF_ERROR(AppendItem(*writer_, item, [&] { return Stopping(stop); }));
    Increment(metrics_.items);
    return absl::OkStatus();
  }

  bool Stopping(const std::atomic<bool>& stop) const {
    return stop.load() || c_.reporter->stop_requested();
  }

  const ApexActorOptions& options_;
  Connection c_;
  std::unique_ptr<replay::ReplayWriter> writer_;
  std::string writer_target_;
  ActorMetrics metrics_;
  const int num_envs_;
  const int unroll_;
  const size_t obs_bytes_;
  RecurrentActing acting_;
  std::unique_ptr<envs::VectorEnv> vec_;
  std::vector<ChunkBuffer> chunks_;
  std::vector<uint64_t> episode_id_;
  std::vector<int64_t> episode_step_;
  std::vector<int> actions_;
  RecentReturns recent_returns_;
  absl::BitGen id_gen_;
  replay::KeyGenerator keys_;
  int64_t frames_ = 0;
  int64_t episodes_ = 0;
};

absl::Status RunEvaluation(const ApexActorOptions& options, Connection c,
                           const std::atomic<bool>& stop, prometheus::Registry* registry) {
  // Each evaluation starts every environment from the initial recurrent state.
  std::unique_ptr<RecurrentActing> acting;
  std::vector<int> last_actions;
  return ServeEvaluations(
      options.spec, options.evaluation_max_episode_steps, *c.reporter,
      [&](int64_t index) -> absl::StatusOr<EvaluationPolicy> {
        ENGRAM_RETURN_IF_ERROR(SyncWeights(c));
        acting.reset();
        return EvaluationPolicy{
            c.policy->version(), [&, index](const envs::VectorEnv& vec, std::vector<int>* actions) {
              if (acting == nullptr) {
                acting = std::make_unique<RecurrentActing>(&c.policy->network(), c.env_spec,
                                                           vec.num_envs(), 0x3e7a1 + index);
              } else {
                acting->Observe(vec, last_actions);
              }
              acting->Act(vec.observations(), actions);
              last_actions = *actions;
              return absl::OkStatus();
            }};
      },
      stop, registry);
}

}  // namespace

absl::Status RunMetaRlActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                            prometheus::Registry* registry) {
  if (!options.spec.has_meta_rl()) {
    return absl::InvalidArgumentError("algorithm: this actor runs meta_rl experiments only");
  }
  learner::SetComputeThreads(1);  // several actors share few cores
  const bool training = options.role == v1::ACTOR_ROLE_TRAINING;
  ENGRAM_RETURN_IF_ERROR(CheckActorIndex(options));
  ENGRAM_ASSIGN_OR_RETURN(learner::MetaRlConfig config, learner::MetaRlLearnerConfig(options.spec));
  ENGRAM_ASSIGN_OR_RETURN(
      Connection c, ConnectToLearner<RecurrentPolicy>(
                        options.spec, {.learner_address = options.learner_address,
                                       .channel = options.channel,
                                       .client_id = absl::StrCat(training ? "actor-" : "eval-",
                                                                 options.actor_index),
                                       .actor_index = options.actor_index,
                                       .role = options.role,
                                       .incarnation = options.incarnation}));
  c.policy = std::make_unique<RecurrentPolicy>(config.network);
  ENGRAM_RETURN_IF_ERROR(
      LoadFirstWeights(c, options.learner_address, options.first_weights_timeout, stop));
  if (stop.load()) return absl::OkStatus();
  if (!training) return RunEvaluation(options, std::move(c), stop, registry);

  std::string target;
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<replay::ReplayWriter> writer,
                          OpenReplayWriter(options, kMaxRequestsInFlight, &target));
  TrainingActor actor(options, std::move(c), std::move(writer), registry);
  actor.set_writer_target(std::move(target));
  return actor.Run(stop);
}

}  // namespace engram::actor
