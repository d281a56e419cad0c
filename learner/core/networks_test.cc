#include "learner/core/networks.h"

#include <gtest/gtest.h>

#include "torch/utils.h"

namespace engram::learner {
namespace {

NetworkConfig MinAtarConfig(Torso torso, int64_t channels, int64_t actions) {
  NetworkConfig config;
  config.torso = torso;
  config.observation_shape = {10, 10, channels};
  config.num_actions = actions;
  return config;
}

NetworkConfig CartPoleConfig() {
  NetworkConfig config;
  config.torso = Torso::kMlp;
  config.observation_shape = {4};
  config.num_actions = 2;
  return config;
}

torch::Tensor MinAtarObservations(int64_t batch, int64_t channels) {
  return torch::randint(0, 2, {batch, 10, 10, channels}, torch::kUInt8);
}

TEST(NetworksTest, MinAtarOutputShape) {
  torch::manual_seed(0);
  auto net = MakeQNetwork(MinAtarConfig(Torso::kMinAtar, 4, 6));
  EXPECT_EQ(net->forward(MinAtarObservations(5, 4)).sizes(), (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(net->forward(MinAtarObservations(1, 4)).scalar_type(), torch::kFloat);
}

TEST(NetworksTest, DuelingAndMlpOutputShapes) {
  torch::manual_seed(0);
  auto dueling = MakeQNetwork(MinAtarConfig(Torso::kMinAtarDueling, 7, 3));
  EXPECT_EQ(dueling->forward(MinAtarObservations(2, 7)).sizes(), (std::vector<int64_t>{2, 3}));
  auto mlp = MakeQNetwork(CartPoleConfig());
  EXPECT_EQ(mlp->forward(torch::randn({8, 4})).sizes(), (std::vector<int64_t>{8, 2}));
}

TEST(NetworksTest, MinAtarParameterCount) {
  for (int64_t c : {4, 10}) {
    for (int64_t a : {3, 6}) {
      auto net = MakeQNetwork(MinAtarConfig(Torso::kMinAtar, c, a));
      EXPECT_EQ(ParameterCount(*net), 16 * c * 9 + 16 + 1024 * 128 + 128 + 128 * a + a)
          << "C=" << c << " A=" << a;
    }
  }
}

TEST(NetworksTest, MlpParameterCountAndHiddenSizes) {
  EXPECT_EQ(ParameterCount(*MakeQNetwork(CartPoleConfig())),
            4 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2);
  NetworkConfig config = CartPoleConfig();
  config.hidden_sizes = {32};
  EXPECT_EQ(ParameterCount(*MakeQNetwork(config)), 4 * 32 + 32 + 32 * 2 + 2);
}

// The channels-last input is transposed inside forward: feeding the same grid as
// channels-first to the convolution by hand gives the same Q-values.
TEST(NetworksTest, MinAtarReadsChannelsLast) {
  torch::manual_seed(1);
  auto net = MakeQNetwork(MinAtarConfig(Torso::kMinAtar, 3, 4));
  const torch::Tensor obs = MinAtarObservations(2, 3);
  const torch::Tensor input = net->Preprocess(obs);
  EXPECT_EQ(input.sizes(), (std::vector<int64_t>{2, 3, 10, 10}));
  EXPECT_EQ(input.scalar_type(), torch::kFloat);
  // Channel k of the network's input is obs[..., k].
  for (int64_t k = 0; k < 3; ++k) {
    EXPECT_TRUE(torch::equal(input.select(1, k), obs.select(3, k).to(torch::kFloat)));
  }

  // By hand: conv on channels-first, ReLU, flatten (C, H, W order), fc, ReLU, head.
  auto params = net->named_parameters();
  torch::NoGradGuard no_grad;
  const torch::Tensor nchw = obs.permute({0, 3, 1, 2}).contiguous().to(torch::kFloat);
  torch::Tensor x = torch::conv2d(nchw, params["conv.weight"], params["conv.bias"]);
  x = torch::relu(x).reshape({2, 16 * 8 * 8});
  x = torch::relu(torch::linear(x, params["fc.weight"], params["fc.bias"]));
  const torch::Tensor expected = torch::linear(x, params["q.weight"], params["q.bias"]);
  EXPECT_TRUE(torch::allclose(net->forward(obs), expected, 1e-5, 1e-6));

  // A transposed grid (a different observation) gives different values.
  EXPECT_FALSE(torch::allclose(net->forward(obs.transpose(1, 2).contiguous()), expected));
}

TEST(NetworksTest, DuelingHeadsCombine) {
  torch::manual_seed(2);
  auto net = std::make_shared<DuelingQNetwork>(MinAtarConfig(Torso::kMinAtarDueling, 4, 5));
  const torch::Tensor obs = MinAtarObservations(6, 4);
  torch::NoGradGuard no_grad;
  const DuelingQNetwork::Heads heads = net->ForwardHeads(obs);
  EXPECT_EQ(heads.value.sizes(), (std::vector<int64_t>{6, 1}));
  EXPECT_EQ(heads.advantages.sizes(), (std::vector<int64_t>{6, 5}));
  const torch::Tensor q = net->forward(obs);
  // mean_a (Q - V) = 0: V is the mean of Q over actions.
  EXPECT_TRUE(torch::allclose((q - heads.value).mean(1), torch::zeros({6}), 0, 1e-6));
  EXPECT_TRUE(torch::allclose(q.mean(1, true), heads.value, 1e-5, 1e-6));
  // Q - V = A - mean(A).
  EXPECT_TRUE(torch::allclose(q - heads.value, heads.advantages - heads.advantages.mean(1, true),
                              1e-5, 1e-6));
}

TEST(NetworksTest, DuelingParameterCount) {
  const int64_t c = 4, a = 6;
  auto net = MakeQNetwork(MinAtarConfig(Torso::kMinAtarDueling, c, a));
  EXPECT_EQ(ParameterCount(*net),
            16 * c * 9 + 16 + (1024 * 128 + 128) * 2 + (128 * 1 + 1) + (128 * a + a));
}

TEST(NetworksTest, WrongObservationShapeThrows) {
  auto net = MakeQNetwork(MinAtarConfig(Torso::kMinAtar, 4, 6));
  // Channels first is rejected rather than silently misread.
  EXPECT_THROW(net->forward(torch::zeros({2, 4, 10, 10}, torch::kUInt8)), c10::Error);
  auto mlp = MakeQNetwork(CartPoleConfig());
  EXPECT_THROW(mlp->forward(torch::zeros({2, 5})), c10::Error);
}

TEST(NetworksTest, ValidateNamesTheField) {
  EXPECT_EQ(MinAtarConfig(Torso::kMinAtar, 4, 6).Validate(), "");
  EXPECT_EQ(CartPoleConfig().Validate(), "");

  NetworkConfig config = MinAtarConfig(Torso::kMinAtar, 4, 0);
  EXPECT_EQ(config.Validate(), "num_actions: must be >= 1, got 0");
  config = MinAtarConfig(Torso::kMinAtar, 4, 6);
  config.observation_shape = {4};
  EXPECT_NE(config.Validate().find("observation_shape: torso minatar needs [H, W, C]"),
            std::string::npos)
      << config.Validate();
  config = MinAtarConfig(Torso::kMinAtarDueling, 4, 6);
  config.hidden_sizes = {128, 128};
  EXPECT_EQ(config.Validate().rfind("hidden_sizes:", 0), 0u) << config.Validate();
  config = CartPoleConfig();
  config.hidden_sizes = {64, 0};
  EXPECT_EQ(config.Validate(), "hidden_sizes[1]: must be >= 1, got 0");
  config = CartPoleConfig();
  config.observation_shape = {};
  EXPECT_EQ(config.Validate(), "observation_shape: must not be empty");
}

TEST(NetworksTest, CopyWeightsMakesOutputsEqual) {
  torch::manual_seed(3);
  auto a = MakeQNetwork(MinAtarConfig(Torso::kMinAtarDueling, 4, 6));
  auto b = MakeQNetwork(MinAtarConfig(Torso::kMinAtarDueling, 4, 6));
  const torch::Tensor obs = MinAtarObservations(3, 4);
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(torch::equal(a->forward(obs), b->forward(obs)));
  CopyWeights(*a, *b);
  EXPECT_TRUE(torch::equal(a->forward(obs), b->forward(obs)));
}

}  // namespace
}  // namespace engram::learner
