#include "learner/core/module_io.h"

#include <map>
#include <sstream>

#include "torch/optim/adam.h"
#include "torch/optim/rmsprop.h"
#include "torch/torch.h"

namespace engram::learner {

std::string SizesString(torch::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

NamedTensorList NamedTensors(const torch::nn::Module& module) {
  NamedTensorList tensors;
  for (const auto& item : module.named_parameters()) tensors.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) tensors.emplace_back(item.key(), item.value());
  return tensors;
}

std::string ArchiveKey(const std::string& name) {
  std::string key = name;
  for (char& c : key) {
    if (c == '.') c = '/';
  }
  return key;
}

void WriteModuleTensors(const torch::nn::Module& module, torch::serialize::OutputArchive& archive) {
  for (const auto& [name, tensor] : NamedTensors(module)) {
    archive.write(ArchiveKey(name), tensor.detach());
  }
}

std::string ReadModuleTensors(const torch::nn::Module& module,
                              torch::serialize::InputArchive& archive, const std::string& what,
                              std::vector<std::pair<torch::Tensor, torch::Tensor>>* staged) {
  for (const auto& [name, tensor] : NamedTensors(module)) {
    torch::Tensor read;
    if (!archive.try_read(ArchiveKey(name), read)) return what + " tensor \"" + name + "\" missing";
    if (read.sizes() != tensor.sizes()) {
      return what + " tensor \"" + name + "\" has shape " + SizesString(read.sizes()) +
             ", expected " + SizesString(tensor.sizes());
    }
    staged->emplace_back(tensor, read);
  }
  return "";
}

NamedTensorList ExportModuleWeights(const torch::nn::Module& module) {
  NamedTensorList weights = NamedTensors(module);
  for (auto& [name, tensor] : weights) {
    tensor = tensor.detach().to(torch::TensorOptions().device(torch::kCPU), /*non_blocking=*/false,
                                /*copy=*/true);
  }
  return weights;
}

std::string ImportModuleWeights(torch::nn::Module& module, const NamedTensorList& weights) {
  std::map<std::string, torch::Tensor> expected;
  for (auto& [name, tensor] : NamedTensors(module)) expected.emplace(name, tensor);
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, tensor] : weights) {
    auto it = expected.find(name);
    if (it == expected.end()) return "weights: unknown tensor \"" + name + "\"";
    if (!given.emplace(name, &tensor).second) return "weights: tensor \"" + name + "\" twice";
    if (!tensor.defined() || !tensor.is_floating_point()) {
      return "weights: tensor \"" + name + "\" must be a defined floating-point tensor";
    }
    if (tensor.sizes() != it->second.sizes()) {
      return "weights: tensor \"" + name + "\" has shape " + SizesString(tensor.sizes()) +
             ", the network's is " + SizesString(it->second.sizes());
    }
  }
  for (const auto& [name, tensor] : expected) {
    if (given.count(name) == 0) return "weights: tensor \"" + name + "\" missing";
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, destination] : expected) destination.copy_(*given.at(name));
  return "";
}

std::unique_ptr<torch::optim::OptimizerOptions> MakeOptimizerOptions(
    const OptimizerConfig& config) {
  if (config.kind == OptimizerKind::kAdam) {
    return std::make_unique<torch::optim::AdamOptions>(
        torch::optim::AdamOptions(config.learning_rate)
            .betas(std::make_tuple(config.beta1, config.beta2))
            .eps(config.epsilon));
  }
  return std::make_unique<torch::optim::RMSpropOptions>(
      torch::optim::RMSpropOptions(config.learning_rate)
          .alpha(config.decay)
          .eps(config.epsilon)
          .momentum(config.momentum)
          .centered(true));
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerConfig& config,
                                                       std::vector<torch::Tensor> parameters) {
  const auto options = MakeOptimizerOptions(config);
  if (config.kind == OptimizerKind::kAdam) {
    return std::make_unique<torch::optim::Adam>(
        std::move(parameters), static_cast<const torch::optim::AdamOptions&>(*options));
  }
  return std::make_unique<torch::optim::RMSprop>(
      std::move(parameters), static_cast<const torch::optim::RMSpropOptions&>(*options));
}

}  // namespace engram::learner
