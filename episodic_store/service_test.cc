#include "episodic_store/service.h"

#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "common/server.h"
#include "episodic_store/client.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"

namespace engram::episodic {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::MemorySpec Spec(const std::string& name = "mfec") {
  v1::MemorySpec spec;
  spec.set_name(name);
  spec.set_key_dim(2);
  spec.set_num_actions(2);
  spec.set_capacity_per_action(10);
  spec.set_update_rule(v1::UPDATE_RULE_MFEC_MAX);
  spec.set_kernel(v1::KERNEL_MEAN);
  spec.set_index(v1::INDEX_KIND_EXACT);
  spec.set_default_k(2);
  return spec;
}

v1::Tensor Keys(std::vector<float> values, int64_t rows, int64_t dim) {
  v1::Tensor tensor;
  tensor.set_dtype(v1::DTYPE_FLOAT32);
  tensor.add_shape(rows);
  tensor.add_shape(dim);
  tensor.set_data(values.data(), values.size() * sizeof(float));
  return tensor;
}

class EpisodicServiceTest : public ::testing::Test {
 protected:
  void Start(EpisodicStoreServiceImpl::Options options = {}) {
    service_ = std::make_unique<EpisodicStoreServiceImpl>(options);
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start({}, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::EpisodicStore::NewStub(server_->InProcessChannel());
  }

  std::vector<int64_t> Sizes(const std::string& name) {
    grpc::ClientContext context;
    v1::MemoryInfoRequest request;
    request.add_memories(name);
    v1::MemoryInfoResponse response;
    EXPECT_TRUE(stub_->Info(&context, request, &response).ok());
    if (response.memories_size() != 1) return {};
    return {response.memories(0).sizes().begin(), response.memories(0).sizes().end()};
  }

  grpc::Status Write(const v1::WriteRequest& request) {
    grpc::ClientContext context;
    v1::WriteResponse response;
    return stub_->Write(&context, request, &response);
  }

  std::unique_ptr<EpisodicStoreServiceImpl> service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::EpisodicStore::Stub> stub_;
};

TEST_F(EpisodicServiceTest, ClientWritesAndLooksUpThroughTheService) {
  Start();
  absl::StatusOr<std::unique_ptr<EpisodicClient>> client =
      EpisodicClient::Connect(server_->InProcessChannel(), {.spec = Spec(), .write_batch = 3});
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<float> a = {0, 0}, b = {1, 0}, c = {0, 4};
  ASSERT_TRUE((*client)->Write(a.data(), 0, 1).ok());
  ASSERT_TRUE((*client)->Write(b.data(), 0, 3).ok());
  EXPECT_EQ((*client)->buffered(), 2);
  EXPECT_THAT(Sizes("mfec"), ElementsAre(0, 0));        // still buffered
  ASSERT_TRUE((*client)->Write(c.data(), 1, 10).ok());  // the third sends the batch
  EXPECT_EQ((*client)->buffered(), 0);
  EXPECT_THAT(Sizes("mfec"), ElementsAre(2, 1));
  const std::vector<float> queries = {0, 0, 0.5f, 0};
  absl::StatusOr<ActionValues> values = (*client)->LookupAll(queries.data(), 2);
  ASSERT_TRUE(values.ok()) << values.status();
  ASSERT_EQ(values->num_actions, 2);
  EXPECT_FLOAT_EQ(values->estimates[0 * 2 + 0], 1);   // exact match of {0,0}: its value
  EXPECT_FLOAT_EQ(values->estimates[0 * 2 + 1], 10);  // one key in action 1
  EXPECT_FLOAT_EQ(values->estimates[1 * 2 + 0], 2);   // mean of 1 and 3 (k = 2)
  EXPECT_EQ(values->counts[1 * 2 + 1], 1);
  // Connecting again with the same spec reuses the memory; another spec is refused.
  EXPECT_TRUE(EpisodicClient::Connect(server_->InProcessChannel(), {.spec = Spec()}).ok());
  v1::MemorySpec other = Spec();
  other.set_key_dim(3);
  EXPECT_TRUE(absl::IsAlreadyExists(
      EpisodicClient::Connect(server_->InProcessChannel(), {.spec = other}).status()));
}

// A store that goes away must not stall the actor: calls fail at once while it is down,
// writes are dropped and counted, and once it is back (empty: no snapshot) the client
// creates its memory again and carries on.
TEST_F(EpisodicServiceTest, ClientFailsFastWhileTheStoreIsDownAndRecreatesALostMemory) {
  auto service = std::make_unique<EpisodicStoreServiceImpl>(EpisodicStoreServiceImpl::Options{});
  ServerOptions options;
  options.address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, {service.get()});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  grpc::ChannelArguments args = MakeChannelArguments(ChannelOptions());
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                           grpc::InsecureChannelCredentials(), args);
  absl::StatusOr<std::unique_ptr<EpisodicClient>> client =
      EpisodicClient::Connect(channel, {.spec = Spec(),
                                        .write_batch = 1,
                                        .timeout = absl::Milliseconds(500),
                                        .initial_backoff = absl::Milliseconds(10),
                                        .max_backoff = absl::Milliseconds(50),
                                        .probe_timeout = absl::Milliseconds(200),
                                        .max_unreachable_backoff = absl::Seconds(1)});
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<float> key = {1, 2};
  ASSERT_TRUE((*client)->Write(key.data(), 0, 5).ok());

