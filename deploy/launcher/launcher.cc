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
#include "engram/v1/experiment.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "learner/experiment_spec.h"

namespace engram::launcher {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kStartTimeout = absl::Seconds(120);

struct Child {
  std::string name;  // "replay-0", "learner", "actor-3", "eval"
  std::string log;
  std::unique_ptr<Subprocess> process;
  std::optional<int> exit_code;
};

// "1.23M", "45.6K", "789".
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

  absl::StatusOr<LocalRunResult> Run() {
    const std::string spec_path = (fs::path(run_dir_) / "spec.textproto").string();
    ENGRAM_RETURN_IF_ERROR(WriteSpec(spec_path));
    const int shards = spec_.replay().num_shards();
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
    std::vector<std::string> learner_args = {absl::StrCat("--experiment=", spec_path),
                                             "--address=127.0.0.1:0", replay_flag,
                                             absl::StrCat("--output_dir=", run_dir_)};
    if (!options_.device.empty())
      learner_args.push_back(absl::StrCat("--device=", options_.device));
    ENGRAM_ASSIGN_OR_RETURN(learner_address_, StartServer("learner", "engram_learner", learner_args,
                                                          options_.learner_flags));
    const std::vector<std::string> actor_common = {
        absl::StrCat("--experiment=", spec_path), replay_flag,
        absl::StrCat("--learner_address=", learner_address_)};
    for (int i = 0; i < spec_.actors().num_actors(); ++i) {
      std::vector<std::string> args = actor_common;
      args.push_back(absl::StrCat("--actor_index=", i));
      ENGRAM_RETURN_IF_ERROR(
          StartProcess(absl::StrCat("actor-", i), "engram_actor", args, options_.actor_flags));
    }
    if (options_.evaluation) {
      std::vector<std::string> args = actor_common;
      args.push_back("--role=evaluation");
      ENGRAM_RETURN_IF_ERROR(StartProcess("eval", "engram_actor", args, options_.actor_flags));
    }
    std::printf(
        "cluster up: %d replay shard(s), learner at %s, %d actor(s) x %d env(s)%s; logs "
        "in %s/logs\n",
        shards, learner_address_.c_str(), spec_.actors().num_actors(),
        spec_.actors().envs_per_actor(), options_.evaluation ? " + 1 evaluation actor" : "",
        run_dir_.c_str());
    std::fflush(stdout);
    return Monitor();
  }

 private:
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
    ENGRAM_ASSIGN_OR_RETURN(child.process, Subprocess::Start(Argv(binary, args, extra), child.log,
                                                             /*own_process_group=*/true));
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
    if (stub_ == nullptr) {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
          CreateChannel(learner_address_, ChannelOptions());
      if (!channel.ok()) return std::nullopt;
      stub_ = v1::ExperimentService::NewStub(*channel);
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    v1::GetExperimentRequest request;
    request.set_id(spec_.id());
    v1::ExperimentStatus status;
    if (!stub_->Get(&context, request, &status).ok()) return std::nullopt;
    return status;
  }

  void PrintProgress(const v1::ExperimentStatus& s) {
    std::printf(
        "[%s] frames %s (%s/s) | updates %s (%.1f/s) | lag %.1f | return: train %s, "
        "eval %s | weights v%lld\n",
        Clock(absl::Now() - start_).c_str(), Compact(s.frames()).c_str(),
        Compact(s.throughput().frames_per_second()).c_str(), Compact(s.learner_updates()).c_str(),
        s.throughput().learner_updates_per_second(), s.policy_lag().mean_versions(),
        ReturnText(s.train_return()).c_str(), ReturnText(s.eval_return()).c_str(),
        static_cast<long long>(s.parameter_version()));
    std::fflush(stdout);
  }

