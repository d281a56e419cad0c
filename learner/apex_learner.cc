#include "learner/apex_learner.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/files.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/status.h"
#include "common/status_macros.h"
#include "common/text_proto.h"
#include "engram/v1/replay.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "learner/apex_config.h"
#include "learner/core/dqn.h"
#include "learner/core/ewc.h"
#include "learner/core/meta_rl.h"
#include "learner/experiment_spec.h"
#include "learner/learner_checkpoint.pb.h"
#include "learner/meta_rl_batch.h"
#include "learner/run_recorder.h"
#include "learner/weights.h"
#include "replay_server/client/sampler.h"
#include "torch/torch.h"

namespace engram::learner {
namespace {

namespace fs = std::filesystem;

constexpr char kCheckpointPrefix[] = "ckpt-";
constexpr char kModelFile[] = "learner.pt";
constexpr char kEwcFile[] = "ewc.pt";
constexpr char kStateFile[] = "state.textproto";

absl::StatusOr<FoundCheckpoint> ReadCheckpoint(const std::string& dir,
                                               const v1::ExperimentSpec& resolved) {
  LearnerCheckpointState state;
  absl::Status read = ReadTextProtoFile((fs::path(dir) / kStateFile).string(), &state);
  if (!read.ok())
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", read.message()));
  if (state.spec().algorithm_case() != resolved.algorithm_case()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint.restore_from: checkpoint ", dir,
                     " was written by another algorithm than this spec's"));
  }
  if (!fs::exists(fs::path(dir) / kModelFile)) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", kModelFile, " is missing"));
  }
  for (const CheckpointFile& file : state.files()) {
    if (file.name().empty() || file.name().find('/') != std::string::npos) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", dir, ": ", kStateFile, " lists a bad file name"));
    }
    absl::StatusOr<FileDigest> digest = DigestFile((fs::path(dir) / file.name()).string());
    if (!digest.ok()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", digest.status().message()));
    }
    if (digest->bytes != file.bytes() || digest->crc32 != file.crc32()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", file.name(),
                                              " is damaged (", digest->bytes, " bytes, crc32 ",
                                              digest->crc32, "; ", kStateFile, " recorded ",
                                              file.bytes(), " bytes, crc32 ", file.crc32(), ")"));
    }
  }
  FoundCheckpoint found;
  found.path = dir;
  RunCounters& c = found.counters;
  c.frames = state.frames();
  c.episodes = state.episodes();
  c.updates = state.updates();
  c.parameter_version = state.parameter_version();
  c.elapsed = absl::Seconds(state.elapsed_seconds());
  c.evaluations_requested = state.evaluations_requested();
  c.next_evaluation_frames = state.next_evaluation_frames();
  c.eval_return = state.eval_return();
  c.task_phase = state.task_phase();
  c.task_eval_returns.assign(state.task_eval_returns().begin(), state.task_eval_returns().end());
  if (resolved.has_ewc() && !fs::exists(fs::path(dir) / kEwcFile)) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", kEwcFile, " is missing"));
  }
  return found;
}

