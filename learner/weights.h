#ifndef ENGRAM_LEARNER_WEIGHTS_H_
#define ENGRAM_LEARNER_WEIGHTS_H_

// Network weights on the wire: DqnLearner::ExportWeights' (name, tensor) pairs <->
// engram.v1.ParameterSet (the `named` form of parameters.proto).

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engram/v1/parameters.pb.h"
#include "torch/types.h"

namespace engram::learner {

using NamedWeights = std::vector<std::pair<std::string, torch::Tensor>>;

// Replaces `out`'s content with `weights` as named tensors (one copy of each tensor's
// bytes). Leaves version, experiment_id and counters as they are. INVALID_ARGUMENT for an
// empty or repeated name or a dtype the wire format does not carry.
absl::Status EncodeWeights(const NamedWeights& weights, v1::ParameterSet* out);

// The named tensors of `set` as CPU tensors that own their data, in the set's order.
// INVALID_ARGUMENT naming `named.tensors[i]` for a malformed tensor or name, and when the
// set carries no named tensors (e.g. the serialized form, which actors do not read).
absl::StatusOr<NamedWeights> DecodeWeights(const v1::ParameterSet& set);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_WEIGHTS_H_
