#include "learner/core/ewc.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "torch/autograd.h"
#include "torch/nn/modules/linear.h"
#include "torch/utils.h"

namespace engram::learner {
namespace {

torch::Tensor Floats(std::vector<float> values) { return torch::tensor(values); }

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

void SetParameter(torch::Tensor parameter, const torch::Tensor& value) {
  torch::NoGradGuard no_grad;
  parameter.copy_(value.reshape(parameter.sizes()));
}

// Linear(1, 1) with bias: two scalar parameters, "weight" [1, 1] and "bias" [1].
torch::nn::Linear TwoParameters(float weight, float bias) {
  torch::nn::Linear module(torch::nn::LinearOptions(1, 1));
  SetParameter(module->weight, Floats({weight}));
  SetParameter(module->bias, Floats({bias}));
  return module;
}

NamedTensorList TwoFisher(float weight, float bias) {
  return {{"weight", torch::tensor({{weight}})}, {"bias", Floats({bias})}};
}

EwcOptions Options(double lambda, bool online = false, double online_gamma = 1.0) {
  EwcOptions options;
  options.lambda = lambda;
  options.online = online;
  options.online_gamma = online_gamma;
  return options;
}

// ---- DiagonalFisher ---------------------------------------------------------------------

TEST(DiagonalFisherTest, MeanOfSquaredPerSampleGradients) {
  torch::nn::Linear linear(torch::nn::LinearOptions(2, 1).bias(false));
  SetParameter(linear->weight, Floats({1, 2}));  // w = [1, 2]
  const torch::Tensor x = torch::tensor({{1.f, 0.f}, {1.f, 1.f}, {0.f, 2.f}});
  const torch::Tensor y = Floats({0, 2, 1});
  // loss_i = (w . x_i - y_i)^2, gradient 2 (w . x_i - y_i) x_i:
  //   i = 0: w.x = 1, residual 1, gradient [2, 0],  squared [4, 0]
  //   i = 1: w.x = 3, residual 1, gradient [2, 2],  squared [4, 4]
  //   i = 2: w.x = 4, residual 3, gradient [0, 12], squared [0, 144]
  // mean: [8 / 3, 148 / 3].
  auto sample_loss = [&](int64_t i) {
    return (linear->forward(x[i].unsqueeze(0)).squeeze() - y[i]).pow(2);
  };
  // .grad stays as it was: undefined here, a set value below.
  const NamedTensorList fisher = DiagonalFisher(*linear, 3, sample_loss);
  ASSERT_EQ(fisher.size(), 1u);
  EXPECT_EQ(fisher[0].first, "weight");
  EXPECT_FALSE(fisher[0].second.requires_grad());
  EXPECT_TRUE(torch::allclose(fisher[0].second, torch::tensor({{8.f / 3, 148.f / 3}})))
      << fisher[0].second;
  EXPECT_FALSE(linear->weight.grad().defined());

  linear->weight.mutable_grad() = torch::tensor({{7.f, -7.f}});
  {
    torch::NoGradGuard no_grad;  // the Fisher enables gradients itself
    const NamedTensorList again = DiagonalFisher(*linear, 2, sample_loss);
    // The first two samples only: [(4 + 4) / 2, (0 + 4) / 2].
    EXPECT_TRUE(torch::allclose(again[0].second, torch::tensor({{4.f, 2.f}})));
  }
  EXPECT_TRUE(torch::equal(linear->weight.grad(), torch::tensor({{7.f, -7.f}})));

  // A loss that does not depend on the parameters contributes zero.
  const NamedTensorList constant =
      DiagonalFisher(*linear, 2, [](int64_t) { return torch::tensor(3.f); });
  EXPECT_TRUE(torch::equal(constant[0].second, torch::zeros({1, 2})));
  EXPECT_THROW(DiagonalFisher(*linear, 0, sample_loss), c10::Error);
}

// ---- the penalty ------------------------------------------------------------------------

TEST(ElasticWeightsTest, PenaltyValueAndGradientPullTowardTheAnchorByFisher) {
  torch::nn::Linear module = TwoParameters(1, 2);  // anchor theta* = (1, 2)
  ElasticWeights ewc(Options(4));
  EXPECT_EQ(ewc.terms(), 0);
  const torch::Tensor before = ewc.Penalty(*module);
  EXPECT_EQ(before.item<float>(), 0);
  EXPECT_FALSE(before.requires_grad());

  ewc.Consolidate(*module, TwoFisher(3, 0));  // F = (3, 0)
  EXPECT_EQ(ewc.terms(), 1);
  EXPECT_EQ(ewc.Penalty(*module).item<float>(), 0);  // at the anchor
  SetParameter(module->weight, Floats({2}));         // theta = (2, 5)
  SetParameter(module->bias, Floats({5}));
  // (4 / 2) * (3 * (2 - 1)^2 + 0 * (5 - 2)^2) = 6.
  const torch::Tensor penalty = ewc.Penalty(*module);
  EXPECT_EQ(penalty.dim(), 0);
  EXPECT_FLOAT_EQ(penalty.item<float>(), 6);
  // Gradient lambda * F * (theta - theta*) = (4 * 3 * 1, 4 * 0 * 3) = (12, 0): the parameter
  // with F = 0 is free.
  penalty.backward();
  EXPECT_FLOAT_EQ(module->weight.grad().item<float>(), 12);
  EXPECT_FLOAT_EQ(module->bias.grad().item<float>(), 0);

  // With F = (3, 0.5): (4 / 2) * (3 * 1 + 0.5 * 9) = 15, gradient (12, 4 * 0.5 * 3 = 6).
  torch::nn::Linear other = TwoParameters(1, 2);
  ElasticWeights both(Options(4));
  both.Consolidate(*other, TwoFisher(3, 0.5));
  SetParameter(other->weight, Floats({2}));
  SetParameter(other->bias, Floats({5}));
  const torch::Tensor second = both.Penalty(*other);
  EXPECT_FLOAT_EQ(second.item<float>(), 15);
  const auto grads = torch::autograd::grad({second}, {other->weight, other->bias});
  EXPECT_FLOAT_EQ(grads[0].item<float>(), 12);
  EXPECT_FLOAT_EQ(grads[1].item<float>(), 6);
}

TEST(ElasticWeightsTest, StandardEwcSumsOneTermPerTask) {
  torch::nn::Linear module = TwoParameters(1, 2);
  ElasticWeights ewc(Options(2));
  ewc.Consolidate(*module, TwoFisher(3, 1));  // task 1: theta1 = (1, 2), F1 = (3, 1)
  SetParameter(module->weight, Floats({4}));
  SetParameter(module->bias, Floats({0}));
  ewc.Consolidate(*module, TwoFisher(0.5, 2));  // task 2: theta2 = (4, 0), F2 = (0.5, 2)
  EXPECT_EQ(ewc.terms(), 2);
  EXPECT_TRUE(torch::equal(ewc.anchor(0)[0].second, torch::tensor({{1.f}})));
  EXPECT_TRUE(torch::equal(ewc.anchor(1)[0].second, torch::tensor({{4.f}})));
  // Raw Fishers: standard EWC does not normalise.
  EXPECT_TRUE(torch::equal(ewc.fisher(1)[1].second, Floats({2})));
  SetParameter(module->weight, Floats({3}));  // theta = (3, 1)
  SetParameter(module->bias, Floats({1}));
  // (2 / 2) * [3 * (3 - 1)^2 + 1 * (1 - 2)^2 + 0.5 * (3 - 4)^2 + 2 * (1 - 0)^2]
  //   = 12 + 1 + 0.5 + 2 = 15.5.
  EXPECT_FLOAT_EQ(ewc.Penalty(*module).item<float>(), 15.5f);
}

TEST(ElasticWeightsTest, OnlineEwcKeepsOneNormalisedDecayedTermAndTheLatestAnchor) {
  torch::nn::Linear module = TwoParameters(1, 2);
  ElasticWeights ewc(Options(2, /*online=*/true, /*online_gamma=*/0.5));
  // F1 = (2, 4), mean 3: normalised (2/3, 4/3).
  ewc.Consolidate(*module, TwoFisher(2, 4));
  EXPECT_EQ(ewc.terms(), 1);
  EXPECT_TRUE(torch::allclose(ewc.fisher(0)[0].second, torch::tensor({{2.f / 3}})));
  EXPECT_TRUE(torch::allclose(ewc.fisher(0)[1].second, Floats({4.f / 3})));
  SetParameter(module->weight, Floats({4}));
  SetParameter(module->bias, Floats({0}));
  // F2 = (1, 0), mean 0.5: normalised (2, 0). F* = 0.5 * (2/3, 4/3) + (2, 0) = (7/3, 2/3).
  ewc.Consolidate(*module, TwoFisher(1, 0));
  EXPECT_EQ(ewc.terms(), 1);
  EXPECT_TRUE(torch::allclose(ewc.fisher(0)[0].second, torch::tensor({{7.f / 3}})));
  EXPECT_TRUE(torch::allclose(ewc.fisher(0)[1].second, Floats({2.f / 3})));
  EXPECT_TRUE(torch::equal(ewc.anchor(0)[0].second, torch::tensor({{4.f}})));
  EXPECT_TRUE(torch::equal(ewc.anchor(0)[1].second, Floats({0})));
  SetParameter(module->weight, Floats({3}));  // theta = (3, 1)
  SetParameter(module->bias, Floats({1}));
  // (2 / 2) * [7/3 * (3 - 4)^2 + 2/3 * (1 - 0)^2] = 3.
  EXPECT_NEAR(ewc.Penalty(*module).item<float>(), 3.f, 1e-5);

  // The scale of a task's loss does not matter: 100 x F1 normalises to the same term.
  torch::nn::Linear fresh = TwoParameters(1, 2);
  ElasticWeights scaled(Options(2, true, 0.5));
  scaled.Consolidate(*fresh, TwoFisher(200, 400));
  EXPECT_TRUE(torch::allclose(scaled.fisher(0)[1].second, Floats({4.f / 3})));
  // An all-zero Fisher stays zero (nothing to normalise).
  ElasticWeights zero(Options(2, true));
  zero.Consolidate(*fresh, TwoFisher(0, 0));
  EXPECT_TRUE(torch::equal(zero.fisher(0)[0].second, torch::zeros({1, 1})));
}

TEST(ElasticWeightsTest, LambdaZeroIsNoPenalty) {
  torch::nn::Linear module = TwoParameters(1, 2);
  ElasticWeights ewc(Options(0));
  ewc.Consolidate(*module, TwoFisher(3, 1));
  SetParameter(module->weight, Floats({5}));
  const torch::Tensor penalty = ewc.Penalty(*module);
  EXPECT_EQ(penalty.item<float>(), 0);
  EXPECT_FALSE(penalty.requires_grad());
  EXPECT_EQ(ewc.terms(), 1);
}

TEST(ElasticWeightsTest, ValidateNamesTheFieldAndMisuseThrows) {
  EXPECT_EQ(EwcOptions().Validate(), "");
  EXPECT_EQ(Options(-1).Validate(), "ewc.lambda: must be >= 0, got -1");
  EXPECT_EQ(Options(NAN).Validate(), "ewc.lambda: must be >= 0, got nan");
  EXPECT_EQ(Options(1, true, 1.5).Validate(), "ewc.online_gamma: must be in [0, 1], got 1.5");
  EXPECT_EQ(Options(1, true, -0.1).Validate(), "ewc.online_gamma: must be in [0, 1], got -0.1");
  EXPECT_EQ(Options(0, true, 0).Validate(), "");
  EXPECT_THROW(ElasticWeights(Options(-1)), c10::Error);

  torch::nn::Linear module = TwoParameters(1, 2);
  ElasticWeights ewc(Options(1));
  EXPECT_THROW(ewc.Consolidate(*module, {{"weight", torch::ones({1, 1})}}), c10::Error);
  EXPECT_THROW(ewc.Consolidate(*module, {{"weight", torch::ones({1})}, {"bias", Floats({1})}}),
               c10::Error);
  EXPECT_THROW(ewc.Consolidate(*module, TwoFisher(-1, 1)), c10::Error);
  EXPECT_THROW(ewc.Consolidate(*module, TwoFisher(NAN, 1)), c10::Error);
  EXPECT_EQ(ewc.terms(), 0);
  ewc.Consolidate(*module, TwoFisher(1, 1));
  torch::nn::Linear wider(torch::nn::LinearOptions(2, 1));
  EXPECT_THROW(ewc.Penalty(*wider), c10::Error);
}

// ---- the DQN Fisher and the hook ---------------------------------------------------------

DqnConfig MlpConfig() {
  DqnConfig config;
  config.network.torso = Torso::kMlp;
  config.network.observation_shape = {4};
  config.network.num_actions = 2;
  config.network.hidden_sizes = {8};
  config.optimizer.kind = OptimizerKind::kAdam;
  config.optimizer.learning_rate = 0.01;
  config.optimizer.epsilon = 1e-8;
  config.target_update_period = 10;
  return config;
}

std::unique_ptr<DqnLearner> MakeLearner(const DqnConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  std::string error;
  auto learner = DqnLearner::Create(config, torch::kCPU, &error);
  EXPECT_EQ(error, "");
  return learner;
}

// Observations around `offset`; rewards `reward_scale` * (first feature > 0).
DqnBatch MlpBatch(int64_t batch, uint64_t seed, float offset = 0, float reward_scale = 1) {
  torch::manual_seed(seed);
  DqnBatch b;
  b.observations = torch::randn({batch, 4}) + offset;
  b.next_observations = torch::randn({batch, 4}) + offset;
  b.actions = torch::randint(0, 2, {batch}, torch::kLong);
  b.rewards = reward_scale * (b.observations.select(1, 0) > offset).to(torch::kFloat);
  b.discounts =
      torch::where(torch::rand({batch}) < 0.2, torch::zeros({batch}), torch::full({batch}, 0.9f));
  b.weights = torch::rand({batch}) + 0.5;  // ignored by the Fisher
  return b;
}

TEST(DqnFisherTest, SquaredQValueGradientsSummedOverActions) {
  auto learner = MakeLearner(MlpConfig(), 1);
  learner->Update(MlpBatch(16, 10));
  const DqnBatch first = MlpBatch(5, 11), second = MlpBatch(3, 12);
  const NamedTensorList before = learner->ExportWeights();

  const NamedTensorList fisher = DqnFisher(*learner, {first, second});
  const NamedTensorList params = [&] {
    NamedTensorList p;
    for (const auto& item : learner->online().named_parameters()) {
      p.emplace_back(item.key(), item.value());
    }
    return p;
  }();
  ASSERT_EQ(fisher.size(), params.size());
  for (size_t i = 0; i < fisher.size(); ++i) {
    EXPECT_EQ(fisher[i].first, params[i].first);
    EXPECT_EQ(fisher[i].second.sizes(), params[i].second.sizes()) << fisher[i].first;
    EXPECT_TRUE((fisher[i].second >= 0).all().item<bool>()) << fisher[i].first;
  }
  // Neither the networks nor the counter moved.
  const NamedTensorList after = learner->ExportWeights();
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_TRUE(torch::equal(before[i].second, after[i].second)) << before[i].first;
  }
  EXPECT_EQ(learner->updates(), 1);

