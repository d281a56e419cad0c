#ifndef ENGRAM_LEARNER_APEX_CONFIG_H_
#define ENGRAM_LEARNER_APEX_CONFIG_H_

// From a resolved engram.v1.ExperimentSpec with apex_dqn (or meta_rl) to the learner/core
// configuration that actors and the learner build their networks from: both must agree
// exactly (same architecture, same parameter names) for weights to travel between them.

#include "absl/status/statusor.h"
#include "engram/v1/experiment.pb.h"
#include "learner/core/dqn.h"
#include "learner/core/meta_rl.h"
#include "learner/core/networks.h"

namespace engram::learner {

// The Q-network: observation shape and actions from the environment (SharedEnvironment:
// for a task sequence the tasks' padded to the most channels), torso and hidden sizes from
// apex_dqn or ewc.dqn. INVALID_ARGUMENT when the spec has neither, the environment cannot
// be built, or the torso does not fit the observation (naming `apex_dqn.torso` or
// `ewc.dqn.torso`).
absl::StatusOr<NetworkConfig> ApexNetworkConfig(const v1::ExperimentSpec& resolved);

// The whole DQN configuration (network, optimizer, targets, beta schedule) of a resolved
// spec; every field comes from apex_dqn or ewc.dqn (see experiment.proto for the defaults).
absl::StatusOr<DqnConfig> ApexLearnerConfig(const v1::ExperimentSpec& resolved);

// The meta-RL configuration of a resolved spec with meta_rl: the LSTM's input from the
// environment (flattened observation, its actions) and meta_rl's switches, the loss and the
// optimizer from meta_rl (see experiment.proto for the defaults). INVALID_ARGUMENT naming
// the field otherwise.
absl::StatusOr<MetaRlConfig> MetaRlLearnerConfig(const v1::ExperimentSpec& resolved);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_APEX_CONFIG_H_
