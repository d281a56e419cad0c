#ifndef ENGRAM_ACTOR_INITIAL_PRIORITY_H_
#define ENGRAM_ACTOR_INITIAL_PRIORITY_H_

#include <cmath>

namespace engram::actor {

// Ape-X's initial priority of an n-step transition, from the actor's own network:
//   |reward + discount * max_a Q(next_observation, a) - Q(observation, action)|
// `bootstrap_value` (max_a Q(next_observation, a)) is not read when discount is 0, so a
// terminal transition needs no forward pass of its junk next observation. Returns 0 for a
// non-finite result (a diverged network must not poison the replay's sum tree; the
// learner's first update of the item gives it a real priority).
inline double InitialPriority(double q_taken, double reward, double discount,
                              double bootstrap_value) {
  const double target = discount == 0 ? reward : reward + discount * bootstrap_value;
  const double priority = std::abs(target - q_taken);
  return std::isfinite(priority) ? priority : 0.0;
}

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_INITIAL_PRIORITY_H_
