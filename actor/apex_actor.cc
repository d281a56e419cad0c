#include "actor/apex_actor.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <random>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/actor_common.h"
#include "actor/envs/vector_env.h"
#include "actor/episodic_actor.h"
#include "actor/evaluation.h"
#include "actor/initial_priority.h"
#include "actor/nstep.h"
#include "actor/reporter.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "learner/apex_config.h"
#include "learner/core/compute_threads.h"
#include "learner/core/networks.h"
#include "learner/experiment_spec.h"
#include "learner/parameter_client.h"
#include "learner/weights.h"
#include "replay_server/client/writer.h"
#include "torch/torch.h"

namespace engram::actor {
namespace {

// The actor's copy of the Q-network and the version it holds.
class QPolicy {
 public:
  QPolicy(const learner::NetworkConfig& config, envs::DType dtype)
      : network_(learner::MakeQNetwork(config)),
        shape_(config.observation_shape),
        dtype_(dtype == envs::DType::kUint8 ? torch::kUInt8 : torch::kFloat32) {
    network_->eval();
  }

  // Replaces the weights with `set`'s. INVALID_ARGUMENT when they do not fit the network.
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

  // Q(o, .) for `batch` observations stored contiguously at `observations`: float [B, A],
  // contiguous, on the CPU.
  torch::Tensor Q(const uint8_t* observations, int64_t batch) {
    std::vector<int64_t> shape = {batch};
    shape.insert(shape.end(), shape_.begin(), shape_.end());
    // from_blob does not copy; the forward pass only reads the buffer.
    const torch::Tensor input =
        torch::from_blob(const_cast<uint8_t*>(observations), shape, torch::TensorOptions(dtype_));
    torch::NoGradGuard no_grad;
    return network_->forward(input).contiguous();
  }

  int64_t version() const { return version_; }

 private:
  std::shared_ptr<learner::QNetwork> network_;
  std::vector<int64_t> shape_;
  torch::ScalarType dtype_;
  int64_t version_ = 0;
};

void FillTensor(const envs::EnvSpec& spec, const std::vector<uint8_t>& bytes, v1::Tensor* out) {
  out->set_dtype(WireDType(spec.observation_dtype));
  for (int64_t d : spec.observation_shape) out->add_shape(d);
  out->set_data(bytes.data(), bytes.size());
}

using Common = ActorConnection<QPolicy>;

absl::StatusOr<Common> Connect(const ApexActorOptions& options, const std::string& client_id) {
  ENGRAM_ASSIGN_OR_RETURN(learner::NetworkConfig network, learner::ApexNetworkConfig(options.spec));
  ENGRAM_ASSIGN_OR_RETURN(
      Common common,
      ConnectToLearner<QPolicy>(options.spec, {.learner_address = options.learner_address,
                                               .channel = options.channel,
                                               .client_id = client_id,
                                               .actor_index = options.actor_index,
                                               .role = options.role,
                                               .incarnation = options.incarnation}));
  common.policy = std::make_unique<QPolicy>(network, common.env_spec.observation_dtype);
  return common;
}

// ---- training -----------------------------------------------------------------------

// What the actor knew when it acted at one step of one environment.
struct StepRecord {
  float q_taken = 0;
  int64_t episode_step = 0;
  int64_t policy_version = 0;
  uint64_t episode_id = 0;
};

// A transition whose priority waits for max_a Q(next_observation, a).
struct Awaiting {
  v1::Item item;
  float q_taken = 0;
};

class TrainingActor {
 public:
  TrainingActor(const ApexActorOptions& options, Common common,
                std::unique_ptr<replay::ReplayWriter> writer, prometheus::Registry* registry)
      : options_(options),
        c_(std::move(common)),
        writer_(std::move(writer)),
        metrics_(registry, "training"),
        num_envs_(options.spec.actors().envs_per_actor()),
        obs_bytes_(c_.env_spec.observation_bytes()),
        builder_(NewNStepBuilder()),
        records_(num_envs_),
        awaiting_(num_envs_),
        episode_id_(num_envs_),
        episode_step_(num_envs_, 0),
        epsilon_(num_envs_),
        previous_observations_(num_envs_ * obs_bytes_),
        rng_(learner::TrainingEnvSeed(options.spec, options.actor_index, 0) ^ 0x5eed) {
    for (int j = 0; j < num_envs_; ++j) {
      epsilon_[j] = learner::ApexActorEpsilon(options.spec, options.actor_index, j);
      episode_id_[j] = NonZeroRandom(id_gen_);
    }
  }

