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

namespace {

namespace fs = std::filesystem;
using engram::replay::record_io::Crc;
using engram::replay::record_io::GetU32;
using engram::replay::record_io::PutU32;
using engram::replay::record_io::PutU64;

constexpr size_t kHeader = 20;  // magic, version, segment number

void FixUp(std::string& bytes) {
  if (bytes.size() >= kHeader) PutU64(&bytes[12], 0);
  size_t offset = kHeader;
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
      fs::temp_directory_path() / absl::StrCat("engram_fuzz_replay_wal_", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string bytes(reinterpret_cast<const char*>(data), size);
  FixUp(bytes);
  std::ofstream(dir / "wal-00000000000000000000.log", std::ios::binary) << bytes;
  engram::replay::ReplayServiceImpl service({});
  (void)engram::replay::ReplayWal(
      dir.string(), 0, [&service](engram::replay::WalRecord type, absl::string_view payload) {
        return service.ApplyLogRecord(type, payload);
      });
  return 0;
}
