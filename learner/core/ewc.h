#ifndef ENGRAM_LEARNER_CORE_EWC_H_
#define ENGRAM_LEARNER_CORE_EWC_H_

// Elastic Weight Consolidation (Kirkpatrick et al. 2017) and online EWC (Schwarz et al.
// 2018, "Progress & Compress"), LibTorch only.
//
// When a task ends, the learner measures how much each parameter mattered to it with the
// diagonal of the empirical Fisher information F (mean squared per-sample gradient of the
// task's loss) and remembers the parameters theta* it ended with. While later tasks are
// learned, the penalty
//
//   (lambda / 2) * sum_terms sum_i F_i (theta_i - theta*_i)^2
//
// is added to their loss, so parameters important to an earlier task stay near that task's
// values, in proportion to their Fisher, while unimportant ones (F = 0) are free.
//
//   standard EWC  one (theta*, F) term per finished task.
//   online EWC    one term: F* <- online_gamma * F* + normalise(F_new) and theta* = the
//                 latest task's parameters. normalise divides a task's Fisher by its mean
//                 over all elements of all parameters, so tasks weigh alike whatever the
//                 scale of their losses (rewards); lambda is then on the scale of a
//                 mean-1 Fisher.
//
// Use with the DQN learner:
//
//   ElasticWeights ewc(options);
//   learner->SetExtraLoss([&ewc](const QNetwork& q) { return ewc.Penalty(q); });
//   ... train task k ...
//   ewc.Consolidate(learner->online(), DqnFisher(*learner, task_k_batches));
//
// Errors: EwcOptions::Validate() returns "" or a message naming the field. Misuse (a
// Fisher or module that does not match, invalid options handed to the constructor) is a
// programmer error and throws c10::Error (TORCH_CHECK). Save/Load return "" or why not.
//
// Thread-safety: none; the training thread that owns the learner owns these.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "learner/core/dqn.h"
#include "learner/core/module_io.h"
#include "torch/nn/module.h"
#include "torch/types.h"

namespace engram::learner {

struct EwcOptions {
  // Penalty strength, >= 0 and finite; 0 is plain fine-tuning (no penalty).
  double lambda = 400;
  // Online EWC (one running Fisher and anchor) rather than one term per task.
  bool online = false;
  // Online EWC: the running Fisher is multiplied by this at each consolidation, before the
  // new task's normalised Fisher is added. In [0, 1] (1: no forgetting). Unused otherwise.
  double online_gamma = 1.0;

  // "" or a message naming the field ("ewc.lambda: must be >= 0, got -1").
  std::string Validate() const;
};

// Diagonal empirical Fisher of `module`: for each of its parameters, the mean over
// i in [0, num_samples) of the elementwise squared gradient of sample_loss(i) (a scalar)
// with respect to that parameter. One forward (inside sample_loss) and one backward per
// sample: cost O(num_samples) single-sample passes, which is the price of exact per-sample
// squares (the gradient of a batch mean would give the square of the mean instead).
//
// Gradients are taken with torch::autograd::grad, which does not accumulate into .grad:
// the parameters' .grad are left exactly as they were. Runs with gradient mode enabled even
// under a NoGradGuard. A parameter that does not require grad, or that a sample's loss does
// not depend on, contributes zero. num_samples >= 1 (TORCH_CHECK).
//
// Returns (name, tensor) pairs in named_parameters() order (NamedTensors' order, parameters
// only, no buffers), each detached, with the parameter's shape, dtype and device.
NamedTensorList DiagonalFisher(torch::nn::Module& module, int64_t num_samples,
                               const std::function<torch::Tensor(int64_t)>& sample_loss);

// The Fisher of a finished DQN task: the diagonal Fisher information of the online
// Q-network read as a Gaussian model of the action values (Q_online(s, .) the means, unit
// variance), over the states of `batches` (M >= 1 minibatches of the task's replay, each
// passing learner.ValidateBatch; any device):
//
//   F_i = mean over transitions of sum over actions a of (d Q_online(s, a) / d theta_i)^2
//
// (DiagonalFisher over every (transition, action) pair with per-sample "loss"
// sqrt(A) * Q_online(s, a): one single-state forward and backward pass per pair). Only the
// observations are read; each transition weighs alike. Changes neither network, nor any
// .grad, nor the update counter.
//
// Why not the empirical Fisher of the TD loss (squared per-transition gradients of
// huber(y - Q))? Its size follows the TD errors, which are small exactly where the task
// was learned well and large on the transitions prioritized replay samples most, so it
// protects the wrong weights; measured on CartPole -> permuted CartPole, lambda = 400 with
// it kept nothing of task A. The Q-value Fisher measures how much each weight moves the
// values every action is ranked by, which is what the greedy policy of the old task needs.
NamedTensorList DqnFisher(DqnLearner& learner, const std::vector<DqnBatch>& batches);

// The consolidated (anchor, Fisher) terms and the penalty they define.
class ElasticWeights {
 public:
  // Requires options.Validate() == "" (TORCH_CHECK).
  explicit ElasticWeights(EwcOptions options);

  // A task ended. `fisher` must name exactly the module's parameters (any order), each with
  // its shape, finite and >= 0 (TORCH_CHECK; this reads the Fisher back to the host once).
  // Anchor = detached copies of the module's current parameters; both are kept on the
  // parameters' devices. Standard EWC appends one term; online EWC normalises `fisher` by
  // its mean over all elements (an all-zero Fisher stays zero) and keeps the single term
  // F* = online_gamma * F* + normalised, anchor = these parameters. Later consolidations
  // must come from a module with the same parameter names and shapes.
  void Consolidate(const torch::nn::Module& module, const NamedTensorList& fisher);

  // (lambda / 2) * sum_terms sum_i F_i (theta_i - theta*_i)^2, a 0-d tensor on the
  // parameters' device, differentiable with respect to the module's parameters (gradient
  // lambda * sum_terms F (theta - theta*)). A 0 tensor that needs no gradient before any
  // consolidation or when lambda == 0. The module must match the consolidated one (names,
  // shapes, devices: TORCH_CHECK). Cost O(terms * parameters) elementwise per call.
  torch::Tensor Penalty(const torch::nn::Module& module) const;

  // Consolidated terms held: 0 before any, then 1 for online EWC, one per task otherwise.
  int terms() const { return static_cast<int>(terms_.size()); }
  const EwcOptions& options() const { return options_; }
  // Term k's tensors in the module's named_parameters() order (k < terms()).
  const NamedTensorList& anchor(int k) const { return terms_.at(k).anchor; }
  const NamedTensorList& fisher(int k) const { return terms_.at(k).fisher; }

  // Writes the options and every term to `path` atomically (path + ".tmp", then renamed).
  // Returns "" or what went wrong.
  std::string Save(const std::string& path) const;
  // Reads a Save() file, placing the tensors on `device` (the network's). The saved options
  // must equal this object's (lambda, online, online_gamma). On any error (unreadable file,
  // other options, inconsistent terms) returns the reason and leaves this object unchanged.
  std::string Load(const std::string& path, torch::Device device = torch::kCPU);

 private:
  struct Term {
    NamedTensorList anchor;
    NamedTensorList fisher;
  };

  EwcOptions options_;
  std::vector<Term> terms_;
};

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_CORE_EWC_H_