  // By hand: for every state, the squared gradient of each action's Q, summed over the two
  // actions; the mean over the 8 states.
  std::vector<torch::Tensor> expected;
  for (const auto& [name, p] : params) expected.push_back(torch::zeros_like(p));
  for (const DqnBatch* batch : {&first, &second}) {
    for (int64_t row = 0; row < batch->observations.size(0); ++row) {
      for (int64_t a = 0; a < 2; ++a) {
        std::vector<torch::Tensor> inputs;
        for (const auto& [name, p] : params) inputs.push_back(p);
        const torch::Tensor q =
            learner->online().forward(batch->observations[row].unsqueeze(0))[0][a];
        const std::vector<torch::Tensor> grads = torch::autograd::grad({q}, inputs);
        for (size_t i = 0; i < grads.size(); ++i) expected[i] += grads[i].square() / 8;
      }
    }
  }
  for (size_t i = 0; i < fisher.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fisher[i].second, expected[i], 1e-5, 1e-7)) << fisher[i].first;
  }
  // The output layer's bias moves Q(s, a) one for one: its Fisher is 1 per action.
  const torch::Tensor& output_bias = fisher.back().second;
  ASSERT_EQ(output_bias.numel(), 2);
  EXPECT_TRUE(torch::allclose(output_bias, torch::ones({2}))) << output_bias;
}

