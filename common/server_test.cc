#include "common/server.h"

#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

ServerOptions Loopback(int port = 0) {
  ServerOptions options;
  options.address = "127.0.0.1:" + std::to_string(port);
  return options;
}

HealthCheckResponse::ServingStatus Check(const std::shared_ptr<grpc::Channel>& channel,
                                         grpc::Status* status) {
  auto stub = Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  HealthCheckRequest request;
  HealthCheckResponse response;
  *status = stub->Check(&context, request, &response);
  return response.status();
}

TEST(ServerTest, HealthServingOverLoopbackAndInProcess) {
  auto server = Server::Start(Loopback(), {});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  auto channel = CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), {});
  ASSERT_TRUE(channel.ok());
  grpc::Status status;
  EXPECT_EQ(Check(*channel, &status), HealthCheckResponse::SERVING);
  EXPECT_TRUE(status.ok()) << status.error_message();

  EXPECT_EQ(Check((*server)->InProcessChannel(), &status), HealthCheckResponse::SERVING);
  (*server)->SetServing(false);
  EXPECT_EQ(Check((*server)->InProcessChannel(), &status), HealthCheckResponse::NOT_SERVING);
}

TEST(ServerTest, ShutdownRefusesNewCalls) {
  auto server = Server::Start(Loopback(), {});
  ASSERT_TRUE(server.ok());
  auto channel = CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), {}).value();
  grpc::Status status;
  ASSERT_EQ(Check(channel, &status), HealthCheckResponse::SERVING);
  (*server)->Shutdown(absl::Milliseconds(100));
  (*server)->Shutdown(absl::Milliseconds(100));  // idempotent
  Check(channel, &status);
  EXPECT_FALSE(status.ok());
}

TEST(ServerTest, PortInUseIsUnavailable) {
  auto first = Server::Start(Loopback(), {});
  ASSERT_TRUE(first.ok());
  auto second =
      Server::Start(Loopback((*first)->port()), {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ServerTest, BadOptionsAreInvalidArgument) {
  ServerOptions options = Loopback();
  options.max_message_bytes = 0;
  EXPECT_EQ(Server::Start(options, {}).status().code(), absl::StatusCode::kInvalidArgument);

  ServerOptions tls = Loopback();
  tls.tls.cert_file = "/nonexistent/cert.pem";
  auto missing_key = Server::Start(tls, {});
  EXPECT_EQ(missing_key.status().code(), absl::StatusCode::kInvalidArgument);
  tls.tls.key_file = "/nonexistent/key.pem";
  auto unreadable = Server::Start(tls, {});
  EXPECT_EQ(unreadable.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unreadable.status().message(), ::testing::HasSubstr("/nonexistent/cert.pem"));

  EXPECT_EQ(CreateChannel("", {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram
