#include "actor/envs/bandits/baselines.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "actor/envs/bandits/bandits.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace engram::envs::bandits {
namespace {

// Grid cells over [0, 1]; see the accuracy notes in the header.
constexpr int kLambdaCells = 1000;
// The Gittins agent's first table covers this many pulls of one arm.
constexpr int kInitialGittinsPulls = 100;

// SplitMix64 finaliser: derives the agent's seed from the instance's, so the agent's random
// stream is not the environment's own (both would otherwise be mt19937_64 seeded alike).
uint64_t MixSeed(uint64_t seed) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Per-arm Beta-Bernoulli counts, updated from the previous step; subclasses choose.
class CountingAgent : public BanditAgent {
 public:
  void Reset(uint64_t seed) override {
    rng_.seed(seed);
    successes_ = {0, 0};
    failures_ = {0, 0};
  }

  int Act(absl::Span<const uint8_t> /*observation*/, int previous_action,
          float previous_reward) override {
    if (previous_action == 0 || previous_action == 1) {
      if (previous_reward >= 0.5f) {
        ++successes_[previous_action];
      } else {
        ++failures_[previous_action];
      }
    }
    return Choose();
  }

 protected:
  virtual int Choose() = 0;

  int pulls(int arm) const { return successes_[arm] + failures_[arm]; }

  // The arm with the larger score; equal scores go to a uniformly random arm.
  int Argmax(double score0, double score1) {
    if (score0 == score1) return std::uniform_int_distribution<int>(0, 1)(rng_);
    return score1 > score0 ? 1 : 0;
  }

  std::mt19937_64 rng_;
  std::array<int, 2> successes_{0, 0};
  std::array<int, 2> failures_{0, 0};
};

class ThompsonSampling : public CountingAgent {
 protected:
  int Choose() override {
    return Argmax(SampleBeta(1.0 + successes_[0], 1.0 + failures_[0]),
                  SampleBeta(1.0 + successes_[1], 1.0 + failures_[1]));
  }

 private:
  double SampleBeta(double a, double b) {
    const double x = std::gamma_distribution<double>(a, 1.0)(rng_);
    const double y = std::gamma_distribution<double>(b, 1.0)(rng_);
    return x / (x + y);
  }
};

class Ucb1 : public CountingAgent {
 protected:
  int Choose() override {
    if (pulls(0) == 0) return 0;
    if (pulls(1) == 0) return 1;
    const double log_t = std::log(static_cast<double>(pulls(0) + pulls(1)));
    return Argmax(Score(0, log_t), Score(1, log_t));
  }

 private:
  double Score(int arm, double log_t) const {
    const double n = pulls(arm);
    return successes_[arm] / n + std::sqrt(2.0 * log_t / n);
  }
};

int GittinsHorizon(double discount, int max_pulls) {
  const int extra = static_cast<int>(std::clamp(std::ceil(3.0 / (1.0 - discount)), 50.0, 1000.0));
  return max_pulls + extra;
}

class Gittins : public CountingAgent {
 public:
  explicit Gittins(double discount)
      : discount_(discount),
        table_(std::make_unique<GittinsTable>(discount, kInitialGittinsPulls,
                                              GittinsHorizon(discount, kInitialGittinsPulls))) {}

 protected:
  int Choose() override {
    const int needed = std::max(pulls(0), pulls(1));
    if (needed > table_->max_pulls()) {
      int max_pulls = table_->max_pulls();
      while (max_pulls < needed) max_pulls *= 2;
      table_ = std::make_unique<GittinsTable>(discount_, max_pulls,
                                              GittinsHorizon(discount_, max_pulls));
    }
    return Argmax(table_->Index(successes_[0], failures_[0]),
                  table_->Index(successes_[1], failures_[1]));
  }

 private:
  double discount_;
  std::unique_ptr<GittinsTable> table_;
};

class RandomAgent : public BanditAgent {
 public:
  void Reset(uint64_t seed) override { rng_.seed(seed); }
  int Act(absl::Span<const uint8_t>, int, float) override {
    return std::uniform_int_distribution<int>(0, 1)(rng_);
  }

 private:
  std::mt19937_64 rng_;
};

absl::Status CheckAction(int action, absl::string_view where) {
  if (action == 0 || action == 1) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("agent chose action ", action, " at ", where, "; the task has actions 0 and 1"));
}

// Running mean and variance (Welford), for numerically stable standard errors.
struct RunningMoments {
  int64_t n = 0;
  double mean = 0.0;
  double m2 = 0.0;

  void Add(double x) {
    ++n;
    const double delta = x - mean;
    mean += delta / static_cast<double>(n);
    m2 += delta * (x - mean);
  }
  double StandardError() const {
    if (n < 2) return 0.0;
    return std::sqrt(m2 / static_cast<double>(n - 1) / static_cast<double>(n));
  }
};

}  // namespace

