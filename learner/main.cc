// engram_learner: the learner process of an Engram cluster.
//
// Serves the ExperimentService (submit, list, status, watch, cancel, results), the
// ActorService (actor assignments and progress reports) and the ParameterService (weights
// for actors) on --address. Experiments run one at a time, in submission order (see
// learner/experiment_manager.h); each samples the replay shards, trains, publishes weights,
// and checkpoints periodically, at the end of its budget and on SIGTERM/SIGINT, resuming
// from the newest checkpoint when the learner restarts.
//
// Server mode (no --experiment) serves until SIGTERM. Single-run mode (--experiment) runs
// that experiment and exits. Exit codes: 0 when the run finished or the process was stopped
// by a signal, 2 for bad flags or specs, 1 for other failures.

#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/auth.h"
#include "common/client_limits.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/signals.h"
#include "learner/apex_learner.h"
#include "learner/core/compute_threads.h"
#include "learner/core/host_allocator.h"
#include "learner/episodic_control_run.h"
#include "learner/experiment_manager.h"
#include "learner/experiment_spec.h"
#include "learner/parameter_service.h"
#include "learner/run_state.h"
#include "torch/torch.h"

ABSL_FLAG(std::string, experiment, "",
          "Path to an engram.v1.ExperimentSpec .textproto: run this one experiment and exit when "
          "it ends (single-run mode). Empty: serve, taking experiments over RPC (engram submit) "
          "one at a time until SIGTERM (server mode).");
ABSL_FLAG(std::string, address, "0.0.0.0:7800",
          "host:port to serve gRPC on (ParameterService, ActorService, ExperimentService). Port "
          "0 picks a free port. Once serving, the process prints `engram_learner listening on "
          "<host>:<port>` on stdout.");
ABSL_FLAG(std::string, replay_addresses, "",
          "Comma-separated host:port of every replay shard of the cluster, in shard order "
          "(required). Experiments get this many shards (a spec asking for another number is "
          "rejected).");
ABSL_FLAG(std::string, runs_dir, "runs",
          "Server mode: each experiment's CSV, checkpoints (a relative checkpoint.directory is "
          "taken relative to it) and status go to <runs_dir>/<id>. Experiments found there that "
          "were queued or running are taken up again at start.");
ABSL_FLAG(std::string, device, "",
          "auto, cpu, cuda or cuda:N; empty means the spec's learner_device. auto picks CUDA "
          "when LibTorch sees a GPU.");
ABSL_FLAG(int32_t, publish_every_updates, 20, "Updates between weight publications, >= 1.");
ABSL_FLAG(int32_t, threads, 1,
          "LibTorch intra-op threads for CPU training, >= 1 (measured: one thread trains a "
          "MinAtar network faster than two on a 2-core machine shared with actors).");
ABSL_FLAG(std::string, output_dir, "",
          "Single-run mode: directory for progress.csv, evaluations.csv, relative checkpoint "
          "directories and the status; empty means <runs_dir>/<experiment id>.");
ABSL_FLAG(int32_t, max_queued, 100, "Server mode: experiments waiting at most, >= 1.");
ABSL_FLAG(absl::Duration, actor_lease, absl::Seconds(30),
          "An actor slot whose actor has not reported for this long goes to another actor.");
ABSL_FLAG(absl::Duration, csv_interval, absl::Seconds(10), "Time between progress.csv rows.");
ABSL_FLAG(absl::Duration, log_interval, absl::Seconds(10), "Time between progress lines.");
ABSL_FLAG(absl::Duration, final_evaluation_timeout, absl::Minutes(5),
          "At the end of the budget, how long to wait for the final evaluation.");

