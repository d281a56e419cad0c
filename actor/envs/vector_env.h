#ifndef ENGRAM_ACTOR_ENVS_VECTOR_ENV_H_
#define ENGRAM_ACTOR_ENVS_VECTOR_ENV_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "actor/envs/env.h"
#include "actor/envs/registry.h"

namespace engram::envs {

// B copies of one environment stepped together, for one batched forward pass per step.
//
// Observations of all copies live in one contiguous, row-major buffer of
// B * spec().observation_bytes() bytes (shape [B, ...observation_shape]), written in place
// by each environment: ready to wrap as an inference batch without gathering.
//
// Auto-reset: when copy i's episode ends (terminated or truncated), it is reset in the same
// Step() call, continuing its own random stream. Its row of observations() then holds the
// new episode's first observation, final_observation(i) holds the last observation of the
// episode that ended (needed to bootstrap truncated episodes), and episode_return(i) /
// episode_length(i) describe that episode.
//
// Copy i is seeded with seed + i by Reset(seed).
//
// Not thread-safe.
class VectorEnv {
 public:
  // INVALID_ARGUMENT for num_envs < 1 or whatever MakeEnv rejects.
  static absl::StatusOr<std::unique_ptr<VectorEnv>> Create(const std::string& name,
                                                           const EnvOptions& options, int num_envs);
  // Takes ownership of already-built copies (all must share one spec).
  static absl::StatusOr<std::unique_ptr<VectorEnv>> FromEnvs(
      std::vector<std::unique_ptr<Env>> envs);

  const EnvSpec& spec() const { return envs_[0]->spec(); }
  int num_envs() const { return static_cast<int>(envs_.size()); }

  void Reset(uint64_t seed);

  // Steps copy i with actions[i]. INVALID_ARGUMENT (and nothing stepped) when
  // actions.size() != num_envs() or an action is outside [0, num_actions).
  absl::Status Step(absl::Span<const int> actions);

  // [B, ...observation_shape] in spec().observation_dtype.
  const uint8_t* observations() const { return observations_.data(); }
  const uint8_t* observation(int i) const { return observations_.data() + i * obs_bytes_; }
  absl::Span<const float> rewards() const { return rewards_; }
  // 1 where the last Step() ended copy i's episode that way, else 0.
  absl::Span<const uint8_t> terminated() const { return terminated_; }
  absl::Span<const uint8_t> truncated() const { return truncated_; }
  bool done(int i) const { return terminated_[i] != 0 || truncated_[i] != 0; }

  // Valid for copies with done(i) after the last Step().
  const uint8_t* final_observation(int i) const {
    return final_observations_.data() + i * obs_bytes_;
  }
  float episode_return(int i) const { return finished_return_[i]; }
  int episode_length(int i) const { return finished_length_[i]; }

  Env& env(int i) { return *envs_[i]; }

 private:
  explicit VectorEnv(std::vector<std::unique_ptr<Env>> envs);

  std::vector<std::unique_ptr<Env>> envs_;
  size_t obs_bytes_;
  std::vector<uint8_t> observations_;
  std::vector<uint8_t> final_observations_;
  std::vector<float> rewards_;
  std::vector<uint8_t> terminated_;
  std::vector<uint8_t> truncated_;
  std::vector<float> running_return_;
  std::vector<int> running_length_;
  std::vector<float> finished_return_;
  std::vector<int> finished_length_;
};

}  // namespace engram::envs

#endif  // ENGRAM_ACTOR_ENVS_VECTOR_ENV_H_
