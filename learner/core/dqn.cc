#include "learner/core/dqn.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>

#include "common/check.h"
#include "learner/core/module_io.h"
#include "torch/autograd.h"
#include "torch/cuda.h"
#include "torch/optim/adam.h"
#include "torch/optim/rmsprop.h"
#include "torch/serialize/archive.h"

namespace engram::learner {
namespace {

// Bumped when the checkpoint layout changes; Load rejects other versions.
constexpr int64_t kCheckpointFormat = 1;

bool InUnitInterval(double x) { return x >= 0 && x <= 1; }
bool InHalfOpenUnitInterval(double x) { return x >= 0 && x < 1; }

// Everything that decides parameter names and shapes, for checking checkpoints.
std::vector<int64_t> ArchitectureKey(const NetworkConfig& config) {
  std::vector<int64_t> key = {static_cast<int64_t>(config.torso),
                              static_cast<int64_t>(config.observation_shape.size())};
  key.insert(key.end(), config.observation_shape.begin(), config.observation_shape.end());
  key.push_back(config.num_actions);
  key.push_back(config.torso == Torso::kMlp ? 0 : config.conv_channels);
  const std::vector<int64_t> hidden = config.ResolvedHiddenSizes();
  key.insert(key.end(), hidden.begin(), hidden.end());
  return key;
}

std::string Join(const std::vector<int64_t>& values) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << "]";
  return out.str();
}

// Whether `t` is a vector of `n` elements.
bool IsVector(const torch::Tensor& t, int64_t n) { return t.dim() == 1 && t.size(0) == n; }

}  // namespace

std::string OptimizerConfig::Validate() const {
  std::ostringstream error;
  if (kind != OptimizerKind::kAdam && kind != OptimizerKind::kCenteredRmsProp) {
    error << "optimizer.kind: unknown value " << static_cast<int>(kind);
  } else if (!(learning_rate > 0) || !std::isfinite(learning_rate)) {
    error << "optimizer.learning_rate: must be > 0, got " << learning_rate;
  } else if (!(epsilon > 0) || !std::isfinite(epsilon)) {
    error << "optimizer.epsilon: must be > 0, got " << epsilon;
  } else if (!InHalfOpenUnitInterval(decay)) {
    error << "optimizer.decay: must be in [0, 1), got " << decay;
  } else if (!InHalfOpenUnitInterval(momentum)) {
    error << "optimizer.momentum: must be in [0, 1), got " << momentum;
  } else if (!InHalfOpenUnitInterval(beta1)) {
    error << "optimizer.beta1: must be in [0, 1), got " << beta1;
  } else if (!InHalfOpenUnitInterval(beta2)) {
    error << "optimizer.beta2: must be in [0, 1), got " << beta2;
  }
  return error.str();
}

std::string DqnConfig::Validate() const {
  if (std::string error = network.Validate(); !error.empty()) return "network." + error;
  if (std::string error = optimizer.Validate(); !error.empty()) return error;
  std::ostringstream error;
  if (!(huber_delta > 0) || !std::isfinite(huber_delta)) {
    error << "huber_delta: must be > 0, got " << huber_delta;
  } else if (!(gradient_clip_norm >= 0) || !std::isfinite(gradient_clip_norm)) {
    error << "gradient_clip_norm: must be >= 0 (0 disables clipping), got " << gradient_clip_norm;
  } else if (target_update_period < 1) {
    error << "target_update_period: must be >= 1, got " << target_update_period;
  } else if (!InUnitInterval(importance_beta_start)) {
    error << "importance_beta_start: must be in [0, 1], got " << importance_beta_start;
  } else if (!InUnitInterval(importance_beta_end)) {
    error << "importance_beta_end: must be in [0, 1], got " << importance_beta_end;
  } else if (importance_beta_anneal_frames < 1) {
    error << "importance_beta_anneal_frames: must be >= 1, got " << importance_beta_anneal_frames;
  } else if (!(priority_epsilon >= 0) || !std::isfinite(priority_epsilon)) {
    error << "priority_epsilon: must be >= 0, got " << priority_epsilon;
  }
  return error.str();
}

