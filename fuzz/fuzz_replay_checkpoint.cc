// Replay checkpoints from untrusted bytes (a damaged table file in --checkpoint_dir): the
// input is written as the table file of a checkpoint whose MANIFEST matches its size and
// crc32, and every record's checksum is recomputed first, so that mutations reach the
// record parsers (spec, counters, items) instead of stopping at a checksum. LoadCheckpoint
// must answer DATA_LOSS, never crash or allocate more than the bytes justify.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_util.h"
#include "replay_server/checkpoint.h"
#include "replay_server/record_io.h"

namespace {

namespace fs = std::filesystem;
using engram::replay::record_io::Crc;
using engram::replay::record_io::GetU32;
using engram::replay::record_io::PutU32;

// Recomputes the crc32 of every whole record after the 12-byte header.
void FixRecordChecksums(std::string& bytes) {
  size_t offset = 12;
  while (offset + 9 <= bytes.size()) {
    const uint32_t length = GetU32(&bytes[offset]);
    if (length > bytes.size() - offset - 9) return;
    PutU32(&bytes[offset + 5 + length], Crc(0, &bytes[offset], 5 + length));
    offset += 9 + length;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::SilenceProtobufLogs();
  static const fs::path dir =
      fs::temp_directory_path() / absl::StrCat("engram_fuzz_replay_checkpoint_", ::getpid());
  fs::create_directories(dir);
  std::string bytes(reinterpret_cast<const char*>(data), size);
  FixRecordChecksums(bytes);
  std::ofstream(dir / "t.table", std::ios::binary | std::ios::trunc) << bytes;
  std::ofstream(dir / "MANIFEST", std::ios::trunc)
      << "format_version: 1 shard_index: 0 time_unix_micros: 1 time: \"x\" tables { name: \"t\" "
         "file: \"t.table\" items: 0 bytes: "
      << bytes.size() << " crc32: " << Crc(0, bytes.data(), bytes.size()) << " }\n";
  (void)engram::replay::LoadCheckpoint(dir.string(), {});
  return 0;
}
