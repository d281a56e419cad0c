#ifndef ENGRAM_LEARNER_CORE_DQN_H_
#define ENGRAM_LEARNER_CORE_DQN_H_

// Double DQN with n-step targets, Huber loss and prioritized-replay importance weights
// (Ape-X, Horgan et al. 2018), LibTorch only.
//
// Transitions arrive as engram.v1.Transition documents them: `reward` is already the
// n-step discounted sum r_t + g r_{t+1} + ... + g^{m-1} r_{t+m-1}, and `discount` is g^m,
// or exactly 0 when the episode terminated within the m steps. So the learner has no
// gamma of its own, and the target is
//
//   y = reward + discount * Q_target(s', argmax_a Q_online(s', a))   (double_q)
//   y = reward + discount * max_a Q_target(s', a)                      (vanilla)
//
// and the loss is mean_i(w_i * huber(y_i - Q_online(s_i, a_i))) with w the importance
// weights the replay computed with the current beta (BetaAt). New priorities are
// |y - Q(s, a)| + priority_epsilon (before the replay's exponent alpha).
//
// Errors: configurations are checked by Validate() methods that return "" or a message
// naming the field (the networked learner maps it to INVALID_ARGUMENT). Misuse (a batch
// of the wrong shape, dtype or device) is a programmer error and throws c10::Error
// (TORCH_CHECK).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "learner/core/networks.h"
#include "torch/optim/optimizer.h"
#include "torch/types.h"

namespace engram::learner {

enum class OptimizerKind {
  kAdam,             // engram.v1.OPTIMIZER_KIND_ADAM
  kCenteredRmsProp,  // engram.v1.OPTIMIZER_KIND_CENTERED_RMSPROP (the Ape-X default)
};

// Defaults are Ape-X's (engram.v1.ApexDqnConfig.optimizer): centered RMSProp, learning
// rate 0.00025 / 4, decay 0.95, epsilon 1.5e-7.
//
// RMSProp follows LibTorch: v = decay v + (1 - decay) g^2, m = decay m + (1 - decay) g,
// theta -= lr g / (sqrt(v - m^2) + epsilon) (epsilon outside the square root).
struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kCenteredRmsProp;
  double learning_rate = 0.00025 / 4;  // > 0
  double epsilon = 1.5e-7;             // > 0
  double decay = 0.95;                 // RMSProp alpha, in [0, 1)
  double momentum = 0.0;               // RMSProp momentum, in [0, 1)
  double beta1 = 0.9;                  // Adam, in [0, 1)
  double beta2 = 0.999;                // Adam, in [0, 1)

  // "" or a message naming the field ("optimizer.learning_rate: ...").
  std::string Validate() const;
};

// Defaults are engram.v1.ApexDqnConfig's.
struct DqnConfig {
  NetworkConfig network;
  // Double Q-learning targets (online argmax, target evaluation).
  bool double_q = true;
  // Huber loss threshold delta, > 0: quadratic for |x| <= delta, linear beyond.
  double huber_delta = 1.0;
  OptimizerConfig optimizer;
  // Global L2 norm the gradient is clipped to, >= 0; 0 disables clipping.
  double gradient_clip_norm = 40.0;
  // Updates between hard copies of the online network into the target network, >= 1.
  int64_t target_update_period = 2500;
  // Importance-sampling exponent beta: importance_beta_start at frame 0, moving linearly
  // to importance_beta_end over importance_beta_anneal_frames frames, then constant.
  // Both in [0, 1]; anneal frames >= 1. (ApexDqnConfig's default for the frames is the
  // run's total frames, which only the experiment knows; 1e6 here.)
  double importance_beta_start = 0.4;
  double importance_beta_end = 0.4;
  int64_t importance_beta_anneal_frames = 1000000;
  // Added to |td| for new priorities, so that no item's priority is 0; >= 0.
  double priority_epsilon = 1e-6;

  // "" or a message naming the field ("target_update_period: must be >= 1, got 0";
  // network fields are prefixed "network.").
  std::string Validate() const;
};

// One sampled batch. Any device (Update moves it to the learner's device; a pinned CPU
// batch is copied without blocking). B >= 1.
struct DqnBatch {
  torch::Tensor observations;       // [B, obs...] as the environment produces them
  torch::Tensor actions;            // int64 [B], in [0, num_actions)
  torch::Tensor rewards;            // float32 [B], n-step discounted reward
  torch::Tensor discounts;          // float32 [B], gamma^m, or 0 at a terminal
  torch::Tensor next_observations;  // [B, obs...]
  torch::Tensor weights;            // float32 [B], importance weights (1 for uniform replay)
};

// ---- the pure pieces (differentiable where it matters; tested against hand values) ----

// Bootstrapped n-step targets y [B] (no gradient flows through them). online_next_q and
// target_next_q are Q(s', .) [B, A] of the online and target network; online_next_q is
// only read when double_q (it may be undefined otherwise). Items with discount 0 get
// y = reward whatever the Q-values (even NaN ones, since next_observation is then junk).
torch::Tensor DqnTargets(const torch::Tensor& online_next_q, const torch::Tensor& target_next_q,
                         const torch::Tensor& rewards, const torch::Tensor& discounts,
                         bool double_q);

// Elementwise Huber: 0.5 x^2 for |x| <= delta, delta (|x| - 0.5 delta) beyond.
torch::Tensor HuberLoss(const torch::Tensor& x, double delta);

struct DqnLossOutput {
  torch::Tensor loss;       // scalar: mean_i(weights_i * huber(targets_i - q_i(a_i)))
  torch::Tensor td_errors;  // [B], targets - q(s, a), detached
};