// Checkpoint directories under `dir`, oldest first (names sort by update count).
std::vector<std::string> ListCheckpoints(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind(kCheckpointPrefix, 0) == 0 &&
        fs::exists(entry.path() / kStateFile)) {
      found.push_back(entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// A merged batch as tensors (transitions for DQN, chunks for meta-RL), with what the loop
// needs besides.
struct PreparedBatch {
  std::variant<DqnBatch, MetaRlBatch> batch;
  std::vector<uint64_t> keys;
  std::vector<int64_t> policy_versions;
};

// What the training loop needs from an algorithm's learner/core learner.
class Trainer {
 public:
  struct Result {
    double loss = 0;
    std::vector<double> priorities;  // new priorities of the batch's keys; empty: none
    double penalty = 0;              // EWC penalty added to the loss (0 without)
  };
  virtual ~Trainer() = default;
  // Reads / writes the trainer's files in checkpoint directory `dir`; "" or why not.
  virtual std::string Load(const std::string& dir) = 0;
  virtual std::string Save(const std::string& dir) const = 0;
  virtual NamedWeights ExportWeights() const = 0;
  virtual int64_t updates() const = 0;
  // Importance-sampling beta at `frames`; nullopt for tables without priorities.
  virtual std::optional<double> BetaAt(int64_t frames) const = 0;
  virtual absl::StatusOr<PreparedBatch> Prepare(const replay::ShardedSampler::Batch& batch,
                                                const v1::TableSpec& table, bool pinned) = 0;
  virtual Result Update(const PreparedBatch& prepared) = 0;
  // Task sequences: minibatches of a finished task's replay the trainer wants (0: none),
  // and the end of that task with them (EWC consolidates); returns what it did, for the log.
  virtual int TaskEndBatches() const { return 0; }
  virtual std::string EndTask(const std::vector<PreparedBatch>& /*batches*/) { return ""; }
};

// DQN (apex_dqn), optionally consolidated by EWC between tasks (ewc).
class DqnTrainer final : public Trainer {
 public:
  // `ewc`: null for apex_dqn. `fisher_minibatches`: M of ewc.
  DqnTrainer(std::unique_ptr<DqnLearner> learner, std::unique_ptr<ElasticWeights> ewc,
             int fisher_minibatches)
      : learner_(std::move(learner)),
        ewc_(std::move(ewc)),
        fisher_minibatches_(fisher_minibatches) {}

  std::string Load(const std::string& dir) override {
    if (std::string error = learner_->Load((fs::path(dir) / kModelFile).string()); !error.empty()) {
      return error;
    }
    if (ewc_ == nullptr) return "";
    if (std::string error = ewc_->Load((fs::path(dir) / kEwcFile).string(), learner_->device());
        !error.empty()) {
      return error;
    }
    InstallPenalty();
    return "";
  }
  std::string Save(const std::string& dir) const override {
    if (std::string error = learner_->Save((fs::path(dir) / kModelFile).string()); !error.empty()) {
      return error;
    }
    return ewc_ == nullptr ? "" : ewc_->Save((fs::path(dir) / kEwcFile).string());
  }

  // Fine-tuning (lambda 0) needs no Fisher.
  int TaskEndBatches() const override {
    return ewc_ != nullptr && ewc_->options().lambda > 0 ? fisher_minibatches_ : 0;
  }

  std::string EndTask(const std::vector<PreparedBatch>& batches) override {
    if (ewc_ == nullptr || batches.empty()) return "";
    std::vector<DqnBatch> dqn;
    for (const PreparedBatch& prepared : batches) dqn.push_back(std::get<DqnBatch>(prepared.batch));
    const NamedTensorList fisher = DqnFisher(*learner_, dqn);
    std::vector<torch::Tensor> flat;
    for (const auto& [name, f] : fisher) flat.push_back(f.flatten());
    const torch::Tensor all = torch::cat(flat);
    ewc_->Consolidate(learner_->online(), fisher);
    InstallPenalty();
    return absl::StrFormat("Fisher of %d parameters: mean %.3g, max %.3g; %d EWC term(s)",
                           all.numel(), all.mean().item<double>(), all.max().item<double>(),
                           ewc_->terms());
  }
  NamedWeights ExportWeights() const override { return learner_->ExportWeights(); }
  int64_t updates() const override { return learner_->updates(); }
  std::optional<double> BetaAt(int64_t frames) const override { return learner_->BetaAt(frames); }

  absl::StatusOr<PreparedBatch> Prepare(const replay::ShardedSampler::Batch& batch,
                                        const v1::TableSpec& table, bool pinned) override {
    const int64_t n = static_cast<int64_t>(batch.items.size());
    const v1::TensorSpec& obs_spec = table.signature().observation();
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), obs_spec.shape().begin(), obs_spec.shape().end());
    const torch::ScalarType dtype =
        obs_spec.dtype() == v1::DTYPE_UINT8 ? torch::kUInt8 : torch::kFloat32;
    // Pinned host memory lets the copy to a CUDA device run asynchronously.
    const torch::TensorOptions host = torch::TensorOptions().dtype(dtype).pinned_memory(pinned);
    const torch::TensorOptions host_float =
        torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(pinned);
    PreparedBatch out;
    DqnBatch& b = out.batch.emplace<DqnBatch>();
    b.observations = torch::empty(shape, host);
    b.next_observations = torch::empty(shape, host);
    b.actions =
        torch::empty({n}, torch::TensorOptions().dtype(torch::kInt64).pinned_memory(pinned));
    b.rewards = torch::empty({n}, host_float);
    b.discounts = torch::empty({n}, host_float);
    b.weights = torch::empty({n}, host_float);
    const size_t row_bytes = b.observations.nbytes() / std::max<int64_t>(n, 1);
    uint8_t* obs = static_cast<uint8_t*>(b.observations.data_ptr());
    uint8_t* next = static_cast<uint8_t*>(b.next_observations.data_ptr());
    int64_t* actions = b.actions.data_ptr<int64_t>();
    float* rewards = b.rewards.data_ptr<float>();
    float* discounts = b.discounts.data_ptr<float>();
    float* weights = b.weights.data_ptr<float>();
    out.keys.resize(n);
    out.policy_versions.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const v1::SampledItem& sampled = batch.items[i];
      const v1::Transition& t = sampled.item().transition();
      if (t.observation().data().size() != row_bytes ||
          t.next_observation().data().size() != row_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sampled item ", sampled.item().key(), " of table \"", table.name(),
            "\": observation of ", t.observation().data().size(), " bytes, expected ", row_bytes));
      }
      std::memcpy(obs + i * row_bytes, t.observation().data().data(), row_bytes);
      std::memcpy(next + i * row_bytes, t.next_observation().data().data(), row_bytes);
      actions[i] = t.action();
      rewards[i] = t.reward();
      discounts[i] = t.discount();
      weights[i] = static_cast<float>(sampled.importance_weight());
      out.keys[i] = sampled.item().key();
      out.policy_versions[i] = t.has_provenance() ? t.provenance().policy_version() : -1;
    }
    return out;
  }

  Result Update(const PreparedBatch& prepared) override {
    DqnLearner::UpdateResult result = learner_->Update(std::get<DqnBatch>(prepared.batch));
    const float* p = result.new_priorities.data_ptr<float>();
    return {result.loss, std::vector<double>(p, p + result.new_priorities.numel()),
            result.extra_loss};
  }

 private:
  // From the first consolidated term on, every update minimizes TD loss + EWC penalty.
  void InstallPenalty() {
    if (ewc_->terms() == 0 || penalty_installed_) return;
    learner_->SetExtraLoss([ewc = ewc_.get()](const QNetwork& q) { return ewc->Penalty(q); });
    penalty_installed_ = true;
  }

  std::unique_ptr<DqnLearner> learner_;
  std::unique_ptr<ElasticWeights> ewc_;
  const int fisher_minibatches_;
  bool penalty_installed_ = false;
};

class MetaRlTrainer final : public Trainer {
 public:
  MetaRlTrainer(std::unique_ptr<MetaRlLearner> learner, ChunkLayout layout)
      : learner_(std::move(learner)), layout_(std::move(layout)) {}
  std::string Load(const std::string& dir) override {
    return learner_->Load((fs::path(dir) / kModelFile).string());
  }
  std::string Save(const std::string& dir) const override {
    return learner_->Save((fs::path(dir) / kModelFile).string());
  }
  NamedWeights ExportWeights() const override { return learner_->ExportWeights(); }
  int64_t updates() const override { return learner_->updates(); }
  std::optional<double> BetaAt(int64_t) const override { return std::nullopt; }

