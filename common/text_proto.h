#ifndef ENGRAM_COMMON_TEXT_PROTO_H_
#define ENGRAM_COMMON_TEXT_PROTO_H_

// Text-format protobuf (.textproto) input with errors a user can act on: the position of
// the first problem and the message type that was expected.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace engram {

// Parses text-format `text` into `message`, replacing its contents. INVALID_ARGUMENT
// "<line>:<column>: <parser message> (expected a text-format <full type name>)", with
// 1-based line and column of the first error only (e.g. `2:11: Message type
// "engram.v1.ApexDqnConfig" has no field named "n_stpe". (expected a text-format
// engram.v1.ExperimentSpec)`). On error `message` holds what was parsed up to the error.
// Thread-safe for distinct messages.
absl::Status ParseTextProto(absl::string_view text, google::protobuf::Message* message);

// Reads the file at `path` and parses it as ParseTextProto does. When the file cannot be
// read: the code errno maps to (NOT_FOUND, PERMISSION_DENIED, ...) with the message
// `cannot read "<path>": <strerror>`. Parse errors are INVALID_ARGUMENT prefixed with the
// path: "<path>:<line>:<column>: ...". Blocks on file I/O; thread-safe for distinct
// messages.
absl::Status ReadTextProtoFile(const std::string& path, google::protobuf::Message* message);

}  // namespace engram

#endif  // ENGRAM_COMMON_TEXT_PROTO_H_
