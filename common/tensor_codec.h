#ifndef ENGRAM_COMMON_TENSOR_CODEC_H_
#define ENGRAM_COMMON_TENSOR_CODEC_H_

// torch::Tensor <-> engram.v1.Tensor.
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
#include "engram/v1/tensor.pb.h"
#include "torch/torch.h"

namespace engram {

// Size of one element; 0 for DTYPE_UNSPECIFIED or unknown values.
size_t ProtoDTypeSize(v1::DType dtype);
absl::StatusOr<torch::ScalarType> ToTorchDType(v1::DType dtype);
absl::StatusOr<v1::DType> FromTorchDType(torch::ScalarType dtype);

// Encodes `tensor` (any device, any strides) into `out`, replacing its contents.
// INVALID_ARGUMENT for element types the wire format does not carry (e.g. complex).
absl::Status EncodeTensor(const torch::Tensor& tensor, v1::Tensor* out);

// Encodes raw row-major elements, e.g. an environment's observation buffer.
// INVALID_ARGUMENT when `data` is not exactly product(shape) * ProtoDTypeSize(dtype) bytes.
absl::Status EncodeRaw(v1::DType dtype, absl::Span<const int64_t> shape,
                       absl::Span<const uint8_t> data, v1::Tensor* out);

// Number of elements of a validated proto tensor, or INVALID_ARGUMENT: unknown dtype,
// negative dimension, element count or byte size overflowing, data length not matching.
// `what` names the tensor in messages, e.g. "insert item 17 observation".
absl::StatusOr<int64_t> ValidateTensor(const v1::Tensor& proto, absl::string_view what = "tensor");

// What a consumer expects; -1 in `shape` matches any extent of that dimension.
struct TensorSignature {
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;  // UNSPECIFIED matches any dtype
  std::vector<int64_t> shape;
};

// ValidateTensor plus a signature check: INVALID_ARGUMENT like
//   `observation shape [10,10,4] does not match signature [10,10,10]`.
absl::Status CheckSignature(const v1::Tensor& proto, const TensorSignature& signature,
                            absl::string_view what = "tensor");

// Decodes into a CPU tensor that owns a copy of the data.
absl::StatusOr<torch::Tensor> DecodeTensor(const v1::Tensor& proto,
                                           absl::string_view what = "tensor");

// Decodes without copying: the result aliases `proto`'s bytes and is valid only while
// `proto` lives unchanged. Read-only use.
absl::StatusOr<torch::Tensor> DecodeTensorView(const v1::Tensor& proto,
                                               absl::string_view what = "tensor");

// "[10,10,4]".
std::string ShapeString(absl::Span<const int64_t> shape);

}  // namespace engram

#endif  // ENGRAM_COMMON_TENSOR_CODEC_H_
