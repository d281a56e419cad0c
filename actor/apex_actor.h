#ifndef ENGRAM_ACTOR_APEX_ACTOR_H_
#define ENGRAM_ACTOR_APEX_ACTOR_H_

// The Ape-X actor (Horgan et al. 2018) and its evaluation twin.
//
// Training: B environments stepped as one VectorEnv with one batched forward pass of the
// Q-network per step (CPU, the calling thread), epsilon-greedy with a fixed epsilon per
// environment (the Ape-X schedule over every environment of every actor), n-step
// transitions with initial priorities |TD error| from the actor's own network, streamed in
// batches to the actor's replay shard. Weights come from the learner's ParameterService,
// polled in the background and swapped in every weight_sync_steps steps, so stepping never
// waits for the network. Frames and finished episodes go to the learner's ActorService,
// which also says when the run is over.
//
// Evaluation: waits for the learner to ask for an evaluation, then runs
// evaluation.episodes episodes with evaluation.epsilon and the newest weights and reports
// their returns. Writes nothing to replay.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/server.h"
#include "engram/v1/actor.pb.h"
#include "engram/v1/experiment.pb.h"
#include "prometheus/registry.h"
#include "replay_server/client/writer.h"

namespace engram::actor {

struct ApexActorOptions {
  // Resolved (learner::ResolveExperimentSpec) spec with apex_dqn or ewc (the other
  // algorithms' actors take the same options).
  v1::ExperimentSpec spec;
  v1::ActorRole role = v1::ACTOR_ROLE_TRAINING;
  // Training: 0 .. actors.num_actors - 1. Evaluation: any index >= 0 (seeds and logs).
  int actor_index = 0;
  // Every replay shard, in shard order (the actor writes to ShardOfActor's); unused by
  // evaluation actors.
  std::vector<std::string> replay_addresses;
  // The learner (ParameterService and ActorService).
  std::string learner_address;
  // The episodic store (episodic_control experiments).
  std::string episodic_address;
  // Incarnation of the progress reports; 0 draws one. Pool mode: the assignment's.
  uint64_t incarnation = 0;
  ChannelOptions channel;
  // How long to wait for the learner's first weights before giving up (UNAVAILABLE).
  absl::Duration first_weights_timeout = absl::Minutes(5);
  // Evaluation: steps after which an evaluation episode is cut (reported as truncated);
  // 0 = the environment's own limit only.
  int64_t evaluation_max_episode_steps = 27000;
  // Progress lines on stderr every this long (0 = none).
  absl::Duration log_interval = absl::Seconds(30);
};

// Runs until the learner says the run is over (returns OK), `stop` becomes true (OK), or a
// non-recoverable error (bad spec, a replay table that rejects the actor's items). Network
// outages are retried with backoff and do not end the run.
absl::Status RunApexActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                          prometheus::Registry* registry);

// Shared by every algorithm's actor:
// INVALID_ARGUMENT unless a training actor's index is in [0, actors.num_actors).
absl::Status CheckActorIndex(const ApexActorOptions& options);
// A training actor's replay writer: to its shard (learner::ShardOfActor) and the table of
// task `task_index` (learner::TaskTable: the algorithm's table without a task sequence), with
// at most `max_unacked_requests` requests in flight; *target says where ("table \"replay\" of
// replay shard 1 (host:port)"). INVALID_ARGUMENT when its shard has no address.
absl::StatusOr<std::unique_ptr<replay::ReplayWriter>> OpenReplayWriter(
    const ApexActorOptions& options, int max_unacked_requests, std::string* target,
    int task_index = 0);

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_APEX_ACTOR_H_
