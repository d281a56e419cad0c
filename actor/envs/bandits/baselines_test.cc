#include "actor/envs/bandits/baselines.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "actor/envs/bandits/bandits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::envs::bandits {
namespace {

using ::testing::HasSubstr;

// The Gittins index of one state by bisection on lambda, each probe a DP over the state's
// subtree of the truncated problem: slow (O(50 horizon^2)) but independent of the table's
// grid, so it is the reference for the table's accuracy.
double BisectedIndex(double g, int s0, int f0, int horizon) {
  const int n0 = s0 + f0;
  const int depth = horizon - n0;
  std::vector<double> next(depth + 2), cur(depth + 2);
  double lo = 0.0, hi = 1.0;
  for (int it = 0; it < 50; ++it) {
    const double lambda = 0.5 * (lo + hi);
    for (int j = 0; j <= depth; ++j) next[j] = std::max(lambda, (s0 + j + 1.0) / (horizon + 2));
    double c = 0.0;  // the root's continuation value, scaled by (1 - g)
    for (int d = depth - 1; d >= 0; --d) {
      for (int j = 0; j <= d; ++j) {
        const double p = (s0 + j + 1.0) / (n0 + d + 2);
        c = (1 - g) * p + g * (p * next[j + 1] + (1 - p) * next[j]);
        cur[j] = std::max(lambda, c);
      }
      std::swap(cur, next);
    }
    (c > lambda ? lo : hi) = lambda;
  }
  return 0.5 * (lo + hi);
}

TEST(GittinsTableTest, MatchesGittinsTablesForAUniformPrior) {
  // Gittins (1979, JRSS B 41:148-177), tables of indices for a Bernoulli arm with a Beta(1, 1)
  // prior (reproduced in Gittins, Glazebrook & Weber, "Multi-armed Bandit Allocation
  // Indices", 2011): 0.7029 at discount 0.9 and 0.8699 at 0.99, to four decimals.
  EXPECT_NEAR(GittinsTable(0.9, 10, 200).Index(0, 0), 0.7029, 2e-4);
  EXPECT_NEAR(GittinsTable(0.99, 10, 400).Index(0, 0), 0.8699, 2e-4);
}

// The table the Gittins agent uses (build time is a benchmark figure, in baselines.h, not a
// test): its error bound is small and its extremes are ordered.
TEST(GittinsTableTest, TheAgentsTableHasASmallErrorBound) {
  GittinsTable table(0.99, 100, 400);
  EXPECT_LT(table.max_error_bound(), 1e-3);
  EXPECT_GT(table.Index(100, 0), table.Index(0, 100));
}

TEST(GittinsTableTest, MonotoneAndAboveThePosteriorMean) {
  for (double g : {0.9, 0.99}) {
    GittinsTable table(g, 100, 100 + static_cast<int>(3 / (1 - g)));
    for (int n = 0; n <= 100; ++n) {
      for (int s = 0; s <= n; ++s) {
        const int f = n - s;
        const double index = table.Index(s, f);
        ASSERT_GE(index, (s + 1.0) / (n + 2)) << "g " << g << " (" << s << ", " << f << ")";
        ASSERT_LT(index, 1.0);
        if (n < 100) {
          ASSERT_GT(table.Index(s + 1, f), index) << "g " << g << " (" << s << ", " << f << ")";
          ASSERT_LT(table.Index(s, f + 1), index) << "g " << g << " (" << s << ", " << f << ")";
        }
      }
    }
  }
}

TEST(GittinsTableTest, IndexAtTheTruncationDepthIsThePosteriorMean) {
  GittinsTable table(0.9, 5, 5);
  for (int s = 0; s <= 5; ++s) EXPECT_DOUBLE_EQ(table.Index(s, 5 - s), (s + 1.0) / 7);
  EXPECT_GT(table.Index(0, 0), 0.5);
  EXPECT_LT(table.Index(0, 0), 0.7029);  // less to learn than with an unbounded future
}

TEST(GittinsTableTest, AgreesWithPerStateBisection) {
  const std::pair<int, int> states[] = {{0, 0},   {1, 0},   {0, 1},   {3, 7},   {10, 2},
                                        {25, 25}, {50, 50}, {0, 100}, {100, 0}, {37, 61}};
  for (double g : {0.9, 0.99}) {
    const int horizon = 100 + static_cast<int>(3 / (1 - g));
    GittinsTable table(g, 100, horizon);
    EXPECT_LT(table.max_error_bound(), 1e-3);
    for (const auto& [s, f] : states) {
      const double exact = BisectedIndex(g, s, f, horizon);
      EXPECT_NEAR(table.Index(s, f), exact, 1e-4) << "g " << g << " (" << s << ", " << f << ")";
      EXPECT_LE(std::abs(table.Index(s, f) - exact), table.max_error_bound() + 1e-12);
    }
  }
}

// --- Agents ---------------------------------------------------------------------------------

const float kObservation[1] = {0.0f};

absl::Span<const uint8_t> Obs() {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(kObservation),
                                   sizeof(kObservation));
}

