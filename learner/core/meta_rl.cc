#include "learner/core/meta_rl.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>

#include "learner/core/module_io.h"
#include "torch/nn/functional/activation.h"
#include "torch/optim/adam.h"
#include "torch/optim/rmsprop.h"
#include "torch/serialize/archive.h"

namespace engram::learner {
namespace {

// Bumped when the checkpoint layout changes; Load rejects other versions. The key differs
// from the DQN checkpoint's "format", so neither learner mistakes the other's file.
constexpr char kFormatKey[] = "meta_rl_format";
constexpr int64_t kCheckpointFormat = 1;

// Everything that decides parameter names and shapes, for checking checkpoints.
std::vector<int64_t> ArchitectureKey(const MetaRlNetConfig& config) {
  return {config.observation_size, config.num_actions, config.lstm_size,
          config.input_previous_action ? 1 : 0, config.input_previous_reward ? 1 : 0};
}

std::string Join(const std::vector<int64_t>& values) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << "]";
  return out.str();
}

bool IsMatrix(const torch::Tensor& t, int64_t rows, int64_t cols) {
  return t.dim() == 2 && t.size(0) == rows && t.size(1) == cols;
}

}  // namespace

// ---- the network ----------------------------------------------------------------------

std::string MetaRlNetConfig::Validate() const {
  std::ostringstream error;
  if (observation_size < 1) {
    error << "observation_size: must be >= 1, got " << observation_size;
  } else if (num_actions < 1) {
    error << "num_actions: must be >= 1, got " << num_actions;
  } else if (lstm_size < 1) {
    error << "lstm_size: must be >= 1, got " << lstm_size;
  }
  return error.str();
}

int64_t MetaRlNetConfig::input_size() const {
  return observation_size + (input_previous_action ? num_actions : 0) +
         (input_previous_reward ? 1 : 0);
}

MetaRlNetImpl::MetaRlNetImpl(MetaRlNetConfig config) : config_(std::move(config)) {
  const std::string invalid = config_.Validate();
  TORCH_CHECK(invalid.empty(), "MetaRlNet: ", invalid);
  lstm_ = register_module("lstm", torch::nn::LSTMCell(torch::nn::LSTMCellOptions(
                                      config_.input_size(), config_.lstm_size)));
  policy_ = register_module("policy", torch::nn::Linear(config_.lstm_size, config_.num_actions));
  value_ = register_module("value", torch::nn::Linear(config_.lstm_size, 1));
}

MetaRlNetImpl::State MetaRlNetImpl::InitialState(int64_t batch, torch::Device device) const {
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(device);
  return State{torch::zeros({batch, config_.lstm_size}, options),
               torch::zeros({batch, config_.lstm_size}, options)};
}

torch::Tensor MetaRlNetImpl::Input(const torch::Tensor& observations,
                                   const torch::Tensor& previous_actions,
                                   const torch::Tensor& previous_rewards) const {
  const int64_t n = previous_actions.size(0);
  std::vector<torch::Tensor> parts = {
      observations.reshape({n, config_.observation_size}).to(torch::kFloat)};
  if (config_.input_previous_action) {
    // A scatter of the validity mask rather than one_hot(), which would read the indices
    // back to the host to check them; -1 scatters a 0 into column 0.
    const torch::Tensor valid = (previous_actions >= 0).to(torch::kFloat).unsqueeze(1);
    parts.push_back(torch::zeros({n, config_.num_actions}, valid.options())
                        .scatter_(1, previous_actions.clamp_min(0).unsqueeze(1), valid));
  }
  if (config_.input_previous_reward) {
    parts.push_back(previous_rewards.to(torch::kFloat).unsqueeze(1));
  }
  return torch::cat(parts, 1);
}

