#ifndef ENGRAM_COMMON_TENSOR_CODEC_H_
#define ENGRAM_COMMON_TENSOR_CODEC_H_

// torch::Tensor <-> engram.v1.Tensor (validation and raw encoding: tensor_proto.h).
//
// Encoding copies the elements once, straight into the message's bytes (after making the
// tensor contiguous on the CPU, which is free when it already is). Decoding validates
// everything a peer could get wrong — dtype, negative or overflowing shapes, data length —
// and returns INVALID_ARGUMENT naming the problem, before touching the data. DecodeTensor
// copies once into a tensor that owns its memory; DecodeTensorView copies nothing and
// aliases the message's bytes.
//
// Thread-safe (no shared state).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/tensor_proto.h"
#include "engram/v1/tensor.pb.h"
#include "torch/torch.h"

namespace engram {

absl::StatusOr<torch::ScalarType> ToTorchDType(v1::DType dtype);
absl::StatusOr<v1::DType> FromTorchDType(torch::ScalarType dtype);

// Encodes `tensor` (any device, any strides) into `out`, replacing its contents.
// INVALID_ARGUMENT for element types the wire format does not carry (e.g. complex).
absl::Status EncodeTensor(const torch::Tensor& tensor, v1::Tensor* out);

// Decodes into a CPU tensor that owns a copy of the data.
absl::StatusOr<torch::Tensor> DecodeTensor(const v1::Tensor& proto,
                                           absl::string_view what = "tensor");

// Decodes without copying: the result aliases `proto`'s bytes and is valid only while
// `proto` lives unchanged. Read-only use.
absl::StatusOr<torch::Tensor> DecodeTensorView(const v1::Tensor& proto,
                                               absl::string_view what = "tensor");

}  // namespace engram

#endif  // ENGRAM_COMMON_TENSOR_CODEC_H_
