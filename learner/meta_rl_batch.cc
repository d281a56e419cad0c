#include "learner/meta_rl_batch.h"

#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tensor_proto.h"
#include "torch/torch.h"

namespace engram::learner {
namespace {

// The tensor's elements after checking dtype and shape; INVALID_ARGUMENT naming it.
absl::Status Check(const v1::Tensor& tensor, v1::DType dtype, std::vector<int64_t> shape,
                   const std::string& what) {
  return CheckSignature(tensor, {dtype, std::move(shape)}, what);
}

template <typename T>
const T* Data(const v1::Tensor& tensor) {
  return reinterpret_cast<const T*>(tensor.data().data());
}

}  // namespace

absl::StatusOr<MetaRlBatch> ChunksToBatch(const std::vector<const v1::TrajectoryChunk*>& chunks,
                                          const ChunkLayout& layout, bool pinned) {
  const int64_t b_size = static_cast<int64_t>(chunks.size());
  const int64_t t_size = layout.unroll_length;
  const int64_t a_size = layout.num_actions;
  const int64_t h_size = layout.lstm_size;
  if (b_size < 1) return absl::InvalidArgumentError("chunks: empty batch");
  int64_t obs_elements = 1;
  for (int64_t d : layout.observation_shape) obs_elements *= d;
  const size_t obs_bytes = obs_elements * ProtoDTypeSize(layout.observation_dtype);
  const torch::ScalarType obs_type =
      layout.observation_dtype == v1::DTYPE_UINT8 ? torch::kUInt8 : torch::kFloat32;
  auto options = [pinned](torch::ScalarType type) {
    return torch::TensorOptions().dtype(type).pinned_memory(pinned);
  };
  std::vector<int64_t> obs_shape = {t_size, b_size};
  obs_shape.insert(obs_shape.end(), layout.observation_shape.begin(),
                   layout.observation_shape.end());
  std::vector<int64_t> bootstrap_shape = {b_size};
  bootstrap_shape.insert(bootstrap_shape.end(), layout.observation_shape.begin(),
                         layout.observation_shape.end());
  MetaRlBatch batch;
  batch.observations = torch::empty(obs_shape, options(obs_type));
  batch.actions = torch::empty({t_size, b_size}, options(torch::kInt64));
  batch.rewards = torch::empty({t_size, b_size}, options(torch::kFloat32));
  batch.discounts = torch::empty({t_size, b_size}, options(torch::kFloat32));
  batch.behaviour_logits = torch::zeros({t_size, b_size, a_size}, options(torch::kFloat32));
  batch.episode_starts = torch::zeros({t_size, b_size}, options(torch::kBool));
  batch.previous_actions = torch::empty({t_size, b_size}, options(torch::kInt64));
  batch.previous_rewards = torch::empty({t_size, b_size}, options(torch::kFloat32));
  batch.initial_h = torch::zeros({b_size, h_size}, options(torch::kFloat32));
  batch.initial_c = torch::zeros({b_size, h_size}, options(torch::kFloat32));
  batch.bootstrap_observation = torch::empty(bootstrap_shape, options(obs_type));
  uint8_t* obs = static_cast<uint8_t*>(batch.observations.data_ptr());
  int64_t* actions = batch.actions.data_ptr<int64_t>();
  float* rewards = batch.rewards.data_ptr<float>();
  float* discounts = batch.discounts.data_ptr<float>();
  float* logits = batch.behaviour_logits.data_ptr<float>();
  bool* starts = batch.episode_starts.data_ptr<bool>();
  int64_t* previous_actions = batch.previous_actions.data_ptr<int64_t>();
  float* previous_rewards = batch.previous_rewards.data_ptr<float>();
  uint8_t* bootstrap = static_cast<uint8_t*>(batch.bootstrap_observation.data_ptr());
  bool all_logits = true;
  for (int64_t b = 0; b < b_size; ++b) {
    const v1::TrajectoryChunk& c = *chunks[b];
    const std::string at = absl::StrCat("chunk ", b, ": ");
    std::vector<int64_t> step_shape = {t_size};
    step_shape.insert(step_shape.end(), layout.observation_shape.begin(),
                      layout.observation_shape.end());
    ENGRAM_RETURN_IF_ERROR(
        Check(c.observations(), layout.observation_dtype, step_shape, at + "observations"));
    ENGRAM_RETURN_IF_ERROR(Check(c.actions(), v1::DTYPE_INT32, {t_size}, at + "actions"));
    ENGRAM_RETURN_IF_ERROR(Check(c.rewards(), v1::DTYPE_FLOAT32, {t_size}, at + "rewards"));
    ENGRAM_RETURN_IF_ERROR(Check(c.discounts(), v1::DTYPE_FLOAT32, {t_size}, at + "discounts"));
    ENGRAM_RETURN_IF_ERROR(Check(c.bootstrap_observation(), layout.observation_dtype,
                                 layout.observation_shape, at + "bootstrap_observation"));
    const bool has_logits = c.behaviour_logits().shape_size() > 0;
    if (has_logits) {
      ENGRAM_RETURN_IF_ERROR(Check(c.behaviour_logits(), v1::DTYPE_FLOAT32, {t_size, a_size},
                                   at + "behaviour_logits"));
    }
    all_logits = all_logits && has_logits;
    const bool has_starts = c.episode_starts().shape_size() > 0;
    if (has_starts) {
      ENGRAM_RETURN_IF_ERROR(
          Check(c.episode_starts(), v1::DTYPE_BOOL, {t_size}, at + "episode_starts"));
    }
    if (c.initial_recurrent_state_size() != 0 && c.initial_recurrent_state_size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, "initial_recurrent_state: expected 2 tensors (h, c) or none, got ",
                       c.initial_recurrent_state_size()));
    }
    for (int i = 0; i < c.initial_recurrent_state_size(); ++i) {
      ENGRAM_RETURN_IF_ERROR(Check(c.initial_recurrent_state(i), v1::DTYPE_FLOAT32, {h_size},
                                   absl::StrCat(at, "initial_recurrent_state[", i, "]")));
      float* dst = (i == 0 ? batch.initial_h : batch.initial_c).data_ptr<float>() + b * h_size;
      std::memcpy(dst, c.initial_recurrent_state(i).data().data(), h_size * sizeof(float));
    }
    if (c.previous_action() < -1 || c.previous_action() >= a_size) {
      return absl::InvalidArgumentError(absl::StrCat(at, "previous_action = ", c.previous_action(),
                                                     " is outside [-1, ", a_size, ")"));
    }
    if (!std::isfinite(c.previous_reward())) {
      return absl::InvalidArgumentError(absl::StrCat(at, "previous_reward is not finite"));
    }
    const int32_t* a = Data<int32_t>(c.actions());
    const float* r = Data<float>(c.rewards());
    const float* d = Data<float>(c.discounts());
    const uint8_t* s = has_starts ? Data<uint8_t>(c.episode_starts()) : nullptr;
    const float* l = has_logits ? Data<float>(c.behaviour_logits()) : nullptr;
    for (int64_t t = 0; t < t_size; ++t) {
      if (a[t] < 0 || a[t] >= a_size) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, "actions[", t, "] = ", a[t], " is outside [0, ", a_size, ")"));
      }
      if (!std::isfinite(r[t])) {
        return absl::InvalidArgumentError(absl::StrCat(at, "rewards[", t, "] is not finite"));
      }
      if (d[t] != 0 && d[t] != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, "discounts[", t, "] = ", d[t], " must be 0 or 1"));
      }
      const int64_t i = t * b_size + b;
      actions[i] = a[t];
      rewards[i] = r[t];
      discounts[i] = d[t];
      const bool start = s != nullptr
                             ? s[t] != 0
                             : (t == 0 && c.has_provenance() && c.provenance().episode_step() == 0);
      starts[i] = start;
      if (start) {
        previous_actions[i] = -1;
        previous_rewards[i] = 0;
      } else if (t == 0) {
        previous_actions[i] = c.previous_action();
        previous_rewards[i] = c.previous_reward();
      } else {
        previous_actions[i] = a[t - 1];
        previous_rewards[i] = r[t - 1];
      }
      if (l != nullptr) {
        for (int64_t k = 0; k < a_size; ++k) {
          if (!std::isfinite(l[t * a_size + k])) {
            return absl::InvalidArgumentError(
                absl::StrCat(at, "behaviour_logits[", t, "] is not finite"));
          }
        }
        std::memcpy(logits + i * a_size, l + t * a_size, a_size * sizeof(float));
      }
      std::memcpy(obs + i * obs_bytes, c.observations().data().data() + t * obs_bytes, obs_bytes);
    }
    std::memcpy(bootstrap + b * obs_bytes, c.bootstrap_observation().data().data(), obs_bytes);
  }
  // A batch in which some chunk has no behaviour logits is trained as on-policy (all
  // importance ratios 1); this project's actors always record them.
  if (!all_logits) batch.behaviour_logits = torch::Tensor();
  return batch;
}

}  // namespace engram::learner