  (*server)->Shutdown(absl::ZeroDuration());
  server->reset();
  service.reset();
  absl::StatusOr<ActionValues> values = (*client)->LookupAll(key.data(), 1);
  EXPECT_EQ(values.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE((*client)->unreachable());
  // Now without trying: at once, naming why.
  const absl::Time start = absl::Now();
  values = (*client)->LookupAll(key.data(), 1);
  EXPECT_EQ(values.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(values.status().message(), HasSubstr("episodic store unreachable"));
  EXPECT_EQ((*client)->Write(key.data(), 1, 7).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->dropped_writes(), 1);
  EXPECT_EQ((*client)->buffered(), 0);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));

  // Back, empty, on the same port.
  service = std::make_unique<EpisodicStoreServiceImpl>(EpisodicStoreServiceImpl::Options{});
  options.address = absl::StrCat("127.0.0.1:", port);
  server = Server::Start(options, {service.get()});
  ASSERT_TRUE(server.ok()) << server.status();
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!(values = (*client)->LookupAll(key.data(), 1)).ok() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_FALSE((*client)->unreachable());
  EXPECT_EQ((*client)->recreated(), 1);
  EXPECT_EQ(values->counts[0], 0);  // the new store is empty
  ASSERT_TRUE((*client)->Write(key.data(), 0, 9).ok());
  values = (*client)->LookupAll(key.data(), 1);
  ASSERT_TRUE(values.ok());
  EXPECT_FLOAT_EQ(values->estimates[0], 9);
  (*server)->Shutdown(absl::ZeroDuration());
}