MetaRlNetImpl::Output MetaRlNetImpl::Step(const torch::Tensor& observations,
                                          const torch::Tensor& previous_actions,
                                          const torch::Tensor& previous_rewards,
                                          const State& state) {
  TORCH_CHECK(previous_actions.dim() == 1 && previous_actions.scalar_type() == torch::kLong,
              "MetaRlNet::Step: previous_actions must be int64 [B], got ",
              previous_actions.scalar_type(), " ", previous_actions.sizes());
  const int64_t b = previous_actions.size(0);
  TORCH_CHECK(observations.dim() >= 1 && observations.size(0) == b &&
                  observations.numel() == b * config_.observation_size,
              "MetaRlNet::Step: observations must be [", b, ", obs...] with ",
              config_.observation_size, " elements each, got ", observations.sizes());
  TORCH_CHECK(previous_rewards.dim() == 1 && previous_rewards.size(0) == b,
              "MetaRlNet::Step: previous_rewards must be [", b, "], got ",
              previous_rewards.sizes());
  TORCH_CHECK(IsMatrix(state.h, b, config_.lstm_size) && IsMatrix(state.c, b, config_.lstm_size),
              "MetaRlNet::Step: state h and c must be [", b, ", ", config_.lstm_size, "], got ",
              state.h.sizes(), " and ", state.c.sizes());
  const auto [h, c] = lstm_->forward(Input(observations, previous_actions, previous_rewards),
                                     std::make_tuple(state.h, state.c));
  return Output{policy_->forward(h), value_->forward(h).squeeze(1), State{h, c}};
}

MetaRlNetImpl::Output MetaRlNetImpl::Unroll(const torch::Tensor& observations,
                                            const torch::Tensor& previous_actions,
                                            const torch::Tensor& previous_rewards,
                                            const torch::Tensor& episode_starts,
                                            const State& initial_state) {
  TORCH_CHECK(previous_actions.dim() == 2 && previous_actions.scalar_type() == torch::kLong &&
                  previous_actions.size(0) >= 1,
              "MetaRlNet::Unroll: previous_actions must be int64 [T >= 1, B], got ",
              previous_actions.scalar_type(), " ", previous_actions.sizes());
  const int64_t t_max = previous_actions.size(0);
  const int64_t b = previous_actions.size(1);
  TORCH_CHECK(observations.dim() >= 2 && observations.size(0) == t_max &&
                  observations.size(1) == b &&
                  observations.numel() == t_max * b * config_.observation_size,
              "MetaRlNet::Unroll: observations must be [", t_max, ", ", b, ", obs...] with ",
              config_.observation_size, " elements each, got ", observations.sizes());
  TORCH_CHECK(IsMatrix(previous_rewards, t_max, b), "MetaRlNet::Unroll: previous_rewards must be [",
              t_max, ", ", b, "], got ", previous_rewards.sizes());
  TORCH_CHECK(IsMatrix(episode_starts, t_max, b) && episode_starts.scalar_type() == torch::kBool,
              "MetaRlNet::Unroll: episode_starts must be bool [", t_max, ", ", b, "], got ",
              episode_starts.scalar_type(), " ", episode_starts.sizes());
  TORCH_CHECK(IsMatrix(initial_state.h, b, config_.lstm_size) &&
                  IsMatrix(initial_state.c, b, config_.lstm_size),
              "MetaRlNet::Unroll: initial state h and c must be [", b, ", ", config_.lstm_size,
              "], got ", initial_state.h.sizes(), " and ", initial_state.c.sizes());
  // The inputs of all steps at once; only the recurrence is sequential.
  const torch::Tensor inputs =
      Input(observations.reshape({t_max * b, config_.observation_size}),
            previous_actions.reshape({t_max * b}), previous_rewards.reshape({t_max * b}))
          .view({t_max, b, config_.input_size()});
  const torch::Tensor keep = (~episode_starts).to(torch::kFloat).unsqueeze(2);  // [T, B, 1]
  torch::Tensor h = initial_state.h;
  torch::Tensor c = initial_state.c;
  std::vector<torch::Tensor> hs;
  hs.reserve(t_max);
  for (int64_t t = 0; t < t_max; ++t) {
    h = h * keep[t];
    c = c * keep[t];
    std::tie(h, c) = lstm_->forward(inputs[t], std::make_tuple(h, c));
    hs.push_back(h);
  }
  const torch::Tensor outputs = torch::stack(hs);  // [T, B, H]
  return Output{policy_->forward(outputs), value_->forward(outputs).squeeze(2), State{h, c}};
}

// ---- V-trace and the loss -------------------------------------------------------------

