// engram_actor: one Ape-X actor process (training or evaluation) of an experiment.
//
// Flags name the experiment spec and where the replay shards and the learner are; the
// actor runs until the learner says the run is over, or SIGTERM/SIGINT (it then flushes
// what it has stepped and exits 0). Bad flags or specs exit 2; other failures exit 1.

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/apex_actor.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/signals.h"
#include "learner/experiment_spec.h"

ABSL_FLAG(std::string, experiment, "",
          "Path to the engram.v1.ExperimentSpec .textproto of the run (required). The learner "
          "and every actor must be given the same spec.");
ABSL_FLAG(std::string, role, "training",
          "training (steps environments with exploration, writes to replay) or evaluation "
          "(runs evaluation episodes when the learner asks).");
ABSL_FLAG(int32_t, actor_index, 0,
          "Training: this actor's index in [0, actors.num_actors); it picks the exploration "
          "epsilons, the environment seeds and the replay shard (index mod num_shards). "
          "Evaluation: any index >= 0.");
ABSL_FLAG(std::string, replay_addresses, "",
          "Comma-separated host:port of every replay shard, in shard order (training actors; "
          "required there).");
ABSL_FLAG(std::string, learner_address, "",
          "host:port of the learner (parameter and actor services). Required.");
ABSL_FLAG(absl::Duration, first_weights_timeout, absl::Minutes(5),
          "How long to wait for the learner's first weights before exiting with an error.");
ABSL_FLAG(int64_t, evaluation_max_episode_steps, 27000,
          "Evaluation actors: steps after which an evaluation episode is cut and reported as "
          "truncated (0: only the environment's own limit).");
ABSL_FLAG(absl::Duration, log_interval, absl::Seconds(30),
          "Time between progress lines on stderr (0: none).");

namespace engram::actor {
namespace {

constexpr char kProgram[] = "engram_actor";

int Run(int argc, char** argv) {
  InitProcess(argc, argv,
              {.program = kProgram,
               .usage = absl::StrCat(
                   "An Ape-X actor: steps environments, streams n-step transitions to its replay "
                   "shard, pulls weights from the learner.\nUsage: ",
                   kProgram,
                   " --experiment=spec.textproto --actor_index=0 "
                   "--replay_addresses=127.0.0.1:7700,127.0.0.1:7701 "
                   "--learner_address=127.0.0.1:7800"),
               .flag_files = {"actor/main.cc", "common/server.cc", "common/metrics.cc"}});
  // First, before any thread exists: every thread must inherit the blocked SIGTERM/SIGINT
  // (one that does not would take the default action, killing the process mid-flush).
  ShutdownSignal shutdown;
  ApexActorOptions options;
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "training") {
    options.role = v1::ACTOR_ROLE_TRAINING;
  } else if (role == "evaluation") {
    options.role = v1::ACTOR_ROLE_EVALUATION;
  } else {
    Exit(2, absl::StrCat("--role: expected training or evaluation, got \"", role, "\""));
  }
  if (absl::GetFlag(FLAGS_experiment).empty()) Exit(2, "--experiment: required");
  absl::StatusOr<v1::ExperimentSpec> spec =
      learner::ReadExperimentSpec(absl::GetFlag(FLAGS_experiment));
  if (!spec.ok()) Exit(2, absl::StrCat("--experiment: ", spec.status().message()));
  options.spec = *std::move(spec);
  options.actor_index = absl::GetFlag(FLAGS_actor_index);
  if (options.actor_index < 0) {
    Exit(2, absl::StrCat("--actor_index: must be >= 0, got ", options.actor_index));
  }
  for (absl::string_view address :
       absl::StrSplit(absl::GetFlag(FLAGS_replay_addresses), ',', absl::SkipWhitespace())) {
    options.replay_addresses.emplace_back(address);
  }
  if (options.role == v1::ACTOR_ROLE_TRAINING) {
    const int shards = options.spec.replay().num_shards();
    if (static_cast<int>(options.replay_addresses.size()) != shards) {
      Exit(2, absl::StrCat("--replay_addresses: the experiment has ", shards,
                           " replay shards, got ", options.replay_addresses.size(), " addresses"));
    }
  }
  options.learner_address = absl::GetFlag(FLAGS_learner_address);
  if (options.learner_address.empty()) Exit(2, "--learner_address: required");
  options.first_weights_timeout = absl::GetFlag(FLAGS_first_weights_timeout);
  options.evaluation_max_episode_steps = absl::GetFlag(FLAGS_evaluation_max_episode_steps);
  if (options.evaluation_max_episode_steps < 0) {
    Exit(2, "--evaluation_max_episode_steps: must be >= 0");
  }
  options.log_interval = absl::GetFlag(FLAGS_log_interval);
  options.channel.tls = TlsOptionsFromFlags();

  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::StartFromFlags("actor");
  if (!metrics.ok()) Exit(1, absl::StrCat("--metrics_port: ", metrics.status().message()));
  if ((*metrics)->port() >= 0) Log(absl::StrCat("metrics on port ", (*metrics)->port()));

  const absl::Status status = RunApexActor(options, shutdown.flag(), &(*metrics)->registry());
  if (!status.ok()) {
    Exit(absl::IsInvalidArgument(status) ? 2 : 1, status.ToString());
  }
  Log("stopped");
  std::fflush(nullptr);
  return 0;
}

}  // namespace
}  // namespace engram::actor

int main(int argc, char** argv) { return engram::actor::Run(argc, argv); }