  absl::Status Run(const std::atomic<bool>& stop) {
    // The task to act in comes with the learner's answers (a task sequence's current one).
    int first_task = 0;
    if (options_.spec.has_task_sequence()) {
      const absl::Time give_up = absl::Now() + absl::Seconds(30);
      while (!c_.reporter->connected() && !Stopping(stop) && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(20));
      }
      first_task = c_.reporter->last_response().task_index();
    }
    // The writer was opened for task 0.
    ENGRAM_RETURN_IF_ERROR(first_task == 0 ? StartTask(0) : SwitchTask(first_task));
    Log(absl::StrFormat("actor %d: %d x %s, epsilon %.4g .. %.4g, writing to %s",
                        options_.actor_index, num_envs_,
                        learner::TaskEnvironment(options_.spec, task_).name(), epsilon_.front(),
                        epsilon_.back(), writer_target_));
    const int sync_steps = options_.spec.actors().weight_sync_steps();
    absl::Time next_log = absl::Now() + options_.log_interval;
    int64_t logged_frames = 0;
    absl::Time logged_at = absl::Now();
    for (int64_t step = 0;; ++step) {
      if (Stopping(stop)) break;
      if (options_.spec.has_task_sequence()) {
        if (const int task = AnnouncedTask(); task != task_)
          ENGRAM_RETURN_IF_ERROR(SwitchTask(task));
      }
      if (step % sync_steps == 0) {
        bool changed = false;
        ENGRAM_RETURN_IF_ERROR(SyncWeights(c_, &changed));
        if (changed) {
          Increment(metrics_.weight_updates);
          Set(metrics_.policy_version, static_cast<double>(c_.policy->version()));
        }
      }
      ENGRAM_RETURN_IF_ERROR(Step(stop));
      if (options_.log_interval > absl::ZeroDuration() && absl::Now() >= next_log) {
        const absl::Time now = absl::Now();
        Log(absl::StrFormat(
            "actor %d: %d frames (%.0f/s), %d episodes, recent return %.2f, "
            "weights v%d, %d items unacknowledged",
            options_.actor_index, frames_,
            (frames_ - logged_frames) / absl::ToDoubleSeconds(now - logged_at), episodes_,
            recent_returns_.Mean(), c_.policy->version(), writer_->stats().unacked_items));
        logged_frames = frames_;
        logged_at = now;
        next_log = now + options_.log_interval;
      }
    }
    // Complete transitions are flushed (incomplete n-step windows are dropped) and the
    // final frames reported. When the run is over the learner no longer samples, so a
    // rate-limited table may never take the rest: then the flush gets a few seconds only.
    const bool run_over = c_.reporter->stop_requested();
    Log(absl::StrCat("actor ", options_.actor_index, ": stopping after ", frames_, " frames (",
                     run_over ? "the run is over" : "asked to stop", "); flushing ",
                     writer_->stats().unacked_items, " items"));
    // The frames and episodes first: the learner lingers only a few seconds after a run.
    absl::Status flushed = c_.reporter->Flush(absl::Now() + absl::Seconds(run_over ? 2 : 10));
    if (!flushed.ok()) Log(absl::StrCat("progress report: ", flushed.ToString()));
    absl::Status closed =
        writer_->Close(absl::Now() + (run_over ? absl::Seconds(5) : absl::Seconds(30)));
    if (!closed.ok()) {
      // After the end of the run the undelivered items are not needed (the table may be
      // rate limited or already deleted); otherwise they are lost experience.
      Log(absl::StrCat(
          "replay writer: ", run_over ? "items left undelivered at the end of the run: " : "",
          closed.ToString()));
    }
    return absl::OkStatus();
  }

  void set_writer_target(std::string target) { writer_target_ = std::move(target); }

  // apex_dqn.write_episodic: episodes also go to the episodic store.
  void EnableEpisodicWrites(std::unique_ptr<episodic::EpisodicClient> store) {
    episodic_ = std::move(store);
    const v1::ExperimentSpec& spec = options_.spec;
    projection_ = std::make_unique<RandomProjection>(
        c_.env_spec.observation_elements(),
        spec.episodic_control().has_key_dim() ? spec.episodic_control().key_dim() : 64,
        spec.seed());
    NewEpisodeWriter();
  }

