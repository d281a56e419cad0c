#include "replay_server/service.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/server.h"
#include "engram/v1/replay.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "replay_server/testing/test_items.h"

namespace engram::replay {
namespace {

using ::engram::replay::testing::TestObservation;
using ::engram::replay::testing::TestTransition;

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using InsertStream = grpc::ClientReaderWriter<v1::InsertRequest, v1::InsertResponse>;
using SampleStream = grpc::ClientReaderWriter<v1::SampleRequest, v1::SampleResponse>;

v1::TableSpec Spec(const std::string& name, v1::Selector selector = v1::SELECTOR_UNIFORM,
                   int64_t max_size = 100) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_selector(selector);
  spec.set_priority_exponent(1.0);
  spec.set_max_size(max_size);
  spec.mutable_signature()->mutable_observation()->set_dtype(v1::DTYPE_UINT8);
  spec.mutable_signature()->mutable_observation()->add_shape(2);
  spec.mutable_signature()->mutable_observation()->add_shape(3);
  spec.mutable_signature()->set_num_actions(4);
  return spec;
}

// Inserts wait once the table holds 2 items until something is sampled (samples_per_insert
// 1, min_size_to_sample 1, error_buffer 1: max_diff 2); batches are at most 1 item.
v1::TableSpec RateLimitedSpec(const std::string& name) {
  v1::TableSpec spec = Spec(name);
  spec.mutable_rate_limiter()->set_samples_per_insert(1);
  spec.mutable_rate_limiter()->set_min_size_to_sample(1);
  spec.mutable_rate_limiter()->set_error_buffer(1);
  return spec;
}

v1::InsertRequest InsertRequest(const std::string& table, std::vector<v1::Item> items) {
  v1::InsertRequest request;
  request.set_table(table);
  for (v1::Item& item : items) *request.add_items() = std::move(item);
  return request;
}

v1::SampleRequest SampleRequest(const std::string& table, int batch_size, int credits) {
  v1::SampleRequest request;
  request.set_table(table);
  request.set_batch_size(batch_size);
  request.set_credits(credits);
  return request;
}

v1::SampleRequest Credits(int credits) {
  v1::SampleRequest request;
  request.set_credits(credits);
  return request;
}

std::vector<uint64_t> Keys(const v1::InsertResponse& response) {
  return {response.keys().begin(), response.keys().end()};
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout = absl::Seconds(5)) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// Polls `condition` until it holds or `timeout` passes (for state only observable by
// polling, e.g. "a call is now blocked in the rate limiter").
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(2)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return condition();
}

// A Read on another thread, so a test can check that it does not complete in time.
class AsyncRead {
 public:
  explicit AsyncRead(SampleStream* stream)
      : thread_([this, stream] {
          ok_ = stream->Read(&response_);
          done_.Notify();
        }) {}
  ~AsyncRead() { thread_.join(); }
  bool DoneWithin(absl::Duration timeout) { return done_.WaitForNotificationWithTimeout(timeout); }
  bool ok() const { return ok_; }
  const v1::SampleResponse& response() const { return response_; }

 private:
  v1::SampleResponse response_;
  bool ok_ = false;
  absl::Notification done_;
  std::thread thread_;
};

class ReplayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
    service_.reset();
  }

  void StartServer(ReplayServiceImpl::Options options) {
    TearDown();
    options.registry = &registry_;
    options.shard_index = 3;
    service_ = std::make_unique<ReplayServiceImpl>(std::move(options));
    ServerOptions server_options;
    server_options.address = "127.0.0.1:0";
    auto server = Server::Start(server_options, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::ReplayService::NewStub(server_->InProcessChannel());
  }

  grpc::Status Create(const v1::TableSpec& spec, bool* created = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::CreateTableRequest request;
    *request.mutable_spec() = spec;
    v1::CreateTableResponse response;
    grpc::Status status = stub_->CreateTable(&context, request, &response);
    if (created != nullptr) *created = response.created();
    return status;
  }

  grpc::Status Delete(const std::string& name, int64_t* removed = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::DeleteTableRequest request;
    request.set_name(name);
    v1::DeleteTableResponse response;
    grpc::Status status = stub_->DeleteTable(&context, request, &response);
    if (removed != nullptr) *removed = response.items_removed();
    return status;
  }

  std::vector<std::string> List() {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ListTablesResponse response;
    EXPECT_TRUE(stub_->ListTables(&context, {}, &response).ok());
    std::vector<std::string> names;
    for (const auto& spec : response.tables()) names.push_back(spec.name());
    return names;
  }

  grpc::Status Info(std::vector<std::string> tables, v1::ReplayInfoResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ReplayInfoRequest request;
    for (auto& t : tables) request.add_tables(t);
    return stub_->Info(&context, request, response);
  }

  v1::TableInfo TableInfo(const std::string& table) {
    v1::ReplayInfoResponse response;
    grpc::Status status = Info({table}, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.tables_size() == 1 ? response.tables(0) : v1::TableInfo();
  }

  // Inserts `requests` on one stream, half-closes, and returns the final status.
  grpc::Status InsertAll(const std::vector<v1::InsertRequest>& requests,
                         std::vector<v1::InsertResponse>* acks = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub_->Insert(&context);
    for (const auto& request : requests) {
      if (!stream->Write(request)) break;
      v1::InsertResponse ack;
      if (!stream->Read(&ack)) break;
      if (acks != nullptr) acks->push_back(ack);
    }
    stream->WritesDone();
    v1::InsertResponse extra;
    while (stream->Read(&extra)) ADD_FAILURE() << "unexpected ack";
    return stream->Finish();
  }

  void Fill(const std::string& table, std::vector<v1::Item> items) {
    ASSERT_TRUE(InsertAll({InsertRequest(table, std::move(items))}).ok());
  }

  prometheus::Registry registry_;
  std::unique_ptr<ReplayServiceImpl> service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::ReplayService::Stub> stub_;
};

// ---- tables -------------------------------------------------------------------------------

TEST_F(ReplayServiceTest, CreateListDeleteAndIdempotentCreate) {
  bool created = false;
  ASSERT_TRUE(Create(Spec("b")).ok());
  ASSERT_TRUE(Create(Spec("a"), &created).ok());
  EXPECT_TRUE(created);
  EXPECT_THAT(List(), ElementsAre("a", "b"));

  ASSERT_TRUE(Create(Spec("a"), &created).ok());
  EXPECT_FALSE(created) << "identical spec: idempotent";

  grpc::Status status = Create(Spec("a", v1::SELECTOR_UNIFORM, 200));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("max_size"));

  v1::TableSpec bad = Spec("c");
  bad.set_priority_exponent(1.5);
  status = Create(bad);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.priority_exponent"));

  Fill("a", {TestTransition(1), TestTransition(2)});
  int64_t removed = -1;
  ASSERT_TRUE(Delete("a", &removed).ok());
  EXPECT_EQ(removed, 2);
  EXPECT_EQ(Delete("a").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Delete("").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(List(), ElementsAre("b"));
}

TEST_F(ReplayServiceTest, InfoAllNamedAndUnknown) {
  ASSERT_TRUE(Create(Spec("b")).ok());
  ASSERT_TRUE(Create(Spec("a")).ok());
  v1::ReplayInfoResponse response;
  ASSERT_TRUE(Info({}, &response).ok());
  ASSERT_EQ(response.tables_size(), 2);
  EXPECT_EQ(response.tables(0).spec().name(), "a");
  EXPECT_EQ(response.tables(1).spec().name(), "b");
  EXPECT_EQ(response.shard_index(), 3);
  EXPECT_NEAR(static_cast<double>(response.time().seconds()), absl::ToUnixSeconds(absl::Now()), 5);

  response.Clear();
  ASSERT_TRUE(Info({"b"}, &response).ok());
  ASSERT_EQ(response.tables_size(), 1);
  EXPECT_EQ(response.tables(0).spec().name(), "b");

  grpc::Status status = Info({"a", "nope"}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("\"nope\""));
}

// ---- durable mode ---------------------------------------------------------------------------

// What a logged service acknowledged comes back, from the log alone, in a new service: the
// crash of a shard that never wrote a checkpoint.
TEST_F(ReplayServiceTest, AWriteAheadLogBringsBackEveryAcknowledgedChange) {
  const std::string dir =
      ::testing::TempDir() + "/engram_service_wal_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  auto wal = WriteAheadLog::Open(dir, 0);
  ASSERT_TRUE(wal.ok()) << wal.status();
  service_->AttachLog(wal->get());
  ASSERT_TRUE(Create(Spec("kept")).ok());
  ASSERT_TRUE(Create(Spec("gone")).ok());
  Fill("kept", {TestTransition(1), TestTransition(2)});
  Fill("gone", {TestTransition(7)});
  Fill("kept", {TestTransition(2), TestTransition(3)});  // 2 again: a resend
  ASSERT_TRUE(Delete("gone").ok());
  // Refused changes are not logged.
  EXPECT_FALSE(InsertAll({InsertRequest("kept", {TestTransition(0)})}).ok());  // key 0
  EXPECT_EQ(wal->get()->stats().records, 6);
  TearDown();
  wal->reset();

  ReplayServiceImpl recovered({});
  absl::StatusOr<WalReplayInfo> info =
      ReplayWal(dir, 0, [&recovered](WalRecord type, absl::string_view payload) {
        return recovered.ApplyLogRecord(type, payload);
      });
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->records, 6);
  const std::vector<std::shared_ptr<Table>> tables = recovered.Tables();
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_EQ(tables[0]->name(), "kept");
  std::vector<uint64_t> keys;
  TableCounters counters;
  tables[0]->Export([&keys](const v1::Item& item, int32_t) { keys.push_back(item.key()); },
                    &counters);
  EXPECT_THAT(keys, ElementsAre(1, 2, 3));
  EXPECT_EQ(counters.inserts, 3);
  EXPECT_EQ(counters.duplicate_inserts, 1);
  // A record naming a table that does not exist stops recovery rather than dropping items.
  EXPECT_EQ(recovered
                .ApplyLogRecord(WalRecord::kInsert,
                                InsertRequest("nope", {TestTransition(4)}).SerializeAsString())
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(recovered.ApplyLogRecord(WalRecord::kInsert, "\xff\xff").code(),
            absl::StatusCode::kDataLoss);
  std::filesystem::remove_all(dir);
}

TEST_F(ReplayServiceTest, AClientOverItsRequestRateIsRefusedAndNothingOfItIsStored) {
  ReplayServiceImpl::Options options;
  options.client_limiter = std::make_shared<ClientRateLimiter>(1);  // bursts of 1
  StartServer(std::move(options));
  ASSERT_TRUE(Create(Spec("t")).ok());
  std::vector<v1::InsertResponse> acks;
  const grpc::Status status = InsertAll(
      {InsertRequest("t", {TestTransition(1)}), InsertRequest("t", {TestTransition(2)})}, &acks);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("requests/s"));
  EXPECT_EQ(acks.size(), 1u);
  EXPECT_EQ(TableInfo("t").size(), 1);
}

