#include "learner/core/ewc.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <utility>

#include "torch/autograd.h"
#include "torch/serialize/archive.h"

namespace engram::learner {
namespace {

// Bumped when the file layout changes; Load rejects other versions. The key differs from
// the learners' checkpoint keys, so no loader mistakes another's file for its own.
constexpr char kFormatKey[] = "ewc_format";
constexpr int64_t kFormat = 1;

NamedTensorList Parameters(const torch::nn::Module& module) {
  NamedTensorList parameters;
  for (const auto& item : module.named_parameters()) {
    parameters.emplace_back(item.key(), item.value());
  }
  return parameters;
}

// "" when `parameters` has exactly the names and shapes of `reference`, in order.
std::string Mismatch(const NamedTensorList& parameters, const NamedTensorList& reference) {
  if (parameters.size() != reference.size()) {
    return std::to_string(parameters.size()) + " parameters, the consolidated module had " +
           std::to_string(reference.size());
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    const auto& [name, tensor] = parameters[i];
    if (name != reference[i].first) {
      return "parameter " + std::to_string(i) + " is \"" + name + "\", the consolidated one \"" +
             reference[i].first + "\"";
    }
    if (tensor.sizes() != reference[i].second.sizes()) {
      return "parameter \"" + name + "\" has shape " + SizesString(tensor.sizes()) +
             ", the consolidated one " + SizesString(reference[i].second.sizes());
    }
  }
  return "";
}

struct FisherStats {
  double sum = 0;
  int64_t numel = 0;
  bool finite_and_nonnegative = true;
};

// One host read for the whole Fisher.
FisherStats Stats(const NamedTensorList& fisher) {
  FisherStats stats;
  std::vector<torch::Tensor> sums, bad;
  for (const auto& [name, f] : fisher) {
    if (f.numel() == 0) continue;
    stats.numel += f.numel();
    sums.push_back(f.sum().to(torch::kDouble).cpu());
    bad.push_back((~torch::isfinite(f) | (f < 0)).any().to(torch::kDouble).cpu());
  }
  if (sums.empty()) return stats;
  stats.sum = torch::stack(sums).sum().item<double>();
  stats.finite_and_nonnegative = torch::stack(bad).sum().item<double>() == 0;
  return stats;
}

std::string OptionsString(const EwcOptions& options) {
  std::ostringstream out;
  out << "lambda " << options.lambda << ", online " << (options.online ? "true" : "false")
      << ", online_gamma " << options.online_gamma;
  return out.str();
}

}  // namespace

std::string EwcOptions::Validate() const {
  std::ostringstream error;
  if (!(lambda >= 0) || !std::isfinite(lambda)) {
    error << "ewc.lambda: must be >= 0, got " << lambda;
  } else if (!(online_gamma >= 0 && online_gamma <= 1)) {
    error << "ewc.online_gamma: must be in [0, 1], got " << online_gamma;
  }
  return error.str();
}

NamedTensorList DiagonalFisher(torch::nn::Module& module, int64_t num_samples,
                               const std::function<torch::Tensor(int64_t)>& sample_loss) {
  TORCH_CHECK(num_samples >= 1, "DiagonalFisher: num_samples must be >= 1, got ", num_samples);
  TORCH_CHECK(static_cast<bool>(sample_loss), "DiagonalFisher: sample_loss is empty");
  torch::AutoGradMode enable_grad(true);
  NamedTensorList fisher;
  std::vector<torch::Tensor> inputs;  // the parameters that require grad
  std::vector<size_t> slot;           // their index in `fisher`
  for (const auto& [name, parameter] : Parameters(module)) {
    fisher.emplace_back(name, torch::zeros_like(parameter));
    if (parameter.requires_grad()) {
      inputs.push_back(parameter);
      slot.push_back(fisher.size() - 1);
    }
  }
  for (int64_t i = 0; i < num_samples; ++i) {
    const torch::Tensor loss = sample_loss(i);
    TORCH_CHECK(loss.defined() && loss.numel() == 1, "DiagonalFisher: sample_loss(", i,
                ") must be a scalar, got ",
                loss.defined() ? SizesString(loss.sizes()) : std::string("undefined"));
    // A loss that depends on no parameter has zero gradient (autograd::grad would throw).
    if (inputs.empty() || !loss.requires_grad()) continue;
    const std::vector<torch::Tensor> grads =
        torch::autograd::grad({loss.reshape({})}, inputs, /*grad_outputs=*/{},
                              /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < grads.size(); ++k) {
      if (grads[k].defined()) fisher[slot[k]].second.addcmul_(grads[k], grads[k]);
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, f] : fisher) f.div_(static_cast<double>(num_samples));
  return fisher;
}

NamedTensorList DqnFisher(DqnLearner& learner, const std::vector<DqnBatch>& batches) {
  TORCH_CHECK(!batches.empty(), "DqnFisher: no batches");
  const torch::Device device = learner.device();
  const int64_t num_actions = learner.config().network.num_actions;
  std::vector<torch::Tensor> observations;
  struct Sample {
    size_t batch;
    int64_t row;
    int64_t action;
  };
  std::vector<Sample> samples;
  for (size_t b = 0; b < batches.size(); ++b) {
    const std::string invalid = learner.ValidateBatch(batches[b]);
    TORCH_CHECK(invalid.empty(), "DqnFisher: batch ", b, ": ", invalid);
    observations.push_back(batches[b].observations.to(device));
    for (int64_t row = 0; row < observations.back().size(0); ++row) {
      for (int64_t a = 0; a < num_actions; ++a) samples.push_back({b, row, a});
    }
  }
  QNetwork& online = learner.online();
  // DiagonalFisher averages over (transition, action) pairs; scaling each Q by sqrt(A) turns
  // that into the sum over actions, averaged over transitions.
  const double scale = std::sqrt(static_cast<double>(num_actions));
  return DiagonalFisher(
      online, static_cast<int64_t>(samples.size()), [&](int64_t i) -> torch::Tensor {
        const Sample& s = samples[i];
        const torch::Tensor q = online.forward(observations[s.batch].narrow(0, s.row, 1));
        return q[0][s.action] * scale;
      });
}

ElasticWeights::ElasticWeights(EwcOptions options) : options_(std::move(options)) {
  const std::string invalid = options_.Validate();
  TORCH_CHECK(invalid.empty(), "ElasticWeights: ", invalid);
}

void ElasticWeights::Consolidate(const torch::nn::Module& module, const NamedTensorList& fisher) {
  const NamedTensorList parameters = Parameters(module);
  if (!terms_.empty()) {
    const std::string mismatch = Mismatch(parameters, terms_.front().anchor);
    TORCH_CHECK(mismatch.empty(), "ElasticWeights::Consolidate: ", mismatch);
  }
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, tensor] : fisher) {
    TORCH_CHECK(given.emplace(name, &tensor).second, "ElasticWeights::Consolidate: fisher \"", name,
                "\" twice");
  }
  TORCH_CHECK(given.size() == parameters.size(), "ElasticWeights::Consolidate: fisher has ",
              given.size(), " tensors, the module ", parameters.size(), " parameters");
  Term term;
  for (const auto& [name, parameter] : parameters) {
    auto it = given.find(name);
    TORCH_CHECK(it != given.end(), "ElasticWeights::Consolidate: fisher \"", name, "\" missing");
    const torch::Tensor& f = *it->second;
    TORCH_CHECK(f.defined() && f.sizes() == parameter.sizes(),
                "ElasticWeights::Consolidate: fisher \"", name, "\" has shape ",
                f.defined() ? SizesString(f.sizes()) : "undefined", ", the parameter ",
                SizesString(parameter.sizes()));
    term.anchor.emplace_back(name, parameter.detach().clone());
    term.fisher.emplace_back(name, f.detach().to(parameter.options(), /*non_blocking=*/false,
                                                 /*copy=*/true));
  }
  const FisherStats stats = Stats(term.fisher);
  TORCH_CHECK(stats.finite_and_nonnegative,
              "ElasticWeights::Consolidate: the Fisher must be finite and >= 0");
  if (!options_.online) {
    terms_.push_back(std::move(term));
    return;
  }
  torch::NoGradGuard no_grad;
  // Dividing by the mean makes every task's Fisher average 1, so a task with large rewards
  // (large TD errors, large gradients) does not drown the others in the running sum.
  if (stats.sum > 0) {
    const double mean = stats.sum / static_cast<double>(stats.numel);
    for (auto& [name, f] : term.fisher) f.div_(mean);
  }
  if (terms_.empty()) {
    terms_.push_back(std::move(term));
    return;
  }
  Term& running = terms_.front();
  for (size_t i = 0; i < running.fisher.size(); ++i) {
    running.fisher[i].second.mul_(options_.online_gamma).add_(term.fisher[i].second);
  }
  running.anchor = std::move(term.anchor);
}

