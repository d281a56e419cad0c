#ifndef ENGRAM_DEPLOY_CLI_FORMAT_H_
#define ENGRAM_DEPLOY_CLI_FORMAT_H_

// How the `engram` tool prints numbers, durations and experiment statuses.

#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "engram/v1/experiment.pb.h"

namespace engram::cli {

// "1.23M", "45.6K", "789".
std::string Compact(double value);
// "h:mm:ss".
std::string Clock(absl::Duration d);
// The mean return, or "-" before any episode.
std::string ReturnText(const v1::ReturnSummary& r);
// "RUNNING", "SUCCEEDED", ...
std::string StateText(v1::ExperimentState state);
// One line of progress: state, time running, frames, rates, returns, lag, weights.
std::string ProgressLine(const v1::ExperimentStatus& s);
// Name and value of the rows about learning: episodes, train and eval return, policy lag,
// weights, checkpoint (when there is one).
std::vector<std::pair<std::string, std::string>> LearningRows(const v1::ExperimentStatus& s);
// Several lines: everything `engram status` shows.
std::string StatusText(const v1::ExperimentStatus& s);

}  // namespace engram::cli

#endif  // ENGRAM_DEPLOY_CLI_FORMAT_H_