  absl::StatusOr<PreparedBatch> Prepare(const replay::ShardedSampler::Batch& batch,
                                        const v1::TableSpec& table, bool pinned) override {
    std::vector<const v1::TrajectoryChunk*> chunks;
    PreparedBatch out;
    for (const v1::SampledItem& sampled : batch.items) {
      if (!sampled.item().has_chunk()) {
        return absl::InvalidArgumentError(absl::StrCat("sampled item ", sampled.item().key(),
                                                       " of table \"", table.name(),
                                                       "\" is not a trajectory chunk"));
      }
      chunks.push_back(&sampled.item().chunk());
      out.keys.push_back(sampled.item().key());
      const v1::TrajectoryChunk& c = sampled.item().chunk();
      out.policy_versions.push_back(c.has_provenance() ? c.provenance().policy_version() : -1);
    }
    absl::StatusOr<MetaRlBatch> converted = ChunksToBatch(chunks, layout_, pinned);
    if (!converted.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("table \"", table.name(), "\": ", converted.status().message()));
    }
    out.batch = *std::move(converted);
    return out;
  }

  Result Update(const PreparedBatch& prepared) override {
    const MetaRlLearner::UpdateResult result =
        learner_->Update(std::get<MetaRlBatch>(prepared.batch));
    return {result.loss, {}};
  }

 private:
  std::unique_ptr<MetaRlLearner> learner_;
  ChunkLayout layout_;
};

// Bounded queue between two threads.
template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}
  // False when closed or `deadline` passed first.
  bool Push(T value, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || items_.size() < capacity_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&room), deadline) || closed_) return false;
    items_.push_back(std::move(value));
    return true;
  }
  std::optional<T> Pop(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !items_.empty(); };
    mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    if (items_.empty()) return std::nullopt;
    T value = std::move(items_.front());
    items_.pop_front();
    return value;
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  // Empties the queue and opens it again (after Close, with no thread using it).
  void Reopen() {
    absl::MutexLock lock(&mu_);
    items_.clear();
    closed_ = false;
  }

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

std::string FormatReturn(const v1::ReturnSummary& summary) {
  return summary.episodes() > 0 ? absl::StrFormat("%.2f", summary.mean()) : std::string("-");
}

}  // namespace

absl::StatusOr<std::optional<FoundCheckpoint>> FindCheckpoint(const v1::ExperimentSpec& resolved) {
  const v1::CheckpointSpec& spec = resolved.checkpoint();
  if (!spec.restore_from().empty()) {
    if (!fs::exists(fs::path(spec.restore_from()) / kStateFile)) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint.restore_from: \"",
                                                     spec.restore_from(),
                                                     "\" is not a learner checkpoint directory"));
    }
    ENGRAM_ASSIGN_OR_RETURN(FoundCheckpoint found, ReadCheckpoint(spec.restore_from(), resolved));
    return std::optional<FoundCheckpoint>(std::move(found));
  }
  if (spec.directory().empty()) return std::optional<FoundCheckpoint>();
  const std::vector<std::string> all = ListCheckpoints(spec.directory());
  if (all.empty()) return std::optional<FoundCheckpoint>();
  ENGRAM_ASSIGN_OR_RETURN(FoundCheckpoint found, ReadCheckpoint(all.back(), resolved));
  return std::optional<FoundCheckpoint>(std::move(found));
}

class ApexLearner::Impl {
 public:
  Impl(ApexLearnerOptions options, RunState* state, ParameterServiceImpl* parameters,
       prometheus::Registry* registry)
      : options_(std::move(options)),
        state_(state),
        parameters_(parameters),
        batches_(options_.prefetch_batches),
        priorities_(64) {
    if (registry != nullptr) {
      updates_total_ =
          &AddCounter(*registry, "learner_updates_total", "Gradient steps taken by the learner.")
               .Add({});
      frames_gauge_ = &AddGauge(*registry, "learner_frames",
                                "Training frames of the run, all actors (from their reports).")
                           .Add({});
      loss_gauge_ = &AddGauge(*registry, "learner_loss", "Loss of the latest update.").Add({});
      train_return_ = &AddGauge(*registry, "learner_train_return",
                                "Mean return of the last 100 training episodes.")
                           .Add({});
      eval_return_ =
          &AddGauge(*registry, "learner_eval_return", "Mean return of the latest evaluation.")
               .Add({});
      policy_lag_ = &AddGauge(*registry, "learner_policy_lag_versions",
                              "Mean policy lag of sampled items, in parameter versions.")
                         .Add({});
      version_gauge_ =
          &AddGauge(*registry, "learner_parameter_version", "Latest published parameter version.")
               .Add({});
      update_seconds_ = &AddHistogram(*registry, "learner_update_seconds",
                                      "Time of one gradient step (forward, backward, "
                                      "optimizer).")
                             .Add({}, LatencyBuckets());
      wait_seconds_ = &AddCounter(*registry, "learner_batch_wait_seconds_total",
                                  "Time the training step waited for a prepared batch.")
                           .Add({});
      penalty_gauge_ = &AddGauge(*registry, "learner_ewc_penalty",
                                 "EWC penalty of the latest update (0 before any consolidation).")
                            .Add({});
      task_gauge_ = &AddGauge(*registry, "learner_task",
                              "Index of the task of task_sequence being trained (0 without one).")
                         .Add({});
      task_eval_return_ = &AddGauge(*registry, "learner_task_eval_return",
                                    "Mean return of each task of a task sequence in the latest "
                                    "evaluation (forgetting curves).");
    }
  }

  ~Impl() { StopThreads(); }

