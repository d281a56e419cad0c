#include "learner/core/meta_rl.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>

#include "torch/cuda.h"
#include "torch/utils.h"

namespace engram::learner {
namespace {

torch::Tensor Floats(std::vector<float> values) { return torch::tensor(values); }

torch::Tensor Longs(std::vector<int64_t> values) { return torch::tensor(values); }

// [T, B] from rows.
torch::Tensor Matrix(std::vector<std::vector<float>> rows) {
  std::vector<torch::Tensor> stacked;
  for (auto& row : rows) stacked.push_back(torch::tensor(row));
  return torch::stack(stacked);
}

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected, double tol = 1e-5) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(actual, expected, /*rtol=*/0, /*atol=*/tol))
      << "actual\n"
      << actual << "\nexpected\n"
      << expected;
}

// ---- configuration ----------------------------------------------------------------------

MetaRlConfig SmallConfig() {
  MetaRlConfig config;
  config.network.observation_size = 2;
  config.network.num_actions = 3;
  config.network.lstm_size = 8;
  return config;
}

TEST(MetaRlConfigTest, DefaultsAreTheProtosAndValidateNamesTheField) {
  MetaRlConfig config;
  EXPECT_EQ(config.network.lstm_size, 48);
  EXPECT_EQ(config.optimizer.kind, OptimizerKind::kAdam);
  EXPECT_DOUBLE_EQ(config.optimizer.learning_rate, 0.0007);
  EXPECT_DOUBLE_EQ(config.optimizer.epsilon, 1e-8);
  EXPECT_EQ(config.Validate(), "network.observation_size: must be >= 1, got 0");

  config = SmallConfig();
  EXPECT_EQ(config.Validate(), "");
  EXPECT_EQ(config.network.input_size(), 2 + 3 + 1);
  config.network.input_previous_action = false;
  EXPECT_EQ(config.network.input_size(), 2 + 1);
  config.network.input_previous_reward = false;
  EXPECT_EQ(config.network.input_size(), 2);

  auto invalid = [](void (*mutate)(MetaRlConfig&)) {
    MetaRlConfig c = SmallConfig();
    mutate(c);
    return c.Validate();
  };
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.network.num_actions = 0; }),
            "network.num_actions: must be >= 1, got 0");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.network.lstm_size = 0; }),
            "network.lstm_size: must be >= 1, got 0");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.gamma = 2; }), "gamma: must be in [0, 1], got 2");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.entropy_cost = -1; }),
            "entropy_cost: must be >= 0, got -1");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.value_cost = -0.5; }),
            "value_cost: must be >= 0, got -0.5");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.vtrace_rho_clip = 0; }),
            "vtrace_rho_clip: must be > 0, got 0");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.vtrace_c_clip = -1; }),
            "vtrace_c_clip: must be > 0, got -1");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.gradient_clip_norm = -1; }),
            "gradient_clip_norm: must be >= 0 (0 disables clipping), got -1");
  EXPECT_EQ(invalid([](MetaRlConfig& c) { c.optimizer.learning_rate = 0; }),
            "optimizer.learning_rate: must be > 0, got 0");

  std::string error;
  config = SmallConfig();
  config.gamma = -1;
  EXPECT_EQ(MetaRlLearner::Create(config, torch::kCPU, &error), nullptr);
  EXPECT_EQ(error, "gamma: must be in [0, 1], got -1");
}

// ---- V-trace ----------------------------------------------------------------------------

// T = 3, B = 1, rho_clip = c_clip = 1.
//   log_rhos  [log 2, log 0.5, 0] -> rhos [2, 0.5, 1] -> rho = c = [1, 0.5, 1]
//   discounts [0.9, 0, 0.9] (terminal at t = 1), rewards [1, 2, 3], values [0.5, 1, 2],
//   bootstrap 4, so V(x_{t+1}) = [1, 2, 4].
//   delta_0 = 1 * (1 + 0.9 * 1 - 0.5) = 1.4
//   delta_1 = 0.5 * (2 + 0 * 2 - 1)  = 0.5
//   delta_2 = 1 * (3 + 0.9 * 4 - 2)  = 4.6
//   vs_2 - V_2 = 4.6                              -> vs_2 = 6.6
//   vs_1 - V_1 = 0.5 + 0 * 0.5 * 4.6 = 0.5        -> vs_1 = 1.5
//   vs_0 - V_0 = 1.4 + 0.9 * 1 * 0.5 = 1.85       -> vs_0 = 2.35
//   pg_0 = 1 * (1 + 0.9 * vs_1 - 0.5) = 1.85
//   pg_1 = 0.5 * (2 + 0 * vs_2 - 1)   = 0.5
//   pg_2 = 1 * (3 + 0.9 * 4 - 2)      = 4.6
TEST(VTraceTest, HandComputedSingleChunk) {
  const VTraceOutput out =
      VTrace(Matrix({{std::log(2.f)}, {std::log(0.5f)}, {0}}), Matrix({{0.9}, {0}, {0.9}}),
             Matrix({{1}, {2}, {3}}), Matrix({{0.5}, {1}, {2}}), Floats({4}), 1.0, 1.0);
  ExpectClose(out.vs, Matrix({{2.35}, {1.5}, {6.6}}));
  ExpectClose(out.pg_advantages, Matrix({{1.85}, {0.5}, {4.6}}));
}

// B = 2 with rho_clip = 1.5, c_clip = 0.8 (so they differ).
// Chunk 0, the inputs above: rho = [1.5, 0.5, 1], c = [0.8, 0.5, 0.8].
//   delta = [1.5 * 1.4, 0.5 * 1, 1 * 4.6] = [2.1, 0.5, 4.6]
//   vs_2 = 2 + 4.6 = 6.6; vs_1 = 1 + 0.5 = 1.5 (terminal cuts the trace);
//   vs_0 = 0.5 + 2.1 + 0.9 * 0.8 * 0.5 = 2.96
//   pg = [1.5 * (1 + 0.9 * 1.5 - 0.5), 0.5 * (2 - 1), 1 * 4.6] = [2.775, 0.5, 4.6]
// Chunk 1: log_rhos [0, log 3, log 0.25] -> rhos [1, 3, 0.25] -> rho = [1, 1.5, 0.25],
//   c = [0.8, 0.8, 0.25]; discounts [0.5, 0.5, 0.5], rewards [0, 1, -1], values [1, 0, 2],
//   bootstrap 2, so V(x_{t+1}) = [0, 2, 2].
//   delta_0 = 1 * (0 + 0.5 * 0 - 1)     = -1
//   delta_1 = 1.5 * (1 + 0.5 * 2 - 0)   = 3
//   delta_2 = 0.25 * (-1 + 0.5 * 2 - 2) = -0.5
//   vs_2 = 2 - 0.5 = 1.5
//   vs_1 = 0 + 3 + 0.5 * 0.8 * (-0.5) = 2.8
//   vs_0 = 1 + (-1 + 0.5 * 0.8 * 2.8) = 1.12
//   pg_0 = 1 * (0 + 0.5 * 2.8 - 1)      = 0.4
//   pg_1 = 1.5 * (1 + 0.5 * 1.5 - 0)    = 2.625
//   pg_2 = 0.25 * (-1 + 0.5 * 2 - 2)    = -0.5
TEST(VTraceTest, HandComputedTwoChunksWithDifferentClips) {
  const float l2 = std::log(2.f), lh = std::log(0.5f), l3 = std::log(3.f), lq = std::log(0.25f);
  const VTraceOutput out =
      VTrace(Matrix({{l2, 0}, {lh, l3}, {0, lq}}), Matrix({{0.9, 0.5}, {0, 0.5}, {0.9, 0.5}}),
             Matrix({{1, 0}, {2, 1}, {3, -1}}), Matrix({{0.5, 1}, {1, 0}, {2, 2}}), Floats({4, 2}),
             1.5, 0.8);
  ExpectClose(out.vs, Matrix({{2.96, 1.12}, {1.5, 2.8}, {6.6, 1.5}}));
  ExpectClose(out.pg_advantages, Matrix({{2.775, 0.4}, {0.5, 2.625}, {4.6, -0.5}}));
}

// On-policy with clips 1, vs_t is the n-step bootstrapped discounted return
// r_t + g_t r_{t+1} + ... + g_t...g_{T-1} V(x_T), whatever the values.
TEST(VTraceTest, OnPolicyEqualsTheBootstrappedReturn) {
  torch::manual_seed(1);
  const int64_t t_max = 6, b = 3;
  const torch::Tensor rewards = torch::randn({t_max, b});
  torch::Tensor discounts = 0.9 * (torch::rand({t_max, b}) > 0.2).to(torch::kFloat);
  const torch::Tensor values = torch::randn({t_max, b});
  const torch::Tensor bootstrap = torch::randn({b});
  const VTraceOutput out =
      VTrace(torch::zeros({t_max, b}), discounts, rewards, values, bootstrap, 1.0, 1.0);
  torch::Tensor expected = torch::empty({t_max, b});
  torch::Tensor next = bootstrap.clone();
  for (int64_t t = t_max - 1; t >= 0; --t) {
    next = rewards[t] + discounts[t] * next;
    expected[t] = next;
  }
  ExpectClose(out.vs, expected);
  // pg advantage: r_t + g_t vs_{t+1} - V(x_t) = vs_t - V(x_t) on-policy.
  ExpectClose(out.pg_advantages, expected - values);
}

TEST(VTraceTest, DetachedAndATerminalIgnoresTheNextValue) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const torch::Tensor values = Matrix({{1}, {2}}).set_requires_grad(true);
  // The chunk ends with a terminal: a NaN bootstrap must not leak in.
  const VTraceOutput out = VTrace(Matrix({{0}, {0}}), Matrix({{0.5}, {0}}), Matrix({{1}, {3}}),
                                  values, Floats({nan}), 1.0, 1.0);
  EXPECT_FALSE(out.vs.requires_grad());
  EXPECT_FALSE(out.pg_advantages.requires_grad());
  // vs_1 = 3; vs_0 = 1 + 0.5 * 3 = 2.5. pg = vs - V = [1.5, 1].
  ExpectClose(out.vs, Matrix({{2.5}, {3}}));
  ExpectClose(out.pg_advantages, Matrix({{1.5}, {1}}));
}

// ---- the loss -----------------------------------------------------------------------------

// T = 2, B = 1, A = 2. logits [[0, 0], [log 3, 0]] -> pi [[0.5, 0.5], [0.75, 0.25]];
// actions [0, 1] -> log pi(a) = [log 0.5, log 0.25]. values [0.5, 1], bootstrap 2,
// rewards [1, 0], discounts [1, 1] * gamma 0.5.
MetaRlBatch LossBatch() {
  MetaRlBatch batch;
  batch.actions = torch::tensor({{int64_t{0}}, {int64_t{1}}});
  batch.rewards = Matrix({{1}, {0}});
  batch.discounts = Matrix({{1}, {1}});
  return batch;
}

MetaRlConfig LossConfig() {
  MetaRlConfig config;
  config.gamma = 0.5;
  config.value_cost = 0.5;
  config.entropy_cost = 0.1;
  return config;
}

torch::Tensor LossLogits() {
  return torch::tensor({{{0.f, 0.f}}, {{std::log(3.f), 0.f}}}).set_requires_grad(true);
}

