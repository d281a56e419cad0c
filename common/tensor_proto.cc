#include "common/tensor_proto.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace engram {
namespace {

// The wire format is little-endian; so is every host Engram targets (x86-64, aarch64).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Engram assumes a little-endian host");

}  // namespace

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

size_t ProtoDTypeSize(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_UINT8:
    case v1::DTYPE_INT8:
    case v1::DTYPE_BOOL:
      return 1;
    case v1::DTYPE_INT16:
    case v1::DTYPE_FLOAT16:
    case v1::DTYPE_BFLOAT16:
      return 2;
    case v1::DTYPE_INT32:
    case v1::DTYPE_FLOAT32:
      return 4;
    case v1::DTYPE_INT64:
    case v1::DTYPE_FLOAT64:
      return 8;
    default:
      return 0;
  }
}

absl::Status EncodeRaw(v1::DType dtype, absl::Span<const int64_t> shape,
                       absl::Span<const uint8_t> data, v1::Tensor* out) {
  v1::Tensor header;
  header.set_dtype(dtype);
  for (int64_t d : shape) header.add_shape(d);
  // Validate the shape and size against `data` without copying it first.
  const size_t element_size = ProtoDTypeSize(dtype);
  if (element_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported tensor dtype ", dtype));
  }
  int64_t elements = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("negative dimension in shape ", ShapeString(shape)));
    }
    elements *= d;
  }
  if (data.size() != static_cast<size_t>(elements) * element_size) {
    return absl::InvalidArgumentError(absl::StrCat("raw tensor of shape ", ShapeString(shape),
                                                   " needs ", elements * element_size,
                                                   " bytes, got ", data.size()));
  }
  *out = std::move(header);
  out->set_data(reinterpret_cast<const char*>(data.data()), data.size());
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ValidateTensor(const v1::Tensor& proto, absl::string_view what) {
  const size_t element_size = ProtoDTypeSize(proto.dtype());
  if (element_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": dtype ",
                                                   v1::DType_IsValid(proto.dtype())
                                                       ? v1::DType_Name(proto.dtype())
                                                       : absl::StrCat(proto.dtype()),
                                                   " is not a tensor element type"));
  }
  const int64_t max_elements = std::numeric_limits<int64_t>::max() / 8;
  int64_t elements = 1;
  for (int i = 0; i < proto.shape_size(); ++i) {
    const int64_t d = proto.shape(i);
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": shape ", ShapeString(proto.shape()),
                                                     " has negative dimension ", i));
    }
    if (d != 0 && elements > max_elements / d) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shape ", ShapeString(proto.shape()), " is too large"));
    }
    elements *= d;
  }
  const uint64_t expected = static_cast<uint64_t>(elements) * element_size;
  if (proto.data().size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", v1::DType_Name(proto.dtype()), " shape ",
                     ShapeString(proto.shape()), " needs ", expected, " bytes of data, got ",
                     proto.data().size(), proto.data().size() < expected ? " (truncated)" : ""));
  }
  return elements;
}

absl::Status CheckSignature(const v1::Tensor& proto, const TensorSignature& signature,
                            absl::string_view what) {
  ENGRAM_RETURN_IF_ERROR(ValidateTensor(proto, what).status());
  if (signature.dtype != v1::DTYPE_UNSPECIFIED && proto.dtype() != signature.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(what, " dtype ", v1::DType_Name(proto.dtype()),
                                                   " does not match signature dtype ",
                                                   v1::DType_Name(signature.dtype)));
  }
  bool matches = proto.shape_size() == static_cast<int>(signature.shape.size());
  for (int i = 0; matches && i < proto.shape_size(); ++i) {
    matches = signature.shape[i] == -1 || signature.shape[i] == proto.shape(i);
  }
  if (!matches) {
    return absl::InvalidArgumentError(absl::StrCat(what, " shape ", ShapeString(proto.shape()),
                                                   " does not match signature ",
                                                   ShapeString(signature.shape)));
  }
  return absl::OkStatus();
}

}  // namespace engram
