#include "learner/parameter_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/status.h"
#include "common/status_macros.h"

namespace engram::learner {
namespace {

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ParameterClient>> ParameterClient::Create(
    std::shared_ptr<grpc::ChannelInterface> channel, ParameterClientOptions options) {
  if (channel == nullptr) return absl::InvalidArgumentError("channel: required");
  if (options.max_wait <= absl::ZeroDuration() || options.max_wait == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("max_wait: must be > 0 and finite, got ",
                                                   absl::FormatDuration(options.max_wait)));
  }
  if (options.transfer_timeout <= absl::ZeroDuration() ||
      options.transfer_timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("transfer_timeout: must be > 0 and finite, got ",
                                                   absl::FormatDuration(options.transfer_timeout)));
  }
  ENGRAM_RETURN_IF_ERROR(ValidateBackoff(options.initial_backoff, options.max_backoff));
  return std::unique_ptr<ParameterClient>(
      new ParameterClient(std::move(channel), std::move(options)));
}

ParameterClient::ParameterClient(std::shared_ptr<grpc::ChannelInterface> channel,
                                 ParameterClientOptions options)
    : options_(std::move(options)), stub_(v1::ParameterService::NewStub(std::move(channel))) {
  thread_ = std::thread([this] { Run(); });
}

ParameterClient::~ParameterClient() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // A context registered before its call starts is cancelled as the call starts.
    if (context_ != nullptr) context_->TryCancel();
  }
  thread_.join();
}

std::shared_ptr<const v1::ParameterSet> ParameterClient::Latest() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

int64_t ParameterClient::latest_version() const {
  absl::MutexLock lock(&mu_);
  return latest_ == nullptr ? 0 : latest_->version();
}

absl::StatusOr<std::shared_ptr<const v1::ParameterSet>> ParameterClient::WaitForVersionOtherThan(
    int64_t version, absl::Time deadline) const {
  struct Args {
    const ParameterClient* client;
    int64_t version;
  } args{this, version};
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithDeadline(
      absl::Condition(
          +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return a->client->stopping_ ||
                   (a->client->latest_ != nullptr && a->client->latest_->version() != a->version);
          },
          &args),
      deadline);
  if (latest_ != nullptr && latest_->version() != version) return latest_;
  if (stopping_) return absl::CancelledError("parameter client: shutting down");
  std::string last_error = stats_.last_error.ok()
                               ? std::string("no call failed")
                               : absl::StrCat("last error: ", stats_.last_error.ToString(), " (",
                                              stats_.consecutive_errors, " consecutive failures)");
  return absl::DeadlineExceededError(absl::StrCat(
      "parameter client: no weights other than version ", version, " of experiment \"",
      options_.experiment_id, "\" received before the deadline (holding version ",
      latest_ == nullptr ? 0 : latest_->version(), ", ", stats_.polls, " calls); ", last_error));
}

ParameterClient::Stats ParameterClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Duration ParameterClient::NextBackoffLocked() {
  return JitteredBackoff(stats_.consecutive_errors, options_.initial_backoff, options_.max_backoff,
                         rng_);
}

void ParameterClient::Run() {
  v1::GetParametersRequest request;
  request.set_experiment_id(options_.experiment_id);
  request.set_client_id(options_.client_id);
  SetDuration(options_.max_wait, request.mutable_max_wait());
  for (;;) {
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + options_.max_wait + options_.transfer_timeout));
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      context_ = &context;
      request.set_known_version(latest_ == nullptr ? 0 : latest_->version());
    }
    v1::GetParametersResponse response;
    absl::Status status = FromGrpc(stub_->GetParameters(&context, request, &response));
    if (status.ok() && !response.not_modified() &&
        (!response.has_parameters() || response.parameters().version() <= 0)) {
      status = absl::InternalError(absl::StrCat(
          "get_parameters: malformed answer: not_modified is false but it holds ",
          response.has_parameters() ? "weights of version " : "no weights",
          response.has_parameters() ? absl::StrCat(response.parameters().version()) : ""));
    }
    std::shared_ptr<const v1::ParameterSet> received;
    if (status.ok() && !response.not_modified()) {
      // Built outside the lock: moving the weights is cheap, freeing the old ones may not be.
      received =
          std::make_shared<const v1::ParameterSet>(std::move(*response.mutable_parameters()));
    }
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
    if (stopping_) break;
    ++stats_.polls;
    if (status.ok()) {
      stats_.consecutive_errors = 0;
      if (received != nullptr) {
        ++stats_.received;
        latest_.swap(received);
      } else {
        ++stats_.not_modified;
      }
      continue;
    }
    ++stats_.errors;
    ++stats_.consecutive_errors;
    stats_.last_error = status;
    const absl::Duration backoff = NextBackoffLocked();
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    if (stopping_) break;
  }
}

}  // namespace engram::learner