  absl::Status Init(const std::optional<FoundCheckpoint>& restore) {
    const std::string device_name =
        options_.device.empty() ? options_.spec.learner_device() : options_.device;
    if (const std::string error = ParseDevice(device_name.empty() ? "cpu" : device_name, &device_);
        !error.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("device: ", error));
    }
    // Same initial weights for the same seed.
    torch::manual_seed(options_.spec.seed());
    ENGRAM_ASSIGN_OR_RETURN(learner_, MakeTrainer());
    version_ = 0;
    if (restore.has_value()) {
      if (const std::string load = learner_->Load(restore->path); !load.empty()) {
        return absl::DataLossError(absl::StrCat("restore ", restore->path, ": ", load));
      }
      version_ = restore->counters.parameter_version;
      phase_ = restore->counters.task_phase;
      Log(absl::StrFormat("resumed from %s: %d frames, %d updates, weights v%d", restore->path,
                          restore->counters.frames, learner_->updates(), version_));
    }
    state_->SetUpdates(learner_->updates());
    state_->SetTaskPhase(phase_);
    if (task_gauge_ != nullptr) task_gauge_->Set(TaskOfPhase(phase_));
    table_ = TaskTable(options_.spec, TaskOfPhase(phase_));
    ENGRAM_RETURN_IF_ERROR(ConnectReplay(/*fresh=*/!restore.has_value()));
    ENGRAM_RETURN_IF_ERROR(Publish());
    return absl::OkStatus();
  }

  absl::Status Run(const std::atomic<bool>& stop) {
    ENGRAM_ASSIGN_OR_RETURN(
        recorder_, RunRecorder::Open(options_.output_dir, state_, eval_return_, task_eval_return_));
    StartThreads();
    const int64_t batch_size = BatchSize();
    Log(
        absl::StrFormat("training on %s: batch %d, table \"%s\" on %d shard(s), publishing every "
                        "%d updates",
                        device_.str(), batch_size, table_.name(), shard_channels_.size(),
                        options_.publish_every_updates));
    absl::Time next_log = absl::Now() + options_.log_interval;
    absl::Time next_csv = absl::Now() + options_.csv_interval;
    absl::Time next_checkpoint = CheckpointInterval() > absl::ZeroDuration()
                                     ? absl::Now() + CheckpointInterval()
                                     : absl::InfiniteFuture();
    absl::Time waiting_since = absl::Now();
    double beta = -1;
    std::optional<std::string> spent;
    while (!stop.load()) {
      if ((spent = state_->BudgetSpent())) break;
      if (absl::Status error = TakeBackgroundError(); !error.ok()) return Fail(error);
      if (const TaskPhase at = TaskPhaseAt(options_.spec, state_->frames()); at.phase > phase_) {
        if (absl::Status switched = SwitchTask(at, stop); !switched.ok()) return Fail(switched);
        waiting_since = absl::Now();
        continue;
      }
      DropFinishedTable(/*now=*/false);
      const absl::Time now = absl::Now();
      if (now >= next_log) {
        LogProgress(waiting_since);
        next_log = now + options_.log_interval;
      }
      if (now >= next_csv) {
        recorder_->WriteProgressRow({replay_size_, last_loss_, last_penalty_});
        next_csv = now + options_.csv_interval;
      }
      recorder_->WriteEvaluationRows();
      if (now >= next_checkpoint) {
        ENGRAM_RETURN_IF_ERROR(WriteCheckpoint());
        next_checkpoint = now + CheckpointInterval();
      }
      const absl::Time wait_start = absl::Now();
      std::optional<PreparedBatch> prepared = batches_.Pop(absl::Now() + absl::Milliseconds(200));
      if (wait_seconds_ != nullptr) {
        wait_seconds_->Increment(absl::ToDoubleSeconds(absl::Now() - wait_start));
      }
      if (!prepared.has_value()) continue;
      waiting_since = absl::InfiniteFuture();
      const std::optional<double> new_beta = learner_->BetaAt(state_->frames());
      if (new_beta.has_value() && std::abs(*new_beta - beta) > 1e-3) {
        beta = *new_beta;
        ENGRAM_RETURN_IF_ERROR(sampler_->SetBeta(beta));
      }
      const absl::Time update_start = absl::Now();
      Trainer::Result result = learner_->Update(*prepared);
      if (update_seconds_ != nullptr) {
        update_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - update_start));
      }
      if (updates_total_ != nullptr) updates_total_->Increment();
      if (!std::isfinite(result.loss) || !std::isfinite(result.penalty)) {
        // Training on from here would only spread NaN into every weight and checkpoint.
        return Fail(absl::InternalError(absl::StrFormat(
            "learner: the loss diverged at update %d (TD loss %g, EWC penalty %g); the last "
            "checkpoint is intact: lower the learning rate%s",
            learner_->updates(), result.loss, result.penalty,
            options_.spec.has_ewc() ? " or ewc.lambda" : "")));
      }
      if (loss_gauge_ != nullptr) loss_gauge_->Set(result.loss);
      if (penalty_gauge_ != nullptr) penalty_gauge_->Set(result.penalty);
      state_->SetUpdates(learner_->updates());
      last_loss_ = result.loss;
      last_penalty_ = result.penalty;
      RecordLag(*prepared);
      if (!result.priorities.empty()) {
        PriorityUpdate update{std::move(prepared->keys), std::move(result.priorities)};
        // The queue is bounded: when the shards are slow to take updates, training waits
        // rather than piling them up.
        while (!priorities_.Push(std::move(update), absl::Now() + absl::Seconds(1))) {
          if (stop.load()) break;
        }
      }
      if (learner_->updates() % options_.publish_every_updates == 0) {
        ENGRAM_RETURN_IF_ERROR(Publish());
      }
    }
    if (!spent.has_value()) {
      // Asked to stop (SIGTERM): keep the actors running for a restarted learner.
      Log("stopping: writing a checkpoint");
      StopThreads();
      ENGRAM_RETURN_IF_ERROR(WriteCheckpoint());
      recorder_->WriteProgressRow({replay_size_, last_loss_, last_penalty_});
      return absl::OkStatus();
    }
    return FinishRun(*spent, stop);
  }

  std::string device() const { return device_.str(); }

  // ---- task sequences ----------------------------------------------------------------

  // Deletes table `name` on every shard (best effort, logged).
  void DropTable(const std::string& name) {
    for (size_t i = 0; i < shard_stubs_.size(); ++i) {
      const absl::StatusOr<int64_t> dropped = DeleteTable(*shard_stubs_[i], name);
      if (!dropped.ok()) {
        Log(absl::StrCat("replay shard ", i, ": could not delete table \"", name,
                         "\": ", dropped.status().message()));
      }
    }
  }

  // The finished task's table, once its actors have moved on.
  void DropFinishedTable(bool now) {
    if (!pending_drop_.has_value() || (!now && absl::Now() < pending_drop_->at)) return;
    DropTable(pending_drop_->table);
    pending_drop_.reset();
  }

  int TaskOfPhase(int phase) const {
    return options_.spec.has_task_sequence() ? phase % options_.spec.task_sequence().tasks_size()
                                             : 0;
  }

  // The run's frames reached the end of phase_: the finished task's Fisher batches are
  // sampled while its actors still feed its table (the rate limiter lets sampling run only
  // as far as inserts allow), the next task's table is created on every shard, the actors
  // are told to switch, the trainer ends the task (EWC: Fisher, anchor, penalty), an
  // evaluation of every task seen so far is requested, the finished task's table is dropped
  // and training resumes on the new one. A checkpoint follows when checkpointing is on.
  absl::Status SwitchTask(const TaskPhase& at, const std::atomic<bool>& stop) {
    const v1::TaskSequence& sequence = options_.spec.task_sequence();
    const int old_task = TaskOfPhase(phase_);
    Log(
        absl::StrFormat("task sequence: task %d (%s) done at %d frames; next: task %d (%s), "
                        "phase %d of %d",
                        old_task, sequence.tasks(old_task).name(), state_->frames(), at.task_index,
                        sequence.tasks(at.task_index).name(), at.phase + 1,
                        sequence.tasks_size() * sequence.cycles()));
    StopThreads();
    std::vector<PreparedBatch> batches;
    const int wanted = learner_->TaskEndBatches();
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (static_cast<int>(batches.size()) < wanted && !stop.load() && absl::Now() < give_up) {
      absl::StatusOr<replay::ShardedSampler::Batch> batch =
          sampler_->Next(std::min(give_up, absl::Now() + absl::Seconds(1)));
      if (absl::IsDeadlineExceeded(batch.status())) continue;
      ENGRAM_RETURN_IF_ERROR(batch.status());
      ENGRAM_ASSIGN_OR_RETURN(PreparedBatch prepared,
                              learner_->Prepare(*batch, table_, /*pinned=*/false));
      batches.push_back(std::move(prepared));
    }
    if (static_cast<int>(batches.size()) < wanted) {
      Log(
          absl::StrFormat("task %d: only %d of %d minibatches for its Fisher could be sampled "
                          "from table \"%s\"",
                          old_task, batches.size(), wanted, table_.name()));
    }
    const v1::TableSpec old_table = table_;
    table_ = TaskTable(options_.spec, at.task_index);
    const bool new_table = table_.name() != old_table.name();
    if (new_table) ENGRAM_RETURN_IF_ERROR(CreateTables(/*fresh=*/true));
    phase_ = at.phase;
    state_->SetTaskPhase(phase_);  // actors switch with their next report
    if (task_gauge_ != nullptr) task_gauge_->Set(at.task_index);
    if (!batches.empty()) {
      const absl::Time start = absl::Now();
      const std::string done = learner_->EndTask(batches);
      Log(absl::StrFormat("task %d consolidated: Fisher of %d transitions in %.1f s (%s)", old_task,
                          batches.size() * BatchSize(), absl::ToDoubleSeconds(absl::Now() - start),
                          done));
    } else if (wanted > 0) {
      Log(absl::StrCat("task ", old_task,
                       ": no replay to estimate its Fisher from; not consolidated"));
    }
    if (state_->has_evaluation_actor()) {
      Log(absl::StrCat("evaluation ", state_->RequestEvaluation(),
                       " requested: every task seen so far, at the switch"));
    }
    // Actors learn of the switch with their next report (every second): until they have,
    // their inserts still go to the old table, so it is dropped a little later.
    if (new_table) pending_drop_ = PendingDrop{old_table.name(), absl::Now() + absl::Seconds(15)};
    ENGRAM_RETURN_IF_ERROR(MakeSampler());
    StartThreads();
    return WriteCheckpoint();  // OK without checkpointing
  }

  absl::StatusOr<std::unique_ptr<Trainer>> MakeTrainer() {
    std::string error;
    if (options_.spec.has_meta_rl()) {
      ENGRAM_ASSIGN_OR_RETURN(MetaRlConfig config, MetaRlLearnerConfig(options_.spec));
      std::unique_ptr<MetaRlLearner> learner = MetaRlLearner::Create(config, device_, &error);
      if (learner == nullptr) return absl::InvalidArgumentError(absl::StrCat("meta_rl: ", error));
      ENGRAM_ASSIGN_OR_RETURN(EnvironmentInfo env,
                              DescribeEnvironment(options_.spec.environment()));
      ChunkLayout layout{.unroll_length = options_.spec.meta_rl().unroll_length(),
                         .observation_shape = env.observation_shape,
                         .observation_dtype = env.observation_dtype,
                         .num_actions = env.num_actions,
                         .lstm_size = config.network.lstm_size};
      return std::unique_ptr<Trainer>(
          std::make_unique<MetaRlTrainer>(std::move(learner), std::move(layout)));
    }
    ENGRAM_ASSIGN_OR_RETURN(DqnConfig config, ApexLearnerConfig(options_.spec));
    std::unique_ptr<DqnLearner> learner = DqnLearner::Create(config, device_, &error);
    if (learner == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(DqnAlgorithmPath(options_.spec), ": ", error));
    }
    std::unique_ptr<ElasticWeights> ewc;
    int fisher_minibatches = 0;
    if (options_.spec.has_ewc()) {
      const v1::EwcConfig& spec = options_.spec.ewc();
      const EwcOptions ewc_options{
          .lambda = spec.lambda(), .online = spec.online(), .online_gamma = spec.online_gamma()};
      if (const std::string invalid = ewc_options.Validate(); !invalid.empty()) {
        return absl::InvalidArgumentError(invalid);
      }
      ewc = std::make_unique<ElasticWeights>(ewc_options);
      fisher_minibatches = spec.fisher_minibatches();
    }
    return std::unique_ptr<Trainer>(
        std::make_unique<DqnTrainer>(std::move(learner), std::move(ewc), fisher_minibatches));
  }

  int BatchSize() const {
    return options_.spec.has_meta_rl() ? options_.spec.meta_rl().batch_size()
                                       : DqnAlgorithmConfig(options_.spec).batch_size();
  }

  // The run is over: frees its replay memory on every shard (best effort).
  void DropReplayTables() {
    DropFinishedTable(/*now=*/true);
    DropTable(table_.name());
  }

 private:
  struct PriorityUpdate {
    std::vector<uint64_t> keys;
    std::vector<double> priorities;
  };

  absl::Duration CheckpointInterval() const {
    const v1::CheckpointSpec& spec = options_.spec.checkpoint();
    if (spec.directory().empty()) return absl::ZeroDuration();
    return absl::Seconds(spec.interval().seconds()) + absl::Nanoseconds(spec.interval().nanos());
  }

  // Deletes table `name` on one shard: the items it held, -1 when there was none.
  absl::StatusOr<int64_t> DeleteTable(v1::ReplayService::Stub& stub, const std::string& name) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    context.set_wait_for_ready(true);
    v1::DeleteTableRequest request;
    request.set_name(name);
    v1::DeleteTableResponse response;
    const absl::Status status = FromGrpc(stub.DeleteTable(&context, request, &response));
    if (absl::IsNotFound(status)) return -1;
    if (!status.ok()) return status;
    return response.items_removed();
  }

  // Connects to every shard and creates table_ on each (see CreateTables), then the sampler.
  absl::Status ConnectReplay(bool fresh) {
    for (const std::string& address : options_.replay_addresses) {
      ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                              CreateChannel(address, options_.channel));
      shard_stubs_.push_back(v1::ReplayService::NewStub(channel));
      shard_channels_.push_back(std::move(channel));
    }
    ENGRAM_RETURN_IF_ERROR(CreateTables(fresh));
    return MakeSampler();
  }

  // Creates table_ on every shard. A fresh table first drops a table of the same name left
  // by an earlier experiment (its items are not this run's experience); a resumed run keeps
  // what the shards hold.
  absl::Status CreateTables(bool fresh) {
    for (size_t i = 0; i < shard_stubs_.size(); ++i) {
      const std::string& address = options_.replay_addresses[i];
      v1::ReplayService::Stub& stub = *shard_stubs_[i];
      // The shard may still be starting: retry UNAVAILABLE for a while.
      const absl::Time give_up = absl::Now() + absl::Seconds(60);
      while (true) {
        if (fresh) {
          const absl::StatusOr<int64_t> dropped = DeleteTable(stub, table_.name());
          if (dropped.ok() && *dropped >= 0) {
            Log(absl::StrCat("replay shard ", i, " (", address, "): dropped table \"",
                             table_.name(), "\" of an earlier run (", *dropped, " items)"));
          }
          if (!dropped.ok() && absl::Now() < give_up) continue;
        }
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
        context.set_wait_for_ready(true);
        v1::CreateTableRequest request;
        *request.mutable_spec() = table_;
        v1::CreateTableResponse response;
        const absl::Status status = FromGrpc(stub.CreateTable(&context, request, &response));
        if (status.ok()) {
          Log(absl::StrCat("replay shard ", i, " (", address, "): table \"", table_.name(), "\" ",
                           response.created() ? "created" : "already there"));
          break;
        }
        if (!absl::IsUnavailable(status) && !absl::IsDeadlineExceeded(status)) {
          return absl::Status(status.code(), absl::StrCat("replay shard ", i, " (", address,
                                                          "): CreateTable: ", status.message()));
        }
        if (absl::Now() >= give_up) {
          return absl::UnavailableError(absl::StrCat("replay shard ", i, " (", address,
                                                     ") unreachable for 60 s: ", status.message()));
        }
      }
    }
    return absl::OkStatus();
  }

  // A sampler of table_ over every shard.
  absl::Status MakeSampler() {
    ENGRAM_ASSIGN_OR_RETURN(
        sampler_,
        replay::ShardedSampler::Create(
            shard_channels_, {.table = table_.name(),
                              .batch_size = BatchSize(),
                              .importance_beta = learner_->BetaAt(state_->frames()).value_or(0)}));
    return absl::OkStatus();
  }

  absl::Status Publish() {
    v1::ParameterSet set;
    ENGRAM_RETURN_IF_ERROR(EncodeWeights(learner_->ExportWeights(), &set));
    set.set_experiment_id(options_.spec.id());
    set.set_version(version_ + 1);
    set.set_learner_updates(learner_->updates());
    set.set_frames(state_->frames());
    ENGRAM_ASSIGN_OR_RETURN(version_, parameters_->Publish(std::move(set)));
    state_->SetParameterVersion(version_);
    if (version_gauge_ != nullptr) version_gauge_->Set(static_cast<double>(version_));
    return absl::OkStatus();
  }

  // ---- background threads ---------------------------------------------------------------

  void Prefetch() {
    absl::Time last_wait_log = absl::Now();
    while (!stopping_.load()) {
      absl::StatusOr<replay::ShardedSampler::Batch> batch =
          sampler_->Next(absl::Now() + absl::Milliseconds(500));
      if (absl::IsDeadlineExceeded(batch.status())) {
        if (absl::Now() - last_wait_log > absl::Seconds(30)) {
          Log(absl::StrCat("waiting for replay data: ", batch.status().message()));
          last_wait_log = absl::Now();
        }
        continue;
      }
      if (!batch.ok()) {
        Log(absl::StrCat("sampling: ", batch.status().ToString()));
        if (absl::IsNotFound(batch.status()) || absl::IsInvalidArgument(batch.status())) {
          SetBackgroundError(batch.status());
          return;
        }
        continue;
      }
      absl::StatusOr<PreparedBatch> prepared = learner_->Prepare(*batch, table_, device_.is_cuda());
      if (!prepared.ok()) {
        SetBackgroundError(prepared.status());
        return;
      }
      while (!batches_.Push(*std::move(prepared), absl::Now() + absl::Milliseconds(500))) {
        if (stopping_.load()) return;
      }
    }
  }

  void SendPriorities() {
    while (true) {
      std::optional<PriorityUpdate> update = priorities_.Pop(absl::InfiniteFuture());
      if (!update.has_value()) return;  // closed and drained
      const absl::Status status = sampler_->UpdatePriorities(update->keys, update->priorities);
      // NOT_FOUND: keys the sampler no longer remembers (old batches); harmless.
      if (!status.ok() && !absl::IsNotFound(status)) {
        Log(absl::StrCat("priority update: ", status.ToString()));
      }
    }
  }

  void StartThreads() {
    stopping_.store(false);
    batches_.Reopen();
    priorities_.Reopen();
    prefetcher_ = std::thread([this] { Prefetch(); });
    priority_thread_ = std::thread([this] { SendPriorities(); });
  }

  // Joins the background threads; queued batches and priorities are dropped (by the next
  // StartThreads).
  void StopThreads() {
    stopping_.store(true);
    batches_.Close();
    priorities_.Close();
    if (prefetcher_.joinable()) prefetcher_.join();
    if (priority_thread_.joinable()) priority_thread_.join();
  }

  void SetBackgroundError(absl::Status status) {
    absl::MutexLock lock(&error_mu_);
    if (background_error_.ok()) background_error_ = std::move(status);
  }
  absl::Status TakeBackgroundError() {
    absl::MutexLock lock(&error_mu_);
    return background_error_;
  }

  absl::Status Fail(const absl::Status& error) {
    StopThreads();
    state_->Finish(v1::EXPERIMENT_STATE_FAILED, error.ToString());
    return error;
  }

  // ---- progress ---------------------------------------------------------------------------

  void RecordLag(const PreparedBatch& prepared) {
    double sum = 0;
    int64_t max = 0, counted = 0;
    for (int64_t v : prepared.policy_versions) {
      if (v < 0) continue;
      const int64_t lag = std::max<int64_t>(0, version_ - v);
      sum += lag;
      max = std::max(max, lag);
      ++counted;
    }
    state_->RecordSampled(static_cast<int64_t>(prepared.keys.size()),
                          counted > 0 ? sum / counted : 0, max);
  }

  void PollReplay() {
    int64_t inserts = 0, size = 0;
    for (auto& stub : shard_stubs_) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
      v1::ReplayInfoRequest request;
      request.add_tables(table_.name());
      v1::ReplayInfoResponse response;
      if (!stub->Info(&context, request, &response).ok()) continue;
      for (const v1::TableInfo& info : response.tables()) {
        inserts += info.inserts_total();
        size += info.size();
      }
    }
    state_->RecordReplay(inserts, size);
    replay_size_ = size;
  }

  void LogProgress(absl::Time waiting_since) {
    PollReplay();
    const v1::ExperimentStatus status = state_->Status();
    if (frames_gauge_ != nullptr) frames_gauge_->Set(static_cast<double>(status.frames()));
    if (train_return_ != nullptr && status.train_return().episodes() > 0) {
      train_return_->Set(status.train_return().mean());
    }
    if (policy_lag_ != nullptr) policy_lag_->Set(status.policy_lag().mean_versions());
    if (waiting_since != absl::InfiniteFuture()) {
      Log(absl::StrFormat("waiting for replay to fill: %d transitions in replay, %d frames",
                          replay_size_, status.frames()));
      return;
    }
    std::string task;
    if (options_.spec.has_task_sequence()) {
      task =
          absl::StrCat(", task ", options_.spec.task_sequence().tasks(status.task_index()).name());
      for (const v1::TaskReturn& t : status.task_eval_returns()) {
        absl::StrAppend(&task, t.task_index() == 0 ? " (eval " : ", ", t.task(), " ",
                        FormatReturn(t.eval_return()));
      }
      if (status.task_eval_returns_size() > 0) absl::StrAppend(&task, ")");
      if (options_.spec.has_ewc()) {
        absl::StrAppend(
            &task, absl::StrFormat(", loss %.3g, ewc penalty %.3g", last_loss_, last_penalty_));
      }
    }
    Log(absl::StrFormat(
        "%d frames (%.0f/s), %d updates (%.1f/s), replay %d, lag %.1f, train return %s, eval "
        "return %s, weights v%d%s",
        status.frames(), status.throughput().frames_per_second(), status.learner_updates(),
        status.throughput().learner_updates_per_second(), replay_size_,
        status.policy_lag().mean_versions(), FormatReturn(status.train_return()),
        FormatReturn(status.eval_return()), status.parameter_version(), task));
  }

  // ---- checkpoints and the end of the run -----------------------------------------------

  absl::Status WriteCheckpoint() {
    const v1::CheckpointSpec& spec = options_.spec.checkpoint();
    if (spec.directory().empty()) return absl::OkStatus();
    const absl::Time start = absl::Now();
    const RunCounters counters = state_->counters();
    const std::string name = absl::StrFormat("%s%012d", kCheckpointPrefix, learner_->updates());
    const fs::path final_dir = fs::path(spec.directory()) / name;
    const fs::path tmp_dir = fs::path(spec.directory()) / (".tmp-" + name);
    std::error_code error;
    fs::remove_all(tmp_dir, error);
    fs::create_directories(tmp_dir, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("checkpoint: cannot create ", tmp_dir.string(), ": ", error.message()));
    }
    if (const std::string saved = learner_->Save(tmp_dir.string()); !saved.empty()) {
      return absl::InternalError(absl::StrCat("checkpoint: ", saved));
    }
    LearnerCheckpointState state;
    *state.mutable_spec() = options_.spec;
    state.set_frames(counters.frames);
    state.set_episodes(counters.episodes);
    state.set_updates(learner_->updates());
    state.set_parameter_version(version_);
    state.set_elapsed_seconds(absl::ToDoubleSeconds(counters.elapsed));
    state.set_evaluations_requested(counters.evaluations_requested);
    state.set_next_evaluation_frames(counters.next_evaluation_frames);
    *state.mutable_eval_return() = counters.eval_return;
    state.set_task_phase(phase_);
    for (const v1::TaskReturn& task : counters.task_eval_returns)
      *state.add_task_eval_returns() = task;
    state.set_written_at(absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
    for (const char* name : {kModelFile, kEwcFile}) {
      const std::string path = (tmp_dir / name).string();
      if (!fs::exists(path)) continue;
      ENGRAM_ASSIGN_OR_RETURN(const FileDigest digest, DigestFile(path));
      CheckpointFile* file = state.add_files();
      file->set_name(name);
      file->set_bytes(digest.bytes);
      file->set_crc32(digest.crc32);
    }
    std::string text;
    google::protobuf::TextFormat::PrintToString(state, &text);
    ENGRAM_RETURN_IF_ERROR(WriteFileAtomically((tmp_dir / kStateFile).string(), text));
    fs::remove_all(final_dir, error);
    fs::rename(tmp_dir, final_dir, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("checkpoint: cannot rename ", tmp_dir.string(), ": ", error.message()));
    }
    state_->SetLastCheckpoint(final_dir.string());
    std::vector<std::string> all = ListCheckpoints(spec.directory());
    while (static_cast<int>(all.size()) > spec.keep()) {
      fs::remove_all(all.front(), error);
      all.erase(all.begin());
    }
    Log(absl::StrFormat("checkpoint %s written in %.2f s", final_dir.string(),
                        absl::ToDoubleSeconds(absl::Now() - start)));
    return absl::OkStatus();
  }

  absl::Status FinishRun(const std::string& spent, const std::atomic<bool>& stop) {
    Log(absl::StrCat("budget reached (", spent, "): stopping training actors"));
    state_->StopTraining();
    StopThreads();
    ENGRAM_RETURN_IF_ERROR(Publish());
    recorder_->FinalEvaluation(options_.final_evaluation_timeout, stop);
    ENGRAM_RETURN_IF_ERROR(WriteCheckpoint());
    recorder_->WriteProgressRow({replay_size_, last_loss_, last_penalty_});
    state_->Finish(v1::EXPERIMENT_STATE_SUCCEEDED);
    const v1::ExperimentStatus status = state_->Status();
    Log(
        absl::StrFormat("run %s finished: %d frames, %d updates, %d episodes, train return %s, "
                        "eval return %s, %s",
                        status.id(), status.frames(), status.learner_updates(), status.episodes(),
                        FormatReturn(status.train_return()), FormatReturn(status.eval_return()),
                        absl::FormatDuration(absl::Trunc(state_->elapsed(), absl::Seconds(1)))));
    return absl::OkStatus();
  }

  ApexLearnerOptions options_;
  RunState* state_;
  ParameterServiceImpl* parameters_;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<Trainer> learner_;
  v1::TableSpec table_;
  int64_t version_ = 0;
  int phase_ = 0;  // of the task sequence (0 without one)
  struct PendingDrop {
    std::string table;
    absl::Time at;
  };
  std::optional<PendingDrop> pending_drop_;
  std::vector<std::shared_ptr<grpc::ChannelInterface>> shard_channels_;
  std::vector<std::unique_ptr<v1::ReplayService::Stub>> shard_stubs_;
  std::unique_ptr<replay::ShardedSampler> sampler_;
  BoundedQueue<PreparedBatch> batches_;
  BoundedQueue<PriorityUpdate> priorities_;
  std::thread prefetcher_;
  std::thread priority_thread_;
  std::atomic<bool> stopping_{false};
  absl::Mutex error_mu_;
  absl::Status background_error_ ABSL_GUARDED_BY(error_mu_);
  int64_t replay_size_ = 0;
  double last_loss_ = 0;
  double last_penalty_ = 0;
  std::unique_ptr<RunRecorder> recorder_;
  prometheus::Counter* updates_total_ = nullptr;
  prometheus::Gauge* frames_gauge_ = nullptr;
  prometheus::Gauge* loss_gauge_ = nullptr;
  prometheus::Gauge* train_return_ = nullptr;
  prometheus::Gauge* eval_return_ = nullptr;
  prometheus::Gauge* policy_lag_ = nullptr;
  prometheus::Gauge* version_gauge_ = nullptr;
  prometheus::Histogram* update_seconds_ = nullptr;
  prometheus::Counter* wait_seconds_ = nullptr;
  prometheus::Gauge* penalty_gauge_ = nullptr;
  prometheus::Gauge* task_gauge_ = nullptr;
  prometheus::Family<prometheus::Gauge>* task_eval_return_ = nullptr;
};

