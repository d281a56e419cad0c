#include "learner/core/dqn.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

#include "learner/core/host_allocator.h"
#include "torch/cuda.h"
#include "torch/utils.h"

namespace engram::learner {
namespace {

torch::Tensor Floats(std::vector<float> values) { return torch::tensor(values); }

torch::Tensor Longs(std::vector<int64_t> values) { return torch::tensor(values); }

// ---- targets, Huber, loss ---------------------------------------------------------------

// Hand-made Q(s', .) for two transitions with three actions.
//   online  [[1, 5, 2], [3, 0, 1]]  -> argmax 1, 0
//   target  [[4, 2, 3], [1, 6, 0]]  -> max 4, 6; at the online argmax: 2, 1
const torch::Tensor& OnlineNextQ() {
  static const torch::Tensor q = torch::tensor({{1.f, 5.f, 2.f}, {3.f, 0.f, 1.f}});
  return q;
}
const torch::Tensor& TargetNextQ() {
  static const torch::Tensor q = torch::tensor({{4.f, 2.f, 3.f}, {1.f, 6.f, 0.f}});
  return q;
}

TEST(DqnTargetsTest, VanillaTakesTheTargetMax) {
  const torch::Tensor y =
      DqnTargets(torch::Tensor(), TargetNextQ(), Floats({1, 0.5}), Floats({0.9, 0.5}), false);
  // 1 + 0.9 * 4, 0.5 + 0.5 * 6.
  EXPECT_TRUE(torch::allclose(y, Floats({4.6f, 3.5f})));
}

TEST(DqnTargetsTest, DoubleEvaluatesTheOnlineArgmaxWithTheTarget) {
  const torch::Tensor y =
      DqnTargets(OnlineNextQ(), TargetNextQ(), Floats({1, 0.5}), Floats({0.9, 0.5}), true);
  // 1 + 0.9 * target[0][1] = 1 + 0.9 * 2, 0.5 + 0.5 * target[1][0] = 0.5 + 0.5 * 1.
  EXPECT_TRUE(torch::allclose(y, Floats({2.8f, 1.0f})));
  EXPECT_FALSE(y.requires_grad());
}

TEST(DqnTargetsTest, ZeroDiscountIgnoresTheBootstrap) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // A terminal's next observation is junk: even infinite or NaN values must not leak in.
  const torch::Tensor online = torch::tensor({{inf, 0.f, 1.f}, {3.f, 0.f, 1.f}});
  const torch::Tensor target = torch::tensor({{nan, inf, -inf}, {1.f, 6.f, 0.f}});
  for (bool double_q : {false, true}) {
    const torch::Tensor y =
        DqnTargets(online, target, Floats({-2, 0.5}), Floats({0, 0.5}), double_q);
    EXPECT_FLOAT_EQ(y[0].item<float>(), -2.0f) << "double_q=" << double_q;
    EXPECT_FLOAT_EQ(y[1].item<float>(), double_q ? 1.0f : 3.5f) << "double_q=" << double_q;
  }
}

TEST(HuberLossTest, QuadraticInsideLinearOutside) {
  const torch::Tensor x = Floats({0.5, -0.5, 1.0, 3.0, -2.0, 0.0});
  // delta 1: 0.5 x^2 for |x| <= 1, |x| - 0.5 beyond.
  EXPECT_TRUE(torch::allclose(HuberLoss(x, 1.0), Floats({0.125, 0.125, 0.5, 2.5, 1.5, 0.0})));
  // delta 2: 0.5 x^2 for |x| <= 2, 2 (|x| - 1) beyond.
  EXPECT_TRUE(torch::allclose(HuberLoss(x, 2.0), Floats({0.125, 0.125, 0.5, 4.0, 2.0, 0.0})));
}

TEST(DqnLossTest, WeightedMeanOfHuberAndTdErrors) {
  // q(s, a) = 2, 3, 0; targets 2.5, 0, 0.5 -> td 0.5, -3, 0.5 -> huber 0.125, 2.5, 0.125.
  const torch::Tensor q =
      torch::tensor({{1.f, 2.f}, {3.f, 4.f}, {0.f, 0.f}}).set_requires_grad(true);
  const torch::Tensor actions = Longs({1, 0, 1});
  const torch::Tensor weights = Floats({1, 0.5, 0});
  const DqnLossOutput out = DqnLoss(q, actions, Floats({2.5, 0, 0.5}), weights, 1.0);
  // (1 * 0.125 + 0.5 * 2.5 + 0 * 0.125) / 3.
  EXPECT_FLOAT_EQ(out.loss.item<float>(), 1.375f / 3);
  EXPECT_TRUE(torch::allclose(out.td_errors, Floats({0.5, -3, 0.5})));
  EXPECT_FALSE(out.td_errors.requires_grad());

  // d loss / d q(s_i, a_i) = -w_i huber'(td_i) / B, huber'(td) = clamp(td, -1, 1).
  out.loss.backward();
  const torch::Tensor expected_grad =
      torch::tensor({{0.f, -0.5f / 3}, {0.5f / 3, 0.f}, {0.f, 0.f}});
  EXPECT_TRUE(torch::allclose(q.grad(), expected_grad));
}

TEST(DqnLossTest, ZeroWeightRemovesAnItem) {
  const torch::Tensor q = torch::tensor({{1.f, 2.f}, {3.f, 4.f}, {0.f, 0.f}});
  const torch::Tensor actions = Longs({1, 0, 1});
  const torch::Tensor weights = Floats({1, 0.5, 0});
  const float a = DqnLoss(q, actions, Floats({2.5, 0, 0.5}), weights, 1.0).loss.item<float>();
  const float b = DqnLoss(q, actions, Floats({2.5, 0, 100}), weights, 1.0).loss.item<float>();
  EXPECT_FLOAT_EQ(a, b);
}

TEST(ClipGradNormTest, ScalesToTheLimitAndReturnsTheNormBefore) {
  const torch::Tensor a = torch::zeros({2}).set_requires_grad(true);
  const torch::Tensor b = torch::zeros({1}).set_requires_grad(true);
  a.mutable_grad() = Floats({3, 4});
  b.mutable_grad() = Floats({12});
  const torch::Tensor c = torch::zeros({1}).set_requires_grad(true);  // no gradient: skipped

  EXPECT_FLOAT_EQ(ClipGradNorm({a, b, c}, 20.0).item<float>(), 13.0f);  // under the limit
  EXPECT_TRUE(torch::equal(a.grad(), Floats({3, 4})));
  EXPECT_FLOAT_EQ(ClipGradNorm({a, b, c}, 0.0).item<float>(), 13.0f);  // 0: off
  EXPECT_TRUE(torch::equal(b.grad(), Floats({12})));

  EXPECT_FLOAT_EQ(ClipGradNorm({a, b, c}, 6.5).item<float>(), 13.0f);
  EXPECT_TRUE(torch::allclose(a.grad(), Floats({1.5, 2})));
  EXPECT_TRUE(torch::allclose(b.grad(), Floats({6})));
}

// ---- schedule, device, config -----------------------------------------------------------

TEST(BetaTest, LinearThenConstant) {
  EXPECT_DOUBLE_EQ(AnnealedBeta(0.4, 1.0, 100, 0), 0.4);
  EXPECT_DOUBLE_EQ(AnnealedBeta(0.4, 1.0, 100, 50), 0.7);
  EXPECT_DOUBLE_EQ(AnnealedBeta(0.4, 1.0, 100, 100), 1.0);
  EXPECT_DOUBLE_EQ(AnnealedBeta(0.4, 1.0, 100, 1000000), 1.0);
  EXPECT_DOUBLE_EQ(AnnealedBeta(0.4, 1.0, 100, -5), 0.4);
}

TEST(ParseDeviceTest, NamesAndErrors) {
  torch::Device device(torch::kCPU);
  EXPECT_EQ(ParseDevice("cpu", &device), "");
  EXPECT_TRUE(device.is_cpu());
  EXPECT_EQ(ParseDevice("auto", &device), "");
  EXPECT_EQ(device.is_cuda(), torch::cuda::is_available());

  for (const char* bad : {"gpu", "", "cuda:", "cuda:x", "cuda:-1", "CPU", "cuda0"}) {
    const std::string error = ParseDevice(bad, &device);
    EXPECT_NE(error.find("expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""), std::string::npos)
        << bad << ": " << error;
  }
  EXPECT_NE(ParseDevice("cuda:99", &device), "");
  if (!torch::cuda::is_available()) {
    EXPECT_NE(ParseDevice("cuda", &device).find("CUDA is not available"), std::string::npos);
  } else {
    EXPECT_EQ(ParseDevice("cuda", &device), "");
    EXPECT_TRUE(device.is_cuda());
  }
}

NetworkConfig CartPoleNetwork() {
  NetworkConfig network;
  network.torso = Torso::kMlp;
  network.observation_shape = {4};
  network.num_actions = 2;
  return network;
}

TEST(DqnConfigTest, ValidateNamesTheField) {
  DqnConfig config;
  config.network = CartPoleNetwork();
  EXPECT_EQ(config.Validate(), "");

  DqnConfig bad = config;
  bad.target_update_period = 0;
  EXPECT_EQ(bad.Validate(), "target_update_period: must be >= 1, got 0");
  bad = config;
  bad.optimizer.learning_rate = 0;
  EXPECT_EQ(bad.Validate(), "optimizer.learning_rate: must be > 0, got 0");
  bad = config;
  bad.optimizer.decay = 1;
  EXPECT_EQ(bad.Validate(), "optimizer.decay: must be in [0, 1), got 1");
  bad = config;
  bad.network.num_actions = 0;
  EXPECT_EQ(bad.Validate(), "network.num_actions: must be >= 1, got 0");
  bad = config;
  bad.importance_beta_end = 1.5;
  EXPECT_EQ(bad.Validate(), "importance_beta_end: must be in [0, 1], got 1.5");
  bad = config;
  bad.gradient_clip_norm = -1;
  EXPECT_NE(bad.Validate().find("gradient_clip_norm:"), std::string::npos);
  bad = config;
  bad.huber_delta = 0;
  EXPECT_EQ(bad.Validate(), "huber_delta: must be > 0, got 0");

  std::string error;
  EXPECT_EQ(DqnLearner::Create(bad, torch::kCPU, &error), nullptr);
  EXPECT_EQ(error, "huber_delta: must be > 0, got 0");
  EXPECT_NE(DqnLearner::Create(config, torch::kCPU, &error), nullptr);
  EXPECT_EQ(error, "");
}

// ---- the learner ------------------------------------------------------------------------

DqnConfig MinAtarConfig(Torso torso = Torso::kMinAtar) {
  DqnConfig config;
  config.network.torso = torso;
  config.network.observation_shape = {10, 10, 4};
  config.network.num_actions = 6;
  return config;
}

DqnBatch MinAtarBatch(int64_t batch, uint64_t seed) {
  torch::manual_seed(seed);
  DqnBatch b;
  b.observations = torch::randint(0, 2, {batch, 10, 10, 4}, torch::kUInt8);
  b.next_observations = torch::randint(0, 2, {batch, 10, 10, 4}, torch::kUInt8);
  b.actions = torch::randint(0, 6, {batch}, torch::kLong);
  b.rewards = torch::randn({batch});
  b.discounts = torch::where(torch::rand({batch}) < 0.2, torch::zeros({batch}),
                             torch::full({batch}, 0.99f * 0.99f * 0.99f));
  b.weights = torch::rand({batch}) * 0.5 + 0.5;
  return b;
}

std::unique_ptr<DqnLearner> MakeLearner(const DqnConfig& config, uint64_t seed = 0) {
  torch::manual_seed(seed);
  std::string error;
  auto learner = DqnLearner::Create(config, torch::kCPU, &error);
  EXPECT_EQ(error, "");
  return learner;
}

torch::Tensor Q(QNetwork& network, const torch::Tensor& observations) {
  torch::NoGradGuard no_grad;
  return network.forward(observations);
}

bool SameWeights(const QNetwork& a, const QNetwork& b) {
  auto pa = a.parameters(), pb = b.parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i) {
    if (!torch::equal(pa[i], pb[i])) return false;
  }
  return true;
}

double GradNorm(QNetwork& network) {
  double sum = 0;
  for (const auto& p : network.parameters()) sum += p.grad().pow(2).sum().item<double>();
  return std::sqrt(sum);
}

// A tiny MLP with fixed weights, so the numbers do not depend on the generator.
TEST(DqnLearnerTest, UpdateMovesTheLossDown) {
  DqnConfig config;
  config.network.torso = Torso::kMlp;
  config.network.observation_shape = {2};
  config.network.num_actions = 2;
  config.network.hidden_sizes = {3};
  config.optimizer.kind = OptimizerKind::kAdam;
  config.optimizer.learning_rate = 0.01;
  config.optimizer.epsilon = 1e-8;
  config.target_update_period = 1000;
  auto learner = MakeLearner(config);
  std::vector<std::pair<std::string, torch::Tensor>> weights = {
      {"hidden0.weight", torch::tensor({{0.5f, -0.2f}, {0.1f, 0.3f}, {-0.4f, 0.6f}})},
      {"hidden0.bias", Floats({0.1, 0.0, -0.1})},
      {"q.weight", torch::tensor({{0.2f, -0.3f, 0.4f}, {-0.1f, 0.5f, 0.2f}})},
      {"q.bias", Floats({0.0, 0.1})},
  };
  ASSERT_EQ(ImportWeights(learner->online(), weights), "");
  ASSERT_EQ(ImportWeights(learner->target(), weights), "");

  DqnBatch batch;
  batch.observations = torch::tensor({{1.f, 0.f}, {0.f, 1.f}, {1.f, 1.f}, {-1.f, 0.5f}});
  batch.next_observations = torch::tensor({{0.f, 1.f}, {1.f, 1.f}, {0.f, 0.f}, {0.5f, 0.5f}});
  batch.actions = Longs({0, 1, 1, 0});
  batch.rewards = Floats({1, 0, -1, 2});
  batch.discounts = Floats({0.9, 0.9, 0, 0.9});
  batch.weights = Floats({1, 1, 0.5, 1});

  const DqnLearner::UpdateResult first = learner->Update(batch);
  EXPECT_GT(first.loss, 0);
  EXPECT_GT(first.grad_norm, 0);
  EXPECT_EQ(first.new_priorities.sizes(), (std::vector<int64_t>{4}));
  EXPECT_EQ(first.new_priorities.scalar_type(), torch::kFloat);
  EXPECT_TRUE(first.new_priorities.device().is_cpu());
  EXPECT_TRUE((first.new_priorities > 0).all().item<bool>());
  float previous = first.loss;
  for (int i = 0; i < 5; ++i) {
    const float loss = learner->Update(batch).loss;
    EXPECT_LT(loss, previous) << "update " << i + 2;
    previous = loss;
  }
  EXPECT_EQ(learner->updates(), 6);
}

// The first update's loss and priorities equal what the pure functions give on the
// learner's own networks.
TEST(DqnLearnerTest, UpdateReportsLossAndPrioritiesOfTheBatch) {
  DqnConfig config = MinAtarConfig();
  config.priority_epsilon = 0.01;
  auto learner = MakeLearner(config);
  const DqnBatch batch = MinAtarBatch(8, 1);
  torch::Tensor targets, q;
  {
    torch::NoGradGuard no_grad;
    targets = DqnTargets(learner->online().forward(batch.next_observations),
                         learner->target().forward(batch.next_observations), batch.rewards,
                         batch.discounts, true);
    q = learner->online().forward(batch.observations);
  }
  const DqnLossOutput expected = DqnLoss(q, batch.actions, targets, batch.weights, 1.0);
  const DqnLearner::UpdateResult result = learner->Update(batch);
  EXPECT_NEAR(result.loss, expected.loss.item<float>(), 1e-6);
  EXPECT_TRUE(torch::allclose(result.new_priorities, expected.td_errors.abs() + 0.01));
}

TEST(DqnLearnerTest, GradNormIsReportedBeforeClippingAndClipped) {
  DqnConfig config = MinAtarConfig();
  config.gradient_clip_norm = 0;
  // A huge error and a quadratic loss (Huber's gradient is bounded by delta): a huge
  // gradient.
  config.huber_delta = 1e6;
  DqnBatch batch = MinAtarBatch(8, 2);
  batch.rewards = batch.rewards * 1000;
  auto unclipped = MakeLearner(config, 5);
  config.gradient_clip_norm = 1.0;
  auto clipped = MakeLearner(config, 5);

  const DqnLearner::UpdateResult a = unclipped->Update(batch);
  const DqnLearner::UpdateResult b = clipped->Update(batch);
  EXPECT_GT(a.grad_norm, 100);
  EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-6 * a.grad_norm);
  // The gradients the optimizer stepped with (left in .grad()).
  EXPECT_NEAR(GradNorm(unclipped->online()), a.grad_norm, 1e-4 * a.grad_norm);
  EXPECT_NEAR(GradNorm(clipped->online()), 1.0, 1e-4);
}

TEST(DqnLearnerTest, TargetCopiedEveryPeriodAndNotBetween) {
  DqnConfig config = MinAtarConfig();
  config.target_update_period = 3;
  config.optimizer.learning_rate = 1e-3;
  auto learner = MakeLearner(config);
  const DqnBatch batch = MinAtarBatch(4, 3);
  auto snapshot = MakeQNetwork(config.network);

  CopyWeights(learner->target(), *snapshot);
  ASSERT_TRUE(SameWeights(learner->online(), learner->target()));  // starts as a copy
  for (int64_t update = 1; update <= 7; ++update) {
    learner->Update(batch);
    if (update % 3 == 0) {
      EXPECT_TRUE(SameWeights(learner->online(), learner->target())) << update;
      CopyWeights(learner->target(), *snapshot);
    } else {
      EXPECT_FALSE(SameWeights(learner->online(), learner->target())) << update;
      EXPECT_TRUE(SameWeights(*snapshot, learner->target())) << update;
    }
  }
  EXPECT_EQ(learner->updates(), 7);
}

TEST(DqnLearnerTest, VanillaAndDuelingUpdate) {
  for (Torso torso : {Torso::kMinAtar, Torso::kMinAtarDueling}) {
    DqnConfig config = MinAtarConfig(torso);
    config.double_q = false;
    config.optimizer.kind = OptimizerKind::kAdam;
    config.optimizer.learning_rate = 1e-4;
    config.optimizer.epsilon = 1e-8;
    auto learner = MakeLearner(config);
    const DqnLearner::UpdateResult result = learner->Update(MinAtarBatch(8, 4));
    EXPECT_TRUE(std::isfinite(result.loss)) << TorsoName(torso);
    EXPECT_EQ(result.new_priorities.numel(), 8);
  }
}

TEST(DqnLearnerTest, BetaAtFollowsTheConfig) {
  DqnConfig config = MinAtarConfig();
  config.importance_beta_start = 0.4;
  config.importance_beta_end = 1.0;
  config.importance_beta_anneal_frames = 1000;
  auto learner = MakeLearner(config);
  EXPECT_DOUBLE_EQ(learner->BetaAt(0), 0.4);
  EXPECT_DOUBLE_EQ(learner->BetaAt(250), 0.55);
  EXPECT_DOUBLE_EQ(learner->BetaAt(1000), 1.0);
  EXPECT_DOUBLE_EQ(learner->BetaAt(5000), 1.0);
}

TEST(DqnLearnerTest, InvalidBatchIsRejected) {
  auto learner = MakeLearner(MinAtarConfig());
  DqnBatch batch = MinAtarBatch(4, 5);
  EXPECT_EQ(learner->ValidateBatch(batch), "");

  DqnBatch bad = batch;
  bad.actions = Longs({0, 1, 6, 2});
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.actions: values in [0, 6], expected [0, 6)");
  EXPECT_THROW(learner->Update(bad), c10::Error);
  bad = batch;
  bad.actions = batch.actions.to(torch::kInt);
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.actions: dtype Int, expected Long");
  bad = batch;
  bad.observations = batch.observations.permute({0, 3, 1, 2});
  EXPECT_NE(learner->ValidateBatch(bad).find("batch.observations: shape [4, 4, 10, 10]"),
            std::string::npos)
      << learner->ValidateBatch(bad);
  bad = batch;
  bad.weights = Floats({1, 1, 1});
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.weights: shape [3], expected [4]");
  bad = batch;
  bad.discounts = torch::Tensor();
  EXPECT_EQ(learner->ValidateBatch(bad), "batch.discounts: missing");
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

TEST(DqnLearnerTest, SaveLoadRoundTrip) {
  const DqnConfig config = MinAtarConfig();  // centered RMSProp: its state is restored too
  auto saved = MakeLearner(config, 1);
  const DqnBatch first = MinAtarBatch(8, 6);
  saved->Update(first);
  saved->Update(MinAtarBatch(8, 7));
  TempPath file("dqn.ckpt");
  ASSERT_EQ(saved->Save(file.path()), "");
  EXPECT_FALSE(std::ifstream(file.path() + ".tmp").good());

  auto loaded = MakeLearner(config, 2);
  const torch::Tensor obs = first.observations;
  ASSERT_FALSE(torch::equal(Q(saved->online(), obs), Q(loaded->online(), obs)));
  ASSERT_EQ(loaded->Load(file.path()), "");
  EXPECT_EQ(loaded->updates(), 2);
  EXPECT_TRUE(torch::equal(Q(saved->online(), obs), Q(loaded->online(), obs)));
  EXPECT_TRUE(torch::equal(Q(saved->target(), obs), Q(loaded->target(), obs)));

  // The next update is the same: same weights, same optimizer state.
  const DqnBatch next = MinAtarBatch(8, 8);
  const DqnLearner::UpdateResult a = saved->Update(next);
  const DqnLearner::UpdateResult b = loaded->Update(next);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_TRUE(torch::equal(a.new_priorities, b.new_priorities));
  EXPECT_TRUE(SameWeights(saved->online(), loaded->online()));
}

TEST(DqnLearnerTest, LoadErrorsLeaveTheLearnerUnchanged) {
  auto learner = MakeLearner(MinAtarConfig(), 1);
  const torch::Tensor obs = MinAtarBatch(2, 9).observations;
  const torch::Tensor before = Q(learner->online(), obs);

  const std::string missing = learner->Load(testing::TempDir() + "/no_such_checkpoint");
  EXPECT_NE(missing.find("no_such_checkpoint"), std::string::npos) << missing;

  DqnConfig other = MinAtarConfig();
  other.network.num_actions = 3;
  TempPath file("other.ckpt");
  ASSERT_EQ(MakeLearner(other)->Save(file.path()), "");
  const std::string mismatch = learner->Load(file.path());
  EXPECT_NE(mismatch.find("network architecture"), std::string::npos) << mismatch;

  DqnConfig adam = MinAtarConfig();
  adam.optimizer.kind = OptimizerKind::kAdam;
  ASSERT_EQ(MakeLearner(adam)->Save(file.path()), "");
  EXPECT_NE(learner->Load(file.path()).find("optimizer kind"), std::string::npos);

  const std::string unwritable = learner->Save(testing::TempDir() + "/no/such/dir/dqn.ckpt");
  EXPECT_NE(unwritable.find("cannot write"), std::string::npos) << unwritable;

  { std::ofstream(file.path()) << "not a checkpoint"; }
  EXPECT_NE(learner->Load(file.path()), "");

  EXPECT_TRUE(torch::equal(Q(learner->online(), obs), before));
  EXPECT_EQ(learner->updates(), 0);
}

TEST(WeightsTest, ExportImportRoundTrip) {
  auto learner = MakeLearner(MinAtarConfig(Torso::kMinAtarDueling), 1);
  const auto weights = learner->ExportWeights();
  ASSERT_EQ(weights.size(), learner->online().parameters().size());
  EXPECT_EQ(weights[0].first, "conv.weight");
  for (const auto& [name, tensor] : weights) {
    EXPECT_TRUE(tensor.device().is_cpu()) << name;
    EXPECT_FALSE(tensor.requires_grad()) << name;
  }

  torch::manual_seed(42);
  auto actor = MakeQNetwork(learner->config().network);
  const torch::Tensor obs = MinAtarBatch(3, 10).observations;
  EXPECT_FALSE(torch::equal(Q(*actor, obs), Q(learner->online(), obs)));
  ASSERT_EQ(ImportWeights(*actor, weights), "");
  EXPECT_TRUE(torch::equal(Q(*actor, obs), Q(learner->online(), obs)));

  // A deep copy: training on does not change what was exported.
  const torch::Tensor exported_before = weights[0].second.clone();
  learner->Update(MinAtarBatch(4, 11));
  EXPECT_TRUE(torch::equal(weights[0].second, exported_before));
}

TEST(WeightsTest, ImportRejectsMismatchesAndChangesNothing) {
  auto learner = MakeLearner(MinAtarConfig(), 1);
  auto weights = learner->ExportWeights();
  torch::manual_seed(42);
  auto actor = MakeQNetwork(learner->config().network);
  const torch::Tensor obs = MinAtarBatch(3, 12).observations;
  const torch::Tensor before = Q(*actor, obs);

  auto bad = weights;
  bad[2].second = torch::zeros({128, 1000});  // fc.weight
  EXPECT_EQ(ImportWeights(*actor, bad),
            "weights: tensor \"fc.weight\" has shape [128, 1000], the network's is [128, 1024]");
  bad = weights;
  bad.pop_back();
  EXPECT_EQ(ImportWeights(*actor, bad), "weights: tensor \"q.bias\" missing");
  bad = weights;
  bad[0].first = "conv.kernel";
  EXPECT_EQ(ImportWeights(*actor, bad), "weights: unknown tensor \"conv.kernel\"");
  bad = weights;
  bad.push_back(weights[1]);
  EXPECT_EQ(ImportWeights(*actor, bad), "weights: tensor \"conv.bias\" twice");
  bad = weights;
  bad[1].second = bad[1].second.to(torch::kLong);
  EXPECT_NE(ImportWeights(*actor, bad).find("floating-point"), std::string::npos);

  EXPECT_TRUE(torch::equal(Q(*actor, obs), before));
}

// On a machine with CUDA: a learner on the GPU loaded from a CPU checkpoint computes the
// same update as the CPU learner (up to float rounding), and its checkpoint and exported
// weights come back to the CPU intact.
TEST(DqnLearnerCudaTest, UpdateMatchesCpuAndCheckpointsMoveAcrossDevices) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::Device cuda(torch::kCPU);
  ASSERT_EQ(ParseDevice("cuda", &cuda), "");
  const DqnConfig config = MinAtarConfig(Torso::kMinAtarDueling);
  auto cpu = MakeLearner(config, 1);
  cpu->Update(MinAtarBatch(8, 13));
  TempPath cpu_file("cpu.ckpt");
  ASSERT_EQ(cpu->Save(cpu_file.path()), "");
  std::string error;
  auto gpu = DqnLearner::Create(config, cuda, &error);
  ASSERT_NE(gpu, nullptr) << error;
  ASSERT_EQ(gpu->Load(cpu_file.path()), "");
  EXPECT_TRUE(gpu->online().parameters()[0].is_cuda());

  DqnBatch batch = MinAtarBatch(32, 14);
  const DqnLearner::UpdateResult a = cpu->Update(batch);
  batch.observations = batch.observations.pin_memory();  // the non-blocking copy path
  const DqnLearner::UpdateResult b = gpu->Update(batch);
  EXPECT_NEAR(a.loss, b.loss, 1e-4 * std::abs(a.loss) + 1e-6);
  EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-3 * a.grad_norm + 1e-6);
  EXPECT_TRUE(b.new_priorities.device().is_cpu());
  EXPECT_TRUE(torch::allclose(a.new_priorities, b.new_priorities, 1e-3, 1e-4));

  const auto weights = gpu->ExportWeights();
  EXPECT_TRUE(weights[0].second.device().is_cpu());
  TempPath gpu_file("gpu.ckpt");
  ASSERT_EQ(gpu->Save(gpu_file.path()), "");
  auto back = MakeLearner(config, 2);
  ASSERT_EQ(back->Load(gpu_file.path()), "");
  EXPECT_EQ(back->updates(), 2);
  const torch::Tensor obs = batch.observations;
  EXPECT_TRUE(
      torch::allclose(Q(back->online(), obs), Q(gpu->online(), obs.to(cuda)).cpu(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(back->ExportWeights()[0].second, weights[0].second));
}

TEST(HostAllocatorTest, TunesGlibcAndRejectsBadValues) {
  EXPECT_FALSE(TuneHostAllocatorForTraining(-1, 0));
#if defined(__GLIBC__)
  EXPECT_TRUE(TuneHostAllocatorForTraining());
  EXPECT_FALSE(TuneHostAllocatorForTraining(int64_t{1} << 40, 0));
#endif
}

}  // namespace
}  // namespace engram::learner
