#include "actor/evaluation.h"

#include <algorithm>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/actor_common.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "learner/experiment_spec.h"

namespace engram::actor {

absl::StatusOr<std::vector<v1::EpisodeResult>> RunEvaluationEpisodes(
    const v1::ExperimentSpec& resolved, int64_t index, int task_index, int64_t max_episode_steps,
    int64_t policy_version, const GreedyActions& greedy, const std::atomic<bool>& stop) {
  const v1::EvaluationSpec& evaluation = resolved.evaluation();
  const int episodes = evaluation.episodes();
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<envs::VectorEnv> vec,
                          MakeTaskEnvs(resolved, task_index, episodes));
  // Episode k of evaluation `index` always gets the same seed, whichever actor runs it.
  vec->Reset(
      learner::EvaluationEnvSeed(resolved, static_cast<int>((index - 1) * episodes), task_index));
  std::mt19937_64 rng(learner::EvaluationEnvSeed(resolved, 0, task_index) +
                      static_cast<uint64_t>(index));
  const int num_actions = vec->spec().num_actions;
  std::vector<v1::EpisodeResult> results(episodes);
  std::vector<bool> finished(episodes, false);
  std::vector<double> returns(episodes, 0);
  std::vector<int> actions(episodes);
  int remaining = episodes;
  for (int64_t step = 1; remaining > 0 && !stop.load(); ++step) {
    ENGRAM_RETURN_IF_ERROR(greedy(*vec, &actions));
    for (int j = 0; j < episodes; ++j) {
      if (std::uniform_real_distribution<double>(0, 1)(rng) < evaluation.epsilon()) {
        actions[j] = std::uniform_int_distribution<int>(0, num_actions - 1)(rng);
      }
    }
    ENGRAM_RETURN_IF_ERROR(vec->Step(actions));
    for (int j = 0; j < episodes; ++j) {
      if (finished[j]) continue;
      returns[j] += vec->rewards()[j];
      const bool cut = max_episode_steps > 0 && step >= max_episode_steps;
      if (!vec->done(j) && !cut) continue;
      finished[j] = true;
      --remaining;
      v1::EpisodeResult& result = results[j];
      result.set_episode_return(returns[j]);
      result.set_length(step);
      result.set_env_index(j);
      result.set_policy_version(policy_version);
      result.set_epsilon(evaluation.epsilon());
      result.set_truncated(vec->done(j) ? vec->truncated()[j] != 0 : true);
      result.set_task_index(task_index);
    }
  }
  if (remaining > 0) return absl::CancelledError("evaluation interrupted by shutdown");
  return results;
}

absl::Status ServeEvaluations(const v1::ExperimentSpec& resolved, int64_t max_episode_steps,
                              ProgressReporter& reporter, const PrepareEvaluation& prepare,
                              const std::atomic<bool>& stop, prometheus::Registry* registry) {
  ActorMetrics metrics(registry, "evaluation");
  int64_t done_index = 0;
  v1::ActorReportResponse seen;
  while (!stop.load()) {
    seen = reporter.WaitForResponseChange(seen, absl::Milliseconds(500));
    if (seen.stop()) break;
    if (seen.evaluation_index() <= done_index) continue;
    const int64_t index = seen.evaluation_index();
    ENGRAM_ASSIGN_OR_RETURN(EvaluationPolicy policy, prepare(index));
    Set(metrics.policy_version, static_cast<double>(policy.version));
    const absl::Time start = absl::Now();
    // Tasks 0 .. evaluation_tasks - 1 (every task seen so far), within the sequence.
    const int tasks =
        std::clamp(seen.evaluation_tasks(), 1,
                   resolved.has_task_sequence() ? resolved.task_sequence().tasks_size() : 1);
    std::vector<v1::EpisodeResult> all;
    absl::Status failed;
    for (int task = 0; task < tasks && failed.ok(); ++task) {
      absl::StatusOr<std::vector<v1::EpisodeResult>> episodes = RunEvaluationEpisodes(
          resolved, index, task, max_episode_steps, policy.version, policy.act, stop);
      if (!episodes.ok()) {
        failed = episodes.status();
        break;
      }
      double sum = 0;
      int64_t frames = 0;
      for (const v1::EpisodeResult& episode : *episodes) {
        sum += episode.episode_return();
        frames += episode.length();
      }
      const double mean = episodes->empty() ? 0 : sum / episodes->size();
      Increment(metrics.episodes, static_cast<double>(episodes->size()));
      Increment(metrics.frames, static_cast<double>(frames));
      Set(metrics.episode_return, mean);
      const std::string task_name =
          resolved.has_task_sequence()
              ? absl::StrCat(", task ", resolved.task_sequence().tasks(task).name())
              : std::string();
      Log(absl::StrFormat(
          "evaluation %d%s (weights v%d, at %d frames): mean return %.2f over %d episodes in "
          "%.1f s",
          index, task_name, policy.version, seen.frames(), mean, episodes->size(),
          absl::ToDoubleSeconds(absl::Now() - start)));
      all.insert(all.end(), episodes->begin(), episodes->end());
    }
    if (absl::IsCancelled(failed)) break;
    ENGRAM_RETURN_IF_ERROR(failed);
    reporter.CompleteEvaluation(index, std::move(all));
    done_index = index;
    absl::Status flushed = reporter.Flush(absl::Now() + absl::Seconds(30));
    if (!flushed.ok()) Log(absl::StrCat("evaluation report: ", flushed.ToString()));
  }
  (void)reporter.Flush(absl::Now() + absl::Seconds(5));
  return absl::OkStatus();
}

}  // namespace engram::actor