// ---- insert -------------------------------------------------------------------------------

TEST_F(ReplayServiceTest, InsertAcksKeysInOrderAndInfoShowsThem) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  std::vector<v1::InsertResponse> acks;
  ASSERT_TRUE(
      InsertAll({InsertRequest("t", {TestTransition(5), TestTransition(3), TestTransition(9)}),
                 InsertRequest("t", {TestTransition(1)})},
                &acks)
          .ok());
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[0].table(), "t");
  EXPECT_THAT(Keys(acks[0]), ElementsAre(5, 3, 9));
  EXPECT_THAT(Keys(acks[1]), ElementsAre(1));
  const v1::TableInfo info = TableInfo("t");
  EXPECT_EQ(info.size(), 4);
  EXPECT_EQ(info.inserts_total(), 4);
}

TEST_F(ReplayServiceTest, DuplicateKeysAreAckedButStoredOnce) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  std::vector<v1::InsertResponse> acks;
  ASSERT_TRUE(InsertAll({InsertRequest("t", {TestTransition(1), TestTransition(2)}),
                         InsertRequest("t", {TestTransition(2), TestTransition(3)})},
                        &acks)
                  .ok());
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_THAT(Keys(acks[1]), ElementsAre(2, 3));
  const v1::TableInfo info = TableInfo("t");
  EXPECT_EQ(info.size(), 3);
  EXPECT_EQ(info.duplicate_inserts_total(), 1);
}

