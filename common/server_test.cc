#include "common/server.h"

#include <map>

#include "common/metrics.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/text_format.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
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

// Every finished call is counted by method and status code when a registry is given.
TEST(ServerTest, CountsCallsByMethodAndCode) {
  std::unique_ptr<Metrics> metrics = Metrics::CreateUnexposed("test");
  ServerOptions options = Loopback();
  options.registry = &metrics->registry();
  auto server = Server::Start(options, {});
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::Status status;
  EXPECT_EQ(Check((*server)->InProcessChannel(), &status), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check((*server)->InProcessChannel(), &status), HealthCheckResponse::SERVING);
  {
    auto stub = Health::NewStub((*server)->InProcessChannel());
    grpc::ClientContext context;
    HealthCheckRequest request;
    request.set_service("no.such.Service");
    HealthCheckResponse response;
    EXPECT_EQ(stub->Check(&context, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  std::map<std::string, double> counts;  // code -> calls of Health/Check
  for (const prometheus::MetricFamily& family : metrics->registry().Collect()) {
    if (family.name != "engram_rpc_server_handled_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& label : metric.label) labels[label.name] = label.value;
      if (labels["method"] == "/grpc.health.v1.Health/Check") {
        counts[labels["code"]] += metric.counter.value;
      }
    }
  }
  EXPECT_EQ(counts["OK"], 2);
  EXPECT_EQ(counts["NOT_FOUND"], 1);
  (*server)->Shutdown(absl::Seconds(1));
}

// Asks the server's reflection service to list its services, as grpcurl does. The
// reflection messages are compiled into libgrpc++_reflection (no headers are shipped), so
// the request is encoded by hand and the response decoded through the descriptor pool.
std::string ListServicesByReflection(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  auto wait = [&] { return cq.Next(&tag, &ok) && ok; };
  call->StartCall(reinterpret_cast<void*>(1));
  if (!wait()) return "start failed";
  // ServerReflectionRequest { list_services: "*" } -- field 7, length-delimited.
  const std::string request("\x3a\x01*", 3);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  if (!wait()) return "write failed";
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  if (!wait()) return "read failed";
  call->WritesDone(reinterpret_cast<void*>(4));
  wait();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  wait();
  std::vector<grpc::Slice> slices;
  if (!in.Dump(&slices).ok()) return "dump failed";
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  const auto* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
          "grpc.reflection.v1alpha.ServerReflectionResponse");
  if (descriptor == nullptr) return "no descriptor";
  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> response(factory.GetPrototype(descriptor)->New());
  if (!response->ParseFromString(bytes)) return "unparsable";
  std::string text;
  google::protobuf::TextFormat::PrintToString(*response, &text);
  return text;
}

TEST(ServerTest, ReflectionListsTheServices) {
  auto server = Server::Start(Loopback(), {});
  ASSERT_TRUE(server.ok());
  auto channel = CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), {}).value();
  const std::string services = ListServicesByReflection(channel);
  EXPECT_THAT(services, ::testing::HasSubstr("grpc.health.v1.Health"));
  EXPECT_THAT(services, ::testing::HasSubstr("grpc.reflection.v1alpha.ServerReflection"));
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
  auto second = Server::Start(Loopback((*first)->port()), {});
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