TEST(DqnExtraLossTest, ExtraLossIsMinimizedAndReportedApart) {
  const DqnConfig config = MlpConfig();
  auto plain = MakeLearner(config, 2);
  auto regularised = MakeLearner(config, 2);
  ElasticWeights ewc(Options(50));
  ewc.Consolidate(regularised->online(), DqnFisher(*regularised, {MlpBatch(8, 20)}));
  // Move away from the anchor so that the penalty is not 0.
  regularised->Update(MlpBatch(8, 21));
  plain->Update(MlpBatch(8, 21));
  regularised->SetExtraLoss([&ewc](const QNetwork& q) { return ewc.Penalty(q); });

  const DqnBatch batch = MlpBatch(8, 22);
  const float penalty = ewc.Penalty(regularised->online()).item<float>();
  ASSERT_GT(penalty, 0);
  const DqnLearner::UpdateResult a = plain->Update(batch);
  const DqnLearner::UpdateResult b = regularised->Update(batch);
  EXPECT_EQ(a.extra_loss, 0);
  EXPECT_FLOAT_EQ(b.extra_loss, penalty);
  // `loss` stays the TD loss (same weights before the step), and so do the priorities.
  EXPECT_FLOAT_EQ(a.loss, b.loss);
  EXPECT_TRUE(torch::allclose(a.new_priorities, b.new_priorities));
  // The norm is the TD loss's (clipping leaves the penalty's gradient alone), yet the
  // penalty's gradient moved the weights.
  EXPECT_FLOAT_EQ(a.grad_norm, b.grad_norm);
  const NamedTensorList plain_weights = plain->ExportWeights();
  const NamedTensorList regularised_weights = regularised->ExportWeights();
  bool differ = false;
  for (size_t i = 0; i < plain_weights.size(); ++i) {
    differ |= !torch::allclose(plain_weights[i].second, regularised_weights[i].second);
  }
  EXPECT_TRUE(differ);

  regularised->SetExtraLoss(nullptr);
  EXPECT_EQ(regularised->Update(batch).extra_loss, 0);
  regularised->SetExtraLoss([](const QNetwork&) { return torch::ones({2}); });
  EXPECT_THROW(regularised->Update(batch), c10::Error);
}