// On-policy: vs_1 = 0 + 0.5 * 2 = 1, vs_0 = 1 + 0.5 * 1 = 1.5.
//   pg = [1 + 0.5 * 1 - 0.5, 0 + 0.5 * 2 - 1] = [1, 0]
//   policy  = -(1 * log 0.5 + 0 * log 0.25) / 2 = log(2) / 2
//   value   = (0.5 * (1.5 - 0.5)^2 + 0.5 * (1 - 1)^2) / 2 = 0.25
//   entropy = (log 2 + (-0.75 log 0.75 - 0.25 log 0.25)) / 2
//   total   = policy + 0.5 * value - 0.1 * entropy
// d total / d values = 0.5 * (V - vs) / 2 = [-0.25, 0]: no gradient through the targets.
TEST(MetaRlLossTest, OnPolicyHandExample) {
  const torch::Tensor logits = LossLogits();
  const torch::Tensor values = Matrix({{0.5}, {1}}).set_requires_grad(true);
  const MetaRlLossOutput out = MetaRlLoss(logits, values, Floats({2}), LossBatch(), LossConfig());
  const double policy = std::log(2.0) / 2;
  const double entropy =
      (std::log(2.0) - 0.75 * std::log(0.75) - 0.25 * std::log(0.25)) / 2;  // 0.627741
  EXPECT_NEAR(out.policy.item<double>(), policy, 1e-6);
  EXPECT_NEAR(out.value.item<double>(), 0.25, 1e-6);
  EXPECT_NEAR(out.entropy.item<double>(), entropy, 1e-6);
  EXPECT_NEAR(out.total.item<double>(), policy + 0.5 * 0.25 - 0.1 * entropy, 1e-6);
  EXPECT_FALSE(out.policy.requires_grad());
  out.total.backward();
  ExpectClose(values.grad(), Matrix({{-0.25}, {0}}));
  // Policy-gradient part at t = 0: d(-pg log pi(0)) / d logits = -(onehot(0) - pi) / 2 =
  // [-0.25, 0.25]; the entropy of a uniform policy has zero gradient there.
  ExpectClose(logits.grad()[0], torch::tensor({{-0.25f, 0.25f}}));
}

// Off-policy: behaviour logits [[log 3, 0], [0, 0]] -> mu(a) = [0.75, 0.5], so
// rho = [0.5 / 0.75, 0.25 / 0.5] = [2/3, 0.5] (below the clip 1).
//   delta_1 = 0.5 * (0 + 0.5 * 2 - 1) = 0          -> vs_1 = 1
//   delta_0 = 2/3 * (1 + 0.5 * 1 - 0.5) = 2/3      -> vs_0 = 0.5 + 2/3 + 0.5 * 0.5 * 0 = 7/6
//   pg = [2/3 * (1 + 0.5 * 1 - 0.5), 0.5 * (0 + 0.5 * 2 - 1)] = [2/3, 0]
//   policy = -(2/3 log 0.5) / 2 = log(2) / 3; value = 0.5 * (7/6 - 1/2)^2 / 2 = 1/9
TEST(MetaRlLossTest, OffPolicyHandExample) {
  MetaRlBatch batch = LossBatch();
  batch.behaviour_logits = torch::tensor({{{std::log(3.f), 0.f}}, {{0.f, 0.f}}});
  const MetaRlLossOutput out =
      MetaRlLoss(LossLogits(), Matrix({{0.5}, {1}}), Floats({2}), batch, LossConfig());
  EXPECT_NEAR(out.policy.item<double>(), std::log(2.0) / 3, 1e-6);
  EXPECT_NEAR(out.value.item<double>(), 1.0 / 9, 1e-6);
  // The entropy is the target policy's, not the behaviour's.
  EXPECT_NEAR(out.entropy.item<double>(),
              (std::log(2.0) - 0.75 * std::log(0.75) - 0.25 * std::log(0.25)) / 2, 1e-6);
}

// ---- the network --------------------------------------------------------------------------

MetaRlNetConfig NetConfig() {
  MetaRlNetConfig config;
  config.observation_size = 2;
  config.num_actions = 3;
  config.lstm_size = 4;
  return config;
}

std::map<std::string, torch::Tensor> WeightMap(MetaRlNetImpl& net) {
  std::map<std::string, torch::Tensor> weights;
  for (const auto& item : net.named_parameters()) weights[item.key()] = item.value().detach();
  return weights;
}

// A copy of `net` whose weights `edit` changed.
MetaRlNet EditedCopy(MetaRlNetImpl& net,
                     const std::function<void(std::map<std::string, torch::Tensor>&)>& edit) {
  std::map<std::string, torch::Tensor> weights;
  for (auto& [name, tensor] : WeightMap(net)) weights[name] = tensor.clone();
  edit(weights);
  MetaRlNet copy(net.config());
  std::vector<std::pair<std::string, torch::Tensor>> list(weights.begin(), weights.end());
  EXPECT_EQ(ImportWeights(*copy, list), "");
  return copy;
}

