#include "common/status.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace engram {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const std::string& message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNKNOWN) {
    const std::string lower = absl::AsciiStrToLower(message);
    // gRPC reports some transport failures as UNKNOWN; they are transient, not bugs.
    for (absl::string_view transport_error :
         {"stream removed", "socket closed", "connection reset", "broken pipe", "transport closed",
          "stream terminated by rst_stream"}) {
      if (absl::StrContains(lower, transport_error)) {
        return absl::UnavailableError(message);
      }
    }
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

bool IsTransient(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kResourceExhausted;
}

}  // namespace engram
