#include "learner/parameter_service.h"

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/server.h"
#include "common/tensor_proto.h"
#include "engram/v1/parameters.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpc/grpc.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "learner/parameter_client.h"
#include "prometheus/registry.h"

namespace engram::learner {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

constexpr char kGetParametersMethod[] = "/engram.v1.ParameterService/GetParameters";

v1::Tensor FloatTensor(std::vector<int64_t> shape, float fill) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> values(n, fill);
  v1::Tensor tensor;
  absl::Status status = EncodeRaw(
      v1::DTYPE_FLOAT32, shape,
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(values.data()), n * sizeof(float)),
      &tensor);
  EXPECT_TRUE(status.ok()) << status;
  return tensor;
}

// A small network's weights, every element `fill`.
v1::ParameterSet Named(const std::string& experiment, float fill, int64_t version = 0) {
  v1::ParameterSet set;
  set.set_experiment_id(experiment);
  set.set_version(version);
  set.set_learner_updates(7);
  set.set_frames(1000);
  v1::NamedTensor* weight = set.mutable_named()->add_tensors();
  weight->set_name("torso.fc.weight");
  *weight->mutable_tensor() = FloatTensor({3, 2}, fill);
  v1::NamedTensor* bias = set.mutable_named()->add_tensors();
  bias->set_name("torso.fc.bias");
  *bias->mutable_tensor() = FloatTensor({3}, fill);
  return set;
}

v1::ParameterSet Serialized(const std::string& experiment, const std::string& data) {
  v1::ParameterSet set;
  set.set_experiment_id(experiment);
  set.mutable_serialized()->set_format(v1::PARAMETER_FORMAT_TORCH_ARCHIVE);
  set.mutable_serialized()->set_data(data);
  return set;
}

// The content of a set, without what the server fills in.
bool SameContent(v1::ParameterSet a, v1::ParameterSet b) {
  for (v1::ParameterSet* s : {&a, &b}) {
    s->clear_version();
    s->clear_publish_time();
  }
  return MessageDifferencer::Equals(a, b);
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  out->set_seconds(absl::ToInt64Seconds(d));
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d % absl::Seconds(1))));
}

v1::GetParametersRequest GetRequest(const std::string& experiment, int64_t known_version,
                                    absl::Duration max_wait = absl::ZeroDuration()) {
  v1::GetParametersRequest request;
  request.set_experiment_id(experiment);
  request.set_known_version(known_version);
  request.set_client_id("test");
  if (max_wait > absl::ZeroDuration()) SetDuration(max_wait, request.mutable_max_wait());
  return request;
}

// Polls `condition` until it holds or `timeout` passes (for state only observable by
// polling, e.g. "the call is now waiting on the server").
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return condition();
}

// A GetParameters call in flight (client callback API), so a test can check when it ends.
struct PendingGet {
  ~PendingGet() {
    context.TryCancel();
    done.WaitForNotification();
  }
  bool DoneWithin(absl::Duration timeout) { return done.WaitForNotificationWithTimeout(timeout); }

  grpc::ClientContext context;
  v1::GetParametersRequest request;
  v1::GetParametersResponse response;
  grpc::Status status;
  absl::Notification done;
};

std::unique_ptr<PendingGet> StartGet(v1::ParameterService::Stub* stub,
                                     v1::GetParametersRequest request,
                                     absl::Duration timeout = absl::Seconds(30)) {
  auto get = std::make_unique<PendingGet>();
  SetDeadline(&get->context, timeout);
  get->request = std::move(request);
  PendingGet* raw = get.get();
  stub->async()->GetParameters(&raw->context, &raw->request, &raw->response,
                               [raw](grpc::Status status) {
                                 raw->status = std::move(status);
                                 raw->done.Notify();
                               });
  return get;
}

// The same over the generic stub, keeping the response's bytes as they came.
struct RawGet {
  ~RawGet() {
    context.TryCancel();
    done.WaitForNotification();
  }
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
};

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

std::unique_ptr<RawGet> StartRawGet(grpc::GenericStub* stub, const std::string& request_bytes,
                                    absl::Duration timeout = absl::Seconds(30)) {
  auto get = std::make_unique<RawGet>();
  SetDeadline(&get->context, timeout);
  get->request = ToByteBuffer(request_bytes);
  RawGet* raw = get.get();
  stub->UnaryCall(&raw->context, kGetParametersMethod, grpc::StubOptions(), &raw->request,
                  &raw->response, [raw](grpc::Status status) {
                    raw->status = std::move(status);
                    raw->done.Notify();
                  });
  return get;
}