absl::StatusOr<std::unique_ptr<ApexLearner>> ApexLearner::Create(
    ApexLearnerOptions options, RunState* state, ParameterServiceImpl* parameters,
    const std::optional<FoundCheckpoint>& restore, prometheus::Registry* registry) {
  if (!options.spec.has_apex_dqn() && !options.spec.has_ewc() && !options.spec.has_meta_rl()) {
    return absl::InvalidArgumentError(
        "algorithm: this learner loop runs apex_dqn, ewc and meta_rl experiments");
  }
  if (options.publish_every_updates < 1 || options.prefetch_batches < 1) {
    return absl::InvalidArgumentError("publish_every_updates and prefetch_batches: must be >= 1");
  }
  if (static_cast<int>(options.replay_addresses.size()) != options.spec.replay().num_shards()) {
    return absl::InvalidArgumentError(
        absl::StrCat("replay addresses: the experiment has ", options.spec.replay().num_shards(),
                     " shards, got ", options.replay_addresses.size(), " addresses"));
  }
  auto impl = std::make_unique<Impl>(std::move(options), state, parameters, registry);
  ENGRAM_RETURN_IF_ERROR(impl->Init(restore));
  return std::unique_ptr<ApexLearner>(new ApexLearner(std::move(impl)));
}

ApexLearner::ApexLearner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ApexLearner::~ApexLearner() = default;

absl::Status ApexLearner::Run(const std::atomic<bool>& stop) { return impl_->Run(stop); }

void ApexLearner::DropReplayTables() { impl_->DropReplayTables(); }
std::string ApexLearner::device() const { return impl_->device(); }

}  // namespace engram::learner