 private:
  actor::NStepBuilder NewNStepBuilder() const {
    const v1::ApexDqnConfig& dqn = learner::DqnAlgorithmConfig(options_.spec);
    return actor::NStepBuilder(num_envs_, dqn.n_step(), static_cast<float>(dqn.gamma()),
                               obs_bytes_);
  }

  void NewEpisodeWriter() {
    episode_writer_ =
        std::make_unique<EpisodeWriter>(episodic_.get(), projection_.get(), num_envs_,
                                        learner::DqnAlgorithmConfig(options_.spec).gamma(),
                                        c_.env_spec.observation_dtype == envs::DType::kFloat32);
  }

  // Builds task `task`'s environments and resets them with the actor's seeds for that task.
  absl::Status StartTask(int task) {
    ENGRAM_ASSIGN_OR_RETURN(vec_, MakeTaskEnvs(options_.spec, task, num_envs_));
    if (vec_->spec().observation_bytes() != obs_bytes_) {
      return absl::InvalidArgumentError(absl::StrCat("task ", task, ": observations of ",
                                                     vec_->spec().observation_bytes(),
                                                     " bytes, the network takes ", obs_bytes_));
    }
    vec_->Reset(learner::TrainingEnvSeed(options_.spec, options_.actor_index, 0, task));
    task_ = task;
    return absl::OkStatus();
  }

  // The learner moved the run to task `task` (task_sequence): experience of the old task
  // still in flight is delivered to its table (best effort: the learner drops that table
  // once it has consolidated), episodes under way are abandoned (not reported, no n-step
  // transitions: they would mix two tasks), and stepping goes on in the new task's
  // environments, writing to its table.
  absl::Status SwitchTask(int task) {
    const int tasks =
        options_.spec.has_task_sequence() ? options_.spec.task_sequence().tasks_size() : 1;
    if (task < 0 || task >= tasks) {
      return absl::InvalidArgumentError(
          absl::StrCat("the learner announced task ", task, " of a sequence of ", tasks));
    }
    // The learner sampled what it needs of the old task before announcing the new one, and
    // the old table's rate limiter no longer moves: a short wait is enough.
    const absl::Status closed = writer_->Close(absl::Now() + absl::Seconds(1));
    if (!closed.ok()) {
      Log(absl::StrCat("actor ", options_.actor_index, ": items of task ", task_,
                       " left undelivered at the switch: ", closed.message()));
    }
    ENGRAM_ASSIGN_OR_RETURN(
        writer_, OpenReplayWriter(options_, replay::ReplayWriterOptions().max_unacked_requests,
                                  &writer_target_, task));
    ENGRAM_RETURN_IF_ERROR(StartTask(task));
    switching_ = false;
    builder_ = NewNStepBuilder();
    for (int j = 0; j < num_envs_; ++j) {
      records_[j].clear();
      awaiting_[j].clear();
      episode_id_[j] = NonZeroRandom(id_gen_);
      episode_step_[j] = 0;
    }
    if (episode_writer_ != nullptr) NewEpisodeWriter();
    Log(absl::StrFormat("actor %d: task %d (%s) from now on, writing to %s", options_.actor_index,
                        task, options_.spec.task_sequence().tasks(task).name(), writer_target_));
    return absl::OkStatus();
  }