// The input is [observation (2), one-hot previous action (3), previous reward (1)]: a
// previous action a is the same as adding weight_ih's column 2 + a to the bias, -1 adds
// nothing, and a reward r adds r times column 5.
TEST(MetaRlNetTest, InputIsObservationOneHotActionAndReward) {
  torch::manual_seed(2);
  MetaRlNet net(NetConfig());
  EXPECT_EQ(WeightMap(*net).at("lstm.weight_ih").sizes(), (std::vector<int64_t>{16, 6}));
  const auto state = net->InitialState(1, torch::kCPU);
  const torch::Tensor obs = torch::tensor({{0.3f, -0.7f}});
  MetaRlNet no_inputs =
      EditedCopy(*net, [](auto& w) { w["lstm.weight_ih"].narrow(1, 2, 4).zero_(); });
  const torch::Tensor none = no_inputs->Step(obs, Longs({2}), Floats({5}), state).logits;
  // -1 and reward 0 feed nothing beyond the observation.
  ExpectClose(net->Step(obs, Longs({-1}), Floats({0}), state).logits, none);
  for (int64_t action = 0; action < 3; ++action) {
    MetaRlNet moved = EditedCopy(*net, [action](auto& w) {
      w["lstm.bias_ih"] +=
          w["lstm.weight_ih"].select(1, 2 + action) - 1.5 * w["lstm.weight_ih"].select(1, 5);
      w["lstm.weight_ih"].narrow(1, 2, 4).zero_();
    });
    ExpectClose(net->Step(obs, Longs({action}), Floats({-1.5}), state).logits,
                moved->Step(obs, Longs({0}), Floats({0}), state).logits);
  }
  // uint8 observations are converted to float.
  const torch::Tensor bytes = torch::tensor({{3, 7}}, torch::kByte);
  ExpectClose(net->Step(bytes, Longs({1}), Floats({1}), state).logits,
              net->Step(bytes.to(torch::kFloat), Longs({1}), Floats({1}), state).logits);

  MetaRlNetConfig bare = NetConfig();
  bare.input_previous_action = false;
  bare.input_previous_reward = false;
  MetaRlNet bare_net(bare);
  EXPECT_EQ(WeightMap(*bare_net).at("lstm.weight_ih").sizes(), (std::vector<int64_t>{16, 2}));
  const auto out = bare_net->Step(obs, Longs({1}), Floats({1}), state);
  ExpectClose(out.logits, bare_net->Step(obs, Longs({-1}), Floats({0}), state).logits);
  EXPECT_EQ(out.values.sizes(), (std::vector<int64_t>{1}));
}

// Random inputs for T steps of B chunks, with resets where `starts` says.
struct UnrollInputs {
  torch::Tensor observations, previous_actions, previous_rewards, episode_starts;
};

UnrollInputs RandomUnrollInputs(int64_t t_max, int64_t b, const torch::Tensor& starts) {
  UnrollInputs in;
  in.observations = torch::randn({t_max, b, 2});
  in.episode_starts = starts;
  in.previous_actions = torch::where(starts, torch::full({t_max, b}, -1, torch::kLong),
                                     torch::randint(0, 3, {t_max, b}, torch::kLong));
  in.previous_rewards = torch::where(starts, torch::zeros({t_max, b}), torch::randn({t_max, b}));
  return in;
}

TEST(MetaRlNetTest, UnrollEqualsSteppingWithResets) {
  torch::manual_seed(3);
  MetaRlNet net(NetConfig());
  const int64_t t_max = 5, b = 3;
  torch::Tensor starts = torch::zeros({t_max, b}, torch::kBool);
  starts[0][0] = true;
  starts[2][1] = true;
  starts[3][1] = true;
  starts[4][2] = true;
  const UnrollInputs in = RandomUnrollInputs(t_max, b, starts);
  const MetaRlNetImpl::State initial{torch::randn({b, 4}), torch::randn({b, 4})};
  const auto unrolled = net->Unroll(in.observations, in.previous_actions, in.previous_rewards,
                                    in.episode_starts, initial);
  ASSERT_EQ(unrolled.logits.sizes(), (std::vector<int64_t>{t_max, b, 3}));
  ASSERT_EQ(unrolled.values.sizes(), (std::vector<int64_t>{t_max, b}));

  MetaRlNetImpl::State state = initial;
  const auto zeros = net->InitialState(b, torch::kCPU);
  for (int64_t t = 0; t < t_max; ++t) {
    const torch::Tensor reset = in.episode_starts[t].unsqueeze(1);
    state.h = torch::where(reset, zeros.h, state.h);
    state.c = torch::where(reset, zeros.c, state.c);
    const auto out =
        net->Step(in.observations[t], in.previous_actions[t], in.previous_rewards[t], state);
    ExpectClose(unrolled.logits[t], out.logits);
    ExpectClose(unrolled.values[t], out.values);
    state = out.state;
  }
  ExpectClose(unrolled.state.h, state.h);
  ExpectClose(unrolled.state.c, state.c);
}

TEST(MetaRlNetTest, EpisodeStartResetsTheState) {
  torch::manual_seed(4);
  MetaRlNet net(NetConfig());
  const int64_t t_max = 4, b = 2;
  torch::Tensor starts = torch::zeros({t_max, b}, torch::kBool);
  starts[2][1] = true;
  const UnrollInputs in = RandomUnrollInputs(t_max, b, starts);
  const MetaRlNetImpl::State initial{torch::randn({b, 4}), torch::randn({b, 4})};
  const auto reset = net->Unroll(in.observations, in.previous_actions, in.previous_rewards,
                                 in.episode_starts, initial);
  // At the reset step, chunk 1's output is a fresh episode's first step.
  const auto fresh = net->Step(in.observations[2].narrow(0, 1, 1), Longs({-1}), Floats({0}),
                               net->InitialState(1, torch::kCPU));
  ExpectClose(reset.logits[2].narrow(0, 1, 1), fresh.logits);
  ExpectClose(reset.values[2].narrow(0, 1, 1), fresh.values);
  // Without the reset it is not (the carried state matters), and chunk 0 is unaffected.
  const auto carried = net->Unroll(in.observations, in.previous_actions, in.previous_rewards,
                                   torch::zeros({t_max, b}, torch::kBool), initial);
  EXPECT_FALSE(torch::allclose(carried.logits[2][1], reset.logits[2][1], 0, 1e-4));
  ExpectClose(carried.logits.select(1, 0), reset.logits.select(1, 0));
  ExpectClose(carried.logits.narrow(0, 0, 2), reset.logits.narrow(0, 0, 2));
}

// ---- the learner --------------------------------------------------------------------------

std::unique_ptr<MetaRlLearner> MakeLearner(const MetaRlConfig& config, uint64_t seed = 0) {
  torch::manual_seed(seed);
  std::string error;
  auto learner = MetaRlLearner::Create(config, torch::kCPU, &error);
  EXPECT_EQ(error, "");
  return learner;
}

