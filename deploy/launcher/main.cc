// engram: the command-line tool. This version has one command, `local`, which runs a
// whole cluster on this machine from an experiment spec (deploy/launcher/launcher.h).

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/process.h"
#include "common/signals.h"
#include "deploy/launcher/launcher.h"

ABSL_FLAG(absl::Duration, max_wall_time, absl::ZeroDuration(),
          "local: stop the run after this long (e.g. 10m), overriding the spec's "
          "budget.max_wall_time; 0 keeps the spec's budget.");
ABSL_FLAG(int64_t, max_frames, 0,
          "local: stop after this many training frames, overriding budget.total_frames; 0 keeps "
          "the spec's.");
ABSL_FLAG(std::string, run_dir, "",
          "local: directory for the run's spec, logs, CSV and checkpoints; default "
          "runs/<experiment id>/<local time>. A directory with checkpoints resumes from them.");
ABSL_FLAG(std::string, device, "",
          "local: learner device (auto, cpu, cuda, cuda:N), overriding the spec's "
          "learner_device.");
ABSL_FLAG(bool, evaluation, true, "local: start an evaluation actor (--noevaluation: none).");
ABSL_FLAG(absl::Duration, progress_interval, absl::Seconds(10),
          "local: time between progress lines.");
ABSL_FLAG(std::string, bin_dir, "",
          "local: directory of engram_replay_server, engram_learner and engram_actor; default "
          "the directory of this program.");
ABSL_FLAG(std::string, learner_flags, "",
          "local: extra flags for the learner, space-separated (e.g. \"--log_interval=5s\").");
ABSL_FLAG(std::string, actor_flags, "", "local: extra flags for every actor, space-separated.");

namespace engram::launcher {
namespace {

constexpr char kUsage[] =
    "runs and manages Engram experiments.\n"
    "\n"
    "Commands:\n"
    "  engram local SPEC.textproto [flags]   run a whole cluster on this machine (replay\n"
    "                                        shards, learner, actors) until the spec's budget\n"
    "                                        is spent or Ctrl-C; prints progress and a summary.\n"
    "\n"
    "Example:\n"
    "  engram local deploy/experiments/breakout_apex.textproto --max_wall_time=10m\n";

int Main(int argc, char** argv) {
  const std::vector<std::string> args = InitProcess(argc, argv,
                                                    {.program = "engram",
                                                     .usage = kUsage,
                                                     .flag_files = {"deploy/launcher/main.cc"},
                                                     .allow_positional = true});
  // Before any thread exists, so that Ctrl-C reaches this process's orderly shutdown.
  ShutdownSignal shutdown;
  if (args.empty()) Exit(2, "missing command (see --help): engram local SPEC.textproto");
  if (args[0] != "local") Exit(2, absl::StrCat("unknown command \"", args[0], "\" (see --help)"));
  if (args.size() != 2) Exit(2, "usage: engram local SPEC.textproto [flags]");
  LocalRunOptions options;
  options.spec_path = args[1];
  options.max_wall_time = absl::GetFlag(FLAGS_max_wall_time);
  if (options.max_wall_time < absl::ZeroDuration()) Exit(2, "--max_wall_time: must be >= 0");
  options.max_frames = absl::GetFlag(FLAGS_max_frames);
  if (options.max_frames < 0) Exit(2, "--max_frames: must be >= 0");
  options.run_dir = absl::GetFlag(FLAGS_run_dir);
  options.device = absl::GetFlag(FLAGS_device);
  options.evaluation = absl::GetFlag(FLAGS_evaluation);
  options.progress_interval = absl::GetFlag(FLAGS_progress_interval);
  if (options.progress_interval <= absl::ZeroDuration()) {
    Exit(2, "--progress_interval: must be > 0");
  }
  options.bin_dir = absl::GetFlag(FLAGS_bin_dir);
  if (options.bin_dir.empty()) {
    options.bin_dir = std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
  }
  options.learner_flags = absl::GetFlag(FLAGS_learner_flags);
  options.actor_flags = absl::GetFlag(FLAGS_actor_flags);
  absl::StatusOr<LocalRunResult> result = RunLocal(options, &shutdown);
  if (absl::IsCancelled(result.status())) return 130;
  if (!result.ok()) {
    Exit(absl::IsInvalidArgument(result.status()) ? 2 : 1, result.status().message());
  }
  if (result->succeeded) return 0;
  return result->interrupted ? 130 : 1;
}

}  // namespace
}  // namespace engram::launcher

int main(int argc, char** argv) { return engram::launcher::Main(argc, argv); }
