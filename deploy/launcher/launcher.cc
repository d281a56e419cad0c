#include "deploy/launcher/launcher.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/process.h"
#include "common/server.h"
#include "common/signals.h"
#include "common/status_macros.h"
#include "common/subprocess.h"
#include "deploy/cli/format.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "learner/experiment_spec.h"

namespace engram::launcher {
namespace {

namespace fs = std::filesystem;
using cli::Clock;
using cli::Compact;

constexpr absl::Duration kStartTimeout = absl::Seconds(120);

struct Child {
  std::string name;  // "replay-0", "learner", "actor-3", "eval"
  std::string log;
  int metrics_port = 0;  // 0: picked by the process
  std::unique_ptr<Subprocess> process;
  std::optional<int> exit_code;
};

// The last `lines` lines of a file, indented.
std::string Tail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::vector<std::string> tail(all.end() - std::min<size_t>(all.size(), lines), all.end());
  return absl::StrCat("    ", absl::StrJoin(tail, "\n    "));
}

class LocalCluster {
 public:
  LocalCluster(LocalRunOptions options, v1::ExperimentSpec spec, std::string run_dir,
               ShutdownSignal* shutdown)
      : options_(std::move(options)),
        spec_(std::move(spec)),
        run_dir_(std::move(run_dir)),
        shutdown_(shutdown) {}

  ~LocalCluster() { StopAll(); }

  // The same topology as docker-compose.yml: replay shards, a learner in server mode, pool
  // actors that the learner assigns; the experiment is then submitted over RPC.
  absl::StatusOr<LocalRunResult> Run() {
    const bool serve = options_.spec_path.empty();
    if (!serve) ENGRAM_RETURN_IF_ERROR(WriteSpec((fs::path(run_dir_) / "spec.textproto").string()));
    const int shards = serve ? options_.shards : spec_.replay().num_shards();
    const int actors = serve ? options_.actors : spec_.actors().num_actors();
    std::vector<std::string> replay_addresses;
    for (int i = 0; i < shards; ++i) {
      ENGRAM_ASSIGN_OR_RETURN(
          std::string address,
          StartServer(absl::StrCat("replay-", i), "engram_replay_server",
                      {"--address=127.0.0.1:0", absl::StrCat("--shard_index=", i)}, ""));
      replay_addresses.push_back(address);
    }
    const std::string replay_flag =
        absl::StrCat("--replay_addresses=", absl::StrJoin(replay_addresses, ","));
    ENGRAM_ASSIGN_OR_RETURN(
        episodic_address_,
        StartServer("episodic-store", "engram_episodic_store",
                    {"--address=127.0.0.1:0",
                     absl::StrCat("--snapshot_dir=", (fs::path(run_dir_) / "episodic").string())},
                    ""));
    std::vector<std::string> learner_args = {"--address=127.0.0.1:0", replay_flag,
                                             absl::StrCat("--runs_dir=", run_dir_)};
    if (!options_.device.empty())
      learner_args.push_back(absl::StrCat("--device=", options_.device));
    ENGRAM_ASSIGN_OR_RETURN(learner_address_, StartServer("learner", "engram_learner", learner_args,
                                                          options_.learner_flags));
    const std::vector<std::string> actor_common = {
        replay_flag, absl::StrCat("--learner_address=", learner_address_),
        absl::StrCat("--episodic_address=", episodic_address_)};
    for (int i = 0; i < actors; ++i) {
      std::vector<std::string> args = actor_common;
      args.push_back(absl::StrCat("--name=actor-", i));
      ENGRAM_RETURN_IF_ERROR(
          StartProcess(absl::StrCat("actor-", i), "engram_actor", args, options_.actor_flags));
    }
    if (options_.evaluation) {
      std::vector<std::string> args = actor_common;
      args.push_back("--role=evaluation");
      args.push_back("--name=eval");
      ENGRAM_RETURN_IF_ERROR(StartProcess("eval", "engram_actor", args, options_.actor_flags));
    }
    ENGRAM_RETURN_IF_ERROR(WriteTargets());
    if (serve) {
      std::printf(
          "cluster up: %d replay shard(s), learner at %s, %d actor(s)%s, episodic store at %s; "
          "logs in %s/logs\n"
          "submit experiments with `engram submit SPEC.textproto --server=%s`; Ctrl-C stops "
          "the cluster\n",
          shards, learner_address_.c_str(), actors,
          options_.evaluation ? " + 1 evaluation actor" : "", episodic_address_.c_str(),
          run_dir_.c_str(), learner_address_.c_str());
      std::fflush(stdout);
      return Serve();
    }
    ENGRAM_RETURN_IF_ERROR(SubmitSpec());
    std::printf(
        "cluster up: %d replay shard(s), learner at %s, %d actor(s) x %d env(s)%s; logs "
        "in %s/logs\n",
        shards, learner_address_.c_str(), actors, spec_.actors().envs_per_actor(),
        options_.evaluation ? " + 1 evaluation actor" : "", run_dir_.c_str());
    std::printf("experiment %s: follow it with `engram status %s --watch --server=%s`\n",
                spec_.id().c_str(), spec_.id().c_str(), learner_address_.c_str());
    std::fflush(stdout);
    return Monitor();
  }