  absl::Status Step(const std::atomic<bool>& stop) {
    const torch::Tensor q = c_.policy->Q(vec_->observations(), num_envs_);
    const int num_actions = static_cast<int>(q.size(1));
    const float* qs = q.data_ptr<float>();
    actions_.resize(num_envs_);
    q_taken_.resize(num_envs_);
    for (int j = 0; j < num_envs_; ++j) {
      const float* row = qs + static_cast<int64_t>(j) * num_actions;
      const int greedy = static_cast<int>(std::max_element(row, row + num_actions) - row);
      // This step's max Q is the bootstrap value of the transitions that waited for it.
      for (Awaiting& waiting : awaiting_[j]) {
        const v1::Transition& t = waiting.item.transition();
        waiting.item.set_priority(
            InitialPriority(waiting.q_taken, t.reward(), t.discount(), row[greedy]));
        ENGRAM_RETURN_IF_ERROR(Append(std::move(waiting.item), stop));
      }
      awaiting_[j].clear();
      int action = greedy;
      if (std::uniform_real_distribution<double>(0, 1)(rng_) < epsilon_[j]) {
        action = std::uniform_int_distribution<int>(0, num_actions - 1)(rng_);
      }
      actions_[j] = action;
      q_taken_[j] = row[action];
    }
    std::memcpy(previous_observations_.data(), vec_->observations(), previous_observations_.size());
    ENGRAM_RETURN_IF_ERROR(vec_->Step(actions_));
    frames_ += num_envs_;
    c_.reporter->AddFrames(num_envs_);
    Increment(metrics_.frames, num_envs_);

    truncated_envs_.clear();
    for (int j = 0; j < num_envs_; ++j) {
      if (episode_writer_ != nullptr) {
        episode_writer_->Record(j, previous_observations_.data() + j * obs_bytes_, actions_[j],
                                vec_->rewards()[j]);
      }
      records_[j].push_back(
          {q_taken_[j], episode_step_[j]++, c_.policy->version(), episode_id_[j]});
      const bool done = vec_->done(j);
      const uint8_t* next = done ? vec_->final_observation(j) : vec_->observation(j);
      emitted_.clear();
      builder_.Add(j, previous_observations_.data() + j * obs_bytes_, actions_[j],
                   vec_->rewards()[j], vec_->terminated()[j] != 0, vec_->truncated()[j] != 0, next,
                   &emitted_);
      for (actor::NStepTransition& t : emitted_) {
        const StepRecord record = records_[j].front();
        records_[j].pop_front();
        Awaiting waiting{MakeItem(t, record, epsilon_[j]), record.q_taken};
        if (t.discount == 0) {
          waiting.item.set_priority(InitialPriority(record.q_taken, t.reward, 0, 0));
          ENGRAM_RETURN_IF_ERROR(Append(std::move(waiting.item), stop));
        } else if (done) {
          // A truncated episode bootstraps from its final observation, which no acting
          // forward pass will see: evaluated below, batched over environments.
          truncated_.push_back(std::move(waiting));
          if (truncated_envs_.empty() || truncated_envs_.back() != j) truncated_envs_.push_back(j);
        } else {
          awaiting_[j].push_back(std::move(waiting));
        }
      }
      if (done) FinishEpisode(j);
    }
    if (!truncated_.empty()) ENGRAM_RETURN_IF_ERROR(FlushTruncated(stop));
    return absl::OkStatus();
  }

  absl::Status FlushTruncated(const std::atomic<bool>& stop) {
    std::vector<uint8_t> finals(truncated_envs_.size() * obs_bytes_);
    for (size_t k = 0; k < truncated_envs_.size(); ++k) {
      std::memcpy(finals.data() + k * obs_bytes_, vec_->final_observation(truncated_envs_[k]),
                  obs_bytes_);
    }
    const torch::Tensor max_q =
        std::get<0>(
            c_.policy->Q(finals.data(), static_cast<int64_t>(truncated_envs_.size())).max(1))
            .contiguous();
    for (Awaiting& waiting : truncated_) {
      const int env = waiting.item.transition().provenance().env_index();
      const size_t k =
          std::find(truncated_envs_.begin(), truncated_envs_.end(), env) - truncated_envs_.begin();
      const v1::Transition& t = waiting.item.transition();
      waiting.item.set_priority(InitialPriority(waiting.q_taken, t.reward(), t.discount(),
                                                max_q[static_cast<int64_t>(k)].item<float>()));
      ENGRAM_RETURN_IF_ERROR(Append(std::move(waiting.item), stop));
    }
    truncated_.clear();
    return absl::OkStatus();
  }

  void FinishEpisode(int j) {
    v1::EpisodeResult episode;
    episode.set_episode_return(vec_->episode_return(j));
    episode.set_length(vec_->episode_length(j));
    episode.set_env_index(j);
    episode.set_policy_version(c_.policy->version());
    episode.set_epsilon(epsilon_[j]);
    episode.set_truncated(vec_->truncated()[j] != 0);
    recent_returns_.Add(episode.episode_return());
    Set(metrics_.episode_return, episode.episode_return());
    c_.reporter->AddEpisode(std::move(episode));
    Increment(metrics_.episodes);
    ++episodes_;
    if (episode_writer_ != nullptr) {
      // The store is a side memory here: when it is unreachable the actor goes on.
      const absl::Status written = episode_writer_->Finish(j);
      if (!written.ok() && absl::Now() - episodic_complaint_ > absl::Minutes(1)) {
        Log(absl::StrCat("episodic store: episode not written: ", written.ToString()));
        episodic_complaint_ = absl::Now();
      }
    }
    episode_id_[j] = NonZeroRandom(id_gen_);
    episode_step_[j] = 0;
  }

