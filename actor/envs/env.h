#ifndef ENGRAM_ACTOR_ENVS_ENV_H_
#define ENGRAM_ACTOR_ENVS_ENV_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace engram::envs {

// Element type of an observation. MinAtar's boolean grids are kUint8 (0 or 1 per
// element); classic control and bandits are kFloat32.
enum class DType { kUint8, kFloat32 };

// Size in bytes of one element of `dtype`.
size_t DTypeSize(DType dtype);
// "uint8" / "float32".
const char* DTypeName(DType dtype);

// What an environment produces and accepts. Immutable once the environment is built.
struct EnvSpec {
  std::string name;                        // registry name, e.g. "minatar/breakout"
  std::vector<int64_t> observation_shape;  // e.g. {10, 10, 4}: rows, columns, channels
  DType observation_dtype = DType::kUint8;
  int num_actions = 0;                    // actions are 0 .. num_actions - 1
  std::vector<std::string> action_names;  // num_actions entries
  int max_episode_steps = 0;              // steps before truncation; 0 = no limit

  int64_t observation_elements() const;  // product of observation_shape
  size_t observation_bytes() const;      // observation_elements() * DTypeSize(dtype)
};

// Result of one Reset() or Step().
struct StepResult {
  // The new observation, `spec().observation_bytes()` bytes in `spec().observation_dtype`.
  // A view of the environment's own buffer: valid until its next Reset() or Step().
  absl::Span<const uint8_t> observation;
  float reward = 0.0f;
  bool terminated = false;  // the episode ended inside the task (no bootstrapping past it)
  bool truncated = false;   // cut off by a time limit (the state is not terminal)
};

// A gym-like environment.
//
// Seeding: Reset(seed) seeds the environment's random stream with `seed` and then resets;
// Reset() starts the next episode continuing the same stream. A freshly built environment
// that is Reset() without a seed draws its seed from std::random_device.
//
// Step() before any Reset() first resets (as Reset() does). Step() after an episode
// ended (terminated or truncated) without a Reset() is allowed and follows the
// environment's own rule (MinAtar: reward 0, terminated again).
//
// Not thread-safe: one thread steps one environment. Different environments are
// independent and may be stepped on different threads.
class Env {
 public:
  explicit Env(EnvSpec spec);
  virtual ~Env() = default;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  const EnvSpec& spec() const { return spec_; }

  StepResult Reset(uint64_t seed);
  StepResult Reset();
  // `action` must be in [0, spec().num_actions); out-of-range actions are a programmer
  // error (CHECK), since the actor's own policy produced them.
  StepResult Step(int action);

  // Lower-level calls for batched use (VectorEnv): act without producing an observation,
  // then write it straight into the caller's buffer. Step() == Act() + WriteObservation().
  struct Outcome {
    float reward = 0.0f;
    bool terminated = false;
    bool truncated = false;
  };
  void ResetState(uint64_t seed);
  void ResetState();
  Outcome Act(int action);
  // Writes spec().observation_bytes() bytes to `dst`. No side effects.
  virtual void WriteObservation(uint8_t* dst) const = 0;

  // Steps taken in the current episode.
  int episode_step() const { return episode_step_; }

 protected:
  // Implementations: seed the random stream.
  virtual void DoSeed(uint64_t seed) = 0;
  // Start a new episode (continuing the random stream).
  virtual void DoReset() = 0;
  // One step of the task itself; truncation by spec().max_episode_steps is applied here
  // in the base class, so implementations only report `terminated` (and may report
  // `truncated` for limits of their own).
  virtual Outcome DoStep(int action) = 0;

 private:
  void EnsureSeeded();

  EnvSpec spec_;
  bool seeded_ = false;
  bool started_ = false;  // an episode was reset at least once
  int episode_step_ = 0;
  std::vector<uint8_t> observation_;
};

// `env` with its observation's last dimension (channels) padded with zeros to `channels`:
// what one network serving tasks with different channel counts sees (a task sequence of
// several MinAtar games). Seeding, resets, steps, rewards and episode limits are env's;
// the spec is env's with the wider shape. `channels` must be >= the env's last dimension
// (ENGRAM_CHECK); equal returns `env` itself.
std::unique_ptr<Env> PadChannels(std::unique_ptr<Env> env, int64_t channels);

}  // namespace engram::envs

#endif  // ENGRAM_ACTOR_ENVS_ENV_H_