  absl::StatusOr<LocalRunResult> Monitor() {
    LocalRunResult result;
    result.run_dir = run_dir_;
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
          result.error = absl::StrCat("the learner failed: ", status->error_message());
          break;
        }
        if (absl::Now() >= next_print) {
          PrintProgress(*status);
          next_print = absl::Now() + options_.progress_interval;
        }
      }
      Reap();
      bool died = false;
      for (const Child& child : children_) {
        if (!child.exit_code.has_value()) continue;
        result.error = absl::StrCat(child.name, " exited with code ", *child.exit_code,
                                    "; the end of ", child.log, ":\n", Tail(child.log, 15));
        died = true;
        break;
      }
      if (died) break;
    }
    if (result.succeeded) {
      // The learner tells every actor the run is over; give them a moment to flush.
      WaitForExit(
          [](const Child& c) { return c.name != "learner" && !absl::StartsWith(c.name, "replay"); },
          absl::Seconds(20));
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
    stop([](const Child& c) { return absl::StartsWith(c.name, "replay"); }, absl::Seconds(30));
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
    row("environment", spec_.environment().name());
    row("frames", absl::StrFormat("%d (%.0f/s over the run)", s.frames(), s.frames() / seconds));
    row("learner updates",
        absl::StrFormat("%d (%.1f/s, batch %d)", s.learner_updates(), s.learner_updates() / seconds,
                        spec_.apex_dqn().batch_size()));
    row("episodes", absl::StrCat(s.episodes()));
    row("train return", s.train_return().episodes() > 0
                            ? absl::StrFormat("%.2f (last %d episodes)", s.train_return().mean(),
                                              s.train_return().episodes())
                            : "-");
    row("eval return",
        s.eval_return().episodes() > 0
            ? absl::StrFormat("%.2f (min %.2f, max %.2f; %d episodes at %d frames)",
                              s.eval_return().mean(), s.eval_return().min(), s.eval_return().max(),
                              s.eval_return().episodes(), s.eval_return().at_frames())
            : "-");
    row("policy lag", absl::StrFormat("%.2f versions (max %d)", s.policy_lag().mean_versions(),
                                      s.policy_lag().max_versions()));
    row("weights", absl::StrCat("v", s.parameter_version()));
    if (!s.last_checkpoint().empty()) row("checkpoint", s.last_checkpoint());
    row("learning curve", (fs::path(run_dir_) / "progress.csv").string());
    row("evaluations", (fs::path(run_dir_) / "evaluations.csv").string());
    row("logs", (fs::path(run_dir_) / "logs").string() + "/");
    std::string codes;
    for (const Child& child : children_) {
      absl::StrAppend(&codes, codes.empty() ? "" : ", ", child.name, "=",
                      child.exit_code.has_value() ? absl::StrCat(*child.exit_code) : "?");
    }
    row("exit codes", codes);
    std::fflush(stdout);
  }

  const LocalRunOptions options_;
  const v1::ExperimentSpec spec_;
  const std::string run_dir_;
  ShutdownSignal* const shutdown_;
  const absl::Time start_ = absl::Now();
  std::vector<Child> children_;
  std::string learner_address_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
  v1::ExperimentStatus last_status_;
};

}  // namespace

absl::StatusOr<LocalRunResult> RunLocal(const LocalRunOptions& options, ShutdownSignal* shutdown) {
  ENGRAM_ASSIGN_OR_RETURN(v1::ExperimentSpec spec, learner::ReadExperimentSpec(options.spec_path));
  if (!spec.has_apex_dqn()) {
    return absl::InvalidArgumentError(
        "algorithm: the local launcher runs apex_dqn experiments in this version");
  }
  if (options.max_wall_time > absl::ZeroDuration()) {
    spec.mutable_budget()->mutable_max_wall_time()->set_seconds(
        absl::ToInt64Seconds(options.max_wall_time));
    spec.mutable_budget()->mutable_max_wall_time()->set_nanos(0);
  }
  if (options.max_frames > 0) spec.mutable_budget()->set_total_frames(options.max_frames);
  for (const char* binary : {"engram_replay_server", "engram_learner", "engram_actor"}) {
    if (!fs::exists(fs::path(options.bin_dir) / binary)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bin_dir: no ", binary, " in \"", options.bin_dir, "\" (build the project first)"));
    }
  }
  // A fresh directory per run, so that a second run of the same spec starts fresh; an
  // explicit --run_dir that holds checkpoints resumes from them.
  const std::string run_dir =
      options.run_dir.empty()
          ? absl::StrCat("runs/", spec.id(), "/",
                         absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()))
          : options.run_dir;
  if (!spec.checkpoint().directory().empty()) {
    spec.mutable_checkpoint()->set_directory((fs::path(run_dir) / "checkpoints").string());
  }
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