 private:
  // Submits the spec to the learner; a run directory that already holds this experiment
  // (a resumed run) keeps it if it has not ended.
  absl::Status SubmitSpec() {
    ENGRAM_RETURN_IF_ERROR(Connect());
    v1::SubmitExperimentRequest request;
    *request.mutable_spec() = spec_;
    v1::SubmitExperimentResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    const grpc::Status status = stub_->Submit(&context, request, &response);
    if (status.ok()) return absl::OkStatus();
    if (status.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          absl::StrCat("submitting ", spec_.id(), ": ", status.error_message()));
    }
    std::optional<v1::ExperimentStatus> existing = PollStatus();
    if (existing.has_value() && (existing->state() == v1::EXPERIMENT_STATE_QUEUED ||
                                 existing->state() == v1::EXPERIMENT_STATE_RUNNING)) {
      std::printf("resuming experiment %s from %s\n", spec_.id().c_str(), run_dir_.c_str());
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(
        absl::StrCat("run_dir: experiment ", spec_.id(), " already ended in ", run_dir_, " (state ",
                     existing.has_value() ? cli::StateText(existing->state()) : "unknown",
                     "); use another --run_dir"));
  }

  absl::Status Connect() {
    if (stub_ != nullptr) return absl::OkStatus();
    ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                            CreateChannel(learner_address_, ChannelOptions()));
    stub_ = v1::ExperimentService::NewStub(channel);
    return absl::OkStatus();
  }

  // Prometheus file_sd targets of every process that has a known /metrics port.
  absl::Status WriteTargets() {
    if (options_.metrics_port_base <= 0) return absl::OkStatus();
    std::vector<std::string> groups;
    for (const Child& child : children_) {
      const std::string component = absl::StartsWith(child.name, "replay") ? "replay"
                                    : child.name == "learner"              ? "learner"
                                    : child.name == "episodic-store"       ? "episodic_store"
                                                                           : "actor";
      groups.push_back(absl::StrFormat(
          R"(  {"targets": ["127.0.0.1:%d"], "labels": {"component": "%s", "process": "%s"}})",
          child.metrics_port, component, child.name));
    }
    const std::string path = (fs::path(run_dir_) / "prometheus_targets.json").string();
    std::ofstream out(path, std::ios::trunc);
    out << "[\n" << absl::StrJoin(groups, ",\n") << "\n]\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
    return absl::OkStatus();
  }

