#include "learner/weights.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tensor_codec.h"

namespace engram::learner {

absl::Status EncodeWeights(const NamedWeights& weights, v1::ParameterSet* out) {
  v1::NamedTensors named;
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < weights.size(); ++i) {
    const auto& [name, tensor] = weights[i];
    if (name.empty() || !seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("weights[", i, "]: name \"", name, "\" is ",
                                                     name.empty() ? "empty" : "repeated"));
    }
    v1::NamedTensor* entry = named.add_tensors();
    entry->set_name(name);
    ENGRAM_RETURN_IF_ERROR(EncodeTensor(tensor, entry->mutable_tensor()));
  }
  *out->mutable_named() = std::move(named);
  return absl::OkStatus();
}

absl::StatusOr<NamedWeights> DecodeWeights(const v1::ParameterSet& set) {
  if (!set.has_named()) {
    return absl::InvalidArgumentError(
        "parameters: expected named tensors (ParameterSet.named), got none");
  }
  NamedWeights weights;
  weights.reserve(set.named().tensors_size());
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < set.named().tensors_size(); ++i) {
    const v1::NamedTensor& entry = set.named().tensors(i);
    const std::string what = absl::StrCat("named.tensors[", i, "]");
    if (entry.name().empty() || !seen.insert(entry.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(what, ".name: \"", entry.name(), "\" is ",
                                                     entry.name().empty() ? "empty" : "repeated"));
    }
    ENGRAM_ASSIGN_OR_RETURN(torch::Tensor tensor, DecodeTensor(entry.tensor(), what));
    weights.emplace_back(entry.name(), std::move(tensor));
  }
  return weights;
}

}  // namespace engram::learner
