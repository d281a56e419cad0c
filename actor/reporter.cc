#include "actor/reporter.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/status.h"
#include "common/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/client_context.h"

namespace engram::actor {

uint64_t DrawIncarnation() {
  absl::BitGen gen;
  uint64_t value = 0;
  while (value == 0) value = absl::Uniform<uint64_t>(gen);
  return value;
}

absl::StatusOr<std::unique_ptr<ProgressReporter>> ProgressReporter::Create(
    std::shared_ptr<grpc::ChannelInterface> channel, ReporterOptions options) {
  if (options.experiment_id.empty()) {
    return absl::InvalidArgumentError("experiment_id: required");
  }
  if (options.actor_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("actor_index: must be >= 0, got ", options.actor_index));
  }
  if (options.role == v1::ACTOR_ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError("role: must be training or evaluation");
  }
  if (options.interval <= absl::ZeroDuration() || options.rpc_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("interval and rpc_timeout: must be > 0");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateBackoff(options.initial_backoff, options.max_backoff));
  return std::unique_ptr<ProgressReporter>(
      new ProgressReporter(std::move(channel), std::move(options)));
}

ProgressReporter::ProgressReporter(std::shared_ptr<grpc::ChannelInterface> channel,
                                   ReporterOptions options)
    : options_(std::move(options)),
      stub_(v1::ActorService::NewStub(std::move(channel))),
      incarnation_(options_.incarnation != 0 ? options_.incarnation : DrawIncarnation()) {
  thread_ = std::thread([this] { Run(); });
}

ProgressReporter::~ProgressReporter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void ProgressReporter::AddFrames(int64_t frames) {
  absl::MutexLock lock(&mu_);
  accumulated_.set_frames(accumulated_.frames() + frames);
}

void ProgressReporter::AddEpisode(v1::EpisodeResult episode) {
  absl::MutexLock lock(&mu_);
  *accumulated_.add_episodes() = std::move(episode);
}

void ProgressReporter::SetPolicyVersion(int64_t version) {
  absl::MutexLock lock(&mu_);
  policy_version_ = version;
}

void ProgressReporter::CompleteEvaluation(int64_t index, std::vector<v1::EpisodeResult> episodes) {
  absl::MutexLock lock(&mu_);
  // One evaluation per report: an earlier one still accumulating goes out first.
  if (accumulated_.evaluation_index() != 0 && accumulated_.evaluation_index() != index) {
    flush_target_ = std::max(flush_target_, next_sequence_);
    mu_.Await(absl::Condition(
        +[](ProgressReporter* r) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return r->accumulated_.evaluation_index() == 0 || r->stopping_;
        },
        this));
  }
  accumulated_.set_evaluation_index(index);
  accumulated_.set_evaluation_complete(true);
  for (v1::EpisodeResult& episode : episodes) *accumulated_.add_episodes() = std::move(episode);
}

absl::Status ProgressReporter::Flush(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const int64_t target = next_sequence_;
  flush_target_ = std::max(flush_target_, target);
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return acknowledged_ >= target || stopping_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
  if (acknowledged_ >= target) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat("progress report ", target,
                   " not acknowledged by the learner; last error: ", stats_.last_error.ToString()));
}

v1::ActorReportResponse ProgressReporter::last_response() const {
  absl::MutexLock lock(&mu_);
  return response_;
}

bool ProgressReporter::connected() const {
  absl::MutexLock lock(&mu_);
  return acknowledged_ > 0;
}

v1::ActorReportResponse ProgressReporter::WaitForResponseChange(const v1::ActorReportResponse& seen,
                                                                absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto changed = [this, &seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !google::protobuf::util::MessageDifferencer::Equals(response_, seen);
  };
  mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
  return response_;
}

ProgressReporter::Stats ProgressReporter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void ProgressReporter::BuildPendingLocked() {
  pending_ = std::move(accumulated_);
  accumulated_.Clear();
  pending_.set_experiment_id(options_.experiment_id);
  pending_.set_actor_index(options_.actor_index);
  pending_.set_role(options_.role);
  pending_.set_incarnation(incarnation_);
  pending_.set_sequence(next_sequence_++);
  pending_.set_policy_version(policy_version_);
  has_pending_ = true;
}

void ProgressReporter::Run() {
  absl::Time next_report = absl::InfinitePast();  // the first report goes out at once
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    if (!has_pending_) {
      auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || flush_target_ >= next_sequence_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&due), next_report);
      if (stopping_) break;
      BuildPendingLocked();
    }
    v1::ActorReportRequest request = pending_;
    mu_.Unlock();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
    v1::ActorReportResponse response;
    const absl::Status status = FromGrpc(stub_->Report(&context, request, &response));
    mu_.Lock();
    if (status.ok()) {
      has_pending_ = false;
      acknowledged_ = request.sequence();
      response_ = std::move(response);
      if (response_.stop()) stop_requested_.store(true, std::memory_order_relaxed);
      failed_attempts_ = 0;
      ++stats_.reports_acknowledged;
      next_report = absl::Now() + options_.interval;
      continue;
    }
    ++stats_.failures;
    stats_.last_error = status;
    // INVALID_ARGUMENT and FAILED_PRECONDITION will not heal by resending; they are kept in
    // stats (the actor logs them) and retried like the rest, so that nothing is dropped
    // silently while an operator fixes the cluster.
    ++failed_attempts_;
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(
        absl::Condition(&stop),
        JitteredBackoff(failed_attempts_, options_.initial_backoff, options_.max_backoff, rng_));
  }
}

}  // namespace engram::actor