VTraceOutput VTrace(const torch::Tensor& log_rhos, const torch::Tensor& discounts,
                    const torch::Tensor& rewards, const torch::Tensor& values,
                    const torch::Tensor& bootstrap_value, double rho_clip, double c_clip) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(values.dim() == 2 && values.size(0) >= 1, "VTrace: values must be [T >= 1, B], got ",
              values.sizes());
  const int64_t t_max = values.size(0);
  const int64_t b = values.size(1);
  TORCH_CHECK(
      IsMatrix(log_rhos, t_max, b) && IsMatrix(discounts, t_max, b) && IsMatrix(rewards, t_max, b),
      "VTrace: log_rhos, discounts and rewards must be [", t_max, ", ", b, "], got ",
      log_rhos.sizes(), ", ", discounts.sizes(), ", ", rewards.sizes());
  TORCH_CHECK(bootstrap_value.dim() == 1 && bootstrap_value.size(0) == b,
              "VTrace: bootstrap_value must be [", b, "], got ", bootstrap_value.sizes());
  TORCH_CHECK(rho_clip > 0 && c_clip > 0, "VTrace: clips must be > 0, got rho_clip ", rho_clip,
              " and c_clip ", c_clip);
  const torch::Tensor v = values.detach();
  const torch::Tensor gamma = discounts.detach();
  const torch::Tensor r = rewards.detach();
  const torch::Tensor rhos = log_rhos.detach().exp();
  const torch::Tensor clipped_rhos = rhos.clamp_max(rho_clip);
  const torch::Tensor cs = rhos.clamp_max(c_clip);
  const torch::Tensor bootstrap = bootstrap_value.detach().unsqueeze(0);
  // gamma_t * x_{t+1}, with a where() so that a terminal's next value (junk, maybe NaN)
  // cannot leak in through 0 * NaN.
  const torch::Tensor zeros = torch::zeros_like(v);
  auto discounted_next = [&](const torch::Tensor& x) {
    const torch::Tensor next = torch::cat({x.narrow(0, 1, t_max - 1), bootstrap}, 0);
    return torch::where(gamma == 0, zeros, gamma * next);
  };
  const torch::Tensor deltas = clipped_rhos * (r + discounted_next(v) - v);
  const torch::Tensor decay = gamma * cs;
  std::vector<torch::Tensor> vs_minus_v(t_max);
  torch::Tensor acc = torch::zeros_like(bootstrap_value).to(v.dtype());
  for (int64_t t = t_max - 1; t >= 0; --t) {
    acc = deltas[t] + torch::where(gamma[t] == 0, zeros[t], decay[t] * acc);
    vs_minus_v[t] = acc;
  }
  VTraceOutput out;
  out.vs = torch::stack(vs_minus_v) + v;
  out.pg_advantages = clipped_rhos * (r + discounted_next(out.vs) - v);
  return out;
}

MetaRlLossOutput MetaRlLoss(const torch::Tensor& logits, const torch::Tensor& values,
                            const torch::Tensor& bootstrap_value, const MetaRlBatch& batch,
                            const MetaRlConfig& config) {
  TORCH_CHECK(logits.dim() == 3, "MetaRlLoss: logits must be [T, B, A], got ", logits.sizes());
  const int64_t t_max = logits.size(0);
  const int64_t b = logits.size(1);
  TORCH_CHECK(IsMatrix(values, t_max, b), "MetaRlLoss: values must be [", t_max, ", ", b, "], got ",
              values.sizes());
  TORCH_CHECK(batch.actions.defined() && IsMatrix(batch.actions, t_max, b),
              "MetaRlLoss: batch.actions must be [", t_max, ", ", b, "]");
  const torch::Device device = logits.device();
  const torch::Tensor actions = batch.actions.to(device).unsqueeze(2);
  const torch::Tensor log_probs = torch::log_softmax(logits, 2);
  const torch::Tensor action_log_probs = log_probs.gather(2, actions).squeeze(2);
  torch::Tensor log_rhos;
  if (batch.behaviour_logits.defined() && batch.behaviour_logits.numel() > 0) {
    TORCH_CHECK(batch.behaviour_logits.sizes() == logits.sizes(),
                "MetaRlLoss: batch.behaviour_logits must be ", logits.sizes(), ", got ",
                batch.behaviour_logits.sizes());
    const torch::Tensor behaviour_log_probs =
        torch::log_softmax(batch.behaviour_logits.to(device).to(torch::kFloat), 2)
            .gather(2, actions)
            .squeeze(2);
    log_rhos = action_log_probs.detach() - behaviour_log_probs;
  } else {
    log_rhos = torch::zeros_like(action_log_probs);
  }
  const VTraceOutput vtrace =
      VTrace(log_rhos, batch.discounts.to(device) * config.gamma, batch.rewards.to(device), values,
             bootstrap_value, config.vtrace_rho_clip, config.vtrace_c_clip);
  MetaRlLossOutput out;
  const torch::Tensor policy = -(vtrace.pg_advantages * action_log_probs).mean();
  const torch::Tensor value = (0.5 * (vtrace.vs - values).pow(2)).mean();
  const torch::Tensor entropy = -(log_probs.exp() * log_probs).sum(2).mean();
  out.total = policy + config.value_cost * value - config.entropy_cost * entropy;
  out.policy = policy.detach();
  out.value = value.detach();
  out.entropy = entropy.detach();
  return out;
}