namespace engram::learner {
namespace {

constexpr char kProgram[] = "engram_learner";

// This learner runs every algorithm of experiment.proto.
absl::Status Supports(const v1::ExperimentSpec& spec) {
  if (!spec.has_apex_dqn() && !spec.has_ewc() && !spec.has_meta_rl() &&
      !spec.has_episodic_control()) {
    return absl::InvalidArgumentError(
        "algorithm: this learner runs apex_dqn, ewc, meta_rl and episodic_control experiments");
  }
  return absl::OkStatus();
}

// Trains one experiment taken from the queue until it ends, is cancelled, or the process
// stops. Errors end the experiment (FAILED), not the process.
absl::Status RunExperiment(const ExperimentManager::Run& run, ApexLearnerOptions options,
                           ExperimentManager* manager, ParameterServiceImpl* parameters,
                           prometheus::Registry* registry, bool drop_tables_at_end) {
  const std::string& id = run.spec.id();
  if (run.spec.has_episodic_control()) {
    // No networks, no replay: the books only (counters restart with a restarted learner).
    auto state = std::make_shared<RunState>(run.spec, RunCounters{});
    if (!manager->Started(id, state)) return absl::OkStatus();
    const absl::Status status =
        RunEpisodicControl({.output_dir = run.dir,
                            .csv_interval = options.csv_interval,
                            .log_interval = options.log_interval,
                            .final_evaluation_timeout = options.final_evaluation_timeout,
                            .registry = registry},
                           state.get(), manager->stop_running());
    manager->Ended(id, status);
    return status;
  }
  options.spec = run.spec;
  options.output_dir = run.dir;
  absl::StatusOr<std::optional<FoundCheckpoint>> restore = FindCheckpoint(run.spec);
  auto state = std::make_shared<RunState>(
      run.spec, restore.ok() && restore->has_value() ? (*restore)->counters : RunCounters{});
  if (!restore.ok()) {
    manager->Ended(id, restore.status());
    return restore.status();
  }
  if (restore->has_value()) Log(absl::StrCat("\"", id, "\" resumes from ", (*restore)->path));
  // Created (tables on the shards, first weights published) before actors are assigned.
  absl::StatusOr<std::unique_ptr<ApexLearner>> learner =
      ApexLearner::Create(options, state.get(), parameters, *restore, registry);
  if (!learner.ok()) {
    manager->Ended(id, learner.status());
    return learner.status();
  }
  if (!manager->Started(id, state)) return absl::OkStatus();  // cancelled meanwhile
  Log(absl::StrCat("training experiment \"", id, "\" on ", (*learner)->device()));
  const absl::Status status = (*learner)->Run(manager->stop_running());
  manager->Ended(id, status);
  // Server mode: an experiment that ended for good no longer needs its replay memory. The
  // actors hear of the end at their next report and flush what they hold first.
  absl::StatusOr<v1::ExperimentStatus> ended = manager->Get(id);
  if (drop_tables_at_end && ended.ok() && ended->state() != v1::EXPERIMENT_STATE_RUNNING &&
      ended->state() != v1::EXPERIMENT_STATE_QUEUED) {
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while (absl::Now() < until && !manager->stop_running().load()) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (!manager->stop_running().load()) (*learner)->DropReplayTables();
  }
  learner->reset();
  return status;
}

int Run(int argc, char** argv) {
  InitProcess(argc, argv,
              {.program = kProgram,
               .usage = absl::StrCat(
                   "The learner: takes experiments (over RPC, or one from --experiment), trains "
                   "them (Ape-X DQN, EWC over task sequences, meta-RL) from the replay shards or "
                   "keeps an episodic control "
                   "run's books, publishes weights to the actors, checkpoints and resumes.\n"
                   "Usage: ",
                   kProgram,
                   " --replay_addresses=127.0.0.1:7700 --address=0.0.0.0:7800 "
                   "[--experiment=spec.textproto] [--runs_dir=runs] [--device=auto]"),
               .flag_files = {"learner/main.cc", "common/server.cc", "common/auth.cc",
                              "common/client_limits.cc", "common/metrics.cc"}});
  // First, before any thread exists: every thread must inherit the blocked SIGTERM/SIGINT
  // (one that does not would take the default action, killing the process mid-flush).
  ShutdownSignal shutdown;
  const std::string experiment_path = absl::GetFlag(FLAGS_experiment);
  const bool single_run = !experiment_path.empty();
  std::optional<v1::ExperimentSpec> spec;
  if (single_run) {
    absl::StatusOr<v1::ExperimentSpec> read = ReadExperimentSpec(experiment_path);
    if (!read.ok()) Exit(2, absl::StrCat("--experiment: ", read.status().message()));
    spec = *std::move(read);
  }
  ApexLearnerOptions options;
  for (absl::string_view address :
       absl::StrSplit(absl::GetFlag(FLAGS_replay_addresses), ',', absl::SkipWhitespace())) {
    options.replay_addresses.emplace_back(address);
  }
  if (options.replay_addresses.empty()) Exit(2, "--replay_addresses: required");
  options.device = absl::GetFlag(FLAGS_device);
  options.publish_every_updates = absl::GetFlag(FLAGS_publish_every_updates);
  if (options.publish_every_updates < 1) Exit(2, "--publish_every_updates: must be >= 1");
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 1) Exit(2, absl::StrCat("--threads: must be >= 1, got ", threads));
  if (absl::GetFlag(FLAGS_max_queued) < 1) Exit(2, "--max_queued: must be >= 1");
  if (absl::GetFlag(FLAGS_actor_lease) <= absl::ZeroDuration())
    Exit(2, "--actor_lease: must be > 0");
  options.csv_interval = absl::GetFlag(FLAGS_csv_interval);
  options.log_interval = absl::GetFlag(FLAGS_log_interval);
  options.final_evaluation_timeout = absl::GetFlag(FLAGS_final_evaluation_timeout);
  options.channel.tls = TlsOptionsFromFlags();
  options.channel.auth_token = AuthTokenFromFlags();

