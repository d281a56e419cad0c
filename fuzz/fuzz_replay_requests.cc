// Replay requests from untrusted bytes against one table (a signature, a size limit, so
// that inserts also evict): the first byte picks the message (0 InsertRequest, 1
// SampleRequest, 2 UpdatePrioritiesRequest), the rest is its serialized bytes. Rejected
// requests must change nothing; the table's invariants are checked after each input.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/time/clock.h"
#include "engram/v1/replay.pb.h"
#include "fuzz/fuzz_util.h"
#include "replay_server/table.h"

namespace {

engram::replay::Table& TheTable() {
  static engram::replay::Table* table = [] {
    engram::v1::TableSpec spec;
    spec.set_name("fuzz");
    spec.set_selector(engram::v1::SELECTOR_PRIORITIZED);
    spec.set_priority_exponent(0.6);
    spec.set_remover(engram::v1::REMOVER_FIFO);
    spec.set_max_size(64);
    return engram::replay::Table::Create(spec).value().release();
  }();
  return *table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::SilenceProtobufLogs();
  if (size == 0) return 0;
  engram::replay::Table& table = TheTable();
  const int kind = data[0] % 3;
  ++data;
  --size;
  if (kind == 0) {
    engram::v1::InsertRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    (void)table.Insert(request.mutable_items(), absl::Now());
  } else if (kind == 1) {
    engram::v1::SampleRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    engram::v1::SampleResponse response;
    (void)table.Sample(request.batch_size(),
                       request.has_importance_beta() ? request.importance_beta() : 0.4, absl::Now(),
                       &response);
  } else {
    engram::v1::UpdatePrioritiesRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    (void)table.UpdatePriorities(request);
  }
  return 0;
}