  absl::Status WriteSpec(const std::string& path) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(spec_, &text);
    std::ofstream out(path, std::ios::trunc);
    out << "# Resolved by `engram local` from " << options_.spec_path
        << " (every default filled in, budget overrides applied).\n"
        << "# proto-file: proto/engram/v1/experiment.proto\n"
        << "# proto-message: engram.v1.ExperimentSpec\n\n"
        << text;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
    return absl::OkStatus();
  }

  std::vector<std::string> Argv(const std::string& binary, const std::vector<std::string>& args,
                                const std::string& extra) {
    std::vector<std::string> argv = {(fs::path(options_.bin_dir) / binary).string()};
    argv.insert(argv.end(), args.begin(), args.end());
    for (absl::string_view flag : absl::StrSplit(extra, ' ', absl::SkipWhitespace())) {
      argv.emplace_back(flag);
    }
    return argv;
  }

  absl::Status StartProcess(const std::string& name, const std::string& binary,
                            const std::vector<std::string>& args, const std::string& extra) {
    if (shutdown_->requested()) return absl::CancelledError("interrupted while starting");
    Child child;
    child.name = name;
    child.log = (fs::path(run_dir_) / "logs" / (name + ".log")).string();
    std::vector<std::string> argv = Argv(binary, args, extra);
    if (options_.metrics_port_base > 0) {
      child.metrics_port = options_.metrics_port_base + static_cast<int>(children_.size());
      argv.push_back(absl::StrCat("--metrics_port=", child.metrics_port));
    }
    ENGRAM_ASSIGN_OR_RETURN(child.process,
                            Subprocess::Start(argv, child.log, /*own_process_group=*/true));
    children_.push_back(std::move(child));
    return absl::OkStatus();
  }

  // Starts a server process and returns the address it reports on stdout.
  absl::StatusOr<std::string> StartServer(const std::string& name, const std::string& binary,
                                          const std::vector<std::string>& args,
                                          const std::string& extra) {
    ENGRAM_RETURN_IF_ERROR(StartProcess(name, binary, args, extra));
    Child& child = children_.back();
    absl::StatusOr<std::string> line = child.process->WaitForLine("listening on ", kStartTimeout);
    if (!line.ok()) {
      return absl::UnavailableError(absl::StrCat(name, " did not start (", line.status().message(),
                                                 "); its log ", child.log, " ends with:\n",
                                                 Tail(child.log, 15)));
    }
    return std::string(absl::StripAsciiWhitespace(*line));
  }

  Child* Find(const std::string& name) {
    for (Child& child : children_) {
      if (child.name == name) return &child;
    }
    return nullptr;
  }

  // Collects exit codes of children that exited.
  void Reap() {
    for (Child& child : children_) {
      if (child.exit_code.has_value()) continue;
      absl::StatusOr<int> code = child.process->Wait(absl::ZeroDuration());
      if (code.ok()) child.exit_code = *code;
    }
  }

  std::optional<v1::ExperimentStatus> PollStatus() {
    if (!Connect().ok()) return std::nullopt;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    v1::GetExperimentRequest request;
    request.set_id(spec_.id());
    v1::ExperimentStatus status;
    if (!stub_->Get(&context, request, &status).ok()) return std::nullopt;
    return status;
  }

  void PrintProgress(const v1::ExperimentStatus& s) {
    std::printf("%s\n", cli::ProgressLine(s).c_str());
    std::fflush(stdout);
  }

  // Serve mode: runs until Ctrl-C / SIGTERM or a process dies.
  absl::StatusOr<LocalRunResult> Serve() {
    LocalRunResult result;
    result.run_dir = run_dir_;
    while (!shutdown_->WaitFor(absl::Seconds(1))) {
      Reap();
      if (std::optional<std::string> died = Died()) {
        result.error = *died;
        break;
      }
    }
    result.interrupted = result.error.empty();
    if (result.interrupted) std::printf("stopping the cluster (actors, learner, replay)\n");
    StopAll();
    if (!result.error.empty()) std::printf("error: %s\n", result.error.c_str());
    std::fflush(stdout);
    return result;
  }

  // Why the first child that exited did, if one did.
  std::optional<std::string> Died() const {
    for (const Child& child : children_) {
      if (!child.exit_code.has_value()) continue;
      return absl::StrCat(child.name, " exited with code ", *child.exit_code, "; the end of ",
                          child.log, ":\n", Tail(child.log, 15));
    }
    return std::nullopt;
  }

  absl::StatusOr<LocalRunResult> Monitor() {
    LocalRunResult result;
    result.run_dir = run_dir_;
    result.experiment_dir = experiment_dir();
    absl::Time next_print = absl::Now() + options_.progress_interval;
    while (true) {
      if (shutdown_->WaitFor(absl::Seconds(1))) {
        std::printf("interrupted: stopping the cluster (actors, learner, replay)\n");
        std::fflush(stdout);
        result.interrupted = true;
        break;
      }
      if (std::optional<v1::ExperimentStatus> status = PollStatus()) {
        last_status_ = *status;
        if (status->state() == v1::EXPERIMENT_STATE_SUCCEEDED) {
          result.succeeded = true;
          break;
        }
        if (status->state() == v1::EXPERIMENT_STATE_FAILED) {
          result.error = absl::StrCat("the experiment failed: ", status->error_message());
          break;
        }
        if (status->state() == v1::EXPERIMENT_STATE_CANCELLED) {
          result.error = "the experiment was cancelled (engram cancel)";
          break;
        }
        if (absl::Now() >= next_print) {
          PrintProgress(*status);
          next_print = absl::Now() + options_.progress_interval;
        }
      }
      Reap();
      if (std::optional<std::string> died = Died()) {
        result.error = *died;
        break;
      }
    }
    StopAll();
    if (!result.error.empty()) std::printf("error: %s\n", result.error.c_str());
    PrintSummary(result);
    return result;
  }

  template <typename Pred>
  void WaitForExit(Pred which, absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    for (Child& child : children_) {
      if (!which(child) || child.exit_code.has_value()) continue;
      absl::StatusOr<int> code =
          child.process->Wait(std::max(absl::ZeroDuration(), give_up - absl::Now()));
      if (code.ok()) child.exit_code = *code;
    }
  }

  // SIGTERM in dependency order: actors (they flush to replay), then the learner (it
  // checkpoints), then the replay shards. Whoever does not exit in time is killed.
  void StopAll() {
    auto stop = [this](auto which, absl::Duration grace) {
      for (Child& child : children_) {
        if (which(child) && !child.exit_code.has_value()) child.process->Signal(SIGTERM);
      }
      WaitForExit(which, grace);
      for (Child& child : children_) {
        if (which(child) && !child.exit_code.has_value()) {
          child.process->Signal(SIGKILL);
          absl::StatusOr<int> code = child.process->Wait(absl::Seconds(5));
          if (code.ok()) child.exit_code = *code;
        }
      }
    };
    stop([](const Child& c) { return absl::StartsWith(c.name, "actor") || c.name == "eval"; },
         absl::Seconds(40));
    stop([](const Child& c) { return c.name == "learner"; }, absl::Seconds(60));
    stop(
        [](const Child& c) {
          return absl::StartsWith(c.name, "replay") || c.name == "episodic-store";
        },
        absl::Seconds(30));
  }

  void PrintSummary(const LocalRunResult& result) {
    const v1::ExperimentStatus& s = last_status_;
    const double seconds = std::max(1e-9, absl::ToDoubleSeconds(absl::Now() - start_));
    std::string state = result.succeeded     ? "finished"
                        : result.interrupted ? "interrupted"
                                             : "failed";
    std::printf("\n== run %s %s after %s\n", spec_.id().c_str(), state.c_str(),
                Clock(absl::Now() - start_).c_str());
    auto row = [](const char* name, const std::string& value) {
      std::printf("  %-18s %s\n", name, value.c_str());
    };
    if (spec_.has_task_sequence()) {
      std::string tasks;
      for (const v1::Task& task : spec_.task_sequence().tasks()) {
        absl::StrAppend(&tasks, tasks.empty() ? "" : ", ", task.name(), " (",
                        task.environment().name(), ", ", task.frames(), " frames)");
      }
      row("tasks", tasks);
    } else {
      row("environment", spec_.environment().name());
    }
    row("frames", absl::StrFormat("%d (%.0f/s over the run)", s.frames(), s.frames() / seconds));
    if (!spec_.has_episodic_control()) {
      row("learner updates",
          absl::StrFormat("%d (%.1f/s, batch %d)", s.learner_updates(),
                          s.learner_updates() / seconds,
                          spec_.has_meta_rl() ? spec_.meta_rl().batch_size()
                                              : learner::DqnAlgorithmConfig(spec_).batch_size()));
    }
    for (const auto& [name, value] : cli::LearningRows(s)) row(name.c_str(), value);
    row("learning curve", (fs::path(experiment_dir()) / "progress.csv").string());
    row("evaluations", (fs::path(experiment_dir()) / "evaluations.csv").string());
    row("logs", (fs::path(run_dir_) / "logs").string() + "/");
    std::string codes;
    for (const Child& child : children_) {
      absl::StrAppend(&codes, codes.empty() ? "" : ", ", child.name, "=",
                      child.exit_code.has_value() ? absl::StrCat(*child.exit_code) : "?");
    }
    row("exit codes", codes);
    std::fflush(stdout);
  }

  std::string experiment_dir() const { return (fs::path(run_dir_) / spec_.id()).string(); }

  const LocalRunOptions options_;
  const v1::ExperimentSpec spec_;
  const std::string run_dir_;
  ShutdownSignal* const shutdown_;
  const absl::Time start_ = absl::Now();
  std::vector<Child> children_;
  std::string learner_address_;
  std::string episodic_address_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
  v1::ExperimentStatus last_status_;
};

}  // namespace

