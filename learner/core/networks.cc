#include "learner/core/networks.h"

#include <sstream>

#include "common/check.h"
#include "torch/nn/functional/activation.h"

namespace engram::learner {
namespace {

constexpr int64_t kKernel = 3;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

bool IsMinAtarTorso(Torso torso) {
  return torso == Torso::kMinAtar || torso == Torso::kMinAtarDueling;
}

int64_t ConvOutputFeatures(const NetworkConfig& config) {
  const auto& shape = config.observation_shape;
  return config.conv_channels * (shape[0] - kKernel + 1) * (shape[1] - kKernel + 1);
}

torch::nn::Conv2d MakeConv(const NetworkConfig& config) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(config.observation_shape[2], config.conv_channels, kKernel)
          .stride(1));
}

// [B, H, W, C] of any dtype -> float [B, C, H, W] (a permuted view: channels-last memory,
// which the convolution reads directly).
torch::Tensor MinAtarPreprocess(const NetworkConfig& config, const torch::Tensor& obs) {
  const auto& shape = config.observation_shape;
  TORCH_CHECK(obs.dim() == 4 && obs.size(1) == shape[0] && obs.size(2) == shape[1] &&
                  obs.size(3) == shape[2],
              "MinAtar network: observations must be [B, ", shape[0], ", ", shape[1], ", ",
              shape[2], "] (channels last), got ", obs.sizes());
  return obs.to(torch::kFloat).permute({0, 3, 1, 2});
}

}  // namespace

const char* TorsoName(Torso torso) {
  switch (torso) {
    case Torso::kMinAtar:
      return "minatar";
    case Torso::kMinAtarDueling:
      return "dueling";
    case Torso::kMlp:
      return "mlp";
  }
  return "unknown";
}

std::vector<int64_t> NetworkConfig::ResolvedHiddenSizes() const {
  if (!hidden_sizes.empty()) return hidden_sizes;
  if (torso == Torso::kMlp) return {64, 64};
  return {128};
}

std::string NetworkConfig::Validate() const {
  std::ostringstream error;
  if (torso != Torso::kMinAtar && torso != Torso::kMinAtarDueling && torso != Torso::kMlp) {
    error << "torso: unknown value " << static_cast<int>(torso);
    return error.str();
  }
  if (num_actions < 1) {
    error << "num_actions: must be >= 1, got " << num_actions;
    return error.str();
  }
  if (observation_shape.empty()) return "observation_shape: must not be empty";
  for (size_t i = 0; i < observation_shape.size(); ++i) {
    if (observation_shape[i] < 1) {
      error << "observation_shape[" << i << "]: must be >= 1, got " << observation_shape[i];
      return error.str();
    }
  }
  for (size_t i = 0; i < hidden_sizes.size(); ++i) {
    if (hidden_sizes[i] < 1) {
      error << "hidden_sizes[" << i << "]: must be >= 1, got " << hidden_sizes[i];
      return error.str();
    }
  }
  if (IsMinAtarTorso(torso)) {
    if (observation_shape.size() != 3 || observation_shape[0] < kKernel ||
        observation_shape[1] < kKernel) {
      error << "observation_shape: torso " << TorsoName(torso)
            << " needs [H, W, C] (channels last) with H, W >= " << kKernel << ", got "
            << ShapeString(observation_shape);
      return error.str();
    }
    if (hidden_sizes.size() > 1) {
      error << "hidden_sizes: torso " << TorsoName(torso)
            << " takes one hidden size (the fully connected layer), got "
            << ShapeString(hidden_sizes);
      return error.str();
    }
    if (conv_channels < 1) {
      error << "conv_channels: must be >= 1, got " << conv_channels;
      return error.str();
    }
  }
  return "";
}

MinAtarQNetwork::MinAtarQNetwork(const NetworkConfig& config) : QNetwork(config) {
  const int64_t hidden = config.ResolvedHiddenSizes()[0];
  conv_ = register_module("conv", MakeConv(config));
  fc_ = register_module("fc", torch::nn::Linear(ConvOutputFeatures(config), hidden));
  q_ = register_module("q", torch::nn::Linear(hidden, config.num_actions));
}

torch::Tensor MinAtarQNetwork::Preprocess(const torch::Tensor& observations) const {
  return MinAtarPreprocess(config(), observations);
}

torch::Tensor MinAtarQNetwork::forward(const torch::Tensor& observations) {
  torch::Tensor x = torch::relu(conv_->forward(Preprocess(observations))).flatten(1);
  return q_->forward(torch::relu(fc_->forward(x)));
}