// The value of a counter or gauge with (at least) these labels; -1 when absent.
double MetricValue(prometheus::Registry& registry, const std::string& name,
                   const std::map<std::string, std::string>& labels = {}) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      bool match = true;
      for (const auto& [key, value] : labels) {
        bool found = false;
        for (const prometheus::ClientMetric::Label& label : metric.label) {
          found |= label.name == key && label.value == value;
        }
        match &= found;
      }
      if (!match) continue;
      return family.type == prometheus::MetricType::Counter ? metric.counter.value
                                                            : metric.gauge.value;
    }
  }
  return -1;
}

class ParameterServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }
  void TearDown() override { Stop(); }

  void Start(ParameterServiceImpl::Options options) {
    Stop();
    registry_ = std::make_unique<prometheus::Registry>();
    service_ = std::make_unique<ParameterServiceImpl>(options, registry_.get());
    ServerOptions server_options;
    server_options.address = "127.0.0.1:0";
    server_ = Server::Start(server_options, {service_.get()}).value();
    channel_ = server_->InProcessChannel();
    stub_ = v1::ParameterService::NewStub(channel_);
  }

  void Stop() {
    if (service_ != nullptr) service_->Shutdown();
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
    stub_.reset();
    channel_.reset();
    server_.reset();
    service_.reset();
  }

  grpc::Status Get(const v1::GetParametersRequest& request, v1::GetParametersResponse* response,
                   absl::Duration timeout = absl::Seconds(10)) {
    grpc::ClientContext context;
    SetDeadline(&context, timeout);
    return stub_->GetParameters(&context, request, response);
  }

  grpc::Status PublishRpc(v1::ParameterSet set, int64_t* version = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::PublishRequest request;
    *request.mutable_parameters() = std::move(set);
    v1::PublishResponse response;
    grpc::Status status = stub_->Publish(&context, request, &response);
    if (version != nullptr) *version = response.version();
    return status;
  }

  grpc::Status GetVersion(const std::string& experiment, v1::GetVersionResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::GetVersionRequest request;
    request.set_experiment_id(experiment);
    return stub_->GetVersion(&context, request, response);
  }

  bool WaitersReach(int n) {
    return Eventually([&] { return service_->num_waiters() == n; });
  }

  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ParameterServiceImpl> service_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ParameterService::Stub> stub_;
};

// ---- Publish and GetParameters ----------------------------------------------------------

TEST_F(ParameterServiceTest, PublishThenGetRoundTripsNamedTensors) {
  const absl::Time before = absl::Now();
  int64_t version = 0;
  ASSERT_TRUE(PublishRpc(Named("breakout", 0.5f), &version).ok());
  EXPECT_EQ(version, 1);

  v1::GetParametersResponse response;
  ASSERT_TRUE(Get(GetRequest("breakout", 0), &response).ok());
  EXPECT_FALSE(response.not_modified());
  EXPECT_EQ(response.latest_version(), 1);
  const v1::ParameterSet& got = response.parameters();
  EXPECT_EQ(got.version(), 1);
  EXPECT_EQ(got.experiment_id(), "breakout");
  EXPECT_EQ(got.learner_updates(), 7);
  EXPECT_EQ(got.frames(), 1000);
  EXPECT_TRUE(SameContent(got, Named("breakout", 0.5f)));
  ASSERT_EQ(got.named().tensors_size(), 2);
  EXPECT_EQ(got.named().tensors(0).name(), "torso.fc.weight");
  EXPECT_TRUE(ValidateTensor(got.named().tensors(0).tensor()).ok());
  const absl::Time published = absl::FromUnixSeconds(got.publish_time().seconds()) +
                               absl::Nanoseconds(got.publish_time().nanos());
  EXPECT_GE(published, before - absl::Seconds(1));
  EXPECT_LE(published, absl::Now() + absl::Seconds(1));

  v1::GetVersionResponse version_response;
  ASSERT_TRUE(GetVersion("breakout", &version_response).ok());
  EXPECT_EQ(version_response.version(), 1);
  EXPECT_EQ(version_response.learner_updates(), 7);
  EXPECT_EQ(version_response.publish_time().seconds(), got.publish_time().seconds());
  EXPECT_EQ(version_response.publish_time().nanos(), got.publish_time().nanos());
}

