#ifndef ENGRAM_ACTOR_EPISODIC_ACTOR_H_
#define ENGRAM_ACTOR_EPISODIC_ACTOR_H_

// Model-free episodic control (MFEC, Blundell et al. 2016) in an actor: no network, no
// replay. Observations become keys through a fixed Gaussian random projection (seeded by
// the experiment's seed, so every actor of the experiment projects alike); each step looks
// up the keys of all environments in the episodic store for every action and acts greedily
// on the episodic value estimates (an action with no memories yet counts as best, so every
// action gets tried), with a small epsilon; when an episode ends, every (key, action,
// discounted return) of it is written to the store.
//
// Evaluation actors run the evaluations the learner asks for with evaluation.epsilon and
// write nothing.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "actor/apex_actor.h"
#include "common/server.h"
#include "engram/v1/episodic.pb.h"
#include "episodic_store/client.h"
#include "prometheus/registry.h"

namespace engram::actor {

// The fixed projection of observations (input_size elements) to key_dim floats.
class RandomProjection {
 public:
  RandomProjection(int64_t input_size, int key_dim, uint64_t seed);
  // key = observation x matrix; `observation` holds input_size elements of uint8 or float32.
  void Project(const uint8_t* observation, bool is_float, float* key) const;
  int key_dim() const { return key_dim_; }

 private:
  int64_t input_size_;
  int key_dim_;
  std::vector<float> matrix_;  // [input_size, key_dim]
};

// Buffers each environment's steps (key of the observation acted on, action, reward) and,
// when an episode ends, writes every (key, action, discounted return) of it to the store:
// the MFEC write, shared by episodic control actors and Ape-X actors that fill the store
// too (apex_dqn.write_episodic).
class EpisodeWriter {
 public:
  // `store` and `projection` must outlive the writer.
  EpisodeWriter(episodic::EpisodicClient* store, const RandomProjection* projection, int num_envs,
                double gamma, bool float_observations);
  // Environment j acted with `action` on `observation` and got `reward`.
  void Record(int j, const uint8_t* observation, int action, float reward);
  // The same, for an observation already projected to `key` (key_dim floats).
  void RecordKey(int j, const float* key, int action, float reward);
  // Environment j's episode ended: writes it (one Write request) and starts a new one.
  absl::Status Finish(int j);
  // Items written so far.
  int64_t written() const { return written_; }

 private:
  struct Episode {
    std::vector<float> keys;
    std::vector<int32_t> actions;
    std::vector<float> rewards;
  };
  episodic::EpisodicClient* store_;
  const RandomProjection* projection_;
  const double gamma_;
  const bool float_observations_;
  std::vector<Episode> episodes_;
  int64_t written_ = 0;
};

// Connects to the experiment's memory (EpisodicMemorySpec) on the store at `address`.
absl::StatusOr<std::unique_ptr<episodic::EpisodicClient>> ConnectEpisodicMemory(
    const std::string& address, const ChannelOptions& channel, const v1::ExperimentSpec& resolved,
    int num_actions);

// The memory an episodic control experiment uses: named after the experiment, one action
// per environment action, the spec's key_dim, k, capacity, rule, kernel and index.
v1::MemorySpec EpisodicMemorySpec(const v1::ExperimentSpec& resolved, int num_actions);

// Runs until the learner says the run is over (OK), `stop` (OK), or an error. The episodic
// store is options.episodic_address (INVALID_ARGUMENT when empty).
absl::Status RunEpisodicActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                              prometheus::Registry* registry);

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_EPISODIC_ACTOR_H_