// Task A, then many updates on a different task B: with a large lambda the parameters that
// mattered to A (high Fisher) stay near their A values far more than with lambda = 0.
TEST(DqnExtraLossTest, PenaltyKeepsHighFisherParametersNearTheAnchor) {
  const DqnConfig config = MlpConfig();
  std::vector<DqnBatch> task_a;
  for (uint64_t seed = 30; seed < 34; ++seed) task_a.push_back(MlpBatch(32, seed));

  auto drift = [&](double lambda) {
    auto learner = MakeLearner(config, 3);
    for (int i = 0; i < 50; ++i) learner->Update(task_a[i % task_a.size()]);
    ElasticWeights ewc(Options(lambda, /*online=*/true));
    ewc.Consolidate(learner->online(), DqnFisher(*learner, task_a));
    learner->SetExtraLoss([&ewc](const QNetwork& q) { return ewc.Penalty(q); });
    for (int i = 0; i < 150; ++i) {
      learner->Update(MlpBatch(32, 100 + i, /*offset=*/2, /*reward_scale=*/-3));
    }
    // Mean |theta - theta*| over the elements whose Fisher is above the median.
    std::vector<torch::Tensor> fisher, moved;
    const NamedTensorList now = learner->ExportWeights();
    for (size_t i = 0; i < ewc.fisher(0).size(); ++i) {
      fisher.push_back(ewc.fisher(0)[i].second.flatten());
      moved.push_back((now[i].second - ewc.anchor(0)[i].second).abs().flatten());
    }
    const torch::Tensor f = torch::cat(fisher);
    const torch::Tensor high = f > f.median();
    return torch::cat(moved).masked_select(high).mean().item<double>();
  };
  const double free = drift(0);
  const double held = drift(1000);
  EXPECT_GT(free, 0.05);
  EXPECT_LT(held, 0.1 * free) << "held " << held << ", free " << free;
}

