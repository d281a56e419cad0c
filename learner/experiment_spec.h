#ifndef ENGRAM_LEARNER_EXPERIMENT_SPEC_H_
#define ENGRAM_LEARNER_EXPERIMENT_SPEC_H_

// Reading, resolving and validating an engram.v1.ExperimentSpec, and the quantities every
// process derives from a resolved spec (environment seeds, exploration epsilons, shards).
//
// "Resolved" means: every default documented in proto/engram/v1/experiment.proto filled
// in, every field checked, and the algorithm's replay table present in replay.tables
// (derived from the algorithm's hyper-parameters when the spec lists no tables). The
// functions below that take a `resolved` spec require one (anything else is a programmer
// error: CHECK). All functions are thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/v1/experiment.pb.h"
#include "engram/v1/replay.pb.h"
#include "engram/v1/tensor.pb.h"

namespace engram::learner {

// Fills every documented default and validates. On success returns the resolved spec; on
// failure INVALID_ARGUMENT listing EVERY problem found as "<field path>: <what is wrong>",
// joined by "; " (e.g. "apex_dqn.n_step: must be in [1, 100], got 0; actors.num_actors:
// must be >= 1, got 0"). Field paths are as in text format, with indices and map keys:
// `task_sequence.tasks[1].environment.options["difficulty"]`, `replay.tables[0].max_size`.
//
// Choices the proto comments leave to the resolver (each also stated in the proto):
//   - seed absent: drawn from absl::BitGen, so such a spec resolves differently each
//     time (pass a seed for reproducible runs);
//   - environment.seed absent: SplitMix64(seed), so that environment streams do not
//     coincide with other streams seeded from `seed`; task k of a task_sequence:
//     SplitMix64(seed) + k * 2^33 (ranges of different tasks never overlap);
//   - when replay.tables is empty, the derived table is added to replay.tables and the
//     derived-only fields of apex_dqn / ewc.dqn (priority_exponent, replay_capacity,
//     min_replay_size, samples_per_insert) are cleared: the table carries them.
//
// Idempotent: resolving a resolved spec returns it unchanged. Builds every environment
// the spec names once (cheap; no I/O).
absl::StatusOr<v1::ExperimentSpec> ResolveExperimentSpec(const v1::ExperimentSpec& spec);

// ReadTextProtoFile(path) then ResolveExperimentSpec. Errors are prefixed with the path:
// "<path>:<line>:<column>: ..." for parse errors, "<path>: <field path>: ..." for
// invalid specs; unreadable files keep ReadTextProtoFile's code. Blocks on file I/O.
absl::StatusOr<v1::ExperimentSpec> ReadExperimentSpec(const std::string& path);

// What the learner and the replay signature need to know about an environment.
struct EnvironmentInfo {
  std::vector<int64_t> observation_shape;  // e.g. {10, 10, 4}
  v1::DType observation_dtype = v1::DTYPE_UNSPECIFIED;
  int num_actions = 0;
};

// Builds the environment through the registry (actor/envs/registry.h): once when it is
// valid, and once per option more when it is not, to name each bad option.
// INVALID_ARGUMENT naming `environment.name` (empty or unknown: the message lists the
// registered names) or `environment.options["key"]` (unknown key, or a bad value: the
// message says what is accepted); every bad option is reported, joined by "; ".
absl::StatusOr<EnvironmentInfo> DescribeEnvironment(const v1::EnvironmentSpec& environment);

// The observation interface the one network of a run sees: the environment's, or for a
// task_sequence the tasks' (same dtype, actions and sizes but in the last dimension) with
// the last dimension, channels, padded to the largest task's (actors pad observations
// with zeros: envs::PadChannels). INVALID_ARGUMENT for specs that do not resolve.
absl::StatusOr<EnvironmentInfo> SharedEnvironment(const v1::ExperimentSpec& resolved);

// The DQN hyper-parameters of apex_dqn or ewc (ewc.dqn), and their field path ("apex_dqn" or
// "ewc.dqn") for messages. Other algorithms: CHECK.
const v1::ApexDqnConfig& DqnAlgorithmConfig(const v1::ExperimentSpec& resolved);
std::string DqnAlgorithmPath(const v1::ExperimentSpec& resolved);

// The environment of task `task_index`: task_sequence.tasks[task_index].environment, or
// `environment` (task_index 0) without a task sequence.
const v1::EnvironmentSpec& TaskEnvironment(const v1::ExperimentSpec& resolved, int task_index = 0);

// Where a run stands in its task sequence after `frames` training frames. The sequence is
// task_sequence.tasks repeated `cycles` times; phase p trains tasks[p % tasks] for that
// task's frames. Without a task sequence there is one phase, task 0, that never ends.
struct TaskPhase {
  int phase = 0;               // 0 .. tasks * cycles - 1
  int task_index = 0;          // into task_sequence.tasks
  int64_t start_frames = 0;    // frames at which this phase began
  int64_t end_frames = 0;      // frames at which the next begins (INT64_MAX: never)
  bool sequence_done = false;  // frames >= the whole sequence's (the phase is the last)
};
TaskPhase TaskPhaseAt(const v1::ExperimentSpec& resolved, int64_t frames);

// The replay table of task `task_index` for a run with a task sequence (each task has its
// own): the algorithm table's spec renamed "<name>_t<task_index>". Without a task sequence,
// AlgorithmTable itself (task_index must be 0).
v1::TableSpec TaskTable(const v1::ExperimentSpec& resolved, int task_index);

// Seed of training environment `env_index` of actor `actor_index` in task `task_index`:
// environment.seed + actor_index * envs_per_actor + env_index (modulo 2^64).
uint64_t TrainingEnvSeed(const v1::ExperimentSpec& resolved, int actor_index, int env_index,
                         int task_index = 0);

// Seed of evaluation environment `index` in task `task_index`: environment.seed + 2^32 +
// index (modulo 2^64).
uint64_t EvaluationEnvSeed(const v1::ExperimentSpec& resolved, int index, int task_index = 0);

// Ape-X exploration epsilon of environment `env_index` of actor `actor_index`, for
// apex_dqn and ewc (ewc.dqn): with i = actor_index * envs_per_actor + env_index and
// N = num_actors * envs_per_actor, epsilon_base^(1 + epsilon_alpha * i / (N - 1)), or
// epsilon_base when N == 1. Other algorithms, or indices out of range: CHECK.
double ApexActorEpsilon(const v1::ExperimentSpec& resolved, int actor_index, int env_index);

// The replay shard actor `actor_index` writes to: actor_index mod replay.num_shards.
int ShardOfActor(const v1::ExperimentSpec& resolved, int actor_index);

// The table (in resolved replay.tables) the algorithm samples from and actors insert into:
// the one named by apex_dqn.replay_table, ewc.dqn.replay_table or meta_rl.replay_table.
// episodic_control has none: CHECK.
const v1::TableSpec& AlgorithmTable(const v1::ExperimentSpec& resolved);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_EXPERIMENT_SPEC_H_