TEST(BaselineAgentsTest, Ucb1PullsEachArmOnceFirst) {
  auto agent = MakeUcb1();
  for (uint64_t seed = 0; seed < 5; ++seed) {
    agent->Reset(seed);
    const int first = agent->Act(Obs(), -1, 0.0f);
    // Arm `first` paid off; UCB1 must still try the other arm before exploiting.
    const int second = agent->Act(Obs(), first, 1.0f);
    EXPECT_EQ(std::set<int>({first, second}), std::set<int>({0, 1}));
    // Now arm `first` has mean 1 and arm `second` mean 0, with equal bonuses.
    EXPECT_EQ(agent->Act(Obs(), second, 0.0f), first);
  }
}

TEST(BaselineAgentsTest, ThompsonAndGittinsExploitAClearWinner) {
  std::vector<std::unique_ptr<BanditAgent>> agents;
  agents.push_back(MakeThompsonSampling());
  agents.push_back(MakeGittins(0.99));
  for (auto& agent : agents) {
    agent->Reset(3);
    int action = agent->Act(Obs(), -1, 0.0f);
    // Arm 1 always pays, arm 0 never: after some evidence only arm 1 is played.
    int ones = 0;
    for (int t = 0; t < 60; ++t) {
      const float reward = action == 1 ? 1.0f : 0.0f;
      action = agent->Act(Obs(), action, reward);
      if (t >= 30) ones += action;
    }
    EXPECT_EQ(ones, 30);
  }
}

TEST(BaselineAgentsTest, GittinsBreaksTiesAtRandomAndOutgrowsItsTable) {
  auto agent = MakeGittins(0.99);
  std::set<int> first_actions;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    agent->Reset(seed);
    first_actions.insert(agent->Act(Obs(), -1, 0.0f));
  }
  EXPECT_EQ(first_actions, std::set<int>({0, 1}));
  // More pulls of one arm than the first table covers (100): the table is rebuilt.
  agent->Reset(1);
  int action = agent->Act(Obs(), -1, 0.0f);
  const int winner = action;
  for (int t = 0; t < 150; ++t) {
    action = agent->Act(Obs(), action, action == winner ? 1.0f : 0.0f);
    ASSERT_EQ(action, winner);
  }
}

TEST(BaselineAgentsTest, SameSeedSameActions) {
  for (auto make : {&MakeThompsonSampling, &MakeRandomAgent}) {
    auto a = make(), b = make();
    a->Reset(7);
    b->Reset(7);
    int action_a = -1, action_b = -1;
    for (int t = 0; t < 50; ++t) {
      const float reward = t % 3 == 0 ? 1.0f : 0.0f;
      action_a = a->Act(Obs(), action_a, t == 0 ? 0.0f : reward);
      action_b = b->Act(Obs(), action_b, t == 0 ? 0.0f : reward);
      ASSERT_EQ(action_a, action_b);
    }
  }
}

// --- EvaluateRegret ---------------------------------------------------------------------------

// Plays the better arm of each instance, which it is told in advance (instance by instance,
// in the order EvaluateRegret meets them).
class OracleAgent : public BanditAgent {
 public:
  explicit OracleAgent(std::vector<int> best_arms) : best_arms_(std::move(best_arms)) {}
  void Reset(uint64_t) override { ++instance_; }
  int Act(absl::Span<const uint8_t>, int, float) override { return best_arms_.at(instance_); }

 private:
  std::vector<int> best_arms_;
  int instance_ = -1;
};

struct Family {
  const char* name;
  EnvOptions options;
  const char* label;
};

const Family kIndependent{"bandit/independent", {}, ""};
const Family kEasy{"bandit/dependent", {{"difficulty", "easy"}}, "easy"};
const Family kMedium{"bandit/dependent", {{"difficulty", "medium"}}, "medium"};

// Mean cumulative regret at trial 100 over 300 instances.
double FinalRegret(BanditAgent& agent, const Family& family) {
  auto curve = EvaluateRegret(agent, family.name, family.options, 300, 1000);
  EXPECT_TRUE(curve.ok()) << curve.status();
  if (!curve.ok()) return NAN;
  EXPECT_EQ(curve->mean_cumulative_regret.size(), 100u);
  return curve->mean_cumulative_regret.back();
}