torch::Tensor ElasticWeights::Penalty(const torch::nn::Module& module) const {
  const NamedTensorList parameters = Parameters(module);
  if (options_.lambda == 0 || terms_.empty()) {
    return parameters.empty()
               ? torch::zeros({})
               : torch::zeros({}, parameters.front().second.options().requires_grad(false));
  }
  const std::string mismatch = Mismatch(parameters, terms_.front().anchor);
  TORCH_CHECK(mismatch.empty(), "ElasticWeights::Penalty: ", mismatch);
  std::vector<torch::Tensor> sums;
  sums.reserve(terms_.size() * parameters.size());
  for (const Term& term : terms_) {
    for (size_t i = 0; i < parameters.size(); ++i) {
      const torch::Tensor& theta = parameters[i].second;
      TORCH_CHECK(theta.device() == term.anchor[i].second.device(),
                  "ElasticWeights::Penalty: parameter \"", parameters[i].first, "\" is on ",
                  theta.device(), ", the consolidated terms on ", term.anchor[i].second.device());
      const torch::Tensor diff = theta - term.anchor[i].second;
      sums.push_back((term.fisher[i].second * diff * diff).sum());
    }
  }
  if (sums.empty()) return torch::zeros({});
  return torch::stack(sums).sum() * (options_.lambda / 2);
}