torch::Tensor DqnTargets(const torch::Tensor& online_next_q, const torch::Tensor& target_next_q,
                         const torch::Tensor& rewards, const torch::Tensor& discounts,
                         bool double_q) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(target_next_q.dim() == 2, "DqnTargets: target_next_q must be [B, A], got ",
              target_next_q.sizes());
  const int64_t batch = target_next_q.size(0);
  TORCH_CHECK(IsVector(rewards, batch) && IsVector(discounts, batch),
              "DqnTargets: rewards and discounts must be [", batch, "], got ", rewards.sizes(),
              " and ", discounts.sizes());
  torch::Tensor next_value;
  if (double_q) {
    TORCH_CHECK(online_next_q.defined() && online_next_q.sizes() == target_next_q.sizes(),
                "DqnTargets: double_q needs online_next_q of shape ", target_next_q.sizes());
    next_value = target_next_q.gather(1, online_next_q.argmax(1, /*keepdim=*/true)).squeeze(1);
  } else {
    next_value = std::get<0>(target_next_q.max(1));
  }
  // where() rather than a product, so that a terminal's junk next observation cannot leak
  // in through 0 * inf = NaN.
  const torch::Tensor bootstrap =
      torch::where(discounts == 0, torch::zeros_like(next_value), discounts * next_value);
  return rewards + bootstrap;
}

torch::Tensor HuberLoss(const torch::Tensor& x, double delta) {
  const torch::Tensor abs = x.abs();
  return torch::where(abs <= delta, 0.5 * x * x, delta * (abs - 0.5 * delta));
}

DqnLossOutput DqnLoss(const torch::Tensor& q, const torch::Tensor& actions,
                      const torch::Tensor& targets, const torch::Tensor& weights,
                      double huber_delta) {
  TORCH_CHECK(q.dim() == 2, "DqnLoss: q must be [B, A], got ", q.sizes());
  const int64_t batch = q.size(0);
  TORCH_CHECK(IsVector(actions, batch) && IsVector(targets, batch) && IsVector(weights, batch),
              "DqnLoss: actions, targets and weights must be [", q.size(0), "], got ",
              actions.sizes(), ", ", targets.sizes(), ", ", weights.sizes());
  const torch::Tensor q_taken = q.gather(1, actions.unsqueeze(1)).squeeze(1);
  const torch::Tensor td = targets.detach() - q_taken;
  DqnLossOutput out;
  out.loss = (weights * HuberLoss(td, huber_delta)).mean();
  out.td_errors = td.detach();
  return out;
}

namespace {

// Scales `grads` in place so that their global L2 norm is at most max_norm (> 0; none
// otherwise); returns the norm before scaling, a 0-d tensor on their device.
torch::Tensor ClipNorm(std::vector<torch::Tensor>& grads, double max_norm) {
  if (grads.empty()) return torch::zeros({});
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(g.norm());
  const torch::Tensor total = torch::stack(norms).norm();
  if (max_norm > 0) {
    // Scaling by a device tensor (1 when under the limit) avoids reading the norm back,
    // which would stall the host on every update.
    const torch::Tensor scale = (max_norm / (total + 1e-6)).clamp_max(1.0);
    torch::NoGradGuard no_grad;
    for (auto& g : grads) g.mul_(scale);
  }
  return total;
}

}  // namespace

torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& parameters, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  return ClipNorm(grads, max_norm);
}

std::string ParseDevice(std::string_view spec, torch::Device* device) {
  if (spec == "cpu") {
    *device = torch::Device(torch::kCPU);
    return "";
  }
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto") {
    *device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
    return "";
  }
  int64_t index = 0;
  if (spec.substr(0, 5) == "cuda:" && spec.size() > 5 && spec.size() <= 8) {
    index = 0;
    for (char c : spec.substr(5)) {
      if (c < '0' || c > '9') {
        index = -1;
        break;
      }
      index = index * 10 + (c - '0');
    }
  } else if (spec != "cuda") {
    index = -1;
  }
  const std::string quoted = "device \"" + std::string(spec) + "\"";
  if (index < 0) return quoted + ": expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"";
  if (!cuda) {
    return quoted + ": CUDA is not available (LibTorch built without CUDA, or no GPU)";
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= count) {
    return quoted + ": no such CUDA device (" + std::to_string(count) + " visible)";
  }
  *device = torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(index));
  return "";
}

double AnnealedBeta(double start, double end, int64_t anneal_frames, int64_t frames) {
  if (frames <= 0) return start;
  if (frames >= anneal_frames) return end;
  return start + (end - start) * static_cast<double>(frames) / static_cast<double>(anneal_frames);
}

std::unique_ptr<DqnLearner> DqnLearner::Create(const DqnConfig& config, torch::Device device,
                                               std::string* error) {
  *error = config.Validate();
  if (!error->empty()) return nullptr;
  return std::unique_ptr<DqnLearner>(new DqnLearner(config, device));
}

DqnLearner::DqnLearner(const DqnConfig& config, torch::Device device)
    : config_(config), device_(device) {
  online_ = MakeQNetwork(config_.network);
  target_ = MakeQNetwork(config_.network);
  CopyWeights(*online_, *target_);
  online_->to(device_);
  target_->to(device_);
  for (auto& p : target_->parameters()) p.requires_grad_(false);
  optimizer_ = MakeOptimizer();
}

std::unique_ptr<torch::optim::Optimizer> DqnLearner::MakeOptimizer() const {
  return learner::MakeOptimizer(config_.optimizer, online_->parameters());
}

std::string DqnLearner::ValidateBatch(const DqnBatch& batch) const {
  const auto& shape = config_.network.observation_shape;
  std::ostringstream error;
  auto check_observations = [&](const torch::Tensor& t, const char* name) {
    if (!t.defined()) {
      error << "batch." << name << ": missing";
      return false;
    }
    bool ok = t.dim() == static_cast<int64_t>(shape.size()) + 1 && t.size(0) >= 1;
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = t.size(i + 1) == shape[i];
    if (!ok) {
      error << "batch." << name << ": shape " << SizesString(t.sizes()) << ", expected [B >= 1, "
            << Join(shape).substr(1);
    }
    return ok;
  };
  if (!check_observations(batch.observations, "observations")) return error.str();
  const int64_t b = batch.observations.size(0);
  if (!check_observations(batch.next_observations, "next_observations")) return error.str();
  if (batch.next_observations.size(0) != b) {
    error << "batch.next_observations: " << batch.next_observations.size(0)
          << " items, observations has " << b;
    return error.str();
  }
  auto check_vector = [&](const torch::Tensor& t, const char* name, torch::ScalarType dtype) {
    if (!t.defined()) {
      error << "batch." << name << ": missing";
    } else if (t.scalar_type() != dtype) {
      error << "batch." << name << ": dtype " << t.scalar_type() << ", expected " << dtype;
    } else if (!IsVector(t, b)) {
      error << "batch." << name << ": shape " << SizesString(t.sizes()) << ", expected [" << b
            << "]";
    } else {
      return true;
    }
    return false;
  };
  if (!check_vector(batch.actions, "actions", torch::kLong) ||
      !check_vector(batch.rewards, "rewards", torch::kFloat) ||
      !check_vector(batch.discounts, "discounts", torch::kFloat) ||
      !check_vector(batch.weights, "weights", torch::kFloat)) {
    return error.str();
  }
  // Only on the CPU: on a GPU this would stall the stream, and an out-of-range action
  // there is caught by gather's device-side check.
  if (batch.actions.device().is_cpu()) {
    const int64_t lo = batch.actions.min().item<int64_t>();
    const int64_t hi = batch.actions.max().item<int64_t>();
    if (lo < 0 || hi >= config_.network.num_actions) {
      error << "batch.actions: values in [" << lo << ", " << hi << "], expected [0, "
            << config_.network.num_actions << ")";
      return error.str();
    }
  }
  return "";
}