std::unique_ptr<BanditAgent> MakeThompsonSampling() { return std::make_unique<ThompsonSampling>(); }

std::unique_ptr<BanditAgent> MakeUcb1() { return std::make_unique<Ucb1>(); }

std::unique_ptr<BanditAgent> MakeGittins(double discount) {
  return std::make_unique<Gittins>(discount);
}

std::unique_ptr<BanditAgent> MakeRandomAgent() { return std::make_unique<RandomAgent>(); }

GittinsTable::GittinsTable(double discount, int max_pulls, int horizon)
    : discount_(discount), max_pulls_(max_pulls), horizon_(horizon) {
  ENGRAM_CHECK(discount > 0.0 && discount < 1.0) << "discount " << discount;
  ENGRAM_CHECK(max_pulls >= 0 && max_pulls <= horizon)
      << "max_pulls " << max_pulls << " horizon " << horizon;
  const double g = discount;
  const size_t table_size = static_cast<size_t>(max_pulls + 1) * (max_pulls + 2) / 2;
  index_.assign(table_size, std::numeric_limits<double>::quiet_NaN());

  // Values are scaled by (1 - g): w = (1 - g) V, so retiring is worth lambda and the
  // continuation c = (1 - g) p + g (p w(s+1, f) + (1 - p) w(s, f+1)). dw is dw / dlambda.
  // Per table state, the advantage A = c - lambda and its slope at the previous grid point.
  std::vector<double> prev_advantage(table_size), prev_slope(table_size);
  std::vector<double> w(horizon + 2), dw(horizon + 2), next_w(horizon + 2), next_dw(horizon + 2);
  std::vector<double> cont(horizon + 1), dcont(horizon + 1);
  for (int k = 0; k <= kLambdaCells; ++k) {
    const double lambda = static_cast<double>(k) / kLambdaCells;
    const double prev_lambda = static_cast<double>(k - 1) / kLambdaCells;
    {
      const double inv = 1.0 / (horizon + 2);
      for (int s = 0; s <= horizon; ++s) {
        const double p = (s + 1) * inv;
        next_w[s] = std::max(lambda, p);
        next_dw[s] = lambda >= p ? 1.0 : 0.0;
      }
    }
    for (int n = horizon - 1; n >= 0; --n) {
      const double inv = 1.0 / (n + 2);
      // Branch-free so that it vectorises: this loop is the whole cost.
      for (int s = 0; s <= n; ++s) {
        const double p = (s + 1) * inv;
        const double c = (1.0 - g) * p + g * (p * next_w[s + 1] + (1.0 - p) * next_w[s]);
        const double dc = g * (p * next_dw[s + 1] + (1.0 - p) * next_dw[s]);
        const bool retire = lambda >= c;
        w[s] = retire ? lambda : c;
        dw[s] = retire ? 1.0 : dc;
        cont[s] = c;
        dcont[s] = dc;
      }
      if (n <= max_pulls) {
        const size_t row = static_cast<size_t>(n) * (n + 1) / 2;
        for (int s = 0; s <= n; ++s) {
          const size_t i = row + s;
          const double a = cont[s] - lambda;
          const double slope = dcont[s] - 1.0;  // <= g - 1 < 0
          // A(0) > 0 and A(1) < 0 for every state, so each crosses in exactly one cell.
          if (k > 0 && prev_advantage[i] > 0.0 && a <= 0.0) {
            const double chord =
                prev_lambda + (lambda - prev_lambda) * prev_advantage[i] / (prev_advantage[i] - a);
            const double tangent_left = prev_lambda - prev_advantage[i] / prev_slope[i];
            const double tangent_right = lambda - a / slope;
            const double tangent =
                std::clamp(std::max(tangent_left, tangent_right), prev_lambda, lambda);
            index_[i] = tangent;
            max_error_bound_ = std::max(max_error_bound_, chord - tangent);
          }
          prev_advantage[i] = a;
          prev_slope[i] = slope;
        }
      }
      std::swap(w, next_w);
      std::swap(dw, next_dw);
    }
  }
  // At the truncation depth nothing more is learned: the index is the posterior mean.
  if (max_pulls == horizon) {
    const size_t row = static_cast<size_t>(horizon) * (horizon + 1) / 2;
    for (int s = 0; s <= horizon; ++s) index_[row + s] = (s + 1.0) / (horizon + 2);
  }
}