// T steps of B chunks for SmallConfig (observations 2, 3 actions, LSTM 8): random
// observations, actions and rewards, terminals with probability 0.2 followed by a reset,
// behaviour logits, and a random initial state.
MetaRlBatch RandomBatch(int64_t t_max, int64_t b, uint64_t seed) {
  torch::manual_seed(seed);
  MetaRlBatch batch;
  batch.observations = torch::randn({t_max, b, 2});
  batch.actions = torch::randint(0, 3, {t_max, b}, torch::kLong);
  batch.rewards = torch::randn({t_max, b});
  batch.discounts = (torch::rand({t_max, b}) > 0.2).to(torch::kFloat);
  batch.behaviour_logits = torch::randn({t_max, b, 3});
  batch.episode_starts = torch::zeros({t_max, b}, torch::kBool);
  batch.episode_starts[0][0] = true;
  batch.episode_starts.narrow(0, 1, t_max - 1).copy_(batch.discounts.narrow(0, 0, t_max - 1) == 0);
  const torch::Tensor shifted_actions = torch::cat(
      {torch::randint(0, 3, {1, b}, torch::kLong), batch.actions.narrow(0, 0, t_max - 1)});
  const torch::Tensor shifted_rewards =
      torch::cat({torch::randn({1, b}), batch.rewards.narrow(0, 0, t_max - 1)});
  batch.previous_actions = torch::where(batch.episode_starts,
                                        torch::full({t_max, b}, -1, torch::kLong), shifted_actions);
  batch.previous_rewards =
      torch::where(batch.episode_starts, torch::zeros({t_max, b}), shifted_rewards);
  batch.initial_h = 0.1 * torch::randn({b, 8});
  batch.initial_c = 0.1 * torch::randn({b, 8});
  batch.bootstrap_observation = torch::randn({b, 2});
  return batch;
}

bool SameWeights(MetaRlNetImpl& a, MetaRlNetImpl& b) {
  const auto pa = a.parameters();
  const auto pb = b.parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i) {
    if (!torch::equal(pa[i], pb[i])) return false;
  }
  return true;
}

torch::Tensor Logits(MetaRlNetImpl& net, const MetaRlBatch& batch) {
  torch::NoGradGuard no_grad;
  return net
      .Unroll(batch.observations, batch.previous_actions, batch.previous_rewards,
              batch.episode_starts, {batch.initial_h, batch.initial_c})
      .logits;
}

// The reported loss is MetaRlLoss on the learner's own network before the step, with the
// bootstrap value from the state after the last step (no reset), previous action and
// reward actions[T-1] and rewards[T-1].
TEST(MetaRlLearnerTest, UpdateReportsTheLossOfTheBatch) {
  MetaRlConfig config = SmallConfig();
  auto learner = MakeLearner(config, 5);
  const MetaRlBatch batch = RandomBatch(6, 4, 6);
  MetaRlLossOutput expected;
  {
    torch::NoGradGuard no_grad;
    MetaRlNetImpl& net = *learner->network();
    const auto out = net.Unroll(batch.observations, batch.previous_actions, batch.previous_rewards,
                                batch.episode_starts, {batch.initial_h, batch.initial_c});
    const auto boot =
        net.Step(batch.bootstrap_observation, batch.actions[5], batch.rewards[5], out.state);
    expected = MetaRlLoss(out.logits, out.values, boot.values, batch, config);
  }
  const MetaRlLearner::UpdateResult result = learner->Update(batch);
  EXPECT_NEAR(result.loss, expected.total.item<float>(), 1e-5);
  EXPECT_NEAR(result.policy_loss, expected.policy.item<float>(), 1e-5);
  EXPECT_NEAR(result.value_loss, expected.value.item<float>(), 1e-5);
  EXPECT_NEAR(result.entropy, expected.entropy.item<float>(), 1e-5);
  EXPECT_GT(result.grad_norm, 0);
  EXPECT_EQ(learner->updates(), 1);
}

// The V-trace targets (vs, pg_advantages) of `batch` under the network's current weights.
VTraceOutput Targets(MetaRlNetImpl& net, const MetaRlBatch& batch, const MetaRlConfig& config) {
  torch::NoGradGuard no_grad;
  const auto out = net.Unroll(batch.observations, batch.previous_actions, batch.previous_rewards,
                              batch.episode_starts, {batch.initial_h, batch.initial_c});
  const int64_t last = batch.actions.size(0) - 1;
  const auto boot =
      net.Step(batch.bootstrap_observation, batch.actions[last], batch.rewards[last], out.state);
  const torch::Tensor actions = batch.actions.unsqueeze(2);
  const torch::Tensor log_rhos =
      torch::log_softmax(out.logits, 2).gather(2, actions).squeeze(2) -
      torch::log_softmax(batch.behaviour_logits, 2).gather(2, actions).squeeze(2);
  return VTrace(log_rhos, batch.discounts * config.gamma, batch.rewards, out.values, boot.values,
                config.vtrace_rho_clip, config.vtrace_c_clip);
}

// The loss with the V-trace targets held fixed: what one gradient step minimizes.
double LossWithTargets(MetaRlNetImpl& net, const MetaRlBatch& batch, const MetaRlConfig& config,
                       const VTraceOutput& targets) {
  torch::NoGradGuard no_grad;
  const auto out = net.Unroll(batch.observations, batch.previous_actions, batch.previous_rewards,
                              batch.episode_starts, {batch.initial_h, batch.initial_c});
  const torch::Tensor log_probs = torch::log_softmax(out.logits, 2);
  const torch::Tensor taken = log_probs.gather(2, batch.actions.unsqueeze(2)).squeeze(2);
  const torch::Tensor policy = -(targets.pg_advantages * taken).mean();
  const torch::Tensor value = (0.5 * (targets.vs - out.values).pow(2)).mean();
  const torch::Tensor entropy = -(log_probs.exp() * log_probs).sum(2).mean();
  return (policy + config.value_cost * value - config.entropy_cost * entropy).item<double>();
}

