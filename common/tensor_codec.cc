#include "common/tensor_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace engram {
namespace {

struct DTypeEntry {
  v1::DType proto;
  torch::ScalarType torch;
};

constexpr DTypeEntry kDTypes[] = {
    {v1::DTYPE_UINT8, torch::kByte},        {v1::DTYPE_INT8, torch::kChar},
    {v1::DTYPE_INT16, torch::kShort},       {v1::DTYPE_INT32, torch::kInt},
    {v1::DTYPE_INT64, torch::kLong},        {v1::DTYPE_FLOAT16, torch::kHalf},
    {v1::DTYPE_BFLOAT16, torch::kBFloat16}, {v1::DTYPE_FLOAT32, torch::kFloat},
    {v1::DTYPE_FLOAT64, torch::kDouble},    {v1::DTYPE_BOOL, torch::kBool},
};

}  // namespace

absl::StatusOr<torch::ScalarType> ToTorchDType(v1::DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.proto == dtype) return e.torch;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported tensor dtype ", v1::DType_Name(dtype), " (", dtype, ")"));
}

absl::StatusOr<v1::DType> FromTorchDType(torch::ScalarType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.torch == dtype) return e.proto;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tensor dtype ", c10::toString(dtype), " cannot be sent"));
}

absl::Status EncodeTensor(const torch::Tensor& tensor, v1::Tensor* out) {
  ENGRAM_ASSIGN_OR_RETURN(const v1::DType dtype, FromTorchDType(tensor.scalar_type()));
  // No copy when the tensor already is contiguous on the CPU.
  const torch::Tensor cpu = tensor.is_cpu() ? tensor.contiguous() : tensor.cpu().contiguous();
  out->set_dtype(dtype);
  out->clear_shape();
  for (int64_t d : cpu.sizes()) out->add_shape(d);
  out->set_data(static_cast<const char*>(cpu.data_ptr()), cpu.numel() * cpu.element_size());
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> DecodeTensorView(const v1::Tensor& proto, absl::string_view what) {
  ENGRAM_RETURN_IF_ERROR(ValidateTensor(proto, what).status());
  ENGRAM_ASSIGN_OR_RETURN(const torch::ScalarType dtype, ToTorchDType(proto.dtype()));
  std::vector<int64_t> shape(proto.shape().begin(), proto.shape().end());
  // from_blob never writes; the const_cast only satisfies its signature.
  return torch::from_blob(const_cast<char*>(proto.data().data()), shape,
                          torch::TensorOptions().dtype(dtype));
}

absl::StatusOr<torch::Tensor> DecodeTensor(const v1::Tensor& proto, absl::string_view what) {
  ENGRAM_ASSIGN_OR_RETURN(const torch::Tensor view, DecodeTensorView(proto, what));
  torch::Tensor owned = torch::empty(view.sizes(), view.options());
  if (owned.numel() > 0) {
    std::memcpy(owned.data_ptr(), proto.data().data(), proto.data().size());
  }
  return owned;
}

}  // namespace engram
