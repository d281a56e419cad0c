// Held-out evaluation of a trained meta-RL network (frozen weights) against the bandit
// baselines, on the same task instances:
//
//   meta_rl_eval --experiment=SPEC --checkpoint=CKPT_DIR [--instances=300]
//                [--first_seed=1099511627776] [--csv=PATH] [--json=PATH]
//
// SPEC is the experiment the network was trained by (its environment is the task family
// evaluated; its meta_rl block the network); CKPT_DIR a learner checkpoint directory
// (learner.pt inside). For the two-armed bandit families the table is cumulative expected
// regret (max_i p_i - p_action summed over trials) after trials 10, 25, 50 and 100 for the
// network, Thompson sampling, UCB1, the Gittins index (discount 0.99) and a uniform random
// policy, mean +- standard error over the instances; --csv writes the per-trial curves. For
// bandit/two_step it is the stay probabilities by (common/rare transition x
// rewarded/unrewarded). Instances are seeded from --first_seed, far from the training seeds
// (the experiment's seed + actor and environment indices) and the evaluation actor's.

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/envs/bandits/baselines.h"
#include "bench/common/bench_report.h"
#include "learner/apex_config.h"
#include "learner/core/compute_threads.h"
#include "learner/core/meta_rl.h"
#include "learner/experiment_spec.h"
#include "torch/torch.h"

ABSL_FLAG(std::string, experiment, "",
          "The experiment spec (.textproto) the network was trained by.");
ABSL_FLAG(std::string, checkpoint, "", "Learner checkpoint directory (with learner.pt).");
ABSL_FLAG(int32_t, instances, 300, "Held-out task instances (episodes) per policy.");
ABSL_FLAG(uint64_t, first_seed, uint64_t{1} << 40, "Seed of the first held-out instance.");
ABSL_FLAG(std::string, csv, "", "Write per-trial cumulative regret curves (CSV) to this path.");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this path.");

namespace engram {
namespace {

using envs::bandits::BanditAgent;

// The trained network as a BanditAgent: recurrent state reset per instance, actions sampled
// from its policy (as the actors act).
class NetworkAgent final : public BanditAgent {
 public:
  NetworkAgent(learner::MetaRlNetImpl* network, const envs::EnvSpec& spec)
      : network_(network), spec_(spec) {}

  void Reset(uint64_t seed) override {
    state_ = network_->InitialState(1, torch::kCPU);
    rng_.seed(seed);
  }

  int Act(absl::Span<const uint8_t> observation, int previous_action,
          float previous_reward) override {
    std::vector<int64_t> shape = {1};
    shape.insert(shape.end(), spec_.observation_shape.begin(), spec_.observation_shape.end());
    const torch::Tensor input = torch::from_blob(
        const_cast<uint8_t*>(observation.data()), shape,
        spec_.observation_dtype == envs::DType::kUint8 ? torch::kUInt8 : torch::kFloat32);
    torch::NoGradGuard no_grad;
    learner::MetaRlNetImpl::Output out =
        network_->Step(input, torch::full({1}, previous_action, torch::kInt64),
                       torch::full({1}, previous_reward), state_);
    state_ = out.state;
    const torch::Tensor p = torch::softmax(out.logits[0], 0).contiguous();
    double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    const int n = static_cast<int>(p.numel());
    for (int a = 0; a < n - 1; ++a) {
      u -= p[a].item<float>();
      if (u < 0) return a;
    }
    return n - 1;
  }

