// engram: the command-line tool. `local` runs a whole cluster on this machine from an
// experiment spec (deploy/launcher/launcher.h); submit, list, status, cancel, results and
// health talk to a running cluster's learner (deploy/cli/commands.h).

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/auth.h"
#include "common/process.h"
#include "common/signals.h"
#include "deploy/cli/commands.h"
#include "deploy/launcher/launcher.h"

ABSL_FLAG(std::string, server, "",
          "host:port of the learner (its ExperimentService); empty means $ENGRAM_SERVER, else "
          "localhost:7800.");
ABSL_FLAG(std::string, address, "", "health: host:port of the server to check (default --server).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "Deadline of each request to the server.");
ABSL_FLAG(std::string, id, "", "submit: use this experiment id instead of the spec's.");
ABSL_FLAG(bool, validate_only, false,
          "submit: only validate the spec and print it resolved; start nothing.");
ABSL_FLAG(bool, watch, false,
          "submit, status: follow the experiment with a progress line per update until it ends "
          "(exit code by its final state).");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(5), "--watch: time between progress lines.");
ABSL_FLAG(std::string, state, "",
          "list: only these states, comma-separated (queued, running, succeeded, failed, "
          "cancelled).");
ABSL_FLAG(bool, textproto, false, "status: print the whole status as a text proto.");
ABSL_FLAG(std::string, reason, "", "cancel: why, for the record.");
ABSL_FLAG(std::string, out_dir, "", "results: where to write the files; default ./<id>.");
ABSL_FLAG(std::string, files, "",
          "results: only these files, comma-separated (e.g. evaluations.csv); default all.");

ABSL_FLAG(absl::Duration, max_wall_time, absl::ZeroDuration(),
          "local: stop the run after this long (e.g. 10m), overriding the spec's "
          "budget.max_wall_time; 0 keeps the spec's budget.");
ABSL_FLAG(int64_t, max_frames, 0,
          "local: stop after this many training frames, overriding budget.total_frames; 0 keeps "
          "the spec's.");
ABSL_FLAG(std::string, run_dir, "",
          "local: directory for the run's spec, logs and the experiment's directory <id>/ (CSV, "
          "checkpoints); default runs/<experiment id>/<local time>, or runs/cluster in serve "
          "mode. A directory whose experiment has not ended resumes it.");
ABSL_FLAG(std::string, device, "",
          "local: learner device (auto, cpu, cuda, cuda:N), overriding the spec's "
          "learner_device.");
ABSL_FLAG(bool, evaluation, true, "local: start an evaluation actor (--noevaluation: none).");
ABSL_FLAG(absl::Duration, progress_interval, absl::Seconds(10),
          "local: time between progress lines.");
ABSL_FLAG(std::string, bin_dir, "",
          "local: directory of engram_replay_server, engram_learner, engram_actor and "
          "engram_episodic_store; default the directory of this program.");
ABSL_FLAG(std::string, learner_flags, "",
          "local: extra flags for the learner, space-separated (e.g. \"--log_interval=5s\").");
ABSL_FLAG(std::string, actor_flags, "", "local: extra flags for every actor, space-separated.");
ABSL_FLAG(int32_t, shards, 2, "local without a spec (serve mode): replay shards, >= 1.");
ABSL_FLAG(int32_t, actors, 2, "local without a spec (serve mode): training actors, >= 0.");
ABSL_FLAG(int32_t, metrics_port_base, 0,
          "local: give the cluster's processes /metrics ports from this one up (replay shards, "
          "learner, actors in order) and write <run_dir>/prometheus_targets.json for "
          "Prometheus's file_sd_configs; 0 lets every process pick a free port.");