// ---- the learner ----------------------------------------------------------------------

std::string MetaRlConfig::Validate() const {
  if (std::string error = network.Validate(); !error.empty()) return "network." + error;
  if (std::string error = optimizer.Validate(); !error.empty()) return error;
  std::ostringstream error;
  if (!(gamma >= 0 && gamma <= 1)) {
    error << "gamma: must be in [0, 1], got " << gamma;
  } else if (!(entropy_cost >= 0) || !std::isfinite(entropy_cost)) {
    error << "entropy_cost: must be >= 0, got " << entropy_cost;
  } else if (!(value_cost >= 0) || !std::isfinite(value_cost)) {
    error << "value_cost: must be >= 0, got " << value_cost;
  } else if (!(vtrace_rho_clip > 0)) {
    error << "vtrace_rho_clip: must be > 0, got " << vtrace_rho_clip;
  } else if (!(vtrace_c_clip > 0)) {
    error << "vtrace_c_clip: must be > 0, got " << vtrace_c_clip;
  } else if (!(gradient_clip_norm >= 0) || !std::isfinite(gradient_clip_norm)) {
    error << "gradient_clip_norm: must be >= 0 (0 disables clipping), got " << gradient_clip_norm;
  }
  return error.str();
}

std::unique_ptr<MetaRlLearner> MetaRlLearner::Create(const MetaRlConfig& config,
                                                     torch::Device device, std::string* error) {
  *error = config.Validate();
  if (!error->empty()) return nullptr;
  return std::unique_ptr<MetaRlLearner>(new MetaRlLearner(config, device));
}

MetaRlLearner::MetaRlLearner(const MetaRlConfig& config, torch::Device device)
    : config_(config), device_(device) {
  network_ = MetaRlNet(config_.network);
  network_->to(device_);
  optimizer_ = MakeOptimizer();
}

std::unique_ptr<torch::optim::Optimizer> MetaRlLearner::MakeOptimizer() const {
  return learner::MakeOptimizer(config_.optimizer, network_->parameters());
}

