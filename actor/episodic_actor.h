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
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "actor/apex_actor.h"
#include "engram/v1/episodic.pb.h"
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

// The memory an episodic control experiment uses: named after the experiment, one action
// per environment action, the spec's key_dim, k, capacity, rule, kernel and index.
v1::MemorySpec EpisodicMemorySpec(const v1::ExperimentSpec& resolved, int num_actions);

// Runs until the learner says the run is over (OK), `stop` (OK), or an error. The episodic
// store is options.episodic_address (INVALID_ARGUMENT when empty).
absl::Status RunEpisodicActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                              prometheus::Registry* registry);

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_EPISODIC_ACTOR_H_
