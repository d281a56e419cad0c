#ifndef ENGRAM_LEARNER_CORE_META_RL_H_
#define ENGRAM_LEARNER_CORE_META_RL_H_

// Meta-RL learner core (Wang et al. 2016, "learning to learn"), LibTorch only: an LSTM
// actor-critic whose input at each step is the observation, the one-hot previous action
// and the previous reward, trained across a family of tasks with an advantage
// actor-critic loss and V-trace off-policy corrections (IMPALA, Espeholt et al. 2018).
//
// Time-major throughout: a batch is B chunks of T consecutive steps, tensors [T, B, ...].
// Chunks may cross episode boundaries; `episode_starts` marks where the LSTM state is
// reset to zeros.
//
// The loss, with every mean taken over all T * B steps of the batch:
//
//   vs, pg_advantages = VTrace(log pi(a|x) - log mu(a|x), gamma * discounts, rewards,
//                              V(x), V(x_T), rho_clip, c_clip)          (no gradient)
//   policy  = -mean_{t,b}(pg_advantages_{t,b} * log pi(a_t|x_t))
//   value   =  mean_{t,b}(0.5 (vs_{t,b} - V(x_t))^2)
//   entropy =  mean_{t,b}(-sum_a pi(a|x_t) log pi(a|x_t))
//   total   =  policy + value_cost * value - entropy_cost * entropy
//
// Errors: configurations are checked by Validate() methods that return "" or a message
// naming the field. Misuse (a tensor of the wrong shape, dtype or device) is a programmer
// error and throws c10::Error (TORCH_CHECK).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "learner/core/dqn.h"
#include "torch/nn/module.h"
#include "torch/nn/modules/linear.h"
#include "torch/nn/modules/rnn.h"
#include "torch/optim/optimizer.h"
#include "torch/types.h"

namespace engram::learner {

struct MetaRlNetConfig {
  // Elements of one observation, flattened, >= 1 (bandits: 1, two-step task: 4).
  int64_t observation_size = 0;
  // Discrete actions A, >= 1.
  int64_t num_actions = 0;
  // LSTM units H, >= 1.
  int64_t lstm_size = 48;
  // Feed the one-hot previous action to the LSTM (all zeros when there is none).
  bool input_previous_action = true;
  // Feed the previous reward to the LSTM (0 when there is none).
  bool input_previous_reward = true;

  // "" when usable, else a message naming the field ("lstm_size: must be >= 1, got 0").
  std::string Validate() const;
  // observation_size + (A if input_previous_action) + (1 if input_previous_reward).
  int64_t input_size() const;
};

// LSTM actor-critic. The LSTM (torch::nn::LSTMCell "lstm", unrolled step by step) reads
// [observation, one-hot previous action, previous reward] (the last two only when the
// config asks for them, in that order); heads Linear(H, A) "policy" (logits) and
// Linear(H, 1) "value" read its output h.
//
// Thread-safety: as any module, not thread-safe while trained or written; concurrent
// Step() calls under torch::NoGradGuard on unchanging weights are safe.
class MetaRlNetImpl : public torch::nn::Module {
 public:
  // Builds on the CPU with LibTorch's default initialization (the global generator).
  // Requires config.Validate() == "" (TORCH_CHECK).
  explicit MetaRlNetImpl(MetaRlNetConfig config);

  struct State {
    torch::Tensor h, c;  // each float [B, H]
  };
  // Zeros, float [batch, H] on `device`.
  State InitialState(int64_t batch, torch::Device device) const;

  struct Output {
    torch::Tensor logits;  // float [B, A] (Step) or [T, B, A] (Unroll)
    torch::Tensor values;  // float [B] (Step) or [T, B] (Unroll)
    State state;           // after the (last) step
  };

  // One step. observations [B, obs...] of any dtype (converted to float and flattened to
  // [B, observation_size]); previous_actions int64 [B] in [-1, A) (-1: none, an all-zero
  // one-hot); previous_rewards float [B]; state on the module's device.
  Output Step(const torch::Tensor& observations, const torch::Tensor& previous_actions,
              const torch::Tensor& previous_rewards, const State& state);

