// Starts the real engram_replay_server binary: listening line, health, insert, SIGTERM with
// a final checkpoint and exit 0, restart from that checkpoint, and exit 2 for bad flags.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/server.h"
#include "common/subprocess.h"
#include "common/test_certificates.h"
#include "engram/v1/replay.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kListening[] = "engram_replay_server listening on ";

class ReplayServerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "replay_process_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    experiment_ = (dir_ / "experiment.textproto").string();
    std::ofstream(experiment_) << R"pb(
      id: "process-test"
      replay { tables { name: "replay" selector: SELECTOR_UNIFORM max_size: 1000 } }
    )pb";
  }

  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // The server with `args`; nullptr when it cannot be started.
  std::unique_ptr<Subprocess> Start(std::vector<std::string> args) {
    args.insert(args.begin(), ENGRAM_REPLAY_SERVER_BIN);
    auto child = Subprocess::Start(args, (dir_ / absl::StrCat("stderr", ++children_)).string());
    return child.ok() ? std::move(*child) : nullptr;
  }

  std::vector<std::string> ServerArgs() const {
    return {"--address=127.0.0.1:0", "--experiment=" + experiment_,
            "--checkpoint_dir=" + (dir_ / "ckpt").string(), "--metrics_port=-1"};
  }

  fs::path dir_;
  std::string experiment_;
  int children_ = 0;
};

v1::Item Item(uint64_t key) {
  v1::Item item;
  item.set_key(key);
  item.set_priority(1.0);
  v1::Transition* t = item.mutable_transition();
  for (v1::Tensor* obs : {t->mutable_observation(), t->mutable_next_observation()}) {
    obs->set_dtype(v1::DTYPE_UINT8);
    obs->add_shape(4);
    obs->set_data(std::string(4, static_cast<char>(key)));
  }
  t->set_discount(1.0f);
  return item;
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
}

int64_t TableSize(v1::ReplayService::Stub& stub) {
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ReplayInfoRequest request;
  request.add_tables("replay");
  v1::ReplayInfoResponse response;
  grpc::Status status = stub.Info(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.tables_size() == 1 ? response.tables(0).size() : -1;
}

TEST_F(ReplayServerProcessTest, ServesDrainsOnSigtermCheckpointsAndRestores) {
  auto server = Start(ServerArgs());
  ASSERT_TRUE(server != nullptr);
  std::string address = server->WaitForLine(kListening, absl::Seconds(20)).value_or("");
  ASSERT_THAT(address, ::testing::StartsWith("127.0.0.1:")) << server->ReadStderr();
  ASSERT_NE(address, "127.0.0.1:0");

  auto channel = CreateChannel(address, {});
  ASSERT_TRUE(channel.ok());
  {
    auto health = grpc::health::v1::Health::NewStub(*channel);
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, {}, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  auto stub = v1::ReplayService::NewStub(*channel);
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub->Insert(&context);
    v1::InsertRequest request;
    request.set_table("replay");
    for (uint64_t key = 1; key <= 10; ++key) *request.add_items() = Item(key);
    ASSERT_TRUE(stream->Write(request));
    v1::InsertResponse ack;
    ASSERT_TRUE(stream->Read(&ack));
    EXPECT_EQ(ack.keys_size(), 10);
    stream->WritesDone();
    ASSERT_TRUE(stream->Finish().ok());
  }
  EXPECT_EQ(TableSize(*stub), 10);

  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(absl::Seconds(10)).value_or(-1), 0) << server->ReadStderr();
  EXPECT_THAT(server->ReadStderr(), HasSubstr("final checkpoint written"));
  int checkpoints = 0;
  for (const auto& entry : fs::directory_iterator(dir_ / "ckpt")) {
    if (absl::StartsWith(entry.path().filename().string(), "ckpt-")) ++checkpoints;
  }
  EXPECT_EQ(checkpoints, 1);

  // Same flags again: the items come back from the checkpoint.
  auto restarted = Start(ServerArgs());
  address = restarted->WaitForLine(kListening, absl::Seconds(20)).value_or("");
  ASSERT_FALSE(address.empty()) << restarted->ReadStderr();
  channel = CreateChannel(address, {});
  ASSERT_TRUE(channel.ok());
  stub = v1::ReplayService::NewStub(*channel);
  EXPECT_EQ(TableSize(*stub), 10) << restarted->ReadStderr();
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub->Sample(&context);
    v1::SampleRequest request;
    request.set_table("replay");
    request.set_batch_size(1);
    request.set_credits(1);
    ASSERT_TRUE(stream->Write(request));
    v1::SampleResponse batch;
    ASSERT_TRUE(stream->Read(&batch));
    ASSERT_EQ(batch.items_size(), 1);
    const uint64_t key = batch.items(0).item().key();
    EXPECT_GE(key, 1u);
    EXPECT_LE(key, 10u);
    EXPECT_EQ(batch.items(0).item().transition().observation().data(),
              std::string(4, static_cast<char>(key)));
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  restarted->Signal(SIGTERM);
  EXPECT_EQ(restarted->Wait(absl::Seconds(10)).value_or(-1), 0) << restarted->ReadStderr();
}

