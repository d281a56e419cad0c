#ifndef ENGRAM_DEPLOY_LAUNCHER_LAUNCHER_H_
#define ENGRAM_DEPLOY_LAUNCHER_LAUNCHER_H_

// The local launcher: a whole Engram cluster on one machine from one ExperimentSpec.
//
// Starts, as child processes on loopback, the topology of docker-compose.yml: replay.num_shards
// replay shards, the episodic store, a learner in server mode (--runs_dir=<run_dir>),
// actors.num_actors pool actors and one evaluation actor, each with its own log file under
// <run_dir>/logs; then submits the spec to the learner's ExperimentService, and the learner assigns
// the actors. While the run goes it prints a progress line (frames/s, updates/s, policy lag, recent
// returns) from ExperimentService.Get; `engram status ID --watch --server=...` works too.
// It ends when the experiment ends (budget spent, or `engram cancel`), when asked to stop
// (Ctrl-C / SIGTERM), or when a process dies (its log's last lines are shown); children
// are stopped in order (actors, learner, shards) so that actors flush and the learner
// checkpoints. A summary table closes the run.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/signals.h"

namespace engram::launcher {

struct LocalRunOptions {
  // The experiment spec file (.textproto). Empty: serve mode, the cluster runs (with
  // `shards` replay shards and `actors` pool actors) until Ctrl-C / SIGTERM and takes
  // experiments from `engram submit`; its run directory defaults to runs/cluster, where the
  // learner keeps every experiment (restarting on it takes up unfinished ones).
  std::string spec_path;
  int shards = 2;
  int actors = 2;
  // Directory of the engram_replay_server, engram_learner, engram_actor and
  // engram_episodic_store binaries.
  std::string bin_dir;
  // Run directory: the resolved spec, logs/, episodic/ (the episodic store's snapshots,
  // restored when the directory is used again), and the experiment's directory <id>/ with
  // progress.csv, evaluations.csv, experiment.textproto and (when the spec enables
  // checkpoints) checkpoints/. Empty means runs/<experiment id>/<local time>, a fresh run;
  // an existing directory whose experiment has not ended resumes it from its checkpoint.
  std::string run_dir;
  // Budget overrides (0: keep the spec's): wall time, training frames.
  absl::Duration max_wall_time = absl::ZeroDuration();
  int64_t max_frames = 0;
  // Learner device override ("" keeps the spec's learner_device).
  std::string device;
  // Start an evaluation actor.
  bool evaluation = true;
  // Time between progress lines.
  absl::Duration progress_interval = absl::Seconds(10);
  // Extra flags for every learner / actor invocation (e.g. --log_interval=5s).
  std::string learner_flags;
  std::string actor_flags;
  // > 0: processes get /metrics ports base, base+1, ... and <run_dir>/prometheus_targets.json
  // lists them (Prometheus file_sd format, labels component and process).
  int metrics_port_base = 0;
};

// What the run ended with.
struct LocalRunResult {
  bool succeeded = false;    // the learner finished the run
  bool interrupted = false;  // stopped by a signal
  std::string error;         // when a process failed
  std::string run_dir;
  std::string experiment_dir;  // <run_dir>/<id>: CSV files, status, checkpoints
};

// Runs the cluster until it ends (see above); `shutdown` (created first thing in main, so
// that every thread has SIGTERM/SIGINT blocked) ends it early. INVALID_ARGUMENT for a bad
// spec or option; CANCELLED when interrupted while starting; other errors when a process
// cannot be started. Children started so far are stopped before it returns.
absl::StatusOr<LocalRunResult> RunLocal(const LocalRunOptions& options, ShutdownSignal* shutdown);

}  // namespace engram::launcher

#endif  // ENGRAM_DEPLOY_LAUNCHER_LAUNCHER_H_
