#ifndef ENGRAM_LEARNER_CORE_MODULE_IO_H_
#define ENGRAM_LEARNER_CORE_MODULE_IO_H_

// What every learner/core learner shares for moving a network's tensors in and out (weights
// for actors, checkpoint archives) and for building its optimizer. LibTorch only.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "learner/core/dqn.h"
#include "torch/nn/module.h"
#include "torch/optim/optimizer.h"
#include "torch/serialize/archive.h"
#include "torch/types.h"

namespace engram::learner {

using NamedTensorList = std::vector<std::pair<std::string, torch::Tensor>>;

// "[2, 3]".
std::string SizesString(torch::IntArrayRef sizes);

// Parameters then buffers, by their dotted names (views of the module's own tensors).
NamedTensorList NamedTensors(const torch::nn::Module& module);

// A tensor name as an archive key: TorchScript attribute names must not contain '.'.
std::string ArchiveKey(const std::string& name);

// Writes every tensor of `module` to `archive` under its ArchiveKey.
void WriteModuleTensors(const torch::nn::Module& module, torch::serialize::OutputArchive& archive);
// Reads every tensor of `module` from `archive` into `staged` as (destination, value) pairs,
// without touching the module (the caller copies once everything else has loaded). Returns
// "" or, prefixed by `what` ("network"), the first tensor missing or of another shape.
std::string ReadModuleTensors(const torch::nn::Module& module,
                              torch::serialize::InputArchive& archive, const std::string& what,
                              std::vector<std::pair<torch::Tensor, torch::Tensor>>* staged);

// NamedTensors as deep CPU copies, detached (for publishing to actors).
NamedTensorList ExportModuleWeights(const torch::nn::Module& module);

// Copies `weights` into `module`: the names must be exactly its parameters and buffers,
// each a defined floating tensor of the same shape. On any mismatch returns a message
// naming the tensor ("weights: tensor \"fc.weight\" missing") and changes nothing.
std::string ImportModuleWeights(torch::nn::Module& module, const NamedTensorList& weights);

// The optimizer `config` describes, over `parameters` (Adam, or centered RMSProp).
std::unique_ptr<torch::optim::OptimizerOptions> MakeOptimizerOptions(const OptimizerConfig& config);
std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerConfig& config,
                                                       std::vector<torch::Tensor> parameters);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_CORE_MODULE_IO_H_