TEST(EvaluateRegretTest, BaselinesBeatRandomInPublishedRanges) {
  auto thompson = MakeThompsonSampling();
  auto ucb = MakeUcb1();
  auto gittins = MakeGittins(0.99);
  auto random = MakeRandomAgent();
  for (const Family* family : {&kIndependent, &kEasy, &kMedium}) {
    const double t = FinalRegret(*thompson, *family);
    const double u = FinalRegret(*ucb, *family);
    const double g = FinalRegret(*gittins, *family);
    const double r = FinalRegret(*random, *family);
    std::cout << family->name << " " << family->label << ": regret at trial 100: Thompson " << t
              << ", UCB1 " << u << ", Gittins " << g << ", random " << r << "\n";
    EXPECT_LT(t, r / 4);
    EXPECT_LT(u, r / 2);
    EXPECT_LT(g, r / 4);
    EXPECT_LT(g, u);
    EXPECT_LT(t, u);
  }
  // Independent uniform arms: random's expected regret is 100 E|p0 - p1| / 2 = 16.7;
  // Thompson sampling's is about 2-4 after 100 trials, UCB1's larger.
  EXPECT_NEAR(FinalRegret(*random, kIndependent), 100.0 / 6, 2.0);
  const double t = FinalRegret(*thompson, kIndependent);
  EXPECT_GT(t, 1.5);
  EXPECT_LT(t, 4.0);
}

TEST(EvaluateRegretTest, CurveIsCumulativeAndDeterministic) {
  auto agent = MakeThompsonSampling();
  auto a = EvaluateRegret(*agent, "bandit/independent", {{"num_trials", "50"}}, 40, 7).value();
  auto b = EvaluateRegret(*agent, "bandit/independent", {{"num_trials", "50"}}, 40, 7).value();
  EXPECT_EQ(a.mean_cumulative_regret, b.mean_cumulative_regret);
  EXPECT_EQ(a.standard_error, b.standard_error);
  ASSERT_EQ(a.mean_cumulative_regret.size(), 50u);
  ASSERT_EQ(a.standard_error.size(), 50u);
  for (int t = 1; t < 50; ++t) {
    EXPECT_GE(a.mean_cumulative_regret[t], a.mean_cumulative_regret[t - 1]);
  }
  EXPECT_GT(a.standard_error.back(), 0.0);
  auto c = EvaluateRegret(*agent, "bandit/independent", {{"num_trials", "50"}}, 40, 8).value();
  EXPECT_NE(a.mean_cumulative_regret, c.mean_cumulative_regret);
}

TEST(EvaluateRegretTest, OracleHasZeroRegret) {
  constexpr int kInstances = 50;
  for (const Family* family : {&kIndependent, &kMedium}) {
    auto env = MakeEnv(family->name, family->options).value();
    auto* bandit = dynamic_cast<TwoArmedBandit*>(env.get());
    ASSERT_NE(bandit, nullptr);
    std::vector<int> best;
    for (int i = 0; i < kInstances; ++i) {
      bandit->Reset(500 + i);
      const auto& p = bandit->arm_probabilities();
      best.push_back(p[1] > p[0] ? 1 : 0);
    }
    OracleAgent oracle(best);
    auto curve = EvaluateRegret(oracle, family->name, family->options, kInstances, 500).value();
    EXPECT_EQ(curve.mean_cumulative_regret.back(), 0.0);
    EXPECT_EQ(curve.standard_error.back(), 0.0);
    // The anti-oracle pays max - min every trial.
    for (int& arm : best) arm = 1 - arm;
    OracleAgent worst(best);
    EXPECT_GT(EvaluateRegret(worst, family->name, family->options, kInstances, 500)
                  .value()
                  .mean_cumulative_regret.back(),
              10.0);
  }
}

