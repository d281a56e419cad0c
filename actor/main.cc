// engram_actor: one Ape-X actor process (training or evaluation).
//
// Pool mode (no --experiment): the actor asks the learner for an assignment (experiment,
// actor slot, shard), runs it until the learner says the run is over, and asks again; it
// serves every experiment the learner runs until SIGTERM/SIGINT. Fixed mode
// (--experiment, --actor_index): it runs that experiment as that actor and exits when the
// run is over. On SIGTERM/SIGINT it flushes what it has stepped and exits 0. Bad flags or
// specs exit 2; other failures exit 1 (in pool mode, a failed assignment is logged and the
// actor asks for another).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/apex_actor.h"
#include "actor/episodic_actor.h"
#include "actor/meta_rl_actor.h"
#include "actor/reporter.h"
#include "common/auth.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/signals.h"
#include "engram/v1/actor.grpc.pb.h"
#include "learner/experiment_spec.h"

ABSL_FLAG(std::string, experiment, "",
          "Fixed mode: path to the engram.v1.ExperimentSpec .textproto of the run (the learner "
          "and every actor must be given the same spec). Empty: pool mode, the learner assigns "
          "experiments and actor slots.");
ABSL_FLAG(std::string, role, "training",
          "training (steps environments with exploration, writes to replay) or evaluation "
          "(runs evaluation episodes when the learner asks).");
ABSL_FLAG(int32_t, actor_index, 0,
          "Fixed mode, training: this actor's index in [0, actors.num_actors); it picks the "
          "exploration epsilons, the environment seeds and the replay shard (index mod "
          "num_shards). Evaluation: any index >= 0. Pool mode: assigned by the learner.");
ABSL_FLAG(std::string, replay_addresses, "",
          "Comma-separated host:port of every replay shard, in shard order (training actors; "
          "required in fixed mode). Pool mode: empty means the addresses the learner gives.");
ABSL_FLAG(std::string, learner_address, "",
          "host:port of the learner (parameter and actor services). Required.");
ABSL_FLAG(absl::Duration, first_weights_timeout, absl::Minutes(5),
          "How long to wait for the learner's first weights before exiting with an error.");
ABSL_FLAG(int64_t, evaluation_max_episode_steps, 27000,
          "Evaluation actors: steps after which an evaluation episode is cut and reported as "
          "truncated (0: only the environment's own limit).");
ABSL_FLAG(std::string, episodic_address, "",
          "host:port of the episodic store (engram_episodic_store); needed by episodic_control "
          "experiments, unused by others.");
ABSL_FLAG(std::string, name, "",
          "Pool mode: this actor's name in the learner's logs; empty means the host name.");
ABSL_FLAG(absl::Duration, log_interval, absl::Seconds(30),
          "Time between progress lines on stderr (0: none).");

namespace engram::actor {
namespace {

constexpr char kProgram[] = "engram_actor";

// The actor loop of the experiment's algorithm.
absl::Status RunActor(const ApexActorOptions& options, const std::atomic<bool>& stop,
                      prometheus::Registry* registry) {
  if (options.spec.has_episodic_control()) return RunEpisodicActor(options, stop, registry);
  if (options.spec.has_meta_rl()) return RunMetaRlActor(options, stop, registry);
  return RunApexActor(options, stop, registry);
}

// Sleeps up to `d`; false when `stop` became true.
bool SleepUnlessStopped(absl::Duration d, const std::atomic<bool>& stop) {
  const absl::Time until = absl::Now() + d;
  while (!stop.load() && absl::Now() < until) {
    absl::SleepFor(std::min(absl::Milliseconds(100), until - absl::Now()));
  }
  return !stop.load();
}

// Pool mode: asks the learner for work, runs it, asks again, until `stop`.
void RunPool(ApexActorOptions options, const std::vector<std::string>& own_replay_addresses,
             const std::atomic<bool>& stop, prometheus::Registry* registry) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateChannel(options.learner_address, options.channel);
  if (!channel.ok()) Exit(2, absl::StrCat("--learner_address: ", channel.status().message()));
  std::unique_ptr<v1::ActorService::Stub> stub = v1::ActorService::NewStub(*channel);
  v1::GetAssignmentRequest request;
  request.set_role(options.role);
  request.set_incarnation(DrawIncarnation());
  std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    name = host;
  }
  request.set_actor_name(name);
  Log(absl::StrCat("pool mode: asking ", options.learner_address, " for work as \"", name, "\""));
  absl::Time last_complaint = absl::InfinitePast();
  bool waiting_logged = false;
  while (!stop.load()) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::GetAssignmentResponse assignment;
    options.incarnation = request.incarnation();  // the reports hold the slot
    const grpc::Status status = stub->GetAssignment(&context, request, &assignment);
    if (!status.ok()) {
      if (absl::Now() - last_complaint > absl::Minutes(1)) {
        Log(absl::StrCat("learner ", options.learner_address, " not answering (",
                         status.error_message(), "); retrying"));
        last_complaint = absl::Now();
      }
      SleepUnlessStopped(absl::Seconds(2), stop);
      continue;
    }
    if (!assignment.assigned()) {
      if (!waiting_logged) Log("no work: waiting for an experiment (or a free actor slot)");
      waiting_logged = true;
      const int64_t ms =
          assignment.retry_after().seconds() * 1000 + assignment.retry_after().nanos() / 1000000;
      SleepUnlessStopped(absl::Milliseconds(std::clamp<int64_t>(ms, 100, 10000)), stop);
      continue;
    }
    waiting_logged = false;
    options.spec = assignment.spec();
    options.actor_index = assignment.actor_index();
    options.replay_addresses = own_replay_addresses;
    if (options.replay_addresses.empty()) {
      options.replay_addresses.assign(assignment.replay_addresses().begin(),
                                      assignment.replay_addresses().end());
    }
    if (options.role == v1::ACTOR_ROLE_TRAINING &&
        static_cast<int>(options.replay_addresses.size()) != options.spec.replay().num_shards()) {
      Log(absl::StrCat("experiment \"", assignment.experiment_id(), "\" has ",
                       options.spec.replay().num_shards(),
                       " replay shards but --replay_addresses "
                       "names ",
                       options.replay_addresses.size(), "; waiting"));
      SleepUnlessStopped(absl::Seconds(10), stop);
      continue;
    }
    Log(absl::StrCat("assigned to experiment \"", assignment.experiment_id(), "\" as ",
                     options.role == v1::ACTOR_ROLE_TRAINING ? "training" : "evaluation", " actor ",
                     options.actor_index,
                     options.role == v1::ACTOR_ROLE_TRAINING
                         ? absl::StrCat(" (replay shard ", assignment.replay_shard(), ")")
                         : ""));
    const absl::Status run = RunActor(options, stop, registry);
    // A fresh incarnation for the next assignment: its reports start a new sequence.
    request.set_incarnation(DrawIncarnation());
    if (!run.ok()) {
      Log(absl::StrCat("experiment \"", assignment.experiment_id(),
                       "\" ended with an error: ", run.ToString()));
      SleepUnlessStopped(absl::Seconds(5), stop);
    } else if (!stop.load()) {
      Log(absl::StrCat("experiment \"", assignment.experiment_id(), "\" is over"));
      SleepUnlessStopped(absl::Seconds(1), stop);  // the learner may still be finishing it
    }
  }
}

