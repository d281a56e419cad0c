// Replay write-ahead logs from untrusted bytes (a damaged segment): the input is written as
// segment 0 (its header's segment number and every record's checksum fixed up, so that
// mutations reach the records) and replayed into a fresh replay service, as a restarting
// shard does. ReplayWal and ReplayServiceImpl::ApplyLogRecord must answer an error (or cut
// a torn tail), never crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_util.h"
#include "replay_server/record_io.h"
#include "replay_server/service.h"
#include "replay_server/wal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  engram::fuzz::SilenceProtobufLogs();
  static const fs::path dir =
      fs::temp_directory_path() / absl::StrCat("engram_fuzz_replay_wal_", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string bytes(reinterpret_cast<const char*>(data), size);
  // The header's segment number (after magic and version) must say 0, like the file name.
  if (bytes.size() >= 20) engram::replay::record_io::PutU64(&bytes[12], 0);
  engram::fuzz::FixRecordChecksums(bytes, /*header=*/20);
  std::ofstream(dir / "wal-00000000000000000000.log", std::ios::binary) << bytes;
  engram::replay::ReplayServiceImpl service({});
  (void)engram::replay::ReplayWal(
      dir.string(), 0, [&service](engram::replay::WalRecord type, absl::string_view payload) {
        return service.ApplyLogRecord(type, payload);
      });
  return 0;
}
