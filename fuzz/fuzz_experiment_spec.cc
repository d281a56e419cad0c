// ExperimentSpec from untrusted bytes, as text (engram submit SPEC, --experiment files) and
// as the binary message (SubmitExperimentRequest), then resolved and validated.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/text_proto.h"
#include "engram/v1/experiment.pb.h"
#include "fuzz/fuzz_util.h"
#include "learner/experiment_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::SilenceProtobufLogs();
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  engram::v1::ExperimentSpec text;
  if (engram::ParseTextProto(input, &text).ok()) {
    (void)engram::learner::ResolveExperimentSpec(text);
  }
  engram::v1::ExperimentSpec binary;
  if (binary.ParseFromArray(data, static_cast<int>(size))) {
    (void)engram::learner::ResolveExperimentSpec(binary);
  }
  return 0;
}