DuelingQNetwork::DuelingQNetwork(const NetworkConfig& config) : QNetwork(config) {
  const int64_t hidden = config.ResolvedHiddenSizes()[0];
  const int64_t features = ConvOutputFeatures(config);
  conv_ = register_module("conv", MakeConv(config));
  value_hidden_ = register_module("value_hidden", torch::nn::Linear(features, hidden));
  value_ = register_module("value", torch::nn::Linear(hidden, 1));
  advantage_hidden_ = register_module("advantage_hidden", torch::nn::Linear(features, hidden));
  advantage_ = register_module("advantage", torch::nn::Linear(hidden, config.num_actions));
}

torch::Tensor DuelingQNetwork::Preprocess(const torch::Tensor& observations) const {
  return MinAtarPreprocess(config(), observations);
}

DuelingQNetwork::Heads DuelingQNetwork::ForwardHeads(const torch::Tensor& observations) {
  torch::Tensor x = torch::relu(conv_->forward(Preprocess(observations))).flatten(1);
  Heads heads;
  heads.value = value_->forward(torch::relu(value_hidden_->forward(x)));
  heads.advantages = advantage_->forward(torch::relu(advantage_hidden_->forward(x)));
  return heads;
}

torch::Tensor DuelingQNetwork::forward(const torch::Tensor& observations) {
  Heads heads = ForwardHeads(observations);
  return heads.value + heads.advantages - heads.advantages.mean(1, /*keepdim=*/true);
}

MlpQNetwork::MlpQNetwork(const NetworkConfig& config) : QNetwork(config) {
  int64_t in = 1;
  for (int64_t d : config.observation_shape) in *= d;
  const std::vector<int64_t> sizes = config.ResolvedHiddenSizes();
  for (size_t i = 0; i < sizes.size(); ++i) {
    hidden_.push_back(
        register_module("hidden" + std::to_string(i), torch::nn::Linear(in, sizes[i])));
    in = sizes[i];
  }
  q_ = register_module("q", torch::nn::Linear(in, config.num_actions));
}

torch::Tensor MlpQNetwork::Preprocess(const torch::Tensor& observations) const {
  const auto& shape = config().observation_shape;
  bool ok = observations.dim() == static_cast<int64_t>(shape.size()) + 1;
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = observations.size(i + 1) == shape[i];
  TORCH_CHECK(ok, "MLP network: observations must be [B, ", ShapeString(shape).substr(1), ", got ",
              observations.sizes());
  return observations.to(torch::kFloat).flatten(1);
}

torch::Tensor MlpQNetwork::forward(const torch::Tensor& observations) {
  torch::Tensor x = Preprocess(observations);
  for (auto& layer : hidden_) x = torch::relu(layer->forward(x));
  return q_->forward(x);
}

std::shared_ptr<QNetwork> MakeQNetwork(const NetworkConfig& config) {
  const std::string error = config.Validate();
  ENGRAM_CHECK(error.empty()) << error;
  switch (config.torso) {
    case Torso::kMinAtar:
      return std::make_shared<MinAtarQNetwork>(config);
    case Torso::kMinAtarDueling:
      return std::make_shared<DuelingQNetwork>(config);
    case Torso::kMlp:
      return std::make_shared<MlpQNetwork>(config);
  }
  return nullptr;
}

void CopyWeights(const QNetwork& from, QNetwork& to) {
  torch::NoGradGuard no_grad;
  auto copy = [](const torch::OrderedDict<std::string, torch::Tensor>& src,
                 torch::OrderedDict<std::string, torch::Tensor> dst) {
    TORCH_CHECK(src.size() == dst.size(), "CopyWeights: ", src.size(), " tensors into ",
                dst.size());
    for (const auto& item : src) {
      torch::Tensor* target = dst.find(item.key());
      TORCH_CHECK(target != nullptr, "CopyWeights: no tensor named ", item.key());
      TORCH_CHECK(target->sizes() == item.value().sizes(), "CopyWeights: ", item.key(),
                  " has shape ", item.value().sizes(), ", destination ", target->sizes());
      target->copy_(item.value());
    }
  };
  copy(from.named_parameters(), to.named_parameters());
  copy(from.named_buffers(), to.named_buffers());
}

int64_t ParameterCount(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) count += p.numel();
  return count;
}

}  // namespace engram::learner