// On a fixed (off-policy) batch, every update lowers the loss it minimizes (the V-trace
// targets held at their values before the step), and over 50 updates the critic fits the
// targets. (The total loss itself need not fall: as V fits, the advantages shrink and the
// policy term moves towards 0 from either side.)
TEST(MetaRlLearnerTest, UpdateMovesTheLossDown) {
  MetaRlConfig config = SmallConfig();
  config.optimizer.learning_rate = 0.005;
  config.value_cost = 0.5;
  auto learner = MakeLearner(config, 7);
  MetaRlNetImpl& net = *learner->network();
  const MetaRlBatch batch = RandomBatch(8, 4, 8);
  MetaRlLearner::UpdateResult first, last;
  for (int update = 0; update < 50; ++update) {
    const VTraceOutput targets = Targets(net, batch, config);
    const double before = LossWithTargets(net, batch, config, targets);
    last = learner->Update(batch);
    if (update == 0) first = last;
    EXPECT_NEAR(last.loss, before, 1e-5) << "update " << update;
    EXPECT_LT(LossWithTargets(net, batch, config, targets), before) << "update " << update;
  }
  EXPECT_EQ(learner->updates(), 50);
  EXPECT_LT(last.value_loss, 0.5 * first.value_loss)
      << "first " << first.value_loss << " last " << last.value_loss;
}

TEST(MetaRlLearnerTest, OnPolicyBatchAndClippingWork) {
  MetaRlConfig config = SmallConfig();
  config.gradient_clip_norm = 1e-3;
  auto learner = MakeLearner(config, 9);
  MetaRlBatch batch = RandomBatch(4, 2, 10);
  batch.behaviour_logits = torch::Tensor();
  batch.rewards = batch.rewards * 1000;
  const std::vector<torch::Tensor> before = [&] {
    std::vector<torch::Tensor> copies;
    for (const auto& p : learner->network()->parameters()) copies.push_back(p.detach().clone());
    return copies;
  }();
  const MetaRlLearner::UpdateResult result = learner->Update(batch);
  EXPECT_GT(result.grad_norm, 1);
  double norm = 0;
  for (const auto& p : learner->network()->parameters())
    norm += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(norm), 1e-3, 1e-6);
  // Adam's first step moves every parameter with a gradient by about the learning rate.
  const auto after = learner->network()->parameters();
  EXPECT_FALSE(torch::equal(before[0], after[0]));
}

TEST(MetaRlLearnerTest, InvalidBatchIsRejected) {
  auto learner = MakeLearner(SmallConfig());
  const MetaRlBatch batch = RandomBatch(4, 2, 11);
  EXPECT_EQ(learner->ValidateBatch(batch), "");
  MetaRlBatch on_policy = batch;
  on_policy.behaviour_logits = torch::Tensor();
  EXPECT_EQ(learner->ValidateBatch(on_policy), "");
  on_policy.behaviour_logits = torch::empty({0});
  EXPECT_EQ(learner->ValidateBatch(on_policy), "");
  MetaRlBatch bytes = batch;
  bytes.observations = torch::zeros({4, 2, 1, 2}, torch::kByte);
  bytes.bootstrap_observation = torch::zeros({2, 1, 2}, torch::kByte);
  EXPECT_EQ(learner->ValidateBatch(bytes), "");

  MetaRlBatch bad = batch;
  bad.actions = batch.actions.clone();
  bad.actions[1][1] = 3;
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.actions: values in [0, 3], expected [0, 3)");
  EXPECT_THROW(learner->Update(bad), c10::Error);
  bad = batch;
  bad.actions = batch.actions.clone();
  bad.actions[0][0] = -1;
  EXPECT_NE(learner->ValidateBatch(bad).find("batch.actions: values in [-1, "), std::string::npos)
      << learner->ValidateBatch(bad);
  bad = batch;
  bad.previous_actions = torch::full({4, 2}, -2, torch::kLong);
  EXPECT_EQ(learner->ValidateBatch(bad),
            "batch.previous_actions: values in [-2, -2], expected [-1, 3)");
  bad = batch;
  bad.actions = batch.actions.to(torch::kInt);
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.actions: dtype Int, expected Long");
  bad = batch;
  bad.rewards = torch::zeros({3, 2});
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.rewards: shape [3, 2], expected [4, 2]");
  bad = batch;
  bad.episode_starts = torch::zeros({4, 2});
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.episode_starts: dtype Float, expected Bool");
  bad = batch;
  bad.discounts = torch::Tensor();
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.discounts: missing");
  bad = batch;
  bad.initial_h = torch::zeros({2, 48});
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.initial_h: shape [2, 48], expected [2, 8]");
  bad = batch;
  bad.behaviour_logits = torch::zeros({4, 2, 2});
  EXPECT_EQ(learner->ValidateBatch(bad),
            "batch.behaviour_logits: shape [4, 2, 2], expected [4, 2, 3]");
  bad = batch;
  bad.observations = torch::zeros({4, 2, 3});
  EXPECT_EQ(learner->ValidateBatch(bad),
            "batch.observations: shape [4, 2, 3], expected [T >= 1, B >= 1, obs...] with 2 "
            "elements per observation");
  bad = batch;
  bad.observations = batch.observations.to(torch::kDouble);
  EXPECT_EQ(learner->ValidateBatch(bad),
            "batch.observations: dtype Double, expected Float or Byte");
  bad = batch;
  bad.bootstrap_observation = torch::zeros({3, 2});
  EXPECT_EQ(learner->ValidateBatch(bad),
            "batch.bootstrap_observation: shape [3, 2], expected [2, 2]");
  bad = batch;
  bad.bootstrap_observation = torch::Tensor();
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.bootstrap_observation: missing");
  EXPECT_EQ(learner->updates(), 0);
}