TEST_F(EpisodicServiceTest, BadInputIsRejectedNamingTheFieldAndChangesNothing) {
  Start({.max_batch = 4, .max_memory_bytes = 1 << 20});
  ASSERT_TRUE(service_->CreateMemoryFromSpec(Spec()).ok());
  {
    grpc::ClientContext context;
    v1::CreateMemoryRequest request;
    *request.mutable_spec() = Spec("other");
    request.mutable_spec()->set_update_rule(v1::UPDATE_RULE_UNSPECIFIED);
    v1::CreateMemoryResponse response;
    const grpc::Status status = stub_->CreateMemory(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("spec.update_rule"));
  }
  v1::MemorySpec huge = Spec("huge");
  huge.set_capacity_per_action(1 << 20);
  EXPECT_TRUE(absl::IsResourceExhausted(service_->CreateMemoryFromSpec(huge).status()));

  v1::WriteRequest request;
  request.set_memory("mfec");
  *request.mutable_keys() = Keys({0, 0, 1, 1, 2, 2}, 2, 3);  // key_dim is 2
  request.add_actions(0);
  request.add_actions(1);
  request.add_values(1);
  request.add_values(2);
  grpc::Status status = Write(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("keys.shape: expected float32 [N, 2]"));
  *request.mutable_keys() = Keys({0, 0, 1, 1}, 2, 2);
  request.set_values(1, std::numeric_limits<float>::quiet_NaN());
  EXPECT_THAT(Write(request).error_message(), HasSubstr("values[1]"));
  request.set_values(1, 2);
  request.set_actions(1, 2);
  EXPECT_THAT(Write(request).error_message(), HasSubstr("actions[1]: 2 is not in [0, 2)"));
  request.set_actions(1, 1);
  request.add_values(3);
  EXPECT_THAT(Write(request).error_message(), HasSubstr("actions, values: must have 2"));
  request.mutable_values()->RemoveLast();
  *request.mutable_keys() = Keys(std::vector<float>(10, 0), 5, 2);
  EXPECT_EQ(Write(request).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);  // > max_batch
  request.set_memory("nope");
  EXPECT_EQ(Write(request).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(Sizes("mfec"), ElementsAre(0, 0));  // nothing was stored

  grpc::ClientContext context;
  v1::LookupRequest lookup;
  lookup.set_memory("mfec");
  *lookup.mutable_queries() = Keys({0, 0}, 1, 2);
  lookup.set_k(5000);
  v1::LookupResponse answer;
  status = stub_->Lookup(&context, lookup, &answer);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("k: must be in [0, 1024]"));
}

