#include "common/auth.h"

#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/process.h"

ABSL_FLAG(std::string, auth_tokens, "",
          "Servers: file of bearer tokens and their roles (`<token> submit|admin[,...]` per "
          "line). Set, experiment submission and cancellation need a `submit` token and "
          "administrative replay/episodic calls an `admin` one. Empty: no tokens (trusted "
          "network).");
ABSL_FLAG(std::string, auth_token_file, "",
          "Clients: file whose first line is the bearer token this process sends.");

namespace engram {
namespace {

constexpr size_t kMinTokenLength = 16;

// Constant-time comparison of equal-length strings (no early exit on the first mismatch).
bool SameToken(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

const char* RoleName(Role role) { return role == Role::kAdmin ? "admin" : "submit"; }

}  // namespace

absl::StatusOr<std::shared_ptr<const Authorizer>> Authorizer::FromText(absl::string_view text,
                                                                       absl::string_view source) {
  auto authorizer = std::make_shared<Authorizer>();
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    auto where = [&] { return absl::StrCat(source, ":", line_number, ": "); };
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          where(), "expected `<token> <role>[,<role>]`, got ", fields.size(), " field(s)"));
    }
    Token token;
    token.token = std::string(fields[0]);
    if (token.token.size() < kMinTokenLength) {
      return absl::InvalidArgumentError(absl::StrCat(where(), "token too short (",
                                                     token.token.size(), " characters; at least ",
                                                     kMinTokenLength, ")"));
    }
    for (absl::string_view role : absl::StrSplit(fields[1], ',')) {
      if (role == "submit") {
        token.submit = true;
      } else if (role == "admin") {
        token.admin = true;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), "unknown role \"", role, "\" (roles: submit, admin)"));
      }
    }
    for (const Token& other : authorizer->tokens_) {
      if (other.token == token.token) {
        return absl::InvalidArgumentError(absl::StrCat(where(), "duplicate token"));
      }
    }
    authorizer->tokens_.push_back(std::move(token));
  }
  if (authorizer->tokens_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no tokens"));
  }
  return std::shared_ptr<const Authorizer>(std::move(authorizer));
}

absl::StatusOr<std::shared_ptr<const Authorizer>> Authorizer::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read token file \"", path, "\""));
  std::stringstream text;
  text << in.rdbuf();
  return FromText(text.str(), path);
}

grpc::Status Authorizer::Check(const grpc::ServerContext& context, Role role,
                               absl::string_view method) const {
  if (tokens_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat(method, " needs a bearer token with role ", RoleName(role),
                                     " (metadata authorization: Bearer <token>)"));
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat(method, ": authorization metadata is not `Bearer <token>`"));
  }
  const Token* found = nullptr;
  for (const Token& token : tokens_) {
    if (SameToken(token.token, value)) found = &token;
  }
  if (found == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat(method, ": unknown bearer token"));
  }
  if (role == Role::kAdmin ? !found->admin : !(found->submit || found->admin)) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("the token lacks role ", RoleName(role), " for ", method));
  }
  return grpc::Status::OK;
}

std::shared_ptr<const Authorizer> AuthorizerFromFlags() {
  const std::string path = absl::GetFlag(FLAGS_auth_tokens);
  if (path.empty()) return std::make_shared<const Authorizer>();
  absl::StatusOr<std::shared_ptr<const Authorizer>> authorizer = Authorizer::FromFile(path);
  if (!authorizer.ok()) Exit(2, absl::StrCat("--auth_tokens: ", authorizer.status().message()));
  return *std::move(authorizer);
}

std::string AuthTokenFromFlags() {
  const std::string path = absl::GetFlag(FLAGS_auth_token_file);
  if (path.empty()) return "";
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) {
    Exit(2, absl::StrCat("--auth_token_file: cannot read a token from \"", path, "\""));
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) Exit(2, absl::StrCat("--auth_token_file: \"", path, "\" starts empty"));
  return token;
}

}  // namespace engram