DqnLearner::UpdateResult DqnLearner::Update(const DqnBatch& batch) {
  const std::string invalid = ValidateBatch(batch);
  TORCH_CHECK(invalid.empty(), "DqnLearner::Update: ", invalid);
  auto to_device = [this](const torch::Tensor& t) {
    return t.to(device_, /*non_blocking=*/t.is_pinned());
  };
  const torch::Tensor observations = to_device(batch.observations);
  const torch::Tensor next_observations = to_device(batch.next_observations);
  const torch::Tensor actions = to_device(batch.actions);
  const torch::Tensor rewards = to_device(batch.rewards);
  const torch::Tensor discounts = to_device(batch.discounts);
  const torch::Tensor weights = to_device(batch.weights);

  torch::Tensor targets;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor target_next_q = target_->forward(next_observations);
    const torch::Tensor online_next_q =
        config_.double_q ? online_->forward(next_observations) : torch::Tensor();
    targets = DqnTargets(online_next_q, target_next_q, rewards, discounts, config_.double_q);
  }
  const DqnLossOutput out =
      DqnLoss(online_->forward(observations), actions, targets, weights, config_.huber_delta);
  torch::Tensor extra;
  if (extra_loss_) {
    extra = extra_loss_(*online_);
    TORCH_CHECK(extra.defined() && extra.numel() == 1,
                "DqnLearner::Update: the extra loss must be a scalar, got ",
                extra.defined() ? SizesString(extra.sizes()) : std::string("undefined"));
    extra = extra.reshape({}).to(out.loss.device());
  }
  optimizer_->zero_grad();
  out.loss.backward();
  const std::vector<torch::Tensor> parameters = online_->parameters();
  const torch::Tensor grad_norm = ClipGradNorm(parameters, config_.gradient_clip_norm);
  if (extra.defined() && extra.requires_grad()) {
    // The extra loss's gradient, clipped on its own, is added to the TD loss's clipped one
    // (a constant extra has no graph: nothing to add). autograd::grad leaves .grad alone.
    std::vector<torch::Tensor> extra_grads =
        torch::autograd::grad({extra}, parameters, /*grad_outputs=*/{}, /*retain_graph=*/false,
                              /*create_graph=*/false, /*allow_unused=*/true);
    std::vector<torch::Tensor> used;
    std::vector<size_t> owners;
    for (size_t i = 0; i < extra_grads.size(); ++i) {
      if (!extra_grads[i].defined()) continue;
      used.push_back(extra_grads[i]);
      owners.push_back(i);
    }
    ClipNorm(used, config_.gradient_clip_norm);
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < used.size(); ++k) {
      torch::Tensor p = parameters[owners[k]];
      if (p.grad().defined()) {
        p.mutable_grad().add_(used[k]);
      } else {
        p.mutable_grad() = used[k];
      }
    }
  }
  optimizer_->step();
  ++updates_;
  if (updates_ % config_.target_update_period == 0) CopyWeights(*online_, *target_);

  // One device-to-host copy for everything the caller reads.
  const int64_t b = out.td_errors.size(0);
  std::vector<torch::Tensor> parts = {
      out.td_errors.abs().to(torch::kDouble) + config_.priority_epsilon,
      out.loss.detach().to(torch::kDouble).view({1}),
      grad_norm.to(out.loss.device()).to(torch::kDouble).view({1})};
  if (extra.defined()) {
    parts.push_back(extra.detach().to(out.loss.device()).to(torch::kDouble).view({1}));
  }
  const torch::Tensor host = torch::cat(parts).to(torch::kCPU);
  UpdateResult result;
  result.new_priorities = host.narrow(0, 0, b).to(torch::kFloat);
  const double* tail = host.data_ptr<double>() + b;
  result.loss = static_cast<float>(tail[0]);
  result.grad_norm = tail[1];
  if (extra.defined()) result.extra_loss = static_cast<float>(tail[2]);
  return result;
}

double DqnLearner::BetaAt(int64_t frames) const {
  return AnnealedBeta(config_.importance_beta_start, config_.importance_beta_end,
                      config_.importance_beta_anneal_frames, frames);
}

