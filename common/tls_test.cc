// TLS and mutual TLS between real processes' building blocks (Server::Start, CreateChannel)
// over loopback, with certificates the test makes with the openssl tool: a CA, a server
// certificate for localhost / 127.0.0.1, a client certificate from the same CA, and a
// client certificate from another CA. Skipped where openssl is not installed.

#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "common/test_certificates.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

namespace fs = std::filesystem;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One directory per process: ctest runs each test as its own process, in parallel.
    dir_ =
        new fs::path(fs::path(::testing::TempDir()) / absl::StrCat("engram_tls_test_", getpid()));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    have_openssl_ = MakeTestCertificates(dir_->string());
  }

  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!have_openssl_) GTEST_SKIP() << "openssl is not installed (or failed: see openssl.log)";
  }

  static std::string File(const char* name) { return (*dir_ / name).string(); }

  // A server with `tls`, listening on 127.0.0.1.
  std::unique_ptr<Server> StartServer(const TlsOptions& tls) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.tls = tls;
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, {});
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // The health check's status through a channel with `tls`.
  grpc::StatusCode Check(const Server& server, const TlsOptions& tls) {
    ChannelOptions options;
    options.tls = tls;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        CreateChannel(absl::StrCat("localhost:", server.port()), options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    if (!channel.ok()) return grpc::StatusCode::INTERNAL;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = grpc::health::v1::Health::NewStub(*channel)->Check(
        &context, grpc::health::v1::HealthCheckRequest(), &response);
    if (status.ok()) {
      EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    }
    return status.error_code();
  }

  static fs::path* dir_;
  static bool have_openssl_;
};

fs::path* TlsTest::dir_ = nullptr;
bool TlsTest::have_openssl_ = false;

TEST_F(TlsTest, ServerTlsIsVerifiedByClientsAndRefusesPlaintext) {
  std::unique_ptr<Server> server =
      StartServer({.cert_file = File("server.pem"), .key_file = File("server.key")});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Check(*server, {.ca_file = File("ca.pem")}), grpc::StatusCode::OK);
  // Plaintext to a TLS server, and TLS trusting another CA, both fail.
  EXPECT_EQ(Check(*server, {}), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(*server, {.ca_file = File("rogue_ca.pem")}), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificateFromTheCa) {
  std::unique_ptr<Server> server = StartServer(
      {.cert_file = File("server.pem"), .key_file = File("server.key"), .ca_file = File("ca.pem")});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Check(*server, {.cert_file = File("client.pem"),
                            .key_file = File("client.key"),
                            .ca_file = File("ca.pem")}),
            grpc::StatusCode::OK);
  // No client certificate, or one from another CA: refused.
  EXPECT_EQ(Check(*server, {.ca_file = File("ca.pem")}), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(*server, {.cert_file = File("rogue.pem"),
                            .key_file = File("rogue.key"),
                            .ca_file = File("ca.pem")}),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(*server, {}), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MissingFilesAndHalfPairsAreInvalidArgumentNamingTheFile) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateChannel("localhost:1", {.tls = {.ca_file = File("absent.pem")}});
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(channel.status().message().find("absent.pem"), std::string::npos) << channel.status();
  EXPECT_EQ(
      CreateChannel("localhost:1", {.tls = {.cert_file = File("client.pem")}}).status().code(),
      absl::StatusCode::kInvalidArgument);  // a certificate without its key
}

}  // namespace
}  // namespace engram