// ---- Save and Load ----------------------------------------------------------------------

TEST(ElasticWeightsTest, SaveLoadRoundTripAndErrorsLeaveItUnchanged) {
  torch::nn::Linear module = TwoParameters(1, 2);
  ElasticWeights saved(Options(3));
  saved.Consolidate(*module, TwoFisher(3, 1));
  SetParameter(module->weight, Floats({4}));
  saved.Consolidate(*module, TwoFisher(0.5, 2));
  SetParameter(module->bias, Floats({-1}));
  TempPath file("ewc.state");
  ASSERT_EQ(saved.Save(file.path()), "");
  EXPECT_FALSE(std::ifstream(file.path() + ".tmp").good());

  ElasticWeights loaded(Options(3));
  ASSERT_EQ(loaded.Load(file.path()), "");
  ASSERT_EQ(loaded.terms(), 2);
  for (int k = 0; k < 2; ++k) {
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(loaded.anchor(k)[i].first, saved.anchor(k)[i].first);
      EXPECT_TRUE(torch::equal(loaded.anchor(k)[i].second, saved.anchor(k)[i].second));
      EXPECT_TRUE(torch::equal(loaded.fisher(k)[i].second, saved.fisher(k)[i].second));
    }
  }
  const float penalty = saved.Penalty(*module).item<float>();
  EXPECT_GT(penalty, 0);
  EXPECT_EQ(loaded.Penalty(*module).item<float>(), penalty);

  // Other options: the state means something else.
  ElasticWeights other(Options(3, /*online=*/true));
  const std::string mismatch = other.Load(file.path());
  EXPECT_NE(mismatch.find("saved options (lambda 3, online false, online_gamma 1) differ"),
            std::string::npos)
      << mismatch;
  ElasticWeights stronger(Options(4));
  EXPECT_NE(stronger.Load(file.path()).find("differ"), std::string::npos);
  EXPECT_EQ(stronger.terms(), 0);

  // Errors leave a loaded object as it was.
  const std::string missing = loaded.Load(testing::TempDir() + "/no_such_ewc_state");
  EXPECT_NE(missing.find("no_such_ewc_state"), std::string::npos) << missing;
  TempPath garbage("garbage.state");
  { std::ofstream(garbage.path()) << "not an ewc state"; }
  EXPECT_NE(loaded.Load(garbage.path()), "");
  auto learner = MakeLearner(MlpConfig(), 4);
  TempPath checkpoint("dqn.ckpt");
  ASSERT_EQ(learner->Save(checkpoint.path()), "");
  const std::string dqn = loaded.Load(checkpoint.path());
  EXPECT_NE(dqn.find("not an Engram EWC state"), std::string::npos) << dqn;
  ElasticWeights online_saved(Options(3, true));
  online_saved.Consolidate(*module, TwoFisher(1, 1));
  ASSERT_EQ(online_saved.Save(file.path()), "");
  EXPECT_NE(loaded.Load(file.path()), "");
  EXPECT_EQ(loaded.terms(), 2);
  EXPECT_EQ(loaded.Penalty(*module).item<float>(), penalty);

  const std::string unwritable = saved.Save(testing::TempDir() + "/no/such/dir/ewc.state");
  EXPECT_NE(unwritable.find("cannot write"), std::string::npos) << unwritable;
}

}  // namespace
}  // namespace engram::learner