  v1::Item MakeItem(const actor::NStepTransition& t, const StepRecord& record, double epsilon) {
    v1::Item item;
    item.set_key(keys_.Next());
    v1::Transition* out = item.mutable_transition();
    FillTensor(c_.env_spec, t.observation, out->mutable_observation());
    out->set_action(t.action);
    out->set_reward(t.reward);
    out->set_discount(t.discount);
    FillTensor(c_.env_spec, t.next_observation, out->mutable_next_observation());
    out->set_steps(t.steps);
    out->mutable_behaviour()->set_epsilon(static_cast<float>(epsilon));
    v1::Provenance* provenance = out->mutable_provenance();
    provenance->set_actor_index(options_.actor_index);
    provenance->set_env_index(t.env);
    provenance->set_episode_id(record.episode_id);
    provenance->set_episode_step(record.episode_step);
    provenance->set_policy_version(record.policy_version);
    return item;
  }

  absl::Status Append(v1::Item item, const std::atomic<bool>& stop) {
    // Once the learner has moved on, the old task's table takes no more (its rate limiter
    // waits for samples that will not come): the item is dropped.
    if (switching_) return absl::OkStatus();
    const absl::Status appended = AppendItem(*writer_, item, [&] {
      switching_ = options_.spec.has_task_sequence() && AnnouncedTask() != task_;
      return Stopping(stop) || switching_;
    });
    if (absl::IsNotFound(appended) && options_.spec.has_task_sequence()) {
      // The learner drops a finished task's table some seconds after announcing the next
      // task; an actor that has not heard of the switch yet waits for the announcement.
      const absl::Time give_up = absl::Now() + absl::Seconds(10);
      while (AnnouncedTask() == task_ && !Stopping(stop) && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(50));
      }
      switching_ = AnnouncedTask() != task_;
      if (switching_ || Stopping(stop)) return absl::OkStatus();
    }
    ENGRAM_RETURN_IF_ERROR(appended);
    if (!switching_) Increment(metrics_.items);
    return absl::OkStatus();
  }

  // The task the learner's latest answer names.
  int AnnouncedTask() const { return c_.reporter->last_response().task_index(); }

  // Asked to stop (signal), or the learner says the run is over.
  bool Stopping(const std::atomic<bool>& stop) const {
    return stop.load() || c_.reporter->stop_requested();
  }

  const ApexActorOptions& options_;
  Common c_;
  std::unique_ptr<replay::ReplayWriter> writer_;
  std::string writer_target_;
  std::unique_ptr<episodic::EpisodicClient> episodic_;
  std::unique_ptr<RandomProjection> projection_;
  std::unique_ptr<EpisodeWriter> episode_writer_;
  absl::Time episodic_complaint_ = absl::InfinitePast();
  ActorMetrics metrics_;
  const int num_envs_;
  const size_t obs_bytes_;
  std::unique_ptr<envs::VectorEnv> vec_;
  actor::NStepBuilder builder_;
  std::vector<std::deque<StepRecord>> records_;
  std::vector<std::vector<Awaiting>> awaiting_;
  std::vector<Awaiting> truncated_;
  std::vector<int> truncated_envs_;
  std::vector<uint64_t> episode_id_;
  std::vector<int64_t> episode_step_;
  std::vector<double> epsilon_;
  std::vector<uint8_t> previous_observations_;
  std::vector<int> actions_;
  std::vector<float> q_taken_;
  std::vector<actor::NStepTransition> emitted_;
  int task_ = 0;            // index into task_sequence.tasks
  bool switching_ = false;  // the learner announced another task; not switched yet
  RecentReturns recent_returns_;
  std::mt19937_64 rng_;
  absl::BitGen id_gen_;
  replay::KeyGenerator keys_;
  int64_t frames_ = 0;
  int64_t episodes_ = 0;
};

// ---- evaluation ---------------------------------------------------------------------

