#ifndef ENGRAM_ACTOR_NSTEP_H_
#define ENGRAM_ACTOR_NSTEP_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace engram::actor {

// Exploration of actor i of N in Ape-X (Horgan et al. 2018):
//   epsilon_i = base^(1 + alpha * i / (N - 1)),  base 0.4, alpha 7;  N = 1 gives base.
// Requires 0 <= actor_index < num_actors.
double ApexEpsilon(int actor_index, int num_actors, double base = 0.4, double alpha = 7.0);

// An n-step transition as engram.v1.Transition defines it:
//   reward   = sum_{k<m} gamma^k r_{t+k+1}
//   discount = gamma^m, or 0 when the episode terminated within those m steps
//   next_observation = o_{t+m}
// with m = n, or fewer at the end of an episode.
struct NStepTransition {
  int env = 0;
  std::vector<uint8_t> observation;  // o_t, raw observation bytes
  int action = 0;
  float reward = 0;
  float discount = 0;
  int steps = 0;  // m
  std::vector<uint8_t> next_observation;
};

// Builds n-step transitions for B environments stepped together (one VectorEnv).
//
// After each step of env i, call Add() with the observation the action was chosen at, the
// action, the reward, the episode flags and the observation that followed (for a finished
// episode: VectorEnv::final_observation(i)). Each call appends the transitions that became
// complete: normally one (the step n back), all pending ones at an episode end. At a
// termination their discount is 0; at a truncation (time limit) they bootstrap from the
// final observation with discount gamma^m.
//
// Not thread-safe; one actor thread owns it.
class NStepBuilder {
 public:
  // n >= 1, gamma in [0, 1], observation_bytes > 0 (programmer errors otherwise).
  NStepBuilder(int num_envs, int n, float gamma, size_t observation_bytes);

  void Add(int env, const uint8_t* observation, int action, float reward, bool terminated,
           bool truncated, const uint8_t* next_observation, std::vector<NStepTransition>* out);

  // Steps recorded for `env` whose transitions are not complete yet (< n).
  int pending(int env) const { return static_cast<int>(pending_[env].size()); }

 private:
  struct Step {
    std::vector<uint8_t> observation;
    int action;
    float reward;
  };

  // Emits the transition of the oldest pending step of `env` over all steps pending after
  // it, bootstrapping from `next_observation` (discount gamma^m, or 0 when terminated).
  void EmitFront(int env, bool terminated, const uint8_t* next_observation,
                 std::vector<NStepTransition>* out);

  int n_;
  float gamma_;
  size_t observation_bytes_;
  std::vector<std::deque<Step>> pending_;
};

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_NSTEP_H_