std::string MetaRlLearner::ValidateBatch(const MetaRlBatch& batch) const {
  const MetaRlNetConfig& net = config_.network;
  std::ostringstream error;
  const torch::Tensor& obs = batch.observations;
  if (!obs.defined()) return "batch.observations: missing";
  if (obs.scalar_type() != torch::kFloat && obs.scalar_type() != torch::kByte) {
    error << "batch.observations: dtype " << obs.scalar_type() << ", expected Float or Byte";
    return error.str();
  }
  if (obs.dim() < 2 || obs.size(0) < 1 || obs.size(1) < 1 ||
      obs.numel() != obs.size(0) * obs.size(1) * net.observation_size) {
    error << "batch.observations: shape " << SizesString(obs.sizes())
          << ", expected [T >= 1, B >= 1, obs...] with " << net.observation_size
          << " elements per observation";
    return error.str();
  }
  const int64_t t_max = obs.size(0);
  const int64_t b = obs.size(1);
  auto check = [&](const torch::Tensor& t, const char* name, torch::ScalarType dtype,
                   std::vector<int64_t> shape) {
    if (!t.defined()) {
      error << "batch." << name << ": missing";
    } else if (t.scalar_type() != dtype) {
      error << "batch." << name << ": dtype " << t.scalar_type() << ", expected " << dtype;
    } else if (t.sizes() != torch::IntArrayRef(shape)) {
      error << "batch." << name << ": shape " << SizesString(t.sizes()) << ", expected "
            << Join(shape);
    } else {
      return true;
    }
    return false;
  };
  if (!check(batch.actions, "actions", torch::kLong, {t_max, b}) ||
      !check(batch.rewards, "rewards", torch::kFloat, {t_max, b}) ||
      !check(batch.discounts, "discounts", torch::kFloat, {t_max, b}) ||
      !check(batch.episode_starts, "episode_starts", torch::kBool, {t_max, b}) ||
      !check(batch.previous_actions, "previous_actions", torch::kLong, {t_max, b}) ||
      !check(batch.previous_rewards, "previous_rewards", torch::kFloat, {t_max, b}) ||
      !check(batch.initial_h, "initial_h", torch::kFloat, {b, net.lstm_size}) ||
      !check(batch.initial_c, "initial_c", torch::kFloat, {b, net.lstm_size})) {
    return error.str();
  }
  if (batch.behaviour_logits.defined() && batch.behaviour_logits.numel() > 0 &&
      !check(batch.behaviour_logits, "behaviour_logits", torch::kFloat,
             {t_max, b, net.num_actions})) {
    return error.str();
  }
  const torch::Tensor& boot = batch.bootstrap_observation;
  if (!boot.defined()) return "batch.bootstrap_observation: missing";
  if (boot.scalar_type() != obs.scalar_type()) {
    error << "batch.bootstrap_observation: dtype " << boot.scalar_type() << ", observations are "
          << obs.scalar_type();
    return error.str();
  }
  if (boot.sizes() != obs.sizes().slice(1)) {
    error << "batch.bootstrap_observation: shape " << SizesString(boot.sizes()) << ", expected "
          << SizesString(obs.sizes().slice(1));
    return error.str();
  }
  // Only on the CPU: on a GPU this would stall the stream, and an out-of-range action
  // there is caught by gather's device-side check.
  auto check_range = [&](const torch::Tensor& t, const char* name, int64_t lowest) {
    if (!t.device().is_cpu()) return true;
    const int64_t lo = t.min().item<int64_t>();
    const int64_t hi = t.max().item<int64_t>();
    if (lo >= lowest && hi < net.num_actions) return true;
    error << "batch." << name << ": values in [" << lo << ", " << hi << "], expected [" << lowest
          << ", " << net.num_actions << ")";
    return false;
  };
  if (!check_range(batch.actions, "actions", 0) ||
      !check_range(batch.previous_actions, "previous_actions", -1)) {
    return error.str();
  }
  return "";
}

MetaRlLearner::UpdateResult MetaRlLearner::Update(const MetaRlBatch& batch) {
  const std::string invalid = ValidateBatch(batch);
  TORCH_CHECK(invalid.empty(), "MetaRlLearner::Update: ", invalid);
  auto to_device = [this](const torch::Tensor& t) {
    return t.defined() ? t.to(device_, /*non_blocking=*/t.is_pinned()) : t;
  };
  MetaRlBatch b;
  b.observations = to_device(batch.observations);
  b.actions = to_device(batch.actions);
  b.rewards = to_device(batch.rewards);
  b.discounts = to_device(batch.discounts);
  b.behaviour_logits = to_device(batch.behaviour_logits);
  b.episode_starts = to_device(batch.episode_starts);
  b.previous_actions = to_device(batch.previous_actions);
  b.previous_rewards = to_device(batch.previous_rewards);
  b.initial_h = to_device(batch.initial_h);
  b.initial_c = to_device(batch.initial_c);
  b.bootstrap_observation = to_device(batch.bootstrap_observation);

  const MetaRlNetImpl::Output out =
      network_->Unroll(b.observations, b.previous_actions, b.previous_rewards, b.episode_starts,
                       MetaRlNetImpl::State{b.initial_h, b.initial_c});
  torch::Tensor bootstrap_value;
  {
    torch::NoGradGuard no_grad;
    const int64_t last = b.actions.size(0) - 1;
    bootstrap_value =
        network_->Step(b.bootstrap_observation, b.actions[last], b.rewards[last], out.state).values;
  }
  const MetaRlLossOutput loss = MetaRlLoss(out.logits, out.values, bootstrap_value, b, config_);
  optimizer_->zero_grad();
  loss.total.backward();
  const torch::Tensor grad_norm = ClipGradNorm(network_->parameters(), config_.gradient_clip_norm);
  optimizer_->step();
  ++updates_;

  // One device-to-host copy for everything the caller reads.
  const torch::Tensor host = torch::stack({loss.total.detach(), loss.policy, loss.value,
                                           loss.entropy, grad_norm.to(loss.policy.device())})
                                 .to(torch::kDouble)
                                 .to(torch::kCPU);
  const double* v = host.data_ptr<double>();
  UpdateResult result;
  result.loss = static_cast<float>(v[0]);
  result.policy_loss = static_cast<float>(v[1]);
  result.value_loss = static_cast<float>(v[2]);
  result.entropy = static_cast<float>(v[3]);
  result.grad_norm = v[4];
  return result;
}

