#ifndef ENGRAM_COMMON_SERVER_H_
#define ENGRAM_COMMON_SERVER_H_

// The one way every Engram process serves gRPC and opens channels.
//
// Every server gets: the grpc.health.v1 health service (overall status, service ""),
// server reflection, keepalive, message size limits, and
// credentials from MakeServerCredentials(). Channels get the matching client settings.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/support/channel_arguments.h"
#include "prometheus/registry.h"

namespace engram {

// Transport security. All paths empty = insecure (the default: a trusted network).
// With cert_file + key_file the server speaks TLS; with ca_file too it also verifies
// client certificates (mutual TLS). Clients: ca_file verifies the server; cert_file +
// key_file present a client certificate.
struct TlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  // Name to verify in the server's certificate instead of the target's host name.
  std::string server_name_override;

  bool enabled() const { return !cert_file.empty() || !ca_file.empty(); }
};

// TlsOptions from the process flags --tls_cert, --tls_key, --tls_ca, --tls_server_name.
TlsOptions TlsOptionsFromFlags();

// The single place credentials are built. INVALID_ARGUMENT names a file that cannot be
// read or an incomplete combination (a cert without its key).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& tls);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsOptions& tls);

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (read it back with Server::port()).
  std::string address = "0.0.0.0:0";
  // Largest message accepted or sent, bytes.
  int max_message_bytes = 64 << 20;
  // Server-side keepalive pings on idle connections, and how long to wait for the ack.
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  TlsOptions tls;
  // When set (not owned; must outlive the server), every finished call is counted in
  // engram_rpc_server_handled_total{method="/pkg.Service/Method",code="OK"|"NOT_FOUND"|...}.
  prometheus::Registry* registry = nullptr;
};

// A running gRPC server. Start() returns once it listens; destruction shuts it down.
//
// Thread-safe: SetServing() and Shutdown() may be called from any thread.
class Server {
 public:
  // Registers `services` (not owned; they must outlive the Server) and starts listening.
  // UNAVAILABLE when the address cannot be bound, INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                       std::vector<grpc::Service*> services);
  ~Server();

  // The bound port.
  int port() const { return port_; }

  // A channel to this server inside the process (no network), for tests and co-located
  // clients.
  std::shared_ptr<grpc::Channel> InProcessChannel() const;

  // Health status reported for service "" (SERVING after Start()).
  void SetServing(bool serving);

  // Drains: health goes NOT_SERVING, new calls are refused, in-flight calls get until
  // `grace` to finish and are then cancelled. Idempotent; blocks until done.
  void Shutdown(absl::Duration grace);

  grpc::Server* grpc_server() { return server_.get(); }

 private:
  Server(std::unique_ptr<grpc::Server> server, int port, int max_message_bytes);

  std::unique_ptr<grpc::Server> server_;
  int port_;
  int max_message_bytes_;
  std::atomic<bool> shut_down_{false};
};

struct ChannelOptions {
  int max_message_bytes = 64 << 20;
  // Sent with every call as `authorization: Bearer <token>` (common/auth.h); empty: none.
  std::string auth_token;
  // Client keepalive pings so dead peers are noticed on long-lived streams.
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  TlsOptions tls;
};

// Channel arguments matching ChannelOptions (also used for in-process channels).
grpc::ChannelArguments MakeChannelArguments(const ChannelOptions& options);

// A channel to `target` ("host:port", or any gRPC target URI such as "dns:///svc:port").
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(const std::string& target,
                                                             const ChannelOptions& options);

}  // namespace engram

#endif  // ENGRAM_COMMON_SERVER_H_
