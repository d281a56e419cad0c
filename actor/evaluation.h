#ifndef ENGRAM_ACTOR_EVALUATION_H_
#define ENGRAM_ACTOR_EVALUATION_H_

// The evaluation episodes every algorithm's evaluation actor runs: evaluation.episodes
// environments stepped together, seeded so that episode e of evaluation `index` always gets
// the same seed whichever actor runs it, the policy's greedy actions with
// evaluation.epsilon exploration, episodes cut at `max_episode_steps` (reported truncated).

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "actor/envs/vector_env.h"
#include "actor/reporter.h"
#include "engram/v1/actor.pb.h"
#include "engram/v1/experiment.pb.h"
#include "prometheus/registry.h"

namespace engram::actor {

// Fills `actions` (one per environment) with the policy's greedy actions for the current
// observations of `vec`.
using GreedyActions =
    std::function<absl::Status(const envs::VectorEnv& vec, std::vector<int>* actions)>;

// The results of evaluation `index` (1, 2, ...) in task `task_index` (0 without a task
// sequence; its environments from MakeTaskEnvs, seeds EvaluationEnvSeed(..., task_index));
// CANCELLED when `stop` interrupts it. `policy_version` and `task_index` are recorded in
// every result.
absl::StatusOr<std::vector<v1::EpisodeResult>> RunEvaluationEpisodes(
    const v1::ExperimentSpec& resolved, int64_t index, int task_index, int64_t max_episode_steps,
    int64_t policy_version, const GreedyActions& greedy, const std::atomic<bool>& stop);

// The policy an evaluation actor evaluates: its parameter version (0: none) and its action
// function, made afresh for each evaluation (a recurrent policy starts from its initial
// state).
struct EvaluationPolicy {
  int64_t version = 0;
  GreedyActions act;
};
// Brings the actor's policy up to date for evaluation `index`.
using PrepareEvaluation = std::function<absl::StatusOr<EvaluationPolicy>(int64_t index)>;

// The evaluation actor's loop, for every algorithm: waits until the learner asks for an
// evaluation (a new evaluation_index in the report responses), runs it with
// RunEvaluationEpisodes in each of the response's evaluation_tasks tasks (one policy from
// `prepare` for all of them), logs it, reports the episodes and updates the actor's
// evaluation metrics (registry may be null). Returns OK when the learner says the run is over or
// `stop` becomes true; errors of `prepare` or the episodes end it.
absl::Status ServeEvaluations(const v1::ExperimentSpec& resolved, int64_t max_episode_steps,
                              ProgressReporter& reporter, const PrepareEvaluation& prepare,
                              const std::atomic<bool>& stop, prometheus::Registry* registry);

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_EVALUATION_H_