TEST_F(EpisodicServiceTest, SnapshotRestoreAndDelete) {
  const fs::path dir = fs::path(::testing::TempDir()) / "episodic-snapshots";
  fs::remove_all(dir);
  Start();
  {
    grpc::ClientContext context;
    v1::SnapshotResponse response;
    EXPECT_EQ(stub_->Snapshot(&context, v1::SnapshotRequest(), &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);  // no snapshot_dir
  }
  Start({.snapshot_dir = dir.string(), .snapshot_keep = 2});
  ASSERT_TRUE(service_->CreateMemoryFromSpec(Spec("one")).ok());
  ASSERT_TRUE(service_->CreateMemoryFromSpec(Spec("two")).ok());
  v1::WriteRequest request;
  request.set_memory("one");
  *request.mutable_keys() = Keys({0, 0, 1, 1, 2, 2}, 3, 2);
  for (int i = 0; i < 3; ++i) {
    request.add_actions(i % 2);
    request.add_values(static_cast<float>(i));
  }
  ASSERT_TRUE(Write(request).ok());
  grpc::ClientContext context;
  v1::SnapshotResponse snapshot;
  ASSERT_TRUE(stub_->Snapshot(&context, v1::SnapshotRequest(), &snapshot).ok());
  EXPECT_EQ(snapshot.keys(), 3);
  EXPECT_TRUE(fs::exists(fs::path(snapshot.path()) / "one.memory"));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(service_->SnapshotNow().ok());
  int kept = 0;
  for (const auto& entry : fs::directory_iterator(dir)) kept += entry.is_directory();
  EXPECT_EQ(kept, 2);  // snapshot_keep

  // A new server restores the newest snapshot: the same memories and keys.
  Start({.snapshot_dir = dir.string()});
  ASSERT_TRUE(service_->Restore(service_->LatestSnapshot()).ok());
  EXPECT_THAT(Sizes("one"), ElementsAre(2, 1));
  EXPECT_THAT(Sizes("two"), ElementsAre(0, 0));
  grpc::ClientContext del;
  v1::DeleteMemoryRequest remove;
  remove.set_name("one");
  v1::DeleteMemoryResponse removed;
  ASSERT_TRUE(stub_->DeleteMemory(&del, remove, &removed).ok());
  EXPECT_EQ(removed.keys_removed(), 3);
  grpc::ClientContext again;
  EXPECT_EQ(stub_->DeleteMemory(&again, remove, &removed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // A damaged snapshot is refused naming the file.
  const fs::path broken = dir / "snapshot-broken";
  fs::create_directories(broken);
  std::ofstream(broken / "x.memory") << "garbage";
  absl::Status restored = service_->Restore(broken.string());
  EXPECT_TRUE(absl::IsDataLoss(restored));
  EXPECT_THAT(std::string(restored.message()), HasSubstr("x.memory"));
}

// With --auth_tokens, DeleteMemory and Snapshot need an admin token (sent by the channel
// over a real port, the way processes send it); data-plane calls need none. A refused call
// changes nothing.
TEST_F(EpisodicServiceTest, AdministrativeCallsNeedAnAdminToken) {
  constexpr char kAdmin[] = "admin-token-0123456789";
  constexpr char kSubmit[] = "submit-token-0123456789";
  absl::StatusOr<std::shared_ptr<const Authorizer>> authorizer =
      Authorizer::FromText(absl::StrCat(kAdmin, " admin\n", kSubmit, " submit\n"), "tokens");
  ASSERT_TRUE(authorizer.ok()) << authorizer.status();
  const fs::path dir = fs::path(::testing::TempDir()) / "episodic_auth";
  fs::remove_all(dir);
  EpisodicStoreServiceImpl::Options options;
  options.snapshot_dir = dir.string();
  options.authorizer = *authorizer;
  service_ = std::make_unique<EpisodicStoreServiceImpl>(options);
  ServerOptions server_options;
  server_options.address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(server_options, {service_.get()});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = absl::StrCat("127.0.0.1:", (*server)->port());
  auto stub_with = [&](const std::string& token) {
    ChannelOptions channel;
    channel.auth_token = token;
    return v1::EpisodicStore::NewStub(*CreateChannel(target, channel));
  };
  auto delete_memory = [&](const std::string& token) {
    grpc::ClientContext context;
    v1::DeleteMemoryRequest request;
    request.set_name("mfec");
    v1::DeleteMemoryResponse response;
    return stub_with(token)->DeleteMemory(&context, request, &response);
  };
  auto snapshot = [&](const std::string& token) {
    grpc::ClientContext context;
    v1::SnapshotResponse response;
    return stub_with(token)->Snapshot(&context, v1::SnapshotRequest(), &response);
  };

  // Creating a memory and writing to it are data-plane calls: no token.
  absl::StatusOr<std::unique_ptr<EpisodicClient>> client =
      EpisodicClient::Connect(*CreateChannel(target, {}), {.spec = Spec()});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Write(std::vector<float>{1, 2}.data(), 0, 5).ok());
  ASSERT_TRUE((*client)->Flush().ok());

  grpc::Status status = delete_memory("");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("EpisodicStore.DeleteMemory needs a bearer token"));
  EXPECT_EQ(delete_memory("not-a-known-token-000").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = delete_memory(kSubmit);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("lacks role admin"));
  EXPECT_EQ(snapshot(kSubmit).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(fs::exists(dir) && !fs::is_empty(dir));  // no snapshot was written
  EXPECT_THAT(service_->LatestSnapshot(), ::testing::IsEmpty());
  {  // the memory is still there, with its key
    grpc::ClientContext context;
    v1::MemoryInfoRequest request;
    request.add_memories("mfec");
    v1::MemoryInfoResponse response;
    ASSERT_TRUE(stub_with("")->Info(&context, request, &response).ok());
    ASSERT_EQ(response.memories_size(), 1);
    EXPECT_THAT(response.memories(0).sizes(), ElementsAre(1, 0));
  }

  EXPECT_TRUE(snapshot(kAdmin).ok());
  EXPECT_THAT(service_->LatestSnapshot(), ::testing::Not(::testing::IsEmpty()));
  EXPECT_TRUE(delete_memory(kAdmin).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace engram::episodic
