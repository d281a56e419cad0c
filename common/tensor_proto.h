#ifndef ENGRAM_COMMON_TENSOR_PROTO_H_
#define ENGRAM_COMMON_TENSOR_PROTO_H_

// engram.v1.Tensor without LibTorch: validation, signatures and raw encoding, for
// processes that move tensors without computing on them (the replay server, actors'
// writers). torch::Tensor conversion lives in tensor_codec.h.
//
// Validation checks everything a peer could get wrong — dtype, negative or overflowing
// shapes, data length — and returns INVALID_ARGUMENT naming the problem.
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

namespace engram {

// Size of one element; 0 for DTYPE_UNSPECIFIED or unknown values.
size_t ProtoDTypeSize(v1::DType dtype);

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

// "[10,10,4]".
std::string ShapeString(absl::Span<const int64_t> shape);

}  // namespace engram

#endif  // ENGRAM_COMMON_TENSOR_PROTO_H_