 private:
  learner::MetaRlNetImpl* network_;
  const envs::EnvSpec& spec_;
  learner::MetaRlNetImpl::State state_;
  std::mt19937_64 rng_;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "meta_rl_eval: %s\n", message.c_str());
  return 2;
}

int Run() {
  learner::SetComputeThreads(1);
  if (absl::GetFlag(FLAGS_experiment).empty() || absl::GetFlag(FLAGS_checkpoint).empty()) {
    return Fail("--experiment and --checkpoint are required");
  }
  absl::StatusOr<v1::ExperimentSpec> spec =
      learner::ReadExperimentSpec(absl::GetFlag(FLAGS_experiment));
  if (!spec.ok()) return Fail(spec.status().ToString());
  absl::StatusOr<v1::ExperimentSpec> resolved = learner::ResolveExperimentSpec(*spec);
  if (!resolved.ok()) return Fail(resolved.status().ToString());
  absl::StatusOr<learner::MetaRlConfig> config = learner::MetaRlLearnerConfig(*resolved);
  if (!config.ok()) return Fail(config.status().ToString());
  std::string error;
  std::unique_ptr<learner::MetaRlLearner> trained =
      learner::MetaRlLearner::Create(*config, torch::kCPU, &error);
  if (trained == nullptr) return Fail(error);
  const std::string model = absl::GetFlag(FLAGS_checkpoint) + "/learner.pt";
  if (const std::string load = trained->Load(model); !load.empty()) {
    return Fail(absl::StrCat(model, ": ", load));
  }
  trained->network()->eval();

  const v1::EnvironmentSpec& env = resolved->environment();
  const envs::EnvOptions options(env.options().begin(), env.options().end());
  absl::StatusOr<std::unique_ptr<envs::Env>> probe = envs::MakeEnv(env.name(), options);
  if (!probe.ok()) return Fail(probe.status().ToString());
  const envs::EnvSpec env_spec = (*probe)->spec();
  NetworkAgent network(trained->network().get(), env_spec);
  const int instances = absl::GetFlag(FLAGS_instances);
  const uint64_t first_seed = absl::GetFlag(FLAGS_first_seed);

  bench::Report report("meta_rl_eval");
  report.AddConfig("experiment", resolved->id());
  report.AddConfig("environment", env.name());
  for (const auto& [key, value] : options) report.AddConfig(absl::StrCat("option/", key), value);
  report.AddConfig("learner_updates", absl::StrCat(trained->updates()));
  report.AddConfig("instances", absl::StrCat(instances));
  report.AddConfig("first_seed", absl::StrCat(first_seed));

  if (env.name() == "bandit/two_step") {
    absl::StatusOr<envs::bandits::StayProbabilities> stay =
        envs::bandits::EvaluateTwoStep(network, options, instances, first_seed);
    if (!stay.ok()) return Fail(stay.status().ToString());
    std::printf("meta_rl_eval: %s, %d held-out episodes, network after %lld updates\n\n",
                env.name().c_str(), instances, static_cast<long long>(trained->updates()));
    std::printf("%-12s %12s %12s\n", "transition", "rewarded", "unrewarded");
    std::printf("%-12s %12.3f %12.3f\n", "common", stay->common_rewarded, stay->common_unrewarded);
    std::printf("%-12s %12.3f %12.3f\n", "rare", stay->rare_rewarded, stay->rare_unrewarded);
    report.Add("stay/common_rewarded", stay->common_rewarded, "probability");
    report.Add("stay/common_unrewarded", stay->common_unrewarded, "probability");
    report.Add("stay/rare_rewarded", stay->rare_rewarded, "probability");
    report.Add("stay/rare_unrewarded", stay->rare_unrewarded, "probability");
    return report.Finish(absl::GetFlag(FLAGS_json));
  }

  struct Entry {
    std::string name;
    BanditAgent* agent;
    envs::bandits::RegretCurve curve;
  };
  std::unique_ptr<BanditAgent> thompson = envs::bandits::MakeThompsonSampling();
  std::unique_ptr<BanditAgent> ucb = envs::bandits::MakeUcb1();
  std::unique_ptr<BanditAgent> gittins = envs::bandits::MakeGittins(0.99);
  std::unique_ptr<BanditAgent> random = envs::bandits::MakeRandomAgent();
  std::vector<Entry> entries = {{"network", &network, {}},
                                {"thompson", thompson.get(), {}},
                                {"ucb1", ucb.get(), {}},
                                {"gittins", gittins.get(), {}},
                                {"random", random.get(), {}}};
  for (Entry& entry : entries) {
    absl::StatusOr<envs::bandits::RegretCurve> curve =
        envs::bandits::EvaluateRegret(*entry.agent, env.name(), options, instances, first_seed);
    if (!curve.ok()) return Fail(curve.status().ToString());
    entry.curve = *std::move(curve);
  }
  const int trials = static_cast<int>(entries[0].curve.mean_cumulative_regret.size());
  std::string described = env.name();
  for (const auto& [key, value] : options) absl::StrAppend(&described, " ", key, "=", value);
  std::printf("meta_rl_eval: %s, %d held-out instances x %d trials, network after %lld updates\n",
              described.c_str(), instances, trials, static_cast<long long>(trained->updates()));
  std::printf("cumulative expected regret (mean +- standard error)\n\n%-10s", "policy");
  std::vector<int> at;
  for (int t : {10, 25, 50, 100}) {
    if (t <= trials) at.push_back(t);
  }
  if (at.empty() || at.back() != trials) at.push_back(trials);
  for (int t : at) std::printf(" %16s", absl::StrCat("trial ", t).c_str());
  std::printf("\n");
  for (const Entry& entry : entries) {
    std::printf("%-10s", entry.name.c_str());
    for (int t : at) {
      std::printf(" %9.2f +-%5.2f", entry.curve.mean_cumulative_regret[t - 1],
                  entry.curve.standard_error[t - 1]);
      report.Add(absl::StrCat(entry.name, "/regret_at_", t),
                 entry.curve.mean_cumulative_regret[t - 1], "regret");
    }
    report.Add(absl::StrCat(entry.name, "/regret_se_at_", trials),
               entry.curve.standard_error[trials - 1], "regret");
    std::printf("\n");
  }
  if (const std::string path = absl::GetFlag(FLAGS_csv); !path.empty()) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return Fail(absl::StrCat("cannot write ", path));
    std::fprintf(f, "trial");
    for (const Entry& entry : entries)
      std::fprintf(f, ",%s,%s_se", entry.name.c_str(), entry.name.c_str());
    std::fprintf(f, "\n");
    for (int t = 0; t < trials; ++t) {
      std::fprintf(f, "%d", t + 1);
      for (const Entry& entry : entries) {
        std::fprintf(f, ",%.4f,%.4f", entry.curve.mean_cumulative_regret[t],
                     entry.curve.standard_error[t]);
      }
      std::fprintf(f, "\n");
    }
    std::fclose(f);
    std::printf("\nwrote %s\n", path.c_str());
  }
  return report.Finish(absl::GetFlag(FLAGS_json));
}

}  // namespace
}  // namespace engram

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return engram::Run();
}