// q: Q(s, .) [B, A] of the online network (the gradient flows through it); actions int64
// [B]; targets [B] (treated as constants); weights [B].
DqnLossOutput DqnLoss(const torch::Tensor& q, const torch::Tensor& actions,
                      const torch::Tensor& targets, const torch::Tensor& weights,
                      double huber_delta);

// Scales the gradients of `parameters` in place so that their global L2 norm is at most
// `max_norm` (max_norm <= 0: leaves them as they are). Returns the norm before clipping,
// a 0-d float tensor on the gradients' device (reading it synchronizes; this function
// does not). Parameters without a gradient are skipped.
torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& parameters, double max_norm);

// "cpu", "cuda", "cuda:N", or "auto" (CUDA device 0 when torch::cuda::is_available(),
// else the CPU). Returns "" and sets *device, or a message saying why not (unknown name,
// CUDA unavailable, no such CUDA device).
std::string ParseDevice(std::string_view spec, torch::Device* device);

// Linear from `start` at frame 0 to `end` at `anneal_frames` (>= 1), then `end`.
double AnnealedBeta(double start, double end, int64_t anneal_frames, int64_t frames);

// ---- the learner ----------------------------------------------------------------------

// Online and target networks on one device, the optimizer and the update counter.
//
// Not thread-safe: one training thread owns it (Update, Save, Load, ExportWeights, the
// accessors). ExportWeights' result is a deep CPU copy that may be handed to other
// threads.
class DqnLearner {
 public:
  struct UpdateResult {
    // The TD loss of this update (before the step), without the extra loss, so that it and
    // the priorities keep their meaning whatever regulariser is attached.
    float loss = 0;
    torch::Tensor new_priorities;  // float32 [B] on the CPU: |td| + priority_epsilon
    // Global L2 norm of the TD loss's gradient, before clipping.
    double grad_norm = 0;
    // The extra loss's value in this update (before the step); 0 when none is set.
    float extra_loss = 0;
  };

  // A term added to the TD loss (a regulariser such as the EWC penalty): each Update
  // minimizes loss + extra(online()). The two gradients are clipped (gradient_clip_norm)
  // separately and then summed, so that a strong regulariser neither scales the task's
  // gradient down nor takes unbounded steps (a stiff quadratic penalty under centered
  // RMSProp diverged to NaN without the clip on MinAtar). `extra` must return a
  // scalar (0-d or one element) with gradient to the online network's parameters, or none (a
  // constant, e.g. 0); it is called once per Update, on the training thread. An empty function
  // removes it. Not part of Save/Load: the owner of the regulariser checkpoints its state and sets
  // it again.
  using ExtraLoss = std::function<torch::Tensor(const QNetwork& online)>;
  void SetExtraLoss(ExtraLoss extra) { extra_loss_ = std::move(extra); }

  // Builds the networks on the CPU (LibTorch's default initialization from the global
  // generator), moves them to `device` and makes the target a copy of the online
  // network. Returns nullptr and sets *error (the config's Validate() message) when the
  // config is invalid.
  static std::unique_ptr<DqnLearner> Create(const DqnConfig& config, torch::Device device,
                                            std::string* error);

  // "" when `batch` fits this learner (dtypes, shapes, equal B, actions in range when
  // they are on the CPU), else what is wrong ("batch.actions: ...").
  std::string ValidateBatch(const DqnBatch& batch) const;

  // One gradient step: forward, loss (plus the extra loss, if set), backward, clip,
  // optimizer step, and every target_update_period-th update a hard copy of the online
  // weights into the target.
  // Blocks until the device is done (it reads the loss and priorities back), so a pinned
  // batch may be reused once it returns. TORCH_CHECKs ValidateBatch(batch) == "".
  UpdateResult Update(const DqnBatch& batch);

  // Importance-sampling beta for the replay at `frames` training frames.
  double BetaAt(int64_t frames) const;

  // Writes online and target weights, optimizer state, the update counter and the network
  // architecture to `path` atomically (to path + ".tmp", then renamed over `path`).
  // Returns "" or what went wrong.
  std::string Save(const std::string& path) const;
  // Reads a Save() file. On any error (unreadable file, another architecture or optimizer,
  // a missing or misshapen tensor) returns the reason and leaves the learner unchanged.
  // Optimizer hyper-parameters stay this learner's config (only the state is restored).
  std::string Load(const std::string& path);

  // The online network's parameters and buffers as (name, CPU tensor) pairs, deep copies
  // in named_parameters() order, for publishing to actors.
  std::vector<std::pair<std::string, torch::Tensor>> ExportWeights() const;

  int64_t updates() const { return updates_; }
  const DqnConfig& config() const { return config_; }
  torch::Device device() const { return device_; }
  QNetwork& online() { return *online_; }
  QNetwork& target() { return *target_; }

 private:
  DqnLearner(const DqnConfig& config, torch::Device device);
  std::unique_ptr<torch::optim::Optimizer> MakeOptimizer() const;

  DqnConfig config_;
  torch::Device device_;
  std::shared_ptr<QNetwork> online_;
  std::shared_ptr<QNetwork> target_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  int64_t updates_ = 0;
  ExtraLoss extra_loss_;
};

// Writes `weights` (ExportWeights' output) into `network` (an actor's copy, any device).
// The names must be exactly the network's parameters and buffers, each with the same
// shape and a floating dtype; on any mismatch returns a message naming the tensor and
// leaves `network` unchanged. Not thread-safe with respect to `network`.
std::string ImportWeights(QNetwork& network,
                          const std::vector<std::pair<std::string, torch::Tensor>>& weights);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_CORE_DQN_H_