namespace engram::launcher {
namespace {

constexpr char kUsage[] =
    "runs and manages Engram experiments.\n"
    "\n"
    "On this machine:\n"
    "  engram local SPEC.textproto [flags]   run a whole cluster here (replay shards, learner,\n"
    "                                        actors) until the spec's budget is spent or\n"
    "                                        Ctrl-C; prints progress and a summary.\n"
    "  engram local [--shards=2 --actors=2]  run the cluster here with no experiment and serve\n"
    "                                        `engram submit` until Ctrl-C (the topology of\n"
    "                                        docker-compose.yml).\n"
    "Against a running cluster (--server=HOST:PORT of the learner, or $ENGRAM_SERVER):\n"
    "  engram submit SPEC.textproto [--id=ID] [--watch] [--validate_only]\n"
    "  engram list [--state=running,queued]\n"
    "  engram status ID [--watch] [--textproto]\n"
    "  engram cancel ID [--reason=TEXT]\n"
    "  engram results ID [--out_dir=DIR] [--files=evaluations.csv]\n"
    "  engram health [--address=HOST:PORT]   gRPC health check (container probes)\n"
    "\n"
    "Exit codes: 0 ok (a watched experiment succeeded), 1 failed, 2 bad usage or a spec the\n"
    "server rejected, 3 not found or id taken, 4 server unreachable, 5 watched experiment\n"
    "cancelled, 130 interrupted.\n"
    "\n"
    "Examples:\n"
    "  engram local deploy/experiments/breakout_apex.textproto --max_wall_time=10m\n"
    "  engram submit deploy/experiments/breakout_apex.textproto --watch\n"
    "  engram results breakout-apex --out_dir=results/\n";

std::vector<std::string> SplitList(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipWhitespace());
}

// The client commands; `args` starts with the command.
int Client(const std::vector<std::string>& args) {
  cli::ClientOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  if (options.server.empty()) {
    const char* env = std::getenv("ENGRAM_SERVER");
    options.server = env != nullptr && *env != '\0' ? env : "localhost:7800";
  }
  options.timeout = absl::GetFlag(FLAGS_timeout);
  if (options.timeout <= absl::ZeroDuration()) Exit(2, "--timeout: must be > 0");
  options.tls = TlsOptionsFromFlags();
  options.auth_token = AuthTokenFromFlags();
  const absl::Duration interval = absl::GetFlag(FLAGS_interval);
  if (interval <= absl::ZeroDuration()) Exit(2, "--interval: must be > 0");
  const std::string& command = args[0];
  auto need = [&](size_t n, const char* usage) {
    if (args.size() != n) Exit(2, absl::StrCat("usage: ", usage));
  };
  if (command == "submit") {
    need(2, "engram submit SPEC.textproto [--id=ID] [--watch] [--validate_only]");
    return cli::Submit(options, args[1], absl::GetFlag(FLAGS_id),
                       absl::GetFlag(FLAGS_validate_only), absl::GetFlag(FLAGS_watch), interval);
  }
  if (command == "list") {
    need(1, "engram list [--state=running,queued]");
    std::vector<v1::ExperimentState> states;
    for (const std::string& name : SplitList(absl::GetFlag(FLAGS_state))) {
      const v1::ExperimentState state = cli::ParseState(name);
      if (state == v1::EXPERIMENT_STATE_UNSPECIFIED) {
        Exit(2, absl::StrCat("--state: \"", name,
                             "\" is not one of queued, running, succeeded, failed, cancelled"));
      }
      states.push_back(state);
    }
    return cli::List(options, states);
  }
  if (command == "status") {
    need(2, "engram status ID [--watch] [--textproto]");
    return cli::Status(options, args[1], absl::GetFlag(FLAGS_watch), interval,
                       absl::GetFlag(FLAGS_textproto));
  }
  if (command == "cancel") {
    need(2, "engram cancel ID [--reason=TEXT]");
    return cli::Cancel(options, args[1], absl::GetFlag(FLAGS_reason));
  }
  if (command == "results") {
    need(2, "engram results ID [--out_dir=DIR] [--files=a,b]");
    std::string out_dir = absl::GetFlag(FLAGS_out_dir);
    if (out_dir.empty()) out_dir = args[1];
    return cli::Results(options, args[1], out_dir, SplitList(absl::GetFlag(FLAGS_files)));
  }
  if (command == "health") {
    need(1, "engram health [--address=HOST:PORT]");
    if (!absl::GetFlag(FLAGS_address).empty()) options.server = absl::GetFlag(FLAGS_address);
    return cli::Health(options);
  }
  Exit(2, absl::StrCat("unknown command \"", command, "\" (see --help)"));
  return 2;
}

int Main(int argc, char** argv) {
  const std::vector<std::string> args =
      InitProcess(argc, argv,
                  {.program = "engram",
                   .usage = kUsage,
                   .flag_files = {"deploy/cli/main.cc", "common/server.cc", "common/auth.cc"},
                   .allow_positional = true});
  // Before any thread exists, so that Ctrl-C reaches this process's orderly shutdown.
  ShutdownSignal shutdown;
  if (args.empty())
    Exit(2, "missing command (see --help): local, submit, list, status, cancel, results, health");
  if (args[0] != "local") return Client(args);
  if (args.size() > 2) Exit(2, "usage: engram local [SPEC.textproto] [flags]");
  LocalRunOptions options;
  if (args.size() == 2) options.spec_path = args[1];
  options.shards = absl::GetFlag(FLAGS_shards);
  options.actors = absl::GetFlag(FLAGS_actors);
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
  options.metrics_port_base = absl::GetFlag(FLAGS_metrics_port_base);
  if (options.metrics_port_base < 0 || options.metrics_port_base > 65000) {
    Exit(2, "--metrics_port_base: must be in [0, 65000]");
  }
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