TEST_F(ReplayServiceTest, BadItemEndsStreamWithInvalidArgumentAndStoresNothingOfIt) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  v1::Item bad = TestTransition(8);
  *bad.mutable_transition()->mutable_observation() = TestObservation(1, /*rows=*/4);
  std::vector<v1::InsertResponse> acks;
  grpc::Status status = InsertAll(
      {InsertRequest("t", {TestTransition(1)}), InsertRequest("t", {TestTransition(7), bad}),
       InsertRequest("t", {TestTransition(9)})},
      &acks);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("insert item 1 (key 8)"));
  ASSERT_EQ(acks.size(), 1u) << "the ack sent before the error stands";
  EXPECT_THAT(Keys(acks[0]), ElementsAre(1));
  EXPECT_EQ(TableInfo("t").size(), 1) << "nothing of the bad request is stored";
}

TEST_F(ReplayServiceTest, InsertIntoUnknownTableIsNotFound) {
  grpc::Status status = InsertAll({InsertRequest("nope", {TestTransition(1)})});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("\"nope\""));
  EXPECT_EQ(InsertAll({InsertRequest("", {TestTransition(1)})}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ReplayServiceTest, OversizedInsertBatchIsResourceExhausted) {
  ReplayServiceImpl::Options options;
  options.max_insert_batch = 2;
  StartServer(options);
  ASSERT_TRUE(Create(Spec("t")).ok());
  grpc::Status status =
      InsertAll({InsertRequest("t", {TestTransition(1), TestTransition(2), TestTransition(3)})});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_insert_batch=2"));
  EXPECT_EQ(TableInfo("t").size(), 0);
  EXPECT_TRUE(InsertAll({InsertRequest("t", {TestTransition(1), TestTransition(2)})}).ok());
}

TEST_F(ReplayServiceTest, InsertWaitingForTheRateLimiterStopsWhenTheClientCancels) {
  ASSERT_TRUE(Create(RateLimitedSpec("t")).ok());
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->Insert(&context);
  v1::InsertResponse ack;
  ASSERT_TRUE(stream->Write(InsertRequest("t", {TestTransition(1)})) && stream->Read(&ack));
  ASSERT_TRUE(stream->Write(InsertRequest("t", {TestTransition(2)})) && stream->Read(&ack));
  ASSERT_TRUE(stream->Write(InsertRequest("t", {TestTransition(3)})));
  ASSERT_TRUE(Eventually([&] { return TableInfo("t").rate_limiter().waiting_inserts() == 1; }));
  context.TryCancel();
  // The handler notices within one wait slice (100 ms) and stops waiting.
  EXPECT_TRUE(Eventually([&] { return TableInfo("t").rate_limiter().waiting_inserts() == 0; },
                         absl::Milliseconds(500)));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(TableInfo("t").size(), 2);
}

TEST_F(ReplayServiceTest, InsertWaitingPastTheCallDeadlineIsDeadlineExceeded) {
  ASSERT_TRUE(Create(RateLimitedSpec("t")).ok());
  Fill("t", {TestTransition(1), TestTransition(2)});
  grpc::ClientContext context;
  SetDeadline(&context, absl::Milliseconds(150));
  auto stream = stub_->Insert(&context);
  ASSERT_TRUE(stream->Write(InsertRequest("t", {TestTransition(3)})));
  v1::InsertResponse ack;
  EXPECT_FALSE(stream->Read(&ack));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

// ---- sample -------------------------------------------------------------------------------

TEST_F(ReplayServiceTest, SampleSendsOneBatchPerCreditAndNoMore) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  Fill("t", {TestTransition(1), TestTransition(2), TestTransition(3)});
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->Sample(&context);
  ASSERT_TRUE(stream->Write(SampleRequest("t", 2, 2)));
  for (int64_t sequence : {0, 1}) {
    v1::SampleResponse batch;
    ASSERT_TRUE(stream->Read(&batch));
    EXPECT_EQ(batch.table(), "t");
    EXPECT_EQ(batch.sequence(), sequence);
    EXPECT_EQ(batch.items_size(), 2);
    EXPECT_EQ(batch.table_size(), 3);
  }
  {
    AsyncRead read(stream.get());
    EXPECT_FALSE(read.DoneWithin(absl::Milliseconds(100))) << "a batch without a credit";
    ASSERT_TRUE(stream->Write(Credits(1)));
    ASSERT_TRUE(read.DoneWithin(absl::Seconds(5)));
    ASSERT_TRUE(read.ok());
    EXPECT_EQ(read.response().sequence(), 2);
  }
  ASSERT_TRUE(stream->WritesDone());
  v1::SampleResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(TableInfo("t").samples_total(), 6);
}

TEST_F(ReplayServiceTest, SampleImportanceBetaChangeTakesEffect) {
  ASSERT_TRUE(Create(Spec("t", v1::SELECTOR_PRIORITIZED)).ok());
  // Priorities 1 and 3 (alpha 1): stratified batches of 4 hold key 1 once, key 2 three times.
  Fill("t", {TestTransition(1, 1.0), TestTransition(2, 3.0)});
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->Sample(&context);
  v1::SampleRequest first = SampleRequest("t", 4, 1);
  first.set_importance_beta(0.0);
  ASSERT_TRUE(stream->Write(first));
  v1::SampleResponse batch;
  ASSERT_TRUE(stream->Read(&batch));
  for (const auto& item : batch.items()) EXPECT_DOUBLE_EQ(item.importance_weight(), 1.0);

  v1::SampleRequest more = Credits(1);
  more.set_importance_beta(1.0);
  ASSERT_TRUE(stream->Write(more));
  ASSERT_TRUE(stream->Read(&batch));
  bool saw_key2 = false;
  for (const auto& item : batch.items()) {
    // (N P)^-1 normalised by the batch maximum: key 1 (P 1/4) -> 1, key 2 (P 3/4) -> 1/3.
    const double expected = item.item().key() == 1 ? 1.0 : 1.0 / 3.0;
    EXPECT_NEAR(item.importance_weight(), expected, 1e-9) << "key " << item.item().key();
    saw_key2 |= item.item().key() == 2;
  }
  EXPECT_TRUE(saw_key2);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ReplayServiceTest, SampleRateLimiterTimeoutIsDeadlineExceeded) {
  ASSERT_TRUE(Create(Spec("t")).ok());  // empty: sampling waits for min_size_to_sample
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->Sample(&context);
  v1::SampleRequest request = SampleRequest("t", 1, 1);
  request.mutable_rate_limiter_timeout()->set_nanos(50'000'000);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(stream->Write(request));
  v1::SampleResponse batch;
  EXPECT_FALSE(stream->Read(&batch));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(), HasSubstr("rate_limiter_timeout"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(ReplayServiceTest, SampleRejectsBadFirstRequests) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  const auto finish_with = [&](const v1::SampleRequest& request) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub_->Sample(&context);
    stream->Write(request);
    v1::SampleResponse batch;
    EXPECT_FALSE(stream->Read(&batch));
    return stream->Finish();
  };
  grpc::Status status = finish_with(SampleRequest("t", 0, 1));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("batch_size"));

  v1::SampleRequest beta = SampleRequest("t", 1, 1);
  beta.set_importance_beta(1.5);
  status = finish_with(beta);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("importance_beta"));

  status = finish_with(SampleRequest("t", 1, -1));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("credits"));

  status = finish_with(SampleRequest("", 1, 1));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  status = finish_with(SampleRequest("nope", 1, 1));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ReplayServiceTest, SampleRejectsAChangeOfBatchSizeOrTable) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  ASSERT_TRUE(Create(Spec("u")).ok());
  for (const v1::SampleRequest& change : {SampleRequest("", 2, 1), SampleRequest("u", 0, 1)}) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub_->Sample(&context);
    ASSERT_TRUE(stream->Write(SampleRequest("t", 1, 0)));
    stream->Write(change);
    v1::SampleResponse batch;
    EXPECT_FALSE(stream->Read(&batch));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("cannot change"));
  }
}