class TempPath {
 public:
  explicit TempPath(const std::string& name)
      : path_(testing::TempDir() + "/" + name + "_" +
              testing::UnitTest::GetInstance()->current_test_info()->name()) {}
  ~TempPath() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(MetaRlLearnerTest, SaveLoadRoundTrip) {
  const MetaRlConfig config = SmallConfig();  // Adam: its moments are restored too
  auto saved = MakeLearner(config, 1);
  const MetaRlBatch first = RandomBatch(5, 3, 12);
  saved->Update(first);
  saved->Update(RandomBatch(5, 3, 13));
  TempPath file("meta_rl.ckpt");
  ASSERT_EQ(saved->Save(file.path()), "");
  EXPECT_FALSE(std::ifstream(file.path() + ".tmp").good());

  auto loaded = MakeLearner(config, 2);
  ASSERT_FALSE(torch::equal(Logits(*saved->network(), first), Logits(*loaded->network(), first)));
  ASSERT_EQ(loaded->Load(file.path()), "");
  EXPECT_EQ(loaded->updates(), 2);
  EXPECT_TRUE(torch::equal(Logits(*saved->network(), first), Logits(*loaded->network(), first)));

  // The next update is the same: same weights, same optimizer state.
  const MetaRlBatch next = RandomBatch(5, 3, 14);
  const MetaRlLearner::UpdateResult a = saved->Update(next);
  const MetaRlLearner::UpdateResult b = loaded->Update(next);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_TRUE(SameWeights(*saved->network(), *loaded->network()));
  EXPECT_EQ(loaded->updates(), 3);
}

TEST(MetaRlLearnerTest, LoadErrorsLeaveTheLearnerUnchanged) {
  auto learner = MakeLearner(SmallConfig(), 1);
  learner->Update(RandomBatch(3, 2, 15));
  const MetaRlBatch batch = RandomBatch(3, 2, 16);
  const torch::Tensor before = Logits(*learner->network(), batch);

  const std::string missing = learner->Load(testing::TempDir() + "/no_such_checkpoint");
  EXPECT_NE(missing.find("no_such_checkpoint"), std::string::npos) << missing;

  TempPath file("other.ckpt");
  MetaRlConfig other = SmallConfig();
  other.network.lstm_size = 16;
  ASSERT_EQ(MakeLearner(other)->Save(file.path()), "");
  const std::string mismatch = learner->Load(file.path());
  EXPECT_NE(mismatch.find("network architecture [2, 3, 16, 1, 1] does not match this "
                          "learner's [2, 3, 8, 1, 1]"),
            std::string::npos)
      << mismatch;

  other = SmallConfig();
  other.network.input_previous_reward = false;
  ASSERT_EQ(MakeLearner(other)->Save(file.path()), "");
  EXPECT_NE(learner->Load(file.path()).find("network architecture"), std::string::npos);

  MetaRlConfig rmsprop = SmallConfig();
  rmsprop.optimizer = OptimizerConfig();
  ASSERT_EQ(MakeLearner(rmsprop)->Save(file.path()), "");
  EXPECT_NE(learner->Load(file.path()).find("optimizer kind"), std::string::npos);

  // A DQN checkpoint is not a meta-RL one.
  DqnConfig dqn;
  dqn.network.torso = Torso::kMlp;
  dqn.network.observation_shape = {2};
  dqn.network.num_actions = 3;
  std::string error;
  ASSERT_EQ(DqnLearner::Create(dqn, torch::kCPU, &error)->Save(file.path()), "");
  EXPECT_NE(learner->Load(file.path()).find("not an Engram meta-RL checkpoint"), std::string::npos);

  const std::string unwritable = learner->Save(testing::TempDir() + "/no/such/dir/m.ckpt");
  EXPECT_NE(unwritable.find("cannot write"), std::string::npos) << unwritable;

  { std::ofstream(file.path()) << "not a checkpoint"; }
  EXPECT_NE(learner->Load(file.path()), "");

  EXPECT_TRUE(torch::equal(Logits(*learner->network(), batch), before));
  EXPECT_EQ(learner->updates(), 1);
}

TEST(MetaRlWeightsTest, ExportImportRoundTrip) {
  auto learner = MakeLearner(SmallConfig(), 1);
  const auto weights = learner->ExportWeights();
  ASSERT_EQ(weights.size(), 8u);  // lstm: weight_ih, weight_hh, bias_ih, bias_hh; 2 heads
  EXPECT_EQ(weights[0].first, "lstm.weight_ih");
  for (const auto& [name, tensor] : weights) {
    EXPECT_TRUE(tensor.device().is_cpu()) << name;
    EXPECT_FALSE(tensor.requires_grad()) << name;
  }
  torch::manual_seed(42);
  MetaRlNet actor(SmallConfig().network);
  const MetaRlBatch batch = RandomBatch(3, 2, 17);
  EXPECT_FALSE(torch::equal(Logits(*actor, batch), Logits(*learner->network(), batch)));
  ASSERT_EQ(ImportWeights(*actor, weights), "");
  EXPECT_TRUE(torch::equal(Logits(*actor, batch), Logits(*learner->network(), batch)));

  // A deep copy: training on does not change what was exported.
  const torch::Tensor exported_before = weights[0].second.clone();
  learner->Update(batch);
  EXPECT_TRUE(torch::equal(weights[0].second, exported_before));
}

TEST(MetaRlWeightsTest, ImportRejectsMismatchesAndChangesNothing) {
  auto learner = MakeLearner(SmallConfig(), 1);
  const auto weights = learner->ExportWeights();
  torch::manual_seed(42);
  MetaRlNet actor(SmallConfig().network);
  const MetaRlBatch batch = RandomBatch(3, 2, 18);
  const torch::Tensor before = Logits(*actor, batch);

  auto bad = weights;
  bad[0].second = torch::zeros({32, 5});
  EXPECT_EQ(ImportWeights(*actor, bad),
            "weights: tensor \"lstm.weight_ih\" has shape [32, 5], the network's is [32, 6]");
  bad = weights;
  bad.pop_back();
  EXPECT_EQ(ImportWeights(*actor, bad), "weights: tensor \"value.bias\" missing");
  bad = weights;
  bad[0].first = "lstm.kernel";
  EXPECT_EQ(ImportWeights(*actor, bad), "weights: unknown tensor \"lstm.kernel\"");
  bad = weights;
  bad.push_back(weights[1]);
  EXPECT_EQ(ImportWeights(*actor, bad), "weights: tensor \"lstm.weight_hh\" twice");
  bad = weights;
  bad[1].second = bad[1].second.to(torch::kLong);
  EXPECT_NE(ImportWeights(*actor, bad).find("floating-point"), std::string::npos);

  EXPECT_TRUE(torch::equal(Logits(*actor, batch), before));
}

// A two-armed bandit where arm 1 always pays 1 and arm 0 pays 0: on-policy training from
// the actor's own samples drives pi(arm 1) above 0.9.
TEST(MetaRlLearnerTest, LearnsATwoArmedBandit) {
  MetaRlConfig config;
  config.network.observation_size = 1;
  config.network.num_actions = 2;
  config.network.lstm_size = 16;
  config.entropy_cost = 0.01;
  config.value_cost = 0.5;
  config.optimizer.learning_rate = 0.01;
  auto learner = MakeLearner(config, 19);
  MetaRlNetImpl& net = *learner->network();
  const int64_t t_max = 5, b = 8;

  auto arm_one_probability = [&] {
    torch::NoGradGuard no_grad;
    MetaRlNetImpl::State state = net.InitialState(1, torch::kCPU);
    const auto out = net.Step(torch::zeros({1, 1}), Longs({-1}), Floats({0}), state);
    return torch::softmax(out.logits, 1)[0][1].item<double>();
  };
  const double initial = arm_one_probability();
  EXPECT_LT(initial, 0.8);

  for (int iteration = 0; iteration < 150; ++iteration) {
    MetaRlBatch batch;
    batch.observations = torch::zeros({t_max, b, 1});
    batch.actions = torch::empty({t_max, b}, torch::kLong);
    batch.rewards = torch::empty({t_max, b});
    batch.discounts = torch::ones({t_max, b});
    batch.discounts[t_max - 1].fill_(0);  // one episode of t_max pulls per chunk
    batch.episode_starts = torch::zeros({t_max, b}, torch::kBool);
    batch.episode_starts[0].fill_(true);
    batch.previous_actions = torch::empty({t_max, b}, torch::kLong);
    batch.previous_rewards = torch::empty({t_max, b});
    batch.initial_h = torch::zeros({b, 16});
    batch.initial_c = torch::zeros({b, 16});
    batch.bootstrap_observation = torch::zeros({b, 1});
    {
      torch::NoGradGuard no_grad;
      MetaRlNetImpl::State state = net.InitialState(b, torch::kCPU);
      torch::Tensor previous_action = torch::full({b}, -1, torch::kLong);
      torch::Tensor previous_reward = torch::zeros({b});
      for (int64_t t = 0; t < t_max; ++t) {
        const auto out = net.Step(batch.observations[t], previous_action, previous_reward, state);
        const torch::Tensor action =
            torch::multinomial(torch::softmax(out.logits, 1), 1).squeeze(1);
        const torch::Tensor reward = (action == 1).to(torch::kFloat);
        batch.previous_actions[t] = previous_action;
        batch.previous_rewards[t] = previous_reward;
        batch.actions[t] = action;
        batch.rewards[t] = reward;
        previous_action = action;
        previous_reward = reward;
        state = out.state;
      }
    }
    learner->Update(batch);
  }
  EXPECT_GT(arm_one_probability(), 0.9) << "initially " << initial;
}

// On a machine with CUDA: the same update on the GPU as on the CPU (up to float
// rounding), and checkpoints move across devices.
TEST(MetaRlLearnerCudaTest, UpdateMatchesCpuAndCheckpointsMoveAcrossDevices) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const MetaRlConfig config = SmallConfig();
  auto cpu = MakeLearner(config, 20);
  TempPath file("cpu.ckpt");
  ASSERT_EQ(cpu->Save(file.path()), "");
  std::string error;
  auto gpu = MetaRlLearner::Create(config, torch::Device(torch::kCUDA, 0), &error);
  ASSERT_NE(gpu, nullptr) << error;
  ASSERT_EQ(gpu->Load(file.path()), "");
  const MetaRlBatch batch = RandomBatch(6, 4, 21);
  const MetaRlLearner::UpdateResult a = cpu->Update(batch);
  const MetaRlLearner::UpdateResult b = gpu->Update(batch);
  EXPECT_NEAR(a.loss, b.loss, 1e-4);
  EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-4 * a.grad_norm);
  const auto cpu_weights = cpu->ExportWeights();
  const auto gpu_weights = gpu->ExportWeights();
  ASSERT_EQ(cpu_weights.size(), gpu_weights.size());
  for (size_t i = 0; i < cpu_weights.size(); ++i) {
    EXPECT_TRUE(gpu_weights[i].second.device().is_cpu());
    EXPECT_TRUE(torch::allclose(cpu_weights[i].second, gpu_weights[i].second, 1e-4, 1e-5))
        << cpu_weights[i].first;
  }
  TempPath back_file("gpu.ckpt");
  ASSERT_EQ(gpu->Save(back_file.path()), "");
  auto back = MakeLearner(config, 22);
  ASSERT_EQ(back->Load(back_file.path()), "");
  EXPECT_EQ(back->updates(), 1);
}

}  // namespace
}  // namespace engram::learner