absl::Status RunEvaluationActor(const ApexActorOptions& options, Common c,
                                const std::atomic<bool>& stop, prometheus::Registry* registry) {
  return ServeEvaluations(
      options.spec, options.evaluation_max_episode_steps, *c.reporter,
      [&c](int64_t) -> absl::StatusOr<EvaluationPolicy> {
        ENGRAM_RETURN_IF_ERROR(SyncWeights(c));
        return EvaluationPolicy{
            c.policy->version(), [&c](const envs::VectorEnv& vec, std::vector<int>* actions) {
              const torch::Tensor q = c.policy->Q(vec.observations(), vec.num_envs());
              const int num_actions = static_cast<int>(q.size(1));
              const float* qs = q.data_ptr<float>();
              for (int j = 0; j < vec.num_envs(); ++j) {
                const float* row = qs + static_cast<int64_t>(j) * num_actions;
                (*actions)[j] = static_cast<int>(std::max_element(row, row + num_actions) - row);
              }
              return absl::OkStatus();
            }};
      },
      stop, registry);
}

}  // namespace

absl::Status RunApexActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                          prometheus::Registry* registry) {
  if (!options.spec.has_apex_dqn() && !options.spec.has_ewc()) {
    return absl::InvalidArgumentError("algorithm: this actor runs apex_dqn and ewc experiments");
  }
  learner::SetComputeThreads(1);  // several actors share few cores
  const bool training = options.role == v1::ACTOR_ROLE_TRAINING;
  ENGRAM_RETURN_IF_ERROR(CheckActorIndex(options));
  const std::string client_id = absl::StrCat(training ? "actor-" : "eval-", options.actor_index);
  ENGRAM_ASSIGN_OR_RETURN(Common common, Connect(options, client_id));
  ENGRAM_RETURN_IF_ERROR(
      LoadFirstWeights(common, options.learner_address, options.first_weights_timeout, stop));
  if (stop.load()) return absl::OkStatus();
  if (!training) return RunEvaluationActor(options, std::move(common), stop, registry);

  std::string target;
  ENGRAM_ASSIGN_OR_RETURN(
      std::unique_ptr<replay::ReplayWriter> writer,
      OpenReplayWriter(options, replay::ReplayWriterOptions().max_unacked_requests, &target));
  std::unique_ptr<episodic::EpisodicClient> episodic;
  if (learner::DqnAlgorithmConfig(options.spec).write_episodic()) {
    ENGRAM_ASSIGN_OR_RETURN(
        episodic, ConnectEpisodicMemory(options.episodic_address, options.channel, options.spec,
                                        common.env_spec.num_actions));
  }
  TrainingActor actor(options, std::move(common), std::move(writer), registry);
  if (episodic != nullptr) actor.EnableEpisodicWrites(std::move(episodic));
  actor.set_writer_target(std::move(target));
  return actor.Run(stop);
}

absl::Status CheckActorIndex(const ApexActorOptions& options) {
  if (options.role == v1::ACTOR_ROLE_TRAINING &&
      (options.actor_index < 0 || options.actor_index >= options.spec.actors().num_actors())) {
    return absl::InvalidArgumentError(
        absl::StrCat("actor_index: must be in [0, ", options.spec.actors().num_actors(),
                     ") for a training actor, got ", options.actor_index));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<replay::ReplayWriter>> OpenReplayWriter(
    const ApexActorOptions& options, int max_unacked_requests, std::string* target,
    int task_index) {
  const int shard = learner::ShardOfActor(options.spec, options.actor_index);
  if (shard >= static_cast<int>(options.replay_addresses.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("replay addresses: actor ", options.actor_index, " writes to shard ", shard,
                     " of ", options.spec.replay().num_shards(), " but only ",
                     options.replay_addresses.size(), " addresses were given"));
  }
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> replay,
                          CreateChannel(options.replay_addresses[shard], options.channel));
  const std::string table = learner::TaskTable(options.spec, task_index).name();
  *target = absl::StrCat("table \"", table, "\" of replay shard ", shard, " (",
                         options.replay_addresses[shard], ")");
  return replay::ReplayWriter::Create(
      replay, {.table = table,
               .max_items_per_request = options.spec.actors().insert_batch_size(),
               .max_unacked_requests = max_unacked_requests});
}

}  // namespace engram::actor
