// Episodic store requests from untrusted bytes through the service handlers, against an
// exact and an approximate (inverted file, trained after 16 keys) memory: the first byte
// picks the message (0 WriteRequest, 1 LookupRequest, 2 CreateMemoryRequest), the rest is
// its serialized bytes.
#include <cstddef>
#include <cstdint>

#include "engram/v1/episodic.pb.h"
#include "episodic_store/service.h"
#include "fuzz/fuzz_util.h"
#include "grpcpp/server_context.h"

namespace {

engram::episodic::EpisodicStoreServiceImpl& TheService() {
  static engram::episodic::EpisodicStoreServiceImpl* service = [] {
    engram::episodic::EpisodicStoreServiceImpl::Options options;
    options.max_batch = 256;
    options.max_memory_bytes = 4 << 20;
    options.index.ivf.train_at = 16;
    options.index.ivf.list_size = 4;
    auto* s = new engram::episodic::EpisodicStoreServiceImpl(options);
    for (auto [name, index] : {std::pair{"exact", engram::v1::INDEX_KIND_EXACT},
                               std::pair{"approx", engram::v1::INDEX_KIND_APPROXIMATE}}) {
      engram::v1::MemorySpec spec;
      spec.set_name(name);
      spec.set_key_dim(4);
      spec.set_num_actions(3);
      spec.set_capacity_per_action(64);
      spec.set_update_rule(engram::v1::UPDATE_RULE_MFEC_MAX);
      spec.set_kernel(engram::v1::KERNEL_MEAN);
      spec.set_index(index);
      (void)s->CreateMemoryFromSpec(spec);
    }
    return s;
  }();
  return *service;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::SilenceProtobufLogs();
  if (size == 0) return 0;
  engram::episodic::EpisodicStoreServiceImpl& service = TheService();
  const int kind = data[0] % 3;
  ++data;
  --size;
  grpc::ServerContext context;
  if (kind == 0) {
    engram::v1::WriteRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    engram::v1::WriteResponse response;
    (void)service.Write(&context, &request, &response);
  } else if (kind == 1) {
    engram::v1::LookupRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    engram::v1::LookupResponse response;
    (void)service.Lookup(&context, &request, &response);
  } else {
    engram::v1::CreateMemoryRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    engram::v1::CreateMemoryResponse response;
    (void)service.CreateMemory(&context, &request, &response);
  }
  return 0;
}
