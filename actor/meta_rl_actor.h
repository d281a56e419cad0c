#ifndef ENGRAM_ACTOR_META_RL_ACTOR_H_
#define ENGRAM_ACTOR_META_RL_ACTOR_H_

// The meta-RL actor (Wang et al. 2016; IMPALA's actor, Espeholt et al. 2018).
//
// Training: B environments of meta_rl.task_family stepped together; one batched step of the
// LSTM actor-critic per environment step (CPU, the calling thread), actions sampled from the
// policy. Each environment keeps its recurrent state, previous action and previous reward
// across steps within an episode and resets them when an episode ends (the environment
// draws a new task instance). Every unroll_length steps each environment's last T steps go
// to the actor's replay shard as one TrajectoryChunk (sample-once FIFO queue), with the
// recurrent state, previous action and reward at its start, the behaviour logits (for
// V-trace) and the bootstrap observation; then the newest weights are swapped in, so one
// chunk is acted by one policy version. At most four insert requests are in flight: when the
// learner's queue is full the actor waits (the queue's rate limiter), which keeps the policy
// lag to a few updates. An episode end inside a chunk has discount 0 (time
// limit truncations too: bandit tasks never truncate).
//
// Evaluation: when the learner asks, evaluation.episodes episodes of the environment with
// the newest weights, actions sampled from the policy (the network's exploration is part of
// what it learned), returns reported.

#include <atomic>

#include "absl/status/status.h"
#include "actor/apex_actor.h"
#include "prometheus/registry.h"

namespace engram::actor {

// `options.spec` must have meta_rl. Returns like RunApexActor.
absl::Status RunMetaRlActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                            prometheus::Registry* registry);

}  // namespace engram::actor

#endif  // ENGRAM_ACTOR_META_RL_ACTOR_H_
