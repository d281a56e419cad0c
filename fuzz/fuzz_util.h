#ifndef ENGRAM_FUZZ_FUZZ_UTIL_H_
#define ENGRAM_FUZZ_FUZZ_UTIL_H_

#include "google/protobuf/stubs/logging.h"

namespace engram::fuzz {

// Protobuf logs every string field with invalid UTF-8 it parses; fuzz inputs are full of
// them. Silences it once per process.
inline void SilenceProtobufLogs() {
  static const bool silenced = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)silenced;
}

}  // namespace engram::fuzz

#endif  // ENGRAM_FUZZ_FUZZ_UTIL_H_
