#include "common/server.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "common/status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/client_interceptor.h"
#include "grpcpp/support/server_interceptor.h"

ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain this process presents (server, or client for mutual TLS). "
          "Empty with --tls_ca empty: plaintext (insecure, the default).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle: clients verify servers with it; servers given one require and "
          "verify client certificates (mutual TLS).");
ABSL_FLAG(std::string, tls_server_name, "",
          "Clients: name expected in the server certificate, if not the target host.");

namespace engram {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " file \"", path, "\""));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (contents.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " file \"", path, "\" is empty"));
  }
  return contents.str();
}

int ToMillis(absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); }

// Counts every finished call by method and status code.
class CallCounter final : public grpc::experimental::Interceptor {
 public:
  CallCounter(std::string method, prometheus::Family<prometheus::Counter>* family)
      : method_(std::move(method)), family_(family) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::StatusCode code = methods->GetSendStatus().error_code();
      // gRPC's codes are absl's, number for number.
      family_
          ->Add({{"method", method_},
                 {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}})
          .Increment();
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  prometheus::Family<prometheus::Counter>* family_;
};

class CallCounterFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallCounterFactory(prometheus::Registry& registry)
      : family_(&AddCounter(registry, "rpc_server_handled_total",
                            "gRPC calls this process served, by method and status code.")) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallCounter(info->method(), family_);
  }

 private:
  prometheus::Family<prometheus::Counter>* family_;
};

// Adds `authorization: Bearer <token>` to every call's initial metadata.
class BearerTokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerTokenInterceptor(&header_);
  }

 private:
  const std::string header_;
};

}  // namespace

TlsOptions TlsOptionsFromFlags() {
  TlsOptions tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.server_name_override = absl::GetFlag(FLAGS_tls_server_name);
  return tls;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "a TLS server needs both --tls_cert and --tls_key (--tls_ca alone is for clients)");
  }
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ENGRAM_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(tls.cert_file, "--tls_cert"));
  ENGRAM_ASSIGN_OR_RETURN(pair.private_key, ReadPem(tls.key_file, "--tls_key"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!tls.ca_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(tls.ca_file, "--tls_ca"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsOptions& tls) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("a client certificate needs both --tls_cert and --tls_key");
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(tls.ca_file, "--tls_ca"));
  }
  if (!tls.cert_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem(tls.cert_file, "--tls_cert"));
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(tls.key_file, "--tls_key"));
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      std::vector<grpc::Service*> services) {
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes must be positive, got ", options.max_message_bytes));
  }
  ENGRAM_ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(options.tls));

  // Both are process-wide switches read when a builder is created; setting them again is
  // harmless.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.address, credentials, &port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(options.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Accept client pings as often as our own clients send them.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ToMillis(options.keepalive_time) / 2);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // gRPC sets SO_REUSEPORT by default, which lets a second process silently share a port
  // already in use; a taken port must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (grpc::Service* service : services) builder.RegisterService(service);
  if (options.registry != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<CallCounterFactory>(*options.registry));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on \"", options.address, "\" (in use or not an address)"));
  }
  return std::unique_ptr<Server>(new Server(std::move(server), port, options.max_message_bytes));
}

Server::Server(std::unique_ptr<grpc::Server> server, int port, int max_message_bytes)
    : server_(std::move(server)), port_(port), max_message_bytes_(max_message_bytes) {
  SetServing(true);
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

std::shared_ptr<grpc::Channel> Server::InProcessChannel() const {
  ChannelOptions options;
  options.max_message_bytes = max_message_bytes_;
  return server_->InProcessChannel(MakeChannelArguments(options));
}

void Server::SetServing(bool serving) {
  if (auto* health = server_->GetHealthCheckService()) health->SetServingStatus(serving);
}

void Server::Shutdown(absl::Duration grace) {
  // grpc::Server::Shutdown is itself thread-safe and idempotent; the flag only skips the
  // health update on the second call.
  if (!shut_down_.exchange(true)) SetServing(false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

grpc::ChannelArguments MakeChannelArguments(const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(options.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(options.keepalive_timeout));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (!options.tls.server_name_override.empty()) {
    args.SetSslTargetNameOverride(options.tls.server_name_override);
  }
  return args;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(const std::string& target,
                                                             const ChannelOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("channel target is empty");
  ENGRAM_ASSIGN_OR_RETURN(auto credentials, MakeChannelCredentials(options.tls));
  if (options.auth_token.empty()) {
    return grpc::CreateCustomChannel(target, credentials, MakeChannelArguments(options));
  }
  // Call credentials would be refused on plaintext channels; an interceptor sends the token
  // on either kind.
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<BearerTokenFactory>(options.auth_token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      target, credentials, MakeChannelArguments(options), std::move(factories));
}

}  // namespace engram
