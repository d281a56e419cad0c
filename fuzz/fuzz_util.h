#ifndef ENGRAM_FUZZ_FUZZ_UTIL_H_
#define ENGRAM_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "replay_server/record_io.h"

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

// Recomputes the crc32 of every whole record (uint32 length, uint8 type, payload, uint32
// crc over the rest: the replay checkpoint and write-ahead log framing) after a `header` of
// that many bytes, so that mutated bytes reach the record parsers instead of failing the
// checksum.
inline void FixRecordChecksums(std::string& bytes, size_t header) {
  using replay::record_io::Crc;
  size_t offset = header;
  while (offset + 9 <= bytes.size()) {
    const uint32_t length = replay::record_io::GetU32(&bytes[offset]);
    if (length > bytes.size() - offset - 9) return;
    replay::record_io::PutU32(&bytes[offset + 5 + length], Crc(0, &bytes[offset], 5 + length));
    offset += 9 + length;
  }
}

}  // namespace engram::fuzz

#endif  // ENGRAM_FUZZ_FUZZ_UTIL_H_
