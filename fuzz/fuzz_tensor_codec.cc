// engram.v1.Tensor from untrusted bytes (every payload of an insert, a sample, weights)
// decoded into LibTorch tensors, copying and as a view.
#include <cstddef>
#include <cstdint>

#include "common/tensor_codec.h"
#include "engram/v1/tensor.pb.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::SilenceProtobufLogs();
  engram::v1::Tensor proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::StatusOr<torch::Tensor> copy = engram::DecodeTensor(proto);
  absl::StatusOr<torch::Tensor> view = engram::DecodeTensorView(proto);
  if (copy.ok() != view.ok()) __builtin_trap();  // both accept the same tensors
  if (copy.ok() && copy->numel() != view->numel()) __builtin_trap();
  return 0;
}
