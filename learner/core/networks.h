#ifndef ENGRAM_LEARNER_CORE_NETWORKS_H_
#define ENGRAM_LEARNER_CORE_NETWORKS_H_

// Q-networks of the DQN-family learners (LibTorch only: no Abseil, protobuf or gRPC, so
// that learner/core builds on a GPU machine whose only dependency is a CUDA LibTorch).
//
//   kMinAtar         (Young & Tian 2019) uint8 [B, H, W, C] channels last, as the MinAtar
//                    environments produce it -> float [B, C, H, W] ->
//                    Conv2d(C, 16, 3, stride 1) + ReLU -> flatten 16*(H-2)*(W-2) ->
//                    Linear(., 128) + ReLU -> Linear(128, A).
//   kMinAtarDueling  (Wang et al. 2016) the same convolution, then a value stream
//                    Linear(., 128) + ReLU -> Linear(128, 1) and an advantage stream
//                    Linear(., 128) + ReLU -> Linear(128, A); Q = V + A - mean_a A.
//   kMlp             [B, D...] any dtype -> float, flattened to [B, prod(D)] ->
//                    (Linear + ReLU) per hidden size (default 64, 64) -> Linear(., A).
//
// forward() converts the observation itself (dtype and layout), so callers hand over
// observations exactly as the environments produce them, already on the network's device.
// It returns Q-values float [B, A]. Shape errors are programmer errors (TORCH_CHECK
// throws c10::Error); configurations are checked by NetworkConfig::Validate().
//
// Thread-safety: a module is not thread-safe while it is trained or its weights are
// written; concurrent forward() calls under torch::NoGradGuard on unchanging weights are
// safe.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torch/nn/module.h"
#include "torch/nn/modules/conv.h"
#include "torch/nn/modules/linear.h"
#include "torch/types.h"

namespace engram::learner {

enum class Torso {
  kMinAtar,         // engram.v1.TORSO_MINATAR (and TORSO_UNSPECIFIED)
  kMinAtarDueling,  // engram.v1.TORSO_DUELING
  kMlp,             // small vector observations (classic control: CartPole)
};

// "minatar", "dueling", "mlp".
const char* TorsoName(Torso torso);

struct NetworkConfig {
  Torso torso = Torso::kMinAtar;
  // One observation's shape as the environment produces it: {H, W, C} channels last for
  // the MinAtar torsos (MinAtar: {10, 10, C}; H, W >= 3), any non-empty shape for kMlp
  // (CartPole: {4}).
  std::vector<int64_t> observation_shape;
  // Discrete actions A, >= 1.
  int64_t num_actions = 0;
  // Hidden layer widths, each >= 1. Empty means the torso's default: {128} for the MinAtar
  // torsos (exactly one entry: the fully connected layer, or each dueling stream's), {64, 64}
  // for kMlp (one Linear + ReLU per entry).
  std::vector<int64_t> hidden_sizes;
  // Convolution filters of the MinAtar torsos, >= 1; default 16. Ignored by kMlp.
  int64_t conv_channels = 16;

  // "" when usable, else a message naming the field, e.g.
  // "num_actions: must be >= 1, got 0".
  std::string Validate() const;
  // hidden_sizes with the torso default filled in.
  std::vector<int64_t> ResolvedHiddenSizes() const;
};

// Base of every Q-network. forward(observations [B, obs...]) -> Q float [B, A].
class QNetwork : public torch::nn::Module {
 public:
  explicit QNetwork(NetworkConfig config) : config_(std::move(config)) {}
  virtual torch::Tensor forward(const torch::Tensor& observations) = 0;
  const NetworkConfig& config() const { return config_; }
  // Observations [B, obs...] as the environment produces them -> the float input of the
  // first layer (MinAtar: [B, C, H, W], a channels-last view of the input, not a copy
  // beyond the dtype conversion; MLP: [B, prod(obs)]). TORCH_CHECKs the shape.
  virtual torch::Tensor Preprocess(const torch::Tensor& observations) const = 0;

 private:
  NetworkConfig config_;
};

class MinAtarQNetwork : public QNetwork {
 public:
  explicit MinAtarQNetwork(const NetworkConfig& config);
  torch::Tensor forward(const torch::Tensor& observations) override;
  torch::Tensor Preprocess(const torch::Tensor& observations) const override;

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::Linear fc_{nullptr};
  torch::nn::Linear q_{nullptr};
};

class DuelingQNetwork : public QNetwork {
 public:
  struct Heads {
    torch::Tensor value;       // V(s), float [B, 1]
    torch::Tensor advantages;  // A(s, .), float [B, A], before centering
  };

  explicit DuelingQNetwork(const NetworkConfig& config);
  // Q = V + A - mean_a A, float [B, A].
  torch::Tensor forward(const torch::Tensor& observations) override;
  torch::Tensor Preprocess(const torch::Tensor& observations) const override;
  // The two streams' outputs, for inspection and tests.
  Heads ForwardHeads(const torch::Tensor& observations);

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::Linear value_hidden_{nullptr};
  torch::nn::Linear value_{nullptr};
  torch::nn::Linear advantage_hidden_{nullptr};
  torch::nn::Linear advantage_{nullptr};
};

class MlpQNetwork : public QNetwork {
 public:
  explicit MlpQNetwork(const NetworkConfig& config);
  torch::Tensor forward(const torch::Tensor& observations) override;
  torch::Tensor Preprocess(const torch::Tensor& observations) const override;

 private:
  std::vector<torch::nn::Linear> hidden_;
  torch::nn::Linear q_{nullptr};
};

// Builds the network `config` describes, on the CPU, with LibTorch's default
// initialization (drawn from the global generator: torch::manual_seed makes it
// reproducible). Requires config.Validate() == "" (ENGRAM_CHECK).
std::shared_ptr<QNetwork> MakeQNetwork(const NetworkConfig& config);

// Copies every parameter and buffer of `from` into `to` (same architecture; devices may
// differ). Requires identical names and shapes (TORCH_CHECK).
void CopyWeights(const QNetwork& from, QNetwork& to);

// Number of scalar parameters.
int64_t ParameterCount(const torch::nn::Module& module);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_CORE_NETWORKS_H_