std::string MetaRlLearner::Save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  try {
    torch::serialize::OutputArchive archive;
    archive.write(kFormatKey, torch::tensor(kCheckpointFormat));
    archive.write("architecture", torch::tensor(ArchitectureKey(config_.network)));
    archive.write("optimizer_kind", torch::tensor(static_cast<int64_t>(config_.optimizer.kind)));
    archive.write("updates", torch::tensor(updates_));
    torch::serialize::OutputArchive network, optimizer;
    WriteModuleTensors(*network_, network);
    optimizer_->save(optimizer);
    archive.write("network", network);
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

std::string MetaRlLearner::Load(const std::string& path) {
  const std::string what = "checkpoint " + path + ": ";
  std::vector<std::pair<torch::Tensor, torch::Tensor>> staged;  // (destination, value)
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  int64_t updates = 0;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, device_);
    torch::Tensor format, architecture, optimizer_kind, updates_tensor;
    if (!archive.try_read(kFormatKey, format) || format.numel() != 1 ||
        format.item<int64_t>() != kCheckpointFormat) {
      return what + "not an Engram meta-RL checkpoint of format " +
             std::to_string(kCheckpointFormat);
    }
    if (!archive.try_read("architecture", architecture) ||
        !archive.try_read("optimizer_kind", optimizer_kind) ||
        !archive.try_read("updates", updates_tensor)) {
      return what + "architecture, optimizer_kind or updates missing";
    }
    architecture = architecture.to(torch::kCPU).to(torch::kLong).contiguous();
    const std::vector<int64_t> saved(architecture.data_ptr<int64_t>(),
                                     architecture.data_ptr<int64_t>() + architecture.numel());
    const std::vector<int64_t> ours = ArchitectureKey(config_.network);
    if (saved != ours) {
      return what + "network architecture " + Join(saved) + " does not match this learner's " +
             Join(ours) +
             " (observation size, actions, LSTM size, previous action input, previous reward "
             "input)";
    }
    if (optimizer_kind.item<int64_t>() != static_cast<int64_t>(config_.optimizer.kind)) {
      return what + "optimizer kind " + std::to_string(optimizer_kind.item<int64_t>()) +
             " does not match this learner's " +
             std::to_string(static_cast<int64_t>(config_.optimizer.kind));
    }
    updates = updates_tensor.item<int64_t>();
    if (updates < 0) return what + "negative update counter";
    torch::serialize::InputArchive network, optimizer_archive;
    if (!archive.try_read("network", network) ||
        !archive.try_read("optimizer", optimizer_archive)) {
      return what + "network or optimizer section missing";
    }
    if (std::string e = ReadModuleTensors(*network_, network, "network", &staged); !e.empty()) {
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

std::vector<std::pair<std::string, torch::Tensor>> MetaRlLearner::ExportWeights() const {
  return ExportModuleWeights(*network_);
}

std::string ImportWeights(MetaRlNetImpl& network,
                          const std::vector<std::pair<std::string, torch::Tensor>>& weights) {
  return ImportModuleWeights(network, weights);
}

}  // namespace engram::learner
