#include "learner/meta_rl_batch.h"

#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "torch/torch.h"

namespace engram::learner {
namespace {

template <typename T>
void Fill(v1::DType dtype, std::vector<int64_t> shape, const std::vector<T>& values,
          v1::Tensor* out) {
  out->set_dtype(dtype);
  for (int64_t d : shape) out->add_shape(d);
  out->set_data(values.data(), values.size() * sizeof(T));
}

// A T=3 chunk of a 2-action bandit (float [1] observations) whose episode starts at step 2.
v1::TrajectoryChunk MakeChunk(float base) {
  v1::TrajectoryChunk c;
  Fill<float>(v1::DTYPE_FLOAT32, {3, 1}, {base, base + 1, base + 2}, c.mutable_observations());
  Fill<int32_t>(v1::DTYPE_INT32, {3}, {1, 0, 1}, c.mutable_actions());
  Fill<float>(v1::DTYPE_FLOAT32, {3}, {1, 0, 1}, c.mutable_rewards());
  Fill<float>(v1::DTYPE_FLOAT32, {3}, {1, 0, 1}, c.mutable_discounts());
  Fill<float>(v1::DTYPE_FLOAT32, {3, 2}, {0, 1, 2, 3, 4, 5}, c.mutable_behaviour_logits());
  Fill<uint8_t>(v1::DTYPE_BOOL, {3}, {0, 0, 1}, c.mutable_episode_starts());
  Fill<float>(v1::DTYPE_FLOAT32, {4}, {base, base, base, base}, c.add_initial_recurrent_state());
  Fill<float>(v1::DTYPE_FLOAT32, {4}, {-base, -base, -base, -base},
              c.add_initial_recurrent_state());
  c.set_previous_action(0);
  c.set_previous_reward(0.5f);
  Fill<float>(v1::DTYPE_FLOAT32, {1}, {base + 3}, c.mutable_bootstrap_observation());
  return c;
}

ChunkLayout Layout() {
  return {.unroll_length = 3,
          .observation_shape = {1},
          .observation_dtype = v1::DTYPE_FLOAT32,
          .num_actions = 2,
          .lstm_size = 4};
}

TEST(ChunksToBatchTest, TimeMajorWithPreviousInputsDerivedPerStep) {
  const v1::TrajectoryChunk a = MakeChunk(10), b = MakeChunk(20);
  absl::StatusOr<MetaRlBatch> batch = ChunksToBatch({&a, &b}, Layout());
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->observations.sizes(), (std::vector<int64_t>{3, 2, 1}));
  EXPECT_FLOAT_EQ(batch->observations[1][1][0].item<float>(), 21);
  EXPECT_EQ(batch->actions[2][0].item<int64_t>(), 1);
  // t = 0: the chunk's own previous action and reward; t = 1: step 0's; t = 2: an episode
  // starts, so none.
  EXPECT_EQ(batch->previous_actions[0][0].item<int64_t>(), 0);
  EXPECT_FLOAT_EQ(batch->previous_rewards[0][0].item<float>(), 0.5f);
  EXPECT_EQ(batch->previous_actions[1][0].item<int64_t>(), 1);
  EXPECT_FLOAT_EQ(batch->previous_rewards[1][0].item<float>(), 1);
  EXPECT_EQ(batch->previous_actions[2][1].item<int64_t>(), -1);
  EXPECT_FLOAT_EQ(batch->previous_rewards[2][1].item<float>(), 0);
  EXPECT_TRUE(batch->episode_starts[2][0].item<bool>());
  EXPECT_FALSE(batch->episode_starts[0][0].item<bool>());
  EXPECT_FLOAT_EQ(batch->behaviour_logits[2][1][1].item<float>(), 5);
  EXPECT_FLOAT_EQ(batch->initial_h[1][3].item<float>(), 20);
  EXPECT_FLOAT_EQ(batch->initial_c[1][3].item<float>(), -20);
  EXPECT_FLOAT_EQ(batch->bootstrap_observation[0][0].item<float>(), 13);
  EXPECT_FLOAT_EQ(batch->discounts[1][1].item<float>(), 0);
}

TEST(ChunksToBatchTest, WithoutLogitsOrStateTheBatchIsOnPolicyFromZeros) {
  v1::TrajectoryChunk a = MakeChunk(1);
  a.clear_behaviour_logits();
  a.clear_initial_recurrent_state();
  a.clear_episode_starts();
  a.mutable_provenance()->set_episode_step(0);
  absl::StatusOr<MetaRlBatch> batch = ChunksToBatch({&a}, Layout());
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_FALSE(batch->behaviour_logits.defined());
  EXPECT_EQ(batch->initial_h.abs().sum().item<float>(), 0);
  // Without flags, step 0 starts an episode when its episode_step is 0.
  EXPECT_TRUE(batch->episode_starts[0][0].item<bool>());
  EXPECT_EQ(batch->previous_actions[0][0].item<int64_t>(), -1);
}

TEST(ChunksToBatchTest, BadChunksAreRejectedNamingTheChunkAndField) {
  auto error = [](const v1::TrajectoryChunk& bad) {
    const v1::TrajectoryChunk good = MakeChunk(0);
    absl::StatusOr<MetaRlBatch> batch = ChunksToBatch({&good, &bad}, Layout());
    EXPECT_EQ(batch.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(batch.status().message());
  };
  v1::TrajectoryChunk c = MakeChunk(0);
  c.clear_actions();
  Fill<int32_t>(v1::DTYPE_INT32, {3}, {1, 2, 0}, c.mutable_actions());
  EXPECT_EQ(error(c), "chunk 1: actions[1] = 2 is outside [0, 2)");

  c = MakeChunk(0);
  c.clear_observations();
  Fill<float>(v1::DTYPE_FLOAT32, {2, 1}, {0, 1}, c.mutable_observations());
  EXPECT_NE(error(c).find("chunk 1: observations"), std::string::npos) << error(c);

  c = MakeChunk(0);
  c.clear_rewards();
  Fill<float>(v1::DTYPE_FLOAT32, {3}, {0, std::numeric_limits<float>::quiet_NaN(), 0},
              c.mutable_rewards());
  EXPECT_EQ(error(c), "chunk 1: rewards[1] is not finite");

  c = MakeChunk(0);
  c.clear_discounts();
  Fill<float>(v1::DTYPE_FLOAT32, {3}, {1, 0.5f, 1}, c.mutable_discounts());
  EXPECT_EQ(error(c), "chunk 1: discounts[1] = 0.5 must be 0 or 1");

  c = MakeChunk(0);
  c.mutable_initial_recurrent_state()->RemoveLast();
  EXPECT_EQ(error(c), "chunk 1: initial_recurrent_state: expected 2 tensors (h, c) or none, got 1");

  c = MakeChunk(0);
  c.clear_initial_recurrent_state();
  Fill<float>(v1::DTYPE_FLOAT32, {5}, {0, 0, 0, 0, 0}, c.add_initial_recurrent_state());
  Fill<float>(v1::DTYPE_FLOAT32, {5}, {0, 0, 0, 0, 0}, c.add_initial_recurrent_state());
  EXPECT_NE(error(c).find("chunk 1: initial_recurrent_state[0]"), std::string::npos) << error(c);

  c = MakeChunk(0);
  c.set_previous_action(7);
  EXPECT_EQ(error(c), "chunk 1: previous_action = 7 is outside [-1, 2)");

  c = MakeChunk(0);
  c.clear_behaviour_logits();
  Fill<float>(v1::DTYPE_FLOAT32, {3, 3}, {0, 0, 0, 0, 0, 0, 0, 0, 0}, c.mutable_behaviour_logits());
  EXPECT_NE(error(c).find("chunk 1: behaviour_logits"), std::string::npos) << error(c);

  c = MakeChunk(0);
  c.clear_bootstrap_observation();
  EXPECT_NE(error(c).find("chunk 1: bootstrap_observation"), std::string::npos) << error(c);
}

}  // namespace
}  // namespace engram::learner