std::string DqnLearner::Save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  try {
    torch::serialize::OutputArchive archive;
    archive.write("format", torch::tensor(kCheckpointFormat));
    archive.write("architecture", torch::tensor(ArchitectureKey(config_.network)));
    archive.write("optimizer_kind", torch::tensor(static_cast<int64_t>(config_.optimizer.kind)));
    archive.write("updates", torch::tensor(updates_));
    torch::serialize::OutputArchive online, target, optimizer;
    WriteModuleTensors(*online_, online);
    WriteModuleTensors(*target_, target);
    optimizer_->save(optimizer);
    archive.write("online", online);
    archive.write("target", target);
    archive.write("optimizer", optimizer);
    archive.save_to(tmp);
  } catch (const c10::Error& e) {
    std::remove(tmp.c_str());
    return "checkpoint " + path + ": cannot write " + tmp + ": " + e.what_without_backtrace();
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return "checkpoint " + path + ": cannot rename " + tmp + ": " + std::strerror(err);
  }
  return "";
}

std::string DqnLearner::Load(const std::string& path) {
  const std::string what = "checkpoint " + path + ": ";
  std::vector<std::pair<torch::Tensor, torch::Tensor>> staged;  // (destination, value)
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  int64_t updates = 0;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, device_);
    torch::Tensor format, architecture, optimizer_kind, updates_tensor;
    if (!archive.try_read("format", format) || format.numel() != 1 ||
        format.item<int64_t>() != kCheckpointFormat) {
      return what + "not an Engram DQN checkpoint of format " + std::to_string(kCheckpointFormat);
    }
    if (!archive.try_read("architecture", architecture) ||
        !archive.try_read("optimizer_kind", optimizer_kind) ||
        !archive.try_read("updates", updates_tensor)) {
      return what + "architecture, optimizer_kind or updates missing";
    }
    architecture = architecture.to(torch::kCPU).contiguous();
    const std::vector<int64_t> saved(architecture.data_ptr<int64_t>(),
                                     architecture.data_ptr<int64_t>() + architecture.numel());
    const std::vector<int64_t> ours = ArchitectureKey(config_.network);
    if (saved != ours) {
      return what + "network architecture " + Join(saved) + " does not match this learner's " +
             Join(ours) + " (torso, rank, observation shape, actions, conv, hidden)";
    }
    if (optimizer_kind.item<int64_t>() != static_cast<int64_t>(config_.optimizer.kind)) {
      return what + "optimizer kind " + std::to_string(optimizer_kind.item<int64_t>()) +
             " does not match this learner's " +
             std::to_string(static_cast<int64_t>(config_.optimizer.kind));
    }
    updates = updates_tensor.item<int64_t>();
    if (updates < 0) return what + "negative update counter";
    torch::serialize::InputArchive online, target, optimizer_archive;
    if (!archive.try_read("online", online) || !archive.try_read("target", target) ||
        !archive.try_read("optimizer", optimizer_archive)) {
      return what + "online, target or optimizer section missing";
    }
    if (std::string e = ReadModuleTensors(*online_, online, "online", &staged); !e.empty()) {
      return what + e;
    }
    if (std::string e = ReadModuleTensors(*target_, target, "target", &staged); !e.empty()) {
      return what + e;
    }
    // A fresh optimizer over the same parameter objects: its state is keyed by them, so it
    // is valid once the weights are copied in below, and a failure leaves ours untouched.
    optimizer = MakeOptimizer();
    optimizer->load(optimizer_archive);
    for (auto& group : optimizer->param_groups()) {
      group.set_options(MakeOptimizerOptions(config_.optimizer));
    }
  } catch (const c10::Error& e) {
    return what + e.what_without_backtrace();
  } catch (const std::exception& e) {
    return what + e.what();
  }
  torch::NoGradGuard no_grad;
  for (auto& [destination, value] : staged) destination.copy_(value);
  optimizer_ = std::move(optimizer);
  updates_ = updates;
  return "";
}

std::vector<std::pair<std::string, torch::Tensor>> DqnLearner::ExportWeights() const {
  return ExportModuleWeights(*online_);
}

std::string ImportWeights(QNetwork& network,
                          const std::vector<std::pair<std::string, torch::Tensor>>& weights) {
  return ImportModuleWeights(network, weights);
}

}  // namespace engram::learner
