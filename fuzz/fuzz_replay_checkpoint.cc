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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  engram::fuzz::SilenceProtobufLogs();
  static const fs::path dir =
      fs::temp_directory_path() / absl::StrCat("engram_fuzz_replay_checkpoint_", ::getpid());
  fs::create_directories(dir);
  std::string bytes(reinterpret_cast<const char*>(data), size);
  engram::fuzz::FixRecordChecksums(bytes, /*header=*/12);
  std::ofstream(dir / "t.table", std::ios::binary | std::ios::trunc) << bytes;
  std::ofstream(dir / "MANIFEST", std::ios::trunc)
      << "format_version: 1 shard_index: 0 time_unix_micros: 1 time: \"x\" tables { name: \"t\" "
         "file: \"t.table\" items: 0 bytes: "
      << bytes.size() << " crc32: " << engram::replay::record_io::Crc(0, bytes.data(), bytes.size())
      << " }\n";
  (void)engram::replay::LoadCheckpoint(dir.string(), {});
  return 0;
}