absl::StatusOr<LocalRunResult> RunLocal(const LocalRunOptions& options, ShutdownSignal* shutdown) {
  for (const char* binary :
       {"engram_replay_server", "engram_learner", "engram_actor", "engram_episodic_store"}) {
    if (!fs::exists(fs::path(options.bin_dir) / binary)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bin_dir: no ", binary, " in \"", options.bin_dir, "\" (build the project first)"));
    }
  }
  if (options.spec_path.empty()) {  // serve mode
    if (options.shards < 1) return absl::InvalidArgumentError("shards: must be >= 1");
    if (options.actors < 0) return absl::InvalidArgumentError("actors: must be >= 0");
    const std::string run_dir = options.run_dir.empty() ? "runs/cluster" : options.run_dir;
    std::error_code error;
    fs::create_directories(fs::path(run_dir) / "logs", error);
    if (error) {
      return absl::InvalidArgumentError(
          absl::StrCat("run_dir: cannot create \"", run_dir, "\": ", error.message()));
    }
    LocalCluster cluster(options, v1::ExperimentSpec(), run_dir, shutdown);
    return cluster.Run();
  }
  ENGRAM_ASSIGN_OR_RETURN(v1::ExperimentSpec spec, learner::ReadExperimentSpec(options.spec_path));
  if (spec.algorithm_case() == v1::ExperimentSpec::ALGORITHM_NOT_SET) {
    return absl::InvalidArgumentError("algorithm: the spec names none");
  }
  if (options.max_wall_time > absl::ZeroDuration()) {
    spec.mutable_budget()->mutable_max_wall_time()->set_seconds(
        absl::ToInt64Seconds(options.max_wall_time));
    spec.mutable_budget()->mutable_max_wall_time()->set_nanos(0);
  }
  if (options.max_frames > 0) spec.mutable_budget()->set_total_frames(options.max_frames);
  // A fresh directory per run, so that a second run of the same spec starts fresh; an
  // explicit --run_dir that holds checkpoints resumes from them.
  const std::string run_dir =
      options.run_dir.empty()
          ? absl::StrCat("runs/", spec.id(), "/",
                         absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()))
          : options.run_dir;
  // Relative: the learner keeps it in the experiment's directory, <run_dir>/<id>/checkpoints.
  if (!spec.checkpoint().directory().empty())
    spec.mutable_checkpoint()->set_directory("checkpoints");
  std::error_code error;
  fs::create_directories(fs::path(run_dir) / "logs", error);
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("run_dir: cannot create \"", run_dir, "\": ", error.message()));
  }
  LocalCluster cluster(options, std::move(spec), run_dir, shutdown);
  return cluster.Run();
}

}  // namespace engram::launcher
