// engram_learner: the learner process of one Ape-X experiment.
//
// Serves the ParameterService (weights for actors), the ActorService (their progress
// reports) and ExperimentService.Get (the run's status) on --address; samples the replay
// shards, trains, publishes weights; checkpoints periodically, at the end of the budget and
// on SIGTERM/SIGINT, and resumes from the newest checkpoint when restarted. Exit codes: 0
// when the run finished or was stopped by a signal, 2 for bad flags or specs, 1 for other
// failures.

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/signals.h"
#include "learner/apex_learner.h"
#include "learner/core/compute_threads.h"
#include "learner/core/host_allocator.h"
#include "learner/experiment_spec.h"
#include "learner/parameter_service.h"
#include "learner/run_state.h"
#include "torch/torch.h"

ABSL_FLAG(std::string, experiment, "",
          "Path to the engram.v1.ExperimentSpec .textproto of the run (required).");
ABSL_FLAG(std::string, address, "0.0.0.0:7800",
          "host:port to serve gRPC on (ParameterService, ActorService, ExperimentService). Port "
          "0 picks a free port. Once serving, the process prints `engram_learner listening on "
          "<host>:<port>` on stdout.");
ABSL_FLAG(std::string, replay_addresses, "",
          "Comma-separated host:port of every replay shard, in shard order (required; as many "
          "as replay.num_shards).");
ABSL_FLAG(std::string, device, "",
          "auto, cpu, cuda or cuda:N; empty means the spec's learner_device. auto picks CUDA "
          "when LibTorch sees a GPU.");
ABSL_FLAG(int32_t, publish_every_updates, 20, "Updates between weight publications, >= 1.");
ABSL_FLAG(int32_t, threads, 1,
          "LibTorch intra-op threads for CPU training, >= 1 (measured: one thread trains a "
          "MinAtar network faster than two on a 2-core machine shared with actors).");
ABSL_FLAG(std::string, output_dir, "",
          "Directory for progress.csv and evaluations.csv; empty means runs/<experiment id>.");
ABSL_FLAG(absl::Duration, csv_interval, absl::Seconds(10), "Time between progress.csv rows.");
ABSL_FLAG(absl::Duration, log_interval, absl::Seconds(10), "Time between progress lines.");
ABSL_FLAG(absl::Duration, final_evaluation_timeout, absl::Minutes(5),
          "At the end of the budget, how long to wait for the final evaluation.");

namespace engram::learner {
namespace {

constexpr char kProgram[] = "engram_learner";

int Run(int argc, char** argv) {
  InitProcess(argc, argv,
              {.program = kProgram,
               .usage = absl::StrCat(
                   "The Ape-X learner: trains from the replay shards, publishes weights to the "
                   "actors, checkpoints and resumes.\nUsage: ",
                   kProgram,
                   " --experiment=spec.textproto --replay_addresses=127.0.0.1:7700 "
                   "--address=0.0.0.0:7800 [--device=auto]"),
               .flag_files = {"learner/main.cc", "common/server.cc", "common/metrics.cc"}});
  // First, before any thread exists: every thread must inherit the blocked SIGTERM/SIGINT
  // (one that does not would take the default action, killing the process mid-flush).
  ShutdownSignal shutdown;
  if (absl::GetFlag(FLAGS_experiment).empty()) Exit(2, "--experiment: required");
  absl::StatusOr<v1::ExperimentSpec> spec = ReadExperimentSpec(absl::GetFlag(FLAGS_experiment));
  if (!spec.ok()) Exit(2, absl::StrCat("--experiment: ", spec.status().message()));
  if (!spec->has_apex_dqn()) {
    Exit(2,
         "--experiment: this learner runs apex_dqn experiments (meta_rl, ewc and "
         "episodic_control are not supported by this version)");
  }
  ApexLearnerOptions options;
  options.spec = *spec;
  for (absl::string_view address :
       absl::StrSplit(absl::GetFlag(FLAGS_replay_addresses), ',', absl::SkipWhitespace())) {
    options.replay_addresses.emplace_back(address);
  }
  if (static_cast<int>(options.replay_addresses.size()) != spec->replay().num_shards()) {
    Exit(2, absl::StrCat("--replay_addresses: the experiment has ", spec->replay().num_shards(),
                         " replay shards, got ", options.replay_addresses.size(), " addresses"));
  }
  options.device = absl::GetFlag(FLAGS_device);
  options.publish_every_updates = absl::GetFlag(FLAGS_publish_every_updates);
  if (options.publish_every_updates < 1) Exit(2, "--publish_every_updates: must be >= 1");
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 1) Exit(2, absl::StrCat("--threads: must be >= 1, got ", threads));
  options.output_dir = absl::GetFlag(FLAGS_output_dir);
  if (options.output_dir.empty()) options.output_dir = absl::StrCat("runs/", spec->id());
  options.csv_interval = absl::GetFlag(FLAGS_csv_interval);
  options.log_interval = absl::GetFlag(FLAGS_log_interval);
  options.final_evaluation_timeout = absl::GetFlag(FLAGS_final_evaluation_timeout);
  options.channel.tls = TlsOptionsFromFlags();

  SetComputeThreads(threads);
  TuneHostAllocatorForTraining();

  absl::StatusOr<std::optional<FoundCheckpoint>> restore = FindCheckpoint(*spec);
  if (!restore.ok()) {
    Exit(absl::IsInvalidArgument(restore.status()) ? 2 : 1, restore.status().ToString());
  }
  RunState state(*spec, restore->has_value() ? (*restore)->counters : RunCounters{});
  ParameterServiceImpl parameters;
  ActorServiceImpl actors(&state);
  ExperimentStatusService experiments(&state);

  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::StartFromFlags("learner");
  if (!metrics.ok()) Exit(1, absl::StrCat("--metrics_port: ", metrics.status().message()));
  if ((*metrics)->port() >= 0) Log(absl::StrCat("metrics on port ", (*metrics)->port()));

  ServerOptions server_options;
  server_options.address = absl::GetFlag(FLAGS_address);
  server_options.tls = options.channel.tls;
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(server_options, {&parameters, &actors, &experiments});
  if (!server.ok()) {
    Exit(absl::IsInvalidArgument(server.status()) ? 2 : 1,
         absl::StrCat("--address: ", server.status().message()));
  }
  const std::string host = server_options.address.substr(0, server_options.address.rfind(':'));
  const std::string listening = absl::StrCat(host, ":", (*server)->port());

  absl::StatusOr<std::unique_ptr<ApexLearner>> learner =
      ApexLearner::Create(options, &state, &parameters, *restore, &(*metrics)->registry());
  if (!learner.ok()) {
    Exit(absl::IsInvalidArgument(learner.status()) ? 2 : 1, learner.status().ToString());
  }
  std::printf("%s listening on %s\n", kProgram, listening.c_str());
  std::fflush(stdout);
  Log(absl::StrCat("serving experiment \"", spec->id(), "\" on ", listening, ", training on ",
                   (*learner)->device()));

  const absl::Status status = (*learner)->Run(shutdown.flag());
  if (status.ok() && !shutdown.requested()) {
    // Give every actor a report round (1 s) to hear that the run is over.
    absl::SleepFor(absl::Seconds(3));
  }
  parameters.Shutdown();
  (*server)->Shutdown(absl::Seconds(2));
  learner->reset();
  if (!status.ok()) Exit(1, status.ToString());
  Log("stopped");
  std::fflush(nullptr);
  return 0;
}

}  // namespace
}  // namespace engram::learner

int main(int argc, char** argv) { return engram::learner::Run(argc, argv); }
