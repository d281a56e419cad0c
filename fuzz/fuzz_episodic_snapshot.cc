// Episodic memory snapshots from untrusted bytes (a damaged or foreign file in
// --snapshot_dir): Memory::Load must answer DATA_LOSS, never crash or allocate more than
// the bytes justify.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "episodic_store/memory.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::SilenceProtobufLogs();
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  (void)engram::episodic::Memory::Load(in);
  return 0;
}