TEST(EvaluateRegretTest, RejectsBadArguments) {
  auto agent = MakeRandomAgent();
  auto not_bandit = EvaluateRegret(*agent, "classic/cartpole", {}, 10, 1);
  EXPECT_EQ(not_bandit.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_bandit.status().message(), HasSubstr("classic/cartpole"));
  auto two_step = EvaluateRegret(*agent, "bandit/two_step", {}, 10, 1);
  EXPECT_EQ(two_step.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateRegret(*agent, "bandit/nope", {}, 10, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateRegret(*agent, "bandit/independent", {}, 0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EvaluateRegret(*agent, "bandit/independent", {{"num_trials", "x"}}, 10, 1).status().code(),
      absl::StatusCode::kInvalidArgument);
  OracleAgent bad(std::vector<int>(10, 2));
  auto bad_action = EvaluateRegret(bad, "bandit/independent", {}, 10, 1);
  EXPECT_EQ(bad_action.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_action.status().message(), HasSubstr("action 2"));
}

// --- EvaluateTwoStep --------------------------------------------------------------------------

// Scripted two-step agents. The observation is one-hot stage 1 / A / B, then the trial index.
int StageOf(absl::Span<const uint8_t> observation) {
  float obs[4];
  std::memcpy(obs, observation.data(), sizeof(obs));
  return obs[1] == 1.0f ? 1 : obs[2] == 1.0f ? 2 : 0;
}

class ScriptedTwoStepAgent : public BanditAgent {
 public:
  explicit ScriptedTwoStepAgent(bool model_based) : model_based_(model_based) {}

  void Reset(uint64_t seed) override {
    rng_.seed(seed);
    first_action_ = -1;
  }

  int Act(absl::Span<const uint8_t> observation, int, float previous_reward) override {
    const int stage = StageOf(observation);
    if (stage != 0) {
      // Action 0 commonly leads to A (stage 1), action 1 to B (stage 2).
      common_ = (first_action_ == 0) == (stage == 1);
      return std::uniform_int_distribution<int>(0, 1)(rng_);
    }
    if (first_action_ < 0) {
      first_action_ = std::uniform_int_distribution<int>(0, 1)(rng_);
      return first_action_;
    }
    const bool rewarded = previous_reward >= 0.5f;
    // Model-free: repeat what was rewarded. Model-based: a rare transition credits the other
    // first-stage action, so stay after (rewarded, common) or (unrewarded, rare).
    const bool stay = model_based_ ? rewarded == common_ : rewarded;
    if (!stay) first_action_ = 1 - first_action_;
    return first_action_;
  }

 private:
  bool model_based_;
  std::mt19937_64 rng_;
  int first_action_ = -1;
  bool common_ = true;
};

TEST(EvaluateTwoStepTest, ModelFreeStaysAfterRewardRegardlessOfTransition) {
  ScriptedTwoStepAgent agent(/*model_based=*/false);
  auto stay = EvaluateTwoStep(agent, {}, 100, 1).value();
  EXPECT_EQ(stay.common_rewarded, 1.0);
  EXPECT_EQ(stay.rare_rewarded, 1.0);
  EXPECT_EQ(stay.common_unrewarded, 0.0);
  EXPECT_EQ(stay.rare_unrewarded, 0.0);
  // 99 trials with a predecessor per episode, about 70% after common transitions.
  const int64_t total = stay.counts[0] + stay.counts[1] + stay.counts[2] + stay.counts[3];
  EXPECT_EQ(total, 100 * 99);
  EXPECT_NEAR(static_cast<double>(stay.counts[0] + stay.counts[1]) / total, 0.7, 0.02);
  for (int64_t count : stay.counts) EXPECT_GT(count, 1000);
}

TEST(EvaluateTwoStepTest, ModelBasedShowsTheTransitionByOutcomeInteraction) {
  ScriptedTwoStepAgent agent(/*model_based=*/true);
  auto stay = EvaluateTwoStep(agent, {{"num_trials", "50"}}, 100, 1).value();
  EXPECT_EQ(stay.common_rewarded, 1.0);
  EXPECT_EQ(stay.rare_rewarded, 0.0);
  EXPECT_EQ(stay.common_unrewarded, 0.0);
  EXPECT_EQ(stay.rare_unrewarded, 1.0);
  EXPECT_EQ(stay.counts[0] + stay.counts[1] + stay.counts[2] + stay.counts[3], 100 * 49);
}

TEST(EvaluateTwoStepTest, RandomAgentStaysHalfTheTime) {
  auto agent = MakeRandomAgent();
  auto stay = EvaluateTwoStep(*agent, {}, 200, 3).value();
  for (double p :
       {stay.common_rewarded, stay.common_unrewarded, stay.rare_rewarded, stay.rare_unrewarded}) {
    EXPECT_NEAR(p, 0.5, 0.05);
  }
}

TEST(EvaluateTwoStepTest, RejectsBadArguments) {
  auto agent = MakeRandomAgent();
  EXPECT_EQ(EvaluateTwoStep(*agent, {}, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateTwoStep(*agent, {{"trials", "5"}}, 10, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  OracleAgent bad(std::vector<int>(10, -1));
  EXPECT_EQ(EvaluateTwoStep(bad, {}, 10, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram::envs::bandits
