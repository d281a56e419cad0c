#include "deploy/cli/format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"

namespace engram::cli {
namespace {

using google::protobuf::util::TimeUtil;

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

// Time the experiment has been (or was) running.
absl::Duration Running(const v1::ExperimentStatus& s) {
  if (!s.has_start_time()) return absl::ZeroDuration();
  const absl::Time end = s.has_end_time()      ? FromProto(s.end_time())
                         : s.has_update_time() ? FromProto(s.update_time())
                                               : absl::Now();
  return std::max(absl::ZeroDuration(), end - FromProto(s.start_time()));
}

}  // namespace

std::string Compact(double value) {
  if (value >= 1e6) return absl::StrFormat("%.2fM", value / 1e6);
  if (value >= 1e4) return absl::StrFormat("%.1fK", value / 1e3);
  return absl::StrFormat("%.0f", value);
}

std::string Clock(absl::Duration d) {
  const int64_t s = absl::ToInt64Seconds(d);
  return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
}

std::string ReturnText(const v1::ReturnSummary& r) {
  return r.episodes() > 0 ? absl::StrFormat("%.2f", r.mean()) : std::string("-");
}

std::string StateText(v1::ExperimentState state) {
  const std::string name = v1::ExperimentState_Name(state);
  return name.size() > 17 ? name.substr(17) : name;  // drop "EXPERIMENT_STATE_"
}

std::string ProgressLine(const v1::ExperimentStatus& s) {
  return absl::StrFormat(
      "[%s] %s%s | frames %s (%s/s) | updates %s (%.1f/s) | lag %.1f | return: train %s, "
      "eval %s | weights v%d",
      Clock(Running(s)), StateText(s.state()),
      s.cancel_requested() && s.state() == v1::EXPERIMENT_STATE_RUNNING ? " (cancelling)" : "",
      Compact(s.frames()), Compact(s.throughput().frames_per_second()),
      Compact(s.learner_updates()), s.throughput().learner_updates_per_second(),
      s.policy_lag().mean_versions(), ReturnText(s.train_return()), ReturnText(s.eval_return()),
      s.parameter_version());
}

std::vector<std::pair<std::string, std::string>> LearningRows(const v1::ExperimentStatus& s) {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.emplace_back("episodes", absl::StrCat(s.episodes()));
  rows.emplace_back("train return",
                    s.train_return().episodes() > 0
                        ? absl::StrFormat("%.2f (min %.2f, max %.2f; last %d episodes)",
                                          s.train_return().mean(), s.train_return().min(),
                                          s.train_return().max(), s.train_return().episodes())
                        : "-");
  rows.emplace_back(
      "eval return",
      s.eval_return().episodes() > 0
          ? absl::StrFormat("%.2f (min %.2f, max %.2f; %d episodes at %d frames)",
                            s.eval_return().mean(), s.eval_return().min(), s.eval_return().max(),
                            s.eval_return().episodes(), s.eval_return().at_frames())
          : "-");
  for (const v1::TaskReturn& task : s.task_eval_returns()) {
    const v1::ReturnSummary& r = task.eval_return();
    rows.emplace_back(
        absl::StrCat("  task ", task.task()),
        absl::StrFormat("%.2f (%d episodes at %d frames)%s", r.mean(), r.episodes(), r.at_frames(),
                        task.task_index() == s.task_index() ? ", training" : ""));
  }
  rows.emplace_back("policy lag",
                    absl::StrFormat("%.2f versions (max %d)", s.policy_lag().mean_versions(),
                                    s.policy_lag().max_versions()));
  rows.emplace_back("weights", absl::StrCat("v", s.parameter_version()));
  if (!s.last_checkpoint().empty()) rows.emplace_back("checkpoint", s.last_checkpoint());
  return rows;
}

std::string StatusText(const v1::ExperimentStatus& s) {
  std::string out = absl::StrFormat("experiment %s%s\n", s.id(),
                                    s.name().empty() ? "" : absl::StrCat(" (", s.name(), ")"));
  auto row = [&out](const char* name, const std::string& value) {
    absl::StrAppendFormat(&out, "  %-16s %s\n", name, value);
  };
  row("state", absl::StrCat(StateText(s.state()),
                            s.cancel_requested() && s.state() == v1::EXPERIMENT_STATE_RUNNING
                                ? " (cancel requested)"
                                : ""));
  if (s.spec().has_environment()) row("environment", s.spec().environment().name());
  if (s.has_create_time()) row("submitted", TimeUtil::ToString(s.create_time()));
  if (s.has_start_time()) row("running for", Clock(Running(s)));
  row("frames",
      absl::StrFormat("%d (%s/s)", s.frames(), Compact(s.throughput().frames_per_second())));
  row("learner updates", absl::StrFormat("%d (%.1f/s)", s.learner_updates(),
                                         s.throughput().learner_updates_per_second()));
  row("replay items/s", absl::StrFormat("%s inserted, %s sampled",
                                        Compact(s.throughput().inserted_items_per_second()),
                                        Compact(s.throughput().sampled_items_per_second())));
  for (const auto& [name, value] : LearningRows(s)) row(name.c_str(), value);
  if (!s.error_message().empty()) row("error", s.error_message());
  return out;
}

}  // namespace engram::cli