  // T >= 1 steps. observations [T, B, obs...] of any dtype, previous_actions int64 [T, B],
  // previous_rewards float [T, B], episode_starts bool [T, B]: where true the state is
  // reset to zeros before that step (the caller has already put -1 and 0 in the previous
  // action and reward there). The same as calling Step() T times.
  Output Unroll(const torch::Tensor& observations, const torch::Tensor& previous_actions,
                const torch::Tensor& previous_rewards, const torch::Tensor& episode_starts,
                const State& initial_state);

  const MetaRlNetConfig& config() const { return config_; }

 private:
  // The LSTM input, float [N, input_size], from N flattened steps.
  torch::Tensor Input(const torch::Tensor& observations, const torch::Tensor& previous_actions,
                      const torch::Tensor& previous_rewards) const;

  MetaRlNetConfig config_;
  torch::nn::LSTMCell lstm_{nullptr};
  torch::nn::Linear policy_{nullptr};
  torch::nn::Linear value_{nullptr};
};
TORCH_MODULE(MetaRlNet);

struct VTraceOutput {
  torch::Tensor vs;             // float [T, B], the V-trace value targets
  torch::Tensor pg_advantages;  // float [T, B]
};

// V-trace (IMPALA eq. 1), without gradient (every input is detached). All [T, B] but
// bootstrap_value [B]:
//   log_rhos  log pi(a_t|x_t) - log mu(a_t|x_t)
//   discounts gamma_t, the discount applied to the value after step t (0 at a terminal)
//   rewards   r_t, the reward after action a_t
//   values    V(x_t); bootstrap_value V(x_T)
// With rho_t = min(rho_clip, exp(log_rho_t)), c_t = min(c_clip, exp(log_rho_t)),
// delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t)):
//   vs_t - V(x_t)   = delta_t + gamma_t c_t (vs_{t+1} - V(x_{t+1}))   (vs_T = V(x_T))
//   pg_advantage_t  = rho_t (r_t + gamma_t vs_{t+1} - V(x_t))
// Where gamma_t = 0 the next value is not read (a NaN there does not leak in).
// rho_clip, c_clip > 0 (infinity: no clipping). O(T * B), T sequential steps.
VTraceOutput VTrace(const torch::Tensor& log_rhos, const torch::Tensor& discounts,
                    const torch::Tensor& rewards, const torch::Tensor& values,
                    const torch::Tensor& bootstrap_value, double rho_clip, double c_clip);

// Defaults are engram.v1.MetaRlConfig's.
struct MetaRlConfig {
  MetaRlNetConfig network;
  // Discount gamma in [0, 1].
  double gamma = 0.9;
  // Weight of the entropy bonus, >= 0.
  double entropy_cost = 0.05;
  // Weight of the value loss, >= 0.
  double value_cost = 0.05;
  // V-trace rho-bar (value targets and policy gradient) and c-bar (trace cutting), > 0.
  double vtrace_rho_clip = 1.0;
  double vtrace_c_clip = 1.0;
  // Adam, learning rate 0.0007, epsilon 1e-8, beta1 0.9, beta2 0.999.
  OptimizerConfig optimizer{OptimizerKind::kAdam, 0.0007, 1e-8, 0.95, 0.0, 0.9, 0.999};
  // Global L2 norm the gradient is clipped to, >= 0; 0 disables clipping.
  double gradient_clip_norm = 40.0;