TEST_F(ReplayServerProcessTest, BadFlagsExitTwoNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::string bad_syntax = Write("bad.textproto", "replay {\n  tables { nme: 1 }\n}\n");
  const std::string bad_spec =
      Write("bad_spec.textproto", "replay { tables { name: \"t\" selector: SELECTOR_UNIFORM } }");
  const std::vector<Case> cases = {
      {{"--shard_index=-1"}, "--shard_index"},
      {{"--experiment=" + (dir_ / "missing.textproto").string()}, "--experiment"},
      {{"--experiment=" + bad_syntax}, "bad.textproto:2:"},
      {{"--experiment=" + bad_spec}, "spec.max_size"},
      {{"--max_insert_batch=0"}, "--max_insert_batch"},
      {{"--checkpoint_every=1m"}, "--checkpoint_dir"},
      {{"--no_such_flag=1"}, "--no_such_flag"},
      {{"--shard_index=abc"}, "--shard_index"},
      {{"--address=nonsense"}, "--address"},
      {{"--auth_tokens=" + (dir_ / "missing_tokens").string()}, "--auth_tokens: cannot read"},
      {{"--auth_tokens=" + Write("bad_tokens", "short admin\n")}, "bad_tokens:1: token too short"},
      {{"--durability=sometimes"}, "--durability: expected none, checkpoint or log"},
      {{"--durability=log"}, "--durability=log: needs --checkpoint_dir"},
      {{"--durability=checkpoint", "--checkpoint_dir=" + (dir_ / "c").string()},
       "--durability=checkpoint: needs --checkpoint_every"},
      {{"--wal_checkpoint_bytes=1000"}, "--wal_checkpoint_bytes"},
      {{"--max_requests_per_second_per_client=-1"}, "--max_requests_per_second_per_client"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--address=127.0.0.1:0", "--metrics_port=-1"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto child = Start(args);
    ASSERT_TRUE(child != nullptr);
    EXPECT_EQ(child->Wait(absl::Seconds(10)).value_or(-1), 2)
        << c.args[0] << ": " << child->ReadStderr();
    EXPECT_THAT(child->ReadStderr(), HasSubstr(c.expected)) << c.args[0];
  }
}

// In log mode a checkpoint is also written when the log has grown by
// --wal_checkpoint_bytes, which deletes the log segments it holds.
TEST_F(ReplayServerProcessTest, ALogThatGrowsPastItsLimitIsCheckpointedAndTrimmed) {
  std::vector<std::string> args = ServerArgs();
  args.push_back("--durability=log");
  args.push_back("--checkpoint_every=1h");
  args.push_back("--wal_checkpoint_bytes=1048576");
  auto server = Start(args);
  ASSERT_TRUE(server != nullptr);
  const std::string address = server->WaitForLine(kListening, absl::Seconds(20)).value_or("");
  ASSERT_FALSE(address.empty()) << server->ReadStderr();
  auto channel = CreateChannel(address, {});
  ASSERT_TRUE(channel.ok());
  auto stub = v1::ReplayService::NewStub(*channel);
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub->Insert(&context);
    // 300 items of ~40 KB observations: about 24 MB of log.
    for (uint64_t key = 1; key <= 300; ++key) {
      v1::InsertRequest request;
      request.set_table("replay");
      v1::Item item = Item(key);
      item.mutable_transition()->mutable_observation()->set_data(std::string(40000, 'x'));
      item.mutable_transition()->mutable_observation()->mutable_shape()->Set(0, 40000);
      item.mutable_transition()->mutable_next_observation()->set_data(std::string(40000, 'y'));
      item.mutable_transition()->mutable_next_observation()->mutable_shape()->Set(0, 40000);
      *request.add_items() = std::move(item);
      ASSERT_TRUE(stream->Write(request));
      v1::InsertResponse ack;
      ASSERT_TRUE(stream->Read(&ack));
    }
    stream->WritesDone();
    ASSERT_TRUE(stream->Finish().ok());
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (absl::Now() < give_up &&
         server->ReadStderr().find("the log reached 1048576 bytes") == std::string::npos) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(server->ReadStderr(),
              HasSubstr("checkpoint written (the log reached 1048576 bytes)"));
  // The segments the checkpoint holds are gone: what is left is less than the whole log.
  int64_t log_bytes = 0;
  for (const auto& entry : fs::directory_iterator(dir_ / "ckpt" / "wal-shard0")) {
    log_bytes += static_cast<int64_t>(entry.file_size());
  }
  EXPECT_LT(log_bytes, 20'000'000);
  server->Signal(SIGKILL);
  (void)server->Wait(absl::Seconds(10));
  // Everything comes back from the checkpoint and the rest of the log (replayed also by a
  // server no longer in log mode, which then checkpoints and sets the log aside).
  auto restarted = Start(ServerArgs());
  const std::string again = restarted->WaitForLine(kListening, absl::Seconds(20)).value_or("");
  ASSERT_FALSE(again.empty()) << restarted->ReadStderr();
  EXPECT_THAT(restarted->ReadStderr(), HasSubstr("replayed"));
  channel = CreateChannel(std::string(absl::StripAsciiWhitespace(again)), {});
  ASSERT_TRUE(channel.ok());
  stub = v1::ReplayService::NewStub(*channel);
  EXPECT_EQ(TableSize(*stub), 300) << restarted->ReadStderr();
  restarted->Signal(SIGTERM);
  EXPECT_EQ(restarted->Wait(absl::Seconds(20)).value_or(-1), 0) << restarted->ReadStderr();
}

// The process's --tls_* flags (mutual TLS) and --auth_tokens together: a client with a
// certificate from the CA and the admin token creates a table; one without a certificate
// cannot connect; one without the token is UNAUTHENTICATED and creates nothing.
TEST_F(ReplayServerProcessTest, MutualTlsAndTokensByFlags) {
  if (!MakeTestCertificates(dir_.string())) GTEST_SKIP() << "openssl is not installed";
  auto file = [&](const char* name) { return (dir_ / name).string(); };
  const std::string tokens = Write("tokens", "admin-token-0123456789 admin\n");
  std::vector<std::string> args = ServerArgs();
  args.push_back("--tls_cert=" + file("server.pem"));
  args.push_back("--tls_key=" + file("server.key"));
  args.push_back("--tls_ca=" + file("ca.pem"));
  args.push_back("--auth_tokens=" + tokens);
  auto server = Start(args);
  ASSERT_NE(server, nullptr);
  std::string address = server->WaitForLine(kListening, absl::Seconds(20)).value_or("");
  ASSERT_FALSE(address.empty());
  address = absl::StrCat("localhost", address.substr(address.rfind(':')));
  address = std::string(absl::StripAsciiWhitespace(address));
  auto create = [&](const TlsOptions& tls, const std::string& token) {
    ChannelOptions options;
    options.tls = tls;
    options.auth_token = token;
    auto stub = v1::ReplayService::NewStub(*CreateChannel(address, options));
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::CreateTableRequest request;
    request.mutable_spec()->set_name("extra");
    request.mutable_spec()->set_selector(v1::SELECTOR_UNIFORM);
    request.mutable_spec()->set_max_size(10);
    v1::CreateTableResponse response;
    return stub->CreateTable(&context, request, &response).error_code();
  };
  const TlsOptions client{
      .cert_file = file("client.pem"), .key_file = file("client.key"), .ca_file = file("ca.pem")};
  EXPECT_EQ(create({}, "admin-token-0123456789"), grpc::StatusCode::UNAVAILABLE);  // plaintext
  EXPECT_EQ(create({.ca_file = file("ca.pem")}, "admin-token-0123456789"),
            grpc::StatusCode::UNAVAILABLE);  // no client certificate
  EXPECT_EQ(create(client, ""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(create(client, "admin-token-0123456789"), grpc::StatusCode::OK);
  server->Signal(SIGTERM);
  absl::StatusOr<int> code = server->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace engram