double GittinsTable::Index(int successes, int failures) const {
  ENGRAM_CHECK(successes >= 0 && failures >= 0 && successes + failures <= max_pulls_)
      << "state (" << successes << ", " << failures << ") max_pulls " << max_pulls_;
  const size_t n = static_cast<size_t>(successes + failures);
  return index_[n * (n + 1) / 2 + successes];
}

absl::StatusOr<RegretCurve> EvaluateRegret(BanditAgent& agent, const std::string& env_name,
                                           const EnvOptions& options, int instances,
                                           uint64_t first_seed) {
  if (instances < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("EvaluateRegret: instances must be >= 1, got ", instances));
  }
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<Env> env, MakeEnv(env_name, options));
  auto* bandit = dynamic_cast<TwoArmedBandit*>(env.get());
  if (bandit == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("EvaluateRegret: environment \"", env_name,
                     "\" is not a two-armed bandit (bandit/independent or bandit/dependent)"));
  }
  const int num_trials = bandit->num_trials();
  std::vector<RunningMoments> moments(num_trials);
  for (int i = 0; i < instances; ++i) {
    const uint64_t seed = first_seed + static_cast<uint64_t>(i);
    StepResult result = bandit->Reset(seed);
    agent.Reset(MixSeed(seed));
    const std::array<double, 2> p = bandit->arm_probabilities();
    const double best = std::max(p[0], p[1]);
    int previous_action = -1;
    float previous_reward = 0.0f;
    double cumulative = 0.0;
    for (int t = 0; t < num_trials; ++t) {
      const int action = agent.Act(result.observation, previous_action, previous_reward);
      ENGRAM_RETURN_IF_ERROR(CheckAction(action, absl::StrCat("trial ", t, " of instance ", i,
                                                              " (seed ", seed, ") of ", env_name)));
      cumulative += best - p[action];
      moments[t].Add(cumulative);
      result = bandit->Step(action);
      previous_action = action;
      previous_reward = result.reward;
    }
  }
  RegretCurve curve;
  curve.mean_cumulative_regret.reserve(num_trials);
  curve.standard_error.reserve(num_trials);
  for (const RunningMoments& m : moments) {
    curve.mean_cumulative_regret.push_back(m.mean);
    curve.standard_error.push_back(m.StandardError());
  }
  return curve;
}

absl::StatusOr<StayProbabilities> EvaluateTwoStep(BanditAgent& agent, const EnvOptions& options,
                                                  int episodes, uint64_t first_seed) {
  if (episodes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("EvaluateTwoStep: episodes must be >= 1, got ", episodes));
  }
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<Env> env, MakeEnv("bandit/two_step", options));
  auto* task = dynamic_cast<TwoStepTask*>(env.get());
  ENGRAM_CHECK(task != nullptr) << "bandit/two_step is not a TwoStepTask";

  // Category of a trial: 0 common rewarded, 1 common unrewarded, 2 rare rewarded,
  // 3 rare unrewarded.
  int64_t stays[4] = {0, 0, 0, 0};
  StayProbabilities out;
  for (int e = 0; e < episodes; ++e) {
    const uint64_t seed = first_seed + static_cast<uint64_t>(e);
    StepResult result = task->Reset(seed);
    agent.Reset(MixSeed(seed));
    int previous_action = -1;
    float previous_reward = 0.0f;
    int previous_category = -1;  // none before the episode's first trial ends
    int previous_first_action = -1;
    int first_action = -1;
    bool common = true;
    for (int step = 0; !result.terminated && !result.truncated; ++step) {
      const bool first_stage = task->state() == 0;
      const int action = agent.Act(result.observation, previous_action, previous_reward);
      ENGRAM_RETURN_IF_ERROR(CheckAction(
          action, absl::StrCat("step ", step, " of two-step episode ", e, " (seed ", seed, ")")));
      result = task->Step(action);
      previous_action = action;
      previous_reward = result.reward;
      if (first_stage) {
        first_action = task->first_stage_action();
        common = task->transition_was_common();
        continue;
      }
      if (previous_category >= 0) {
        ++out.counts[previous_category];
        if (first_action == previous_first_action) ++stays[previous_category];
      }
      const bool rewarded = result.reward >= 0.5f;
      previous_category = (common ? 0 : 2) + (rewarded ? 0 : 1);
      previous_first_action = first_action;
    }
  }
  double probabilities[4];
  for (int c = 0; c < 4; ++c) {
    probabilities[c] = out.counts[c] == 0 ? std::numeric_limits<double>::quiet_NaN()
                                          : static_cast<double>(stays[c]) / out.counts[c];
  }
  out.common_rewarded = probabilities[0];
  out.common_unrewarded = probabilities[1];
  out.rare_rewarded = probabilities[2];
  out.rare_unrewarded = probabilities[3];
  return out;
}

}  // namespace engram::envs::bandits