TEST_F(ParameterServiceTest, SerializedParametersRoundTrip) {
  ASSERT_TRUE(service_->Publish(Serialized("pong", std::string("PK\x03\x04zip", 7))).ok());
  v1::GetParametersResponse response;
  ASSERT_TRUE(Get(GetRequest("pong", 0), &response).ok());
  EXPECT_EQ(response.parameters().serialized().format(), v1::PARAMETER_FORMAT_TORCH_ARCHIVE);
  EXPECT_EQ(response.parameters().serialized().data(), std::string("PK\x03\x04zip", 7));
}

TEST_F(ParameterServiceTest, VersionsAreAssignedOrMustIncrease) {
  EXPECT_EQ(service_->Publish(Named("e", 1)).value(), 1);
  EXPECT_EQ(service_->Publish(Named("e", 2)).value(), 2);
  EXPECT_EQ(service_->Publish(Named("e", 3, /*version=*/10)).value(), 10);
  EXPECT_EQ(service_->Publish(Named("e", 4)).value(), 11);

  absl::StatusOr<int64_t> stale = service_->Publish(Named("e", 5, /*version=*/5));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("not greater than the current version 11"));
  int64_t version = 0;
  grpc::Status same = PublishRpc(Named("e", 5, /*version=*/11), &version);
  EXPECT_EQ(same.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // Versions are per experiment.
  EXPECT_EQ(service_->Publish(Named("other", 1)).value(), 1);
  v1::GetVersionResponse response;
  ASSERT_TRUE(GetVersion("e", &response).ok());
  EXPECT_EQ(response.version(), 11);
}

