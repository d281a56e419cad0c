#ifndef ENGRAM_TESTS_EXPERIMENT_STATUS_H_
#define ENGRAM_TESTS_EXPERIMENT_STATUS_H_

// For process tests: a learner's ExperimentService.Get, once or polled until a condition.

#include <functional>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/server.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

namespace engram::testing {

// Experiment `id`'s status from the learner at `learner` (waiting up to 5 s for it to be
// reachable); a failed call is a test failure and returns an empty status.
inline v1::ExperimentStatus ExperimentStatusOf(const std::string& learner, const std::string& id) {
  auto channel = CreateChannel(learner, ChannelOptions());
  if (!channel.ok()) {
    ADD_FAILURE() << channel.status();
    return {};
  }
  auto stub = v1::ExperimentService::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  context.set_wait_for_ready(true);
  v1::GetExperimentRequest request;
  request.set_id(id);
  v1::ExperimentStatus status;
  grpc::Status rpc = stub->Get(&context, request, &status);
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();
  return status;
}

// Polls every 250 ms until `done` holds or `timeout` passes; returns the last status.
inline v1::ExperimentStatus WaitForExperiment(
    const std::string& learner, const std::string& id,
    const std::function<bool(const v1::ExperimentStatus&)>& done, absl::Duration timeout) {
  v1::ExperimentStatus status;
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    status = ExperimentStatusOf(learner, id);
    if (done(status)) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  return status;
}

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_EXPERIMENT_STATUS_H_
