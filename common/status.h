#ifndef ENGRAM_COMMON_STATUS_H_
#define ENGRAM_COMMON_STATUS_H_

// One mapping between absl::Status and grpc::Status (propagation macros: status_macros.h).
//
// Codes map one to one (absl and gRPC share the canonical numbering); messages are kept.
// A gRPC UNKNOWN that really means a broken transport ("Stream removed", "Socket closed",
// ...) becomes UNAVAILABLE, so callers retry it like any other transient failure.

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "grpcpp/support/status.h"

namespace engram {

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

// True for codes a client should retry with backoff (UNAVAILABLE, and RESOURCE_EXHAUSTED
// from overload or rate limits).
bool IsTransient(const absl::Status& status);

}  // namespace engram

#endif  // ENGRAM_COMMON_STATUS_H_