TEST_F(ReplayServiceTest, SampleHalfCloseEndsOkWhileWaiting) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->Sample(&context);
  ASSERT_TRUE(stream->Write(SampleRequest("t", 1, 1)));  // waits: the table is empty
  ASSERT_TRUE(Eventually([&] { return TableInfo("t").rate_limiter().waiting_samples() == 1; }));
  ASSERT_TRUE(stream->WritesDone());
  v1::SampleResponse batch;
  EXPECT_FALSE(stream->Read(&batch));
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(TableInfo("t").rate_limiter().waiting_samples(), 0);
}

TEST_F(ReplayServiceTest, SampleWaitingForTheRateLimiterStopsWhenTheClientCancels) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->Sample(&context);
  ASSERT_TRUE(stream->Write(SampleRequest("t", 1, 1)));
  ASSERT_TRUE(Eventually([&] { return TableInfo("t").rate_limiter().waiting_samples() == 1; }));
  context.TryCancel();
  EXPECT_TRUE(Eventually([&] { return TableInfo("t").rate_limiter().waiting_samples() == 0; },
                         absl::Milliseconds(500)));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(service_->AwaitNoCalls(absl::Now() + absl::Seconds(1)));
}

TEST_F(ReplayServiceTest, DeleteTableEndsWaitingAndIdleSamplersWithNotFound) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  grpc::ClientContext waiting_context;
  SetDeadline(&waiting_context);
  auto waiting = stub_->Sample(&waiting_context);
  ASSERT_TRUE(waiting->Write(SampleRequest("t", 1, 1)));  // blocked in the table
  ASSERT_TRUE(Eventually([&] { return TableInfo("t").rate_limiter().waiting_samples() == 1; }));
  grpc::ClientContext idle_context;
  SetDeadline(&idle_context);
  auto idle = stub_->Sample(&idle_context);
  ASSERT_TRUE(idle->Write(SampleRequest("t", 1, 0)));  // no credits: waits for them

  const absl::Time start = absl::Now();
  ASSERT_TRUE(Delete("t").ok());
  for (SampleStream* stream : {waiting.get(), idle.get()}) {
    v1::SampleResponse batch;
    EXPECT_FALSE(stream->Read(&batch));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

// ---- update priorities, checkpoint ------------------------------------------------------

TEST_F(ReplayServiceTest, UpdatePrioritiesRoutesAndValidates) {
  ASSERT_TRUE(Create(Spec("t", v1::SELECTOR_PRIORITIZED)).ok());
  Fill("t", {TestTransition(1, 1.0), TestTransition(2, 1.0)});
  const auto update = [&](const v1::UpdatePrioritiesRequest& request,
                          v1::UpdatePrioritiesResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return stub_->UpdatePriorities(&context, request, response);
  };
  v1::UpdatePrioritiesRequest request;
  request.set_table("t");
  request.add_keys(1);
  request.add_priorities(5.0);
  request.add_keys(99);
  request.add_priorities(1.0);
  request.add_delete_keys(2);
  v1::UpdatePrioritiesResponse response;
  ASSERT_TRUE(update(request, &response).ok());
  EXPECT_EQ(response.updated(), 1);
  EXPECT_EQ(response.missing(), 1);
  EXPECT_EQ(response.deleted(), 1);
  const v1::TableInfo info = TableInfo("t");
  EXPECT_EQ(info.size(), 1);
  EXPECT_DOUBLE_EQ(info.priority_total(), 5.0);

  v1::UpdatePrioritiesRequest mismatched = request;
  mismatched.add_keys(3);
  EXPECT_EQ(update(mismatched, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::UpdatePrioritiesRequest negative = request;
  negative.set_priorities(0, -1.0);
  grpc::Status status = update(negative, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("priorities[0]"));
  v1::UpdatePrioritiesRequest unknown = request;
  unknown.set_table("nope");
  EXPECT_EQ(update(unknown, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ReplayServiceTest, CheckpointWithoutDirectoryIsFailedPrecondition) {
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ReplayCheckpointResponse response;
  grpc::Status status = stub_->Checkpoint(&context, {}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("--checkpoint_dir"));
}

TEST_F(ReplayServiceTest, CheckpointDelegatesAndRefusesASecondAtOnce) {
  absl::Notification entered, release;
  std::vector<std::string> seen;
  ReplayServiceImpl::Options options;
  options.checkpoint = [&](const std::vector<std::shared_ptr<Table>>& tables)
      -> absl::StatusOr<v1::ReplayCheckpointResponse> {
    for (const auto& table : tables) seen.push_back(table->name());
    entered.Notify();
    release.WaitForNotification();
    v1::ReplayCheckpointResponse response;
    response.set_path("/ckpt/x");
    response.set_items(7);
    return response;
  };
  StartServer(options);
  ASSERT_TRUE(Create(Spec("b")).ok());
  ASSERT_TRUE(Create(Spec("a")).ok());

  v1::ReplayCheckpointResponse first;
  grpc::Status first_status;
  std::thread writer([&] {
    grpc::ClientContext context;
    SetDeadline(&context);
    first_status = stub_->Checkpoint(&context, {}, &first);
  });
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(5)));
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ReplayCheckpointResponse second;
    EXPECT_EQ(stub_->Checkpoint(&context, {}, &second).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  release.Notify();
  writer.join();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message();
  EXPECT_EQ(first.path(), "/ckpt/x");
  EXPECT_EQ(first.items(), 7);
  EXPECT_THAT(seen, ElementsAre("a", "b"));
}

// ---- shutdown, metrics ------------------------------------------------------------------

TEST_F(ReplayServiceTest, CloseEndsBlockedStreamsWithUnavailable) {
  ASSERT_TRUE(Create(RateLimitedSpec("limited")).ok());
  ASSERT_TRUE(Create(Spec("empty")).ok());

  grpc::ClientContext insert_context;
  SetDeadline(&insert_context);
  auto insert = stub_->Insert(&insert_context);
  v1::InsertResponse ack;
  ASSERT_TRUE(insert->Write(InsertRequest("limited", {TestTransition(1), TestTransition(2)})) &&
              insert->Read(&ack));
  ASSERT_TRUE(insert->Write(InsertRequest("limited", {TestTransition(3)})));  // held back
  grpc::ClientContext sample_context;
  SetDeadline(&sample_context);
  auto sample = stub_->Sample(&sample_context);
  ASSERT_TRUE(sample->Write(SampleRequest("empty", 1, 1)));  // waits for items
  grpc::ClientContext idle_context;
  SetDeadline(&idle_context);
  auto idle = stub_->Sample(&idle_context);
  ASSERT_TRUE(idle->Write(SampleRequest("empty", 1, 0)));  // waits for credits
  ASSERT_TRUE(Eventually([&] {
    return TableInfo("limited").rate_limiter().waiting_inserts() == 1 &&
           TableInfo("empty").rate_limiter().waiting_samples() == 1;
  }));

  EXPECT_EQ(service_->calls_in_flight(), 3);
  EXPECT_FALSE(service_->AwaitNoCalls(absl::Now() + absl::Milliseconds(10)));
  const absl::Time start = absl::Now();
  service_->Close(absl::UnavailableError("shutting down"));
  EXPECT_FALSE(insert->Read(&ack));
  EXPECT_EQ(insert->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  for (SampleStream* stream : {sample.get(), idle.get()}) {
    v1::SampleResponse batch;
    EXPECT_FALSE(stream->Read(&batch));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_TRUE(service_->AwaitNoCalls(absl::Now() + absl::Seconds(1)));

  EXPECT_EQ(Create(Spec("new")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(InsertAll({InsertRequest("empty", {TestTransition(1)})}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(TableInfo("limited").size(), 2) << "Info still answers after Close";
}

TEST_F(ReplayServiceTest, ExportsLatencyAndErrorMetrics) {
  ASSERT_TRUE(Create(Spec("t")).ok());
  Fill("t", {TestTransition(1)});
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub_->Sample(&context);
    ASSERT_TRUE(stream->Write(SampleRequest("t", 1, 1)));
    v1::SampleResponse batch;
    ASSERT_TRUE(stream->Read(&batch));
    stream->WritesDone();
    ASSERT_TRUE(stream->Finish().ok());
  }
  EXPECT_EQ(InsertAll({InsertRequest("nope", {TestTransition(1)})}).error_code(),
            grpc::StatusCode::NOT_FOUND);

  std::map<std::string, prometheus::MetricFamily> families;
  for (auto& family : registry_.Collect()) families[family.name] = family;
  const auto histogram_count = [&](const std::string& name) -> uint64_t {
    if (!families.count(name)) return 0;
    for (const auto& metric : families[name].metric) {
      for (const auto& label : metric.label) {
        if (label.name == "table" && label.value == "t") return metric.histogram.sample_count;
      }
    }
    return 0;
  };
  EXPECT_EQ(histogram_count("engram_replay_insert_latency_seconds"), 1u);
  EXPECT_EQ(histogram_count("engram_replay_sample_latency_seconds"), 1u);
  ASSERT_TRUE(families.count("engram_rpc_errors_total"));
  bool found = false;
  for (const auto& metric : families["engram_rpc_errors_total"].metric) {
    std::map<std::string, std::string> labels;
    for (const auto& label : metric.label) labels[label.name] = label.value;
    if (labels["method"] == "ReplayService/Insert" && labels["code"] == "NOT_FOUND") {
      found = metric.counter.value == 1;
    }
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(families.count("engram_replay_items")) << "TableMetrics registered per table";
  EXPECT_TRUE(families.count("engram_replay_checkpoint_duration_seconds"));
}

// With tokens, CreateTable, DeleteTable and Checkpoint need an admin token, sent by the
// channel (CreateChannel's auth_token) over the server's port; a refused call changes
// nothing, and data-plane calls need no token.
TEST_F(ReplayServiceTest, AdministrativeCallsNeedAnAdminToken) {
  ReplayServiceImpl::Options options;
  absl::StatusOr<std::shared_ptr<const Authorizer>> authorizer = Authorizer::FromText(
      "admin-token-0123456789 admin\nsubmit-token-0123456789 submit\n", "tokens");
  ASSERT_TRUE(authorizer.ok()) << authorizer.status();
  options.authorizer = *authorizer;
  StartServer(std::move(options));
  const std::string target = absl::StrCat("127.0.0.1:", server_->port());
  auto use_token = [&](const std::string& token) {
    ChannelOptions channel;
    channel.auth_token = token;
    stub_ = v1::ReplayService::NewStub(*CreateChannel(target, channel));
  };
  use_token("");
  grpc::Status status = Create(Spec("t"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("ReplayService.CreateTable needs a bearer token"));
  use_token("submit-token-0123456789");
  status = Create(Spec("t"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("lacks role admin"));
  EXPECT_THAT(List(), ::testing::IsEmpty());  // nothing was created

  use_token("admin-token-0123456789");
  ASSERT_TRUE(Create(Spec("t")).ok());
  use_token("wrong-token-0123456789");
  EXPECT_EQ(Delete("t").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(List(), ElementsAre("t"));  // still there; listing needs no token
  use_token("admin-token-0123456789");
  EXPECT_TRUE(Delete("t").ok());
}

}  // namespace
}  // namespace engram::replay