std::string ElasticWeights::Save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  try {
    torch::serialize::OutputArchive archive;
    archive.write(kFormatKey, torch::tensor(kFormat));
    archive.write("options",
                  torch::tensor(std::vector<double>{options_.lambda, options_.online ? 1.0 : 0.0,
                                                    options_.online_gamma}));
    archive.write("terms", torch::tensor(static_cast<int64_t>(terms_.size())));
    c10::List<std::string> names;
    if (!terms_.empty()) {
      for (const auto& [name, tensor] : terms_.front().anchor) names.push_back(name);
    }
    archive.write("names", c10::IValue(names));
    for (size_t k = 0; k < terms_.size(); ++k) {
      torch::serialize::OutputArchive term, anchor, fisher;
      for (const auto& [name, tensor] : terms_[k].anchor) anchor.write(ArchiveKey(name), tensor);
      for (const auto& [name, tensor] : terms_[k].fisher) fisher.write(ArchiveKey(name), tensor);
      term.write("anchor", anchor);
      term.write("fisher", fisher);
      archive.write("term" + std::to_string(k), term);
    }
    archive.save_to(tmp);
  } catch (const c10::Error& e) {
    std::remove(tmp.c_str());
    return "ewc state " + path + ": cannot write " + tmp + ": " + e.what_without_backtrace();
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return "ewc state " + path + ": cannot rename " + tmp + ": " + std::strerror(err);
  }
  return "";
}

std::string ElasticWeights::Load(const std::string& path, torch::Device device) {
  const std::string what = "ewc state " + path + ": ";
  std::vector<Term> terms;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, device);
    torch::Tensor format, options, count;
    if (!archive.try_read(kFormatKey, format) || format.numel() != 1 ||
        format.item<int64_t>() != kFormat) {
      return what + "not an Engram EWC state of format " + std::to_string(kFormat);
    }
    if (!archive.try_read("options", options) || !archive.try_read("terms", count) ||
        options.numel() != 3 || count.numel() != 1) {
      return what + "options or terms missing";
    }
    options = options.to(torch::kCPU, torch::kDouble).contiguous();
    const double* o = options.data_ptr<double>();
    EwcOptions saved;
    saved.lambda = o[0];
    saved.online = o[1] != 0;
    saved.online_gamma = o[2];
    if (saved.lambda != options_.lambda || saved.online != options_.online ||
        saved.online_gamma != options_.online_gamma) {
      return what + "saved options (" + OptionsString(saved) + ") differ from this object's (" +
             OptionsString(options_) + ")";
    }
    const int64_t n = count.item<int64_t>();
    if (n < 0 || (options_.online && n > 1)) {
      return what + std::to_string(n) + " terms, expected " +
             (options_.online ? "0 or 1 (online EWC)" : ">= 0");
    }
    c10::IValue names_value;
    if (!archive.try_read("names", names_value) || !names_value.isList()) {
      return what + "parameter names missing";
    }
    std::vector<std::string> names;
    for (const c10::IValue& name : names_value.toListRef()) {
      if (!name.isString()) return what + "parameter names are not strings";
      names.push_back(name.toStringRef());
    }
    for (int64_t k = 0; k < n; ++k) {
      const std::string term_name = "term" + std::to_string(k);
      torch::serialize::InputArchive term, anchor, fisher;
      if (!archive.try_read(term_name, term) || !term.try_read("anchor", anchor) ||
          !term.try_read("fisher", fisher)) {
        return what + term_name + " missing";
      }
      Term staged;
      for (size_t i = 0; i < names.size(); ++i) {
        const std::string& name = names[i];
        torch::Tensor a, f;
        if (!anchor.try_read(ArchiveKey(name), a) || !fisher.try_read(ArchiveKey(name), f)) {
          return what + term_name + " tensor \"" + name + "\" missing";
        }
        if (!a.is_floating_point() || a.sizes() != f.sizes() || a.dtype() != f.dtype()) {
          return what + term_name + " tensor \"" + name + "\": anchor " + SizesString(a.sizes()) +
                 " and fisher " + SizesString(f.sizes()) + " must be floating, of one shape";
        }
        if (k > 0 && a.sizes() != terms.front().anchor[i].second.sizes()) {
          return what + term_name + " tensor \"" + name + "\" has shape " + SizesString(a.sizes()) +
                 ", term0's " + SizesString(terms.front().anchor[i].second.sizes());
        }
        staged.anchor.emplace_back(name, a.to(device));
        staged.fisher.emplace_back(name, f.to(device));
      }
      if (!Stats(staged.fisher).finite_and_nonnegative) {
        return what + term_name + " Fisher is not finite and >= 0";
      }
      terms.push_back(std::move(staged));
    }
  } catch (const c10::Error& e) {
    return what + e.what_without_backtrace();
  } catch (const std::exception& e) {
    return what + e.what();
  }
  terms_ = std::move(terms);
  return "";
}

}  // namespace engram::learner