  // "" or a message naming the field ("gamma: must be in [0, 1], got 2"; network fields
  // are prefixed "network.", optimizer fields "optimizer.").
  std::string Validate() const;
};

// B >= 1 chunks of T >= 1 steps. Any device (Update moves it to the learner's device).
struct MetaRlBatch {
  torch::Tensor observations;      // [T, B, obs...] float32 or uint8, obs... = observation_size
  torch::Tensor actions;           // int64 [T, B] in [0, A)
  torch::Tensor rewards;           // float32 [T, B]: r_t, the reward after action t
  torch::Tensor discounts;         // float32 [T, B]: 1, or 0 where the episode terminated at
                                   // step t; the learner multiplies by gamma
  torch::Tensor behaviour_logits;  // float32 [T, B, A] of the acting policy mu; undefined or
                                   // empty: on-policy (log_rhos 0)
  torch::Tensor episode_starts;    // bool [T, B]: reset the LSTM state before step t
  torch::Tensor previous_actions;  // int64 [T, B] in [-1, A) (-1 where none)
  torch::Tensor previous_rewards;  // float32 [T, B] (0 where none)
  torch::Tensor initial_h;         // float32 [B, H], the state before step 0
  torch::Tensor initial_c;         // float32 [B, H]
  // [B, obs...] (dtype as observations): x_T, the observation after the last step. Its
  // value bootstraps the returns; it is computed from the state after step T-1 (never
  // reset: where discounts[T-1] == 0 it belongs to a new episode but is multiplied by 0)
  // with previous action actions[T-1] and previous reward rewards[T-1].
  torch::Tensor bootstrap_observation;
};

struct MetaRlLossOutput {
  torch::Tensor total;   // scalar, differentiable (the gradient flows into logits, values)
  torch::Tensor policy;  // scalars, detached: the terms above, means over T * B steps
  torch::Tensor value;
  torch::Tensor entropy;
};

// The loss above. logits float [T, B, A] and values float [T, B] of the network being
// trained on `batch`; bootstrap_value [B] = V(x_T) (treated as a constant). Uses batch's
// actions, rewards, discounts and behaviour_logits (moved to logits' device).
MetaRlLossOutput MetaRlLoss(const torch::Tensor& logits, const torch::Tensor& values,
                            const torch::Tensor& bootstrap_value, const MetaRlBatch& batch,
                            const MetaRlConfig& config);

// The network on one device, its optimizer and the update counter.
//
// Not thread-safe: one training thread owns it. ExportWeights' result is a deep CPU copy
// that may be handed to other threads.
class MetaRlLearner {
 public:
  struct UpdateResult {
    float loss = 0;  // the terms of the loss minimized in this update (before the step)
    float policy_loss = 0;
    float value_loss = 0;
    float entropy = 0;
    double grad_norm = 0;  // global L2 norm of the gradient, before clipping
  };

  // Builds the network on the CPU (LibTorch's default initialization from the global
  // generator) and moves it to `device`. Returns nullptr and sets *error (the config's
  // Validate() message) when the config is invalid.
  static std::unique_ptr<MetaRlLearner> Create(const MetaRlConfig& config, torch::Device device,
                                               std::string* error);

  // "" when `batch` fits this learner (dtypes, shapes, equal T and B, actions in range
  // when they are on the CPU), else what is wrong ("batch.actions: ...").
  std::string ValidateBatch(const MetaRlBatch& batch) const;

  // One gradient step: unroll from (initial_h, initial_c), bootstrap value, loss,
  // backward, clip, optimizer step. Blocks until the device is done (it reads the loss
  // back). TORCH_CHECKs ValidateBatch(batch) == "".
  UpdateResult Update(const MetaRlBatch& batch);

  // Writes the weights, optimizer state, update counter and architecture to `path`
  // atomically (to path + ".tmp", then renamed over `path`). Returns "" or what went wrong.
  std::string Save(const std::string& path) const;
  // Reads a Save() file. On any error (unreadable file, another architecture or optimizer
  // kind, a missing or misshapen tensor) returns the reason and leaves the learner
  // unchanged. Optimizer hyper-parameters stay this learner's config.
  std::string Load(const std::string& path);

  // The network's parameters and buffers as (name, CPU tensor) pairs, deep copies in
  // named_parameters() order, for publishing to actors.
  std::vector<std::pair<std::string, torch::Tensor>> ExportWeights() const;

  int64_t updates() const { return updates_; }
  const MetaRlConfig& config() const { return config_; }
  torch::Device device() const { return device_; }
  MetaRlNet& network() { return network_; }

 private:
  MetaRlLearner(const MetaRlConfig& config, torch::Device device);
  std::unique_ptr<torch::optim::Optimizer> MakeOptimizer() const;

  MetaRlConfig config_;
  torch::Device device_;
  MetaRlNet network_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  int64_t updates_ = 0;
};

// Writes `weights` (ExportWeights' output) into `network` (an actor's copy, any device).
// The names must be exactly the network's parameters and buffers, each with the same shape
// and a floating dtype; on any mismatch returns a message naming the tensor and leaves
// `network` unchanged. Not thread-safe with respect to `network`.
std::string ImportWeights(MetaRlNetImpl& network,
                          const std::vector<std::pair<std::string, torch::Tensor>>& weights);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_CORE_META_RL_H_