int Run(int argc, char** argv) {
  InitProcess(
      argc, argv,
      {.program = kProgram,
       .usage = absl::StrCat(
           "An actor: steps environments with the experiment's policy (Ape-X and EWC: n-step "
           "transitions, switching task with the learner; meta-RL: recurrent chunks; episodic "
           "control: the episodic store), "
           "streams experience to its replay shard, pulls weights from the learner.\nUsage: ",
           kProgram, " --learner_address=127.0.0.1:7800 [--role=evaluation]   (pool mode)\n       ",
           kProgram,
           " --learner_address=127.0.0.1:7800 --experiment=spec.textproto --actor_index=0 "
           "--replay_addresses=127.0.0.1:7700,127.0.0.1:7701   (fixed mode)"),
       .flag_files = {"actor/main.cc", "common/server.cc", "common/auth.cc", "common/metrics.cc"}});
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
  const bool pool = absl::GetFlag(FLAGS_experiment).empty();
  options.actor_index = absl::GetFlag(FLAGS_actor_index);
  if (options.actor_index < 0) {
    Exit(2, absl::StrCat("--actor_index: must be >= 0, got ", options.actor_index));
  }
  for (absl::string_view address :
       absl::StrSplit(absl::GetFlag(FLAGS_replay_addresses), ',', absl::SkipWhitespace())) {
    options.replay_addresses.emplace_back(address);
  }
  if (!pool) {
    absl::StatusOr<v1::ExperimentSpec> spec =
        learner::ReadExperimentSpec(absl::GetFlag(FLAGS_experiment));
    if (!spec.ok()) Exit(2, absl::StrCat("--experiment: ", spec.status().message()));
    options.spec = *std::move(spec);
    if (options.role == v1::ACTOR_ROLE_TRAINING) {
      const int shards = options.spec.replay().num_shards();
      if (static_cast<int>(options.replay_addresses.size()) != shards) {
        Exit(2,
             absl::StrCat("--replay_addresses: the experiment has ", shards, " replay shards, got ",
                          options.replay_addresses.size(), " addresses"));
      }
    }
  }
  options.learner_address = absl::GetFlag(FLAGS_learner_address);
  options.episodic_address = absl::GetFlag(FLAGS_episodic_address);
  if (options.learner_address.empty()) Exit(2, "--learner_address: required");
  options.first_weights_timeout = absl::GetFlag(FLAGS_first_weights_timeout);
  options.evaluation_max_episode_steps = absl::GetFlag(FLAGS_evaluation_max_episode_steps);
  if (options.evaluation_max_episode_steps < 0) {
    Exit(2, "--evaluation_max_episode_steps: must be >= 0");
  }
  options.log_interval = absl::GetFlag(FLAGS_log_interval);
  options.channel.tls = TlsOptionsFromFlags();
  options.channel.auth_token = AuthTokenFromFlags();

  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::StartFromFlags("actor");
  if (!metrics.ok()) Exit(1, absl::StrCat("--metrics_port: ", metrics.status().message()));
  if ((*metrics)->port() >= 0) Log(absl::StrCat("metrics on port ", (*metrics)->port()));

  if (pool) {
    const std::vector<std::string> own = options.replay_addresses;
    RunPool(options, own, shutdown.flag(), &(*metrics)->registry());
    Log("stopped");
    std::fflush(nullptr);
    return 0;
  }
  const absl::Status status = RunActor(options, shutdown.flag(), &(*metrics)->registry());
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
