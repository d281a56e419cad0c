#ifndef ENGRAM_COMMON_AUTH_H_
#define ENGRAM_COMMON_AUTH_H_

// Bearer-token authorization for the calls that change a cluster: submitting and cancelling
// experiments, and the administrative replay and episodic calls.
//
// A server started with --auth_tokens=FILE reads one token per line:
//
//   # token                            roles (comma-separated)
//   4f0c1e0b9d2a47f3a5e8c1d27b6e9a10   submit
//   9b8e7d6c5b4a39281706f5e4d3c2b1a0   admin,submit
//
// Roles: `submit` (ExperimentService Submit and Cancel), `admin` (replay CreateTable,
// DeleteTable, Checkpoint; episodic DeleteMemory, Snapshot). Clients send their token as
// gRPC metadata `authorization: Bearer <token>` (ChannelOptions::auth_token, or the
// process flag --auth_token_file). A protected call without a known token is
// UNAUTHENTICATED; a known token without the call's role is PERMISSION_DENIED. Either way
// the call changes nothing. Without --auth_tokens every call is allowed (a trusted
// network, the default). Data-plane calls (inserts, samples, lookups, writes, reports,
// weights) are not protected by tokens: use mutual TLS to keep strangers off them.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace engram {

enum class Role { kSubmit, kAdmin };

class Authorizer {
 public:
  // Allows everything.
  Authorizer() = default;

  // Tokens and roles in the format above. INVALID_ARGUMENT names the file and line of a
  // malformed entry (no roles, an unknown role, a token shorter than 16 characters, a
  // duplicate token); NOT_FOUND for a file that cannot be read; INVALID_ARGUMENT for a
  // file with no tokens.
  static absl::StatusOr<std::shared_ptr<const Authorizer>> FromFile(const std::string& path);
  static absl::StatusOr<std::shared_ptr<const Authorizer>> FromText(absl::string_view text,
                                                                    absl::string_view source);

  // OK when tokens are off, or the call carries a token with `role` (admin tokens may do
  // everything); otherwise UNAUTHENTICATED or PERMISSION_DENIED naming `method` and the role.
  grpc::Status Check(const grpc::ServerContext& context, Role role, absl::string_view method) const;

  bool enabled() const { return !tokens_.empty(); }

 private:
  struct Token {
    std::string token;
    bool submit = false;
    bool admin = false;
  };
  std::vector<Token> tokens_;
};

// The process's authorizer from --auth_tokens (allow-all when the flag is empty); exits
// with status 2 on a bad file.
std::shared_ptr<const Authorizer> AuthorizerFromFlags();

// The token from --auth_token_file (first line, whitespace trimmed), or "" when the flag is
// empty; exits with status 2 on an unreadable or empty file.
std::string AuthTokenFromFlags();

}  // namespace engram

#endif  // ENGRAM_COMMON_AUTH_H_
