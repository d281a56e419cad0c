#ifndef ENGRAM_LEARNER_META_RL_BATCH_H_
#define ENGRAM_LEARNER_META_RL_BATCH_H_

// TrajectoryChunks sampled from a meta-RL queue table -> one time-major MetaRlBatch.
//
// Each chunk is checked against what the learner expects (T steps, the observation's dtype
// and shape, actions in range, behaviour logits [T, A] or none, two recurrent state tensors
// of lstm_size or none); the first problem is INVALID_ARGUMENT naming the chunk and field,
// e.g. "chunk 3: actions[7] = 5 is outside [0, 2)". Inputs derived per step:
//   previous_actions[t]  chunk.previous_action at t = 0, -1 where an episode starts, else
//                        actions[t-1];
//   previous_rewards[t]  likewise from chunk.previous_reward and rewards[t-1] (0 at starts);
//   episode_starts[t]    the chunk's flags (empty: only t = 0, when its episode_step is 0);
//   discounts            0 / 1 as recorded (the learner applies gamma);
//   behaviour_logits     undefined (on-policy) when any chunk has none.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/v1/trajectory.pb.h"
#include "learner/core/meta_rl.h"

namespace engram::learner {

struct ChunkLayout {
  int64_t unroll_length = 0;               // T
  std::vector<int64_t> observation_shape;  // one step's
  v1::DType observation_dtype = v1::DTYPE_FLOAT32;
  int64_t num_actions = 0;
  int64_t lstm_size = 0;
};

// B = chunks.size() >= 1. Tensors on the CPU (pinned when `pinned`).
absl::StatusOr<MetaRlBatch> ChunksToBatch(const std::vector<const v1::TrajectoryChunk*>& chunks,
                                          const ChunkLayout& layout, bool pinned = false);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_META_RL_BATCH_H_