TEST_F(ParameterServiceTest, PublishRejectsInvalidSetsNamingTheField) {
  struct Case {
    std::string name;
    std::function<void(v1::ParameterSet*)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"no content", [](v1::ParameterSet* s) { s->clear_content(); }, "no content"},
      {"empty experiment", [](v1::ParameterSet* s) { s->clear_experiment_id(); },
       "parameters.experiment_id"},
      {"negative version", [](v1::ParameterSet* s) { s->set_version(-1); }, "parameters.version"},
      {"negative updates", [](v1::ParameterSet* s) { s->set_learner_updates(-1); },
       "parameters.learner_updates"},
      {"no tensors", [](v1::ParameterSet* s) { s->mutable_named()->clear_tensors(); },
       "parameters.named.tensors"},
      {"bad tensor",
       [](v1::ParameterSet* s) {
         s->mutable_named()->mutable_tensors(1)->mutable_tensor()->mutable_data()->push_back('x');
       },
       "parameters.named.tensors[1] (\"torso.fc.bias\")"},
      {"missing tensor",
       [](v1::ParameterSet* s) { s->mutable_named()->mutable_tensors(0)->clear_tensor(); },
       "parameters.named.tensors[0]"},
      {"empty name",
       [](v1::ParameterSet* s) { s->mutable_named()->mutable_tensors(1)->clear_name(); },
       "parameters.named.tensors[1].name"},
      {"duplicate name",
       [](v1::ParameterSet* s) {
         s->mutable_named()->mutable_tensors(1)->set_name("torso.fc.weight");
       },
       "parameters.named.tensors[1].name"},
      {"no format", [](v1::ParameterSet* s) { s->mutable_serialized()->set_data("x"); },
       "parameters.serialized.format"},
      {"empty data",
       [](v1::ParameterSet* s) {
         s->mutable_serialized()->set_format(v1::PARAMETER_FORMAT_TORCH_ARCHIVE);
       },
       "parameters.serialized.data"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ParameterSet set = Named("e", 1);
    c.mutate(&set);
    absl::StatusOr<int64_t> in_process = service_->Publish(set);
    EXPECT_EQ(in_process.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(in_process.status().message(), HasSubstr(c.field));
    grpc::Status rpc = PublishRpc(set);
    EXPECT_EQ(rpc.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(rpc.error_message(), HasSubstr(c.field));
  }
  // A PublishRequest without parameters.
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(10));
  v1::PublishResponse response;
  EXPECT_EQ(stub_->Publish(&context, v1::PublishRequest(), &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Nothing was published.
  v1::GetVersionResponse version;
  ASSERT_TRUE(GetVersion("e", &version).ok());
  EXPECT_EQ(version.version(), 0);
}

TEST_F(ParameterServiceTest, PublishRejectsWeightsTooLargeForActors) {
  ParameterServiceImpl::Options options;
  options.max_response_bytes = 1000;
  Start(options);
  absl::StatusOr<int64_t> version = service_->Publish(Serialized("e", std::string(2000, 'x')));
  EXPECT_EQ(version.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(service_->Publish(Serialized("e", std::string(500, 'x'))).ok());
}

TEST_F(ParameterServiceTest, GetParametersRejectsBadRequests) {
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  v1::GetParametersResponse response;
  v1::GetParametersRequest negative_wait = GetRequest("e", 1);
  negative_wait.mutable_max_wait()->set_seconds(-1);
  grpc::Status status = Get(negative_wait, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("max_wait"));

  status = Get(GetRequest("e", -3), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("known_version"));

  // Bytes that are no GetParametersRequest (field 1 claims 5 bytes, 2 follow).
  grpc::GenericStub generic(channel_);
  auto raw = StartRawGet(&generic, std::string("\x0a\x05"
                                               "ab",
                                               4));
  ASSERT_TRUE(raw->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(raw->status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(raw->status.error_message(), HasSubstr("GetParametersRequest"));
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_requests_total", {{"result", "error"}}), 3);
}

TEST_F(ParameterServiceTest, AnswersAtOnceWhenVersionDiffersOrNoWaitIsAsked) {
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  ASSERT_TRUE(service_->Publish(Named("e", 2)).ok());
  v1::GetParametersResponse response;
  // A version that differs, even a higher one, gets the current weights.
  ASSERT_TRUE(Get(GetRequest("e", 5, absl::Seconds(20)), &response).ok());
  EXPECT_EQ(response.parameters().version(), 2);
  // The current version without max_wait: not_modified at once.
  response.Clear();
  ASSERT_TRUE(Get(GetRequest("e", 2), &response).ok());
  EXPECT_TRUE(response.not_modified());
  EXPECT_FALSE(response.has_parameters());
  EXPECT_EQ(response.latest_version(), 2);
}

// ---- long-polls -------------------------------------------------------------------------

TEST_F(ParameterServiceTest, LongPollIsWokenByPublish) {
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  auto get = StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));
  EXPECT_FALSE(get->DoneWithin(absl::Milliseconds(50)));
  ASSERT_TRUE(service_->Publish(Named("e", 2)).ok());
  ASSERT_TRUE(get->DoneWithin(absl::Seconds(5)));
  ASSERT_TRUE(get->status.ok()) << get->status.error_message();
  EXPECT_FALSE(get->response.not_modified());
  EXPECT_EQ(get->response.parameters().version(), 2);
  EXPECT_EQ(get->response.latest_version(), 2);
  EXPECT_TRUE(SameContent(get->response.parameters(), Named("e", 2)));
  EXPECT_EQ(service_->num_waiters(), 0);
}

TEST_F(ParameterServiceTest, LongPollExpiresWithNotModified) {
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  const absl::Time start = absl::Now();
  v1::GetParametersResponse response;
  ASSERT_TRUE(Get(GetRequest("e", 1, absl::Milliseconds(200)), &response).ok());
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_TRUE(response.not_modified());
  EXPECT_EQ(response.latest_version(), 1);
  EXPECT_FALSE(response.has_parameters());
  EXPECT_GE(elapsed, absl::Milliseconds(200));
  EXPECT_LT(elapsed, absl::Seconds(5));
  EXPECT_EQ(service_->num_waiters(), 0);
}

TEST_F(ParameterServiceTest, MaxWaitIsClampedToTheServerLimit) {
  ParameterServiceImpl::Options options;
  options.max_poll_wait = absl::Milliseconds(200);
  Start(options);
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  const absl::Time start = absl::Now();
  v1::GetParametersResponse response;
  ASSERT_TRUE(Get(GetRequest("e", 1, absl::Hours(1)), &response, absl::Seconds(20)).ok());
  EXPECT_TRUE(response.not_modified());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(ParameterServiceTest, EarlierDeadlineRegisteredLaterWakesTheTimer) {
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  auto slow = StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));
  auto fast = StartGet(stub_.get(), GetRequest("e", 1, absl::Milliseconds(100)));
  ASSERT_TRUE(fast->DoneWithin(absl::Seconds(5)));
  EXPECT_TRUE(fast->response.not_modified());
  EXPECT_FALSE(slow->DoneWithin(absl::Milliseconds(10)));
  EXPECT_EQ(service_->num_waiters(), 1);
}

TEST_F(ParameterServiceTest, WaiterHoldingThePublishedVersionKeepsWaiting) {
  // Actors with an empty experiment_id wait while nothing is published. The first publish
  // (version 1) answers the one holding version 3 from an earlier run (it differs) ...
  auto holds_3 = StartGet(stub_.get(), GetRequest("", 3, absl::Seconds(20)));
  auto holds_1 = StartGet(stub_.get(), GetRequest("", 1, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(2));
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  ASSERT_TRUE(holds_3->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(holds_3->response.parameters().version(), 1);
  // ... while the one holding version 1 keeps waiting, now on "e", for version 2.
  EXPECT_FALSE(holds_1->DoneWithin(absl::Milliseconds(50)));
  EXPECT_EQ(service_->num_waiters(), 1);
  ASSERT_TRUE(service_->Publish(Named("e", 2)).ok());
  ASSERT_TRUE(holds_1->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(holds_1->response.parameters().version(), 2);

  // One holding exactly the published version is not woken by it.
  auto same = StartGet(stub_.get(), GetRequest("other", 2, absl::Milliseconds(300)));
  ASSERT_TRUE(WaitersReach(1));
  ASSERT_TRUE(service_->Publish(Named("other", 1, /*version=*/2)).ok());
  ASSERT_TRUE(same->DoneWithin(absl::Seconds(5)));
  EXPECT_TRUE(same->response.not_modified());
  EXPECT_EQ(same->response.latest_version(), 2);
}

TEST_F(ParameterServiceTest, CancelledWaitersAreRemoved) {
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  // The client's deadline passes while the call waits.
  auto expiring =
      StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)), absl::Milliseconds(200));
  ASSERT_TRUE(expiring->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(expiring->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(WaitersReach(0));

  // The client cancels.
  auto cancelled = StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));
  cancelled->context.TryCancel();
  ASSERT_TRUE(cancelled->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(cancelled->status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitersReach(0));
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_waiters"), 0);

  // The service still works.
  auto get = StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));
  ASSERT_TRUE(service_->Publish(Named("e", 2)).ok());
  ASSERT_TRUE(get->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(get->response.parameters().version(), 2);
}

TEST_F(ParameterServiceTest, ManyWaitersWokenByOnePublishGetIdenticalBytes) {
  constexpr int kWaiters = 40;
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  grpc::GenericStub generic(channel_);
  const std::string request = GetRequest("e", 1, absl::Seconds(20)).SerializeAsString();
  std::vector<std::unique_ptr<RawGet>> gets;
  for (int i = 0; i < kWaiters; ++i) gets.push_back(StartRawGet(&generic, request));
  ASSERT_TRUE(WaitersReach(kWaiters));
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_waiters"), kWaiters);

  ASSERT_TRUE(service_->Publish(Named("e", 2)).ok());
  std::string first;
  for (auto& get : gets) {
    ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    ASSERT_TRUE(get->status.ok()) << get->status.error_message();
    const std::string bytes = ToString(get->response);
    if (first.empty()) first = bytes;
    EXPECT_EQ(bytes, first);
  }
  v1::GetParametersResponse response;
  ASSERT_TRUE(response.ParseFromString(first));
  EXPECT_EQ(response.parameters().version(), 2);
  EXPECT_EQ(service_->num_waiters(), 0);
  // A later caller gets those bytes too.
  auto late = StartRawGet(&generic, GetRequest("e", 0).SerializeAsString());
  ASSERT_TRUE(late->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(ToString(late->response), first);
}

TEST_F(ParameterServiceTest, TooManyWaitersIsResourceExhausted) {
  ParameterServiceImpl::Options options;
  options.max_waiters = 2;
  Start(options);
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  auto a = StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)));
  auto b = StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(2));
  v1::GetParametersResponse response;
  grpc::Status status = Get(GetRequest("e", 1, absl::Seconds(20)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Calls that need not wait are still answered.
  EXPECT_TRUE(Get(GetRequest("e", 0, absl::Seconds(20)), &response).ok());
  EXPECT_TRUE(Get(GetRequest("e", 1), &response).ok());
}

TEST_F(ParameterServiceTest, ShutdownFinishesWaitersWithUnavailable) {
  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  auto waiting = StartGet(stub_.get(), GetRequest("e", 1, absl::Seconds(20)));
  auto unpublished = StartGet(stub_.get(), GetRequest("", 0, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));  // the second one is answered at once
  ASSERT_TRUE(unpublished->DoneWithin(absl::Seconds(5)));
  service_->Shutdown();
  ASSERT_TRUE(waiting->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(waiting->status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service_->num_waiters(), 0);

  v1::GetParametersResponse response;
  EXPECT_EQ(Get(GetRequest("e", 0), &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::GetVersionResponse version;
  EXPECT_EQ(GetVersion("e", &version).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(PublishRpc(Named("e", 2)).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service_->Publish(Named("e", 2)).status().code(), absl::StatusCode::kUnavailable);
  service_->Shutdown();  // idempotent
}

// Publishes, timeouts and cancellations racing: every call ends exactly once.
TEST_F(ParameterServiceTest, RacingPublishesTimeoutsAndCancellationsFinishEachCallOnce) {
  constexpr int kCalls = 150;
  ASSERT_TRUE(service_->Publish(Named("e", 0)).ok());
  absl::Notification stop;
  std::thread publisher([&] {
    float fill = 1;
    while (!stop.HasBeenNotified()) {
      ASSERT_TRUE(service_->Publish(Named("e", fill++)).ok());
      absl::SleepFor(absl::Milliseconds(3));
    }
  });
  absl::BitGen rng;
  std::vector<std::unique_ptr<PendingGet>> gets;
  for (int i = 0; i < kCalls; ++i) {
    const int64_t known = service_->Publish(Named("e", -1)).value();
    gets.push_back(StartGet(stub_.get(),
                            GetRequest("e", known, absl::Milliseconds(absl::Uniform(rng, 1, 30))),
                            absl::Milliseconds(absl::Uniform(rng, 5, 40))));
    if (absl::Bernoulli(rng, 0.2)) gets.back()->context.TryCancel();
  }
  for (auto& get : gets) ASSERT_TRUE(get->DoneWithin(absl::Seconds(20)));
  stop.Notify();
  publisher.join();
  ASSERT_TRUE(WaitersReach(0));
  const double answered =
      MetricValue(*registry_, "engram_parameter_requests_total", {{"result", "sent"}}) +
      MetricValue(*registry_, "engram_parameter_requests_total", {{"result", "not_modified"}}) +
      MetricValue(*registry_, "engram_parameter_requests_total", {{"result", "error"}});
  // Calls cancelled before they reached the service are never counted by it.
  EXPECT_LE(answered, kCalls);
  EXPECT_GT(answered, 0);
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_waiters"), 0);
}

// ---- experiments ------------------------------------------------------------------------

TEST_F(ParameterServiceTest, ExperimentsAreIndependent) {
  ASSERT_TRUE(service_->Publish(Named("a", 1)).ok());
  ASSERT_TRUE(service_->Publish(Named("b", 1)).ok());
  auto on_b = StartGet(stub_.get(), GetRequest("b", 1, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));
  ASSERT_TRUE(service_->Publish(Named("a", 2)).ok());
  EXPECT_FALSE(on_b->DoneWithin(absl::Milliseconds(50)));
  ASSERT_TRUE(service_->Publish(Named("b", 3)).ok());
  ASSERT_TRUE(on_b->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(on_b->response.parameters().experiment_id(), "b");
  EXPECT_TRUE(SameContent(on_b->response.parameters(), Named("b", 3)));
}

TEST_F(ParameterServiceTest, EmptyExperimentIdMeansTheOnlyOne) {
  // None yet: waits as if nothing had been published.
  v1::GetParametersResponse response;
  ASSERT_TRUE(Get(GetRequest("", 0), &response).ok());
  EXPECT_TRUE(response.not_modified());
  EXPECT_EQ(response.latest_version(), 0);
  v1::GetVersionResponse version;
  ASSERT_TRUE(GetVersion("", &version).ok());
  EXPECT_EQ(version.version(), 0);
  EXPECT_FALSE(version.has_publish_time());

  auto get = StartGet(stub_.get(), GetRequest("", 0, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));
  ASSERT_TRUE(service_->Publish(Named("a", 1)).ok());
  ASSERT_TRUE(get->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(get->response.parameters().experiment_id(), "a");

  // One experiment: it is the one.
  ASSERT_TRUE(GetVersion("", &version).ok());
  EXPECT_EQ(version.version(), 1);

  // Several: the id is required.
  ASSERT_TRUE(service_->Publish(Named("b", 1)).ok());
  grpc::Status status = Get(GetRequest("", 0), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("experiment_id"));
  EXPECT_EQ(GetVersion("", &version).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ParameterServiceTest, UnknownExperimentWaitsForItsFirstPublishByDefault) {
  ASSERT_TRUE(service_->Publish(Named("a", 1)).ok());
  v1::GetVersionResponse version;
  ASSERT_TRUE(GetVersion("late", &version).ok());
  EXPECT_EQ(version.version(), 0);
  v1::GetParametersResponse response;
  ASSERT_TRUE(Get(GetRequest("late", 0), &response).ok());
  EXPECT_TRUE(response.not_modified());
  EXPECT_EQ(response.latest_version(), 0);

  auto get = StartGet(stub_.get(), GetRequest("late", 0, absl::Seconds(20)));
  ASSERT_TRUE(WaitersReach(1));
  ASSERT_TRUE(service_->Publish(Named("a", 2)).ok());
  EXPECT_FALSE(get->DoneWithin(absl::Milliseconds(50)));
  ASSERT_TRUE(service_->Publish(Named("late", 1)).ok());
  ASSERT_TRUE(get->DoneWithin(absl::Seconds(5)));
  EXPECT_EQ(get->response.parameters().experiment_id(), "late");
}

TEST_F(ParameterServiceTest, UnknownExperimentIsNotFoundWhenConfigured) {
  ParameterServiceImpl::Options options;
  options.wait_for_unknown_experiments = false;
  Start(options);
  ASSERT_TRUE(service_->Publish(Named("a", 1)).ok());
  v1::GetParametersResponse response;
  grpc::Status status = Get(GetRequest("nope", 0, absl::Seconds(5)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("\"nope\""));
  v1::GetVersionResponse version;
  EXPECT_EQ(GetVersion("nope", &version).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Get(GetRequest("a", 0), &response).ok());
}

TEST_F(ParameterServiceTest, ExportsMetrics) {
  ASSERT_TRUE(service_->Publish(Named("a", 1)).ok());
  ASSERT_TRUE(service_->Publish(Named("a", 2, /*version=*/5)).ok());
  ASSERT_TRUE(service_->Publish(Named("b", 1)).ok());
  v1::GetParametersResponse response;
  ASSERT_TRUE(Get(GetRequest("a", 0), &response).ok());
  ASSERT_TRUE(Get(GetRequest("a", 5), &response).ok());
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_publishes_total"), 3);
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_version", {{"experiment", "a"}}), 5);
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_version", {{"experiment", "b"}}), 1);
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_requests_total", {{"result", "sent"}}), 1);
  EXPECT_EQ(
      MetricValue(*registry_, "engram_parameter_requests_total", {{"result", "not_modified"}}), 1);
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_requests_total", {{"result", "error"}}), 0);
  EXPECT_GT(MetricValue(*registry_, "engram_parameter_bytes_sent_total"), 6 * 4);
  EXPECT_EQ(MetricValue(*registry_, "engram_parameter_waiters"), 0);
}

// ---- ParameterClient --------------------------------------------------------------------

ParameterClientOptions FastClientOptions(const std::string& experiment) {
  ParameterClientOptions options;
  options.experiment_id = experiment;
  options.client_id = "actor-0";
  options.max_wait = absl::Seconds(5);
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  return options;
}

TEST(ParameterClientOptionsTest, CreateRejectsBadOptions) {
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  ParameterClientOptions options;
  options.max_wait = absl::ZeroDuration();
  auto client = ParameterClient::Create(channel, options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), HasSubstr("max_wait"));
  options = ParameterClientOptions();
  options.max_backoff = absl::Milliseconds(1);
  client = ParameterClient::Create(channel, options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), HasSubstr("max_backoff"));
  EXPECT_EQ(ParameterClient::Create(nullptr, ParameterClientOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ParameterServiceTest, ClientReceivesSuccessiveVersions) {
  auto client = ParameterClient::Create(channel_, FastClientOptions("e")).value();
  EXPECT_EQ(client->Latest(), nullptr);
  EXPECT_EQ(client->latest_version(), 0);
  // Nothing published yet: the first wait times out, saying so.
  auto none = client->WaitForVersionOtherThan(0, absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(none.status().message(), HasSubstr("\"e\""));

  ASSERT_TRUE(service_->Publish(Named("e", 1)).ok());
  auto first = client->WaitForVersionOtherThan(0, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->version(), 1);
  EXPECT_TRUE(SameContent(**first, Named("e", 1)));

  ASSERT_TRUE(service_->Publish(Named("e", 2)).ok());
  auto second = client->WaitForVersionOtherThan(1, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->version(), 2);
  EXPECT_TRUE(SameContent(**second, Named("e", 2)));
  EXPECT_EQ(client->latest_version(), 2);
  EXPECT_EQ(client->Latest()->version(), 2);
  // The first set is still intact for whoever holds it.
  EXPECT_EQ((*first)->version(), 1);

  // Already there: no wait.
  auto again = client->WaitForVersionOtherThan(1, absl::Now());
  ASSERT_TRUE(again.ok());
  const ParameterClient::Stats stats = client->stats();
  EXPECT_EQ(stats.received, 2);
  EXPECT_EQ(stats.errors, 0);
  EXPECT_GE(stats.polls, 2);
  // The client's long-poll is waiting on the server now.
  ASSERT_TRUE(WaitersReach(1));
  client.reset();  // cancels it
  ASSERT_TRUE(WaitersReach(0));
}

TEST(ParameterClientTest, ReportsTheLastErrorWhenNoServerAnswers) {
  // A port nothing listens on: every call fails with UNAVAILABLE.
  ServerOptions server_options;
  server_options.address = "127.0.0.1:0";
  int port = 0;
  {
    auto server = Server::Start(server_options, {}).value();
    port = server->port();
  }
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  auto client = ParameterClient::Create(channel, FastClientOptions("e")).value();
  auto result = client->WaitForVersionOtherThan(0, absl::Now() + absl::Milliseconds(500));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(result.status().message(), HasSubstr("UNAVAILABLE"));
  EXPECT_GT(client->stats().errors, 0);
  EXPECT_EQ(client->stats().last_error.code(), absl::StatusCode::kUnavailable);
}

TEST(ParameterClientTest, SurvivesServerRestart) {
  ServerOptions server_options;
  server_options.address = "127.0.0.1:0";
  auto service = std::make_unique<ParameterServiceImpl>();
  auto server = Server::Start(server_options, {service.get()}).value();
  const int port = server->port();

  // Reconnect quickly once the new server is up (gRPC's default first backoff is 1 s).
  grpc::ChannelArguments args = MakeChannelArguments(ChannelOptions());
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                           grpc::InsecureChannelCredentials(), args);
  auto client = ParameterClient::Create(channel, FastClientOptions("e")).value();

  ASSERT_TRUE(service->Publish(Named("e", 1)).ok());
  ASSERT_TRUE(service->Publish(Named("e", 2)).ok());
  auto before = client->WaitForVersionOtherThan(0, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(before.ok()) << before.status();
  if ((*before)->version() == 1) {
    before = client->WaitForVersionOtherThan(1, absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(before.ok()) << before.status();
  }
  EXPECT_EQ((*before)->version(), 2);

  // The learner (and its server) goes away ...
  service->Shutdown();
  server->Shutdown(absl::Seconds(1));
  server.reset();
  service.reset();
  ASSERT_TRUE(Eventually([&] { return client->stats().errors > 0; }));
  EXPECT_EQ(client->latest_version(), 2);  // what it holds stays usable

  // ... and comes back on the same port, restarted from an older checkpoint: version 1
  // with other weights. It differs from what the client holds, so the client takes it.
  server_options.address = absl::StrCat("127.0.0.1:", port);
  service = std::make_unique<ParameterServiceImpl>();
  server = Server::Start(server_options, {service.get()}).value();
  ASSERT_TRUE(service->Publish(Named("e", 9)).ok());
  auto after = client->WaitForVersionOtherThan(2, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)->version(), 1);
  EXPECT_TRUE(SameContent(**after, Named("e", 9)));

  client.reset();
  service->Shutdown();
  server->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace engram::learner