  SetComputeThreads(threads);
  TuneHostAllocatorForTraining();

  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::StartFromFlags("learner");
  if (!metrics.ok()) Exit(1, absl::StrCat("--metrics_port: ", metrics.status().message()));
  if ((*metrics)->port() >= 0) Log(absl::StrCat("metrics on port ", (*metrics)->port()));

  ExperimentManagerOptions manager_options;
  manager_options.replay_addresses = options.replay_addresses;
  manager_options.runs_dir = absl::GetFlag(FLAGS_runs_dir);
  manager_options.reload = !single_run;
  manager_options.max_queued = absl::GetFlag(FLAGS_max_queued);
  manager_options.actor_lease = absl::GetFlag(FLAGS_actor_lease);
  manager_options.supports = Supports;
  manager_options.registry = &(*metrics)->registry();
  absl::StatusOr<std::unique_ptr<ExperimentManager>> manager =
      ExperimentManager::Create(manager_options);
  if (!manager.ok()) Exit(1, manager.status().ToString());
  if (single_run) {
    v1::SubmitExperimentRequest request;
    *request.mutable_spec() = *spec;
    absl::StatusOr<v1::SubmitExperimentResponse> submitted =
        (*manager)->Submit(request, absl::GetFlag(FLAGS_output_dir));
    if (!submitted.ok()) {
      Exit(absl::IsInvalidArgument(submitted.status()) ? 2 : 1,
           absl::StrCat("--experiment: ", submitted.status().message()));
    }
  }
  ParameterServiceImpl parameters;
  ActorServiceImpl actors(manager->get());
  ExperimentServiceImpl experiments(manager->get(), AuthorizerFromFlags(),
                                    ClientRateLimiterFromFlags());

  ServerOptions server_options;
  server_options.address = absl::GetFlag(FLAGS_address);
  server_options.tls = options.channel.tls;
  server_options.registry = &(*metrics)->registry();
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(server_options, {&parameters, &actors, &experiments});
  if (!server.ok()) {
    Exit(absl::IsInvalidArgument(server.status()) ? 2 : 1,
         absl::StrCat("--address: ", server.status().message()));
  }
  const std::string host = server_options.address.substr(0, server_options.address.rfind(':'));
  const std::string listening = absl::StrCat(host, ":", (*server)->port());
  std::printf("%s listening on %s\n", kProgram, listening.c_str());
  std::fflush(stdout);
  Log(single_run ? absl::StrCat("running experiment \"", spec->id(), "\" on ", listening)
                 : absl::StrCat("serving on ", listening, ", experiments in ",
                                manager_options.runs_dir, "; submit with `engram submit`"));

  // SIGTERM/SIGINT stop the running experiment (checkpointed, resumable) and the loop.
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done.load() && !shutdown.WaitFor(absl::Milliseconds(200))) {
    }
    (*manager)->Shutdown();
  });
  absl::Status last = absl::OkStatus();
  while (std::optional<ExperimentManager::Run> run = (*manager)->Next(shutdown.flag())) {
    last = RunExperiment(*run, options, manager->get(), &parameters, &(*metrics)->registry(),
                         /*drop_tables_at_end=*/!single_run);
    if (!last.ok())
      Log(absl::StrCat("experiment \"", run->spec.id(), "\" failed: ", last.ToString()));
    if (single_run) break;
  }
  if (single_run && last.ok() && !shutdown.requested()) {
    // Give every actor a report round (1 s) to hear that the run is over.
    absl::SleepFor(absl::Seconds(3));
  }
  done = true;
  watcher.join();
  parameters.Shutdown();
  (*server)->Shutdown(absl::Seconds(2));
  if (single_run && !last.ok()) Exit(absl::IsInvalidArgument(last) ? 2 : 1, last.ToString());
  Log("stopped");
  std::fflush(nullptr);
  return 0;
}

}  // namespace
}  // namespace engram::learner

int main(int argc, char** argv) { return engram::learner::Run(argc, argv); }
