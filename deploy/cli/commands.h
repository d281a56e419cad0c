#ifndef ENGRAM_DEPLOY_CLI_COMMANDS_H_
#define ENGRAM_DEPLOY_CLI_COMMANDS_H_

// The `engram` tool's commands that talk to a running learner's ExperimentService, and the
// health probe. Each prints what it did on stdout, errors on stderr, and returns the
// process exit code:
//   0  done (for a watch: the experiment SUCCEEDED)
//   1  the experiment FAILED, or an unexpected error
//   2  bad usage or a spec the server rejected (INVALID_ARGUMENT; every problem is listed)
//   3  no such experiment or result (NOT_FOUND), or the id is taken (ALREADY_EXISTS)
//   4  the server cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
//   5  the watched experiment was CANCELLED

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/server.h"
#include "engram/v1/experiment.pb.h"

namespace engram::cli {

struct ClientOptions {
  std::string server = "localhost:7800";       // the learner's host:port
  absl::Duration timeout = absl::Seconds(10);  // per unary call
  TlsOptions tls;
  // Bearer token sent with every call (Submit and Cancel need one where the learner has
  // --auth_tokens); empty: none.
  std::string auth_token;
};

// Reads SPEC (text format), optionally replaces its id, submits it (or validates it only),
// prints the id, and with `watch` follows it like Status(watch).
int Submit(const ClientOptions& options, const std::string& spec_path, const std::string& id,
           bool validate_only, bool watch, absl::Duration interval);
// A table of experiments, newest first, optionally only in `states`.
int List(const ClientOptions& options, const std::vector<v1::ExperimentState>& states);
// The experiment's status; with `watch`, a progress line per update until it ends (exit
// code by final state), re-watching when the learner restarts.
int Status(const ClientOptions& options, const std::string& id, bool watch, absl::Duration interval,
           bool textproto);
int Cancel(const ClientOptions& options, const std::string& id, const std::string& reason);
// Downloads every result file (or those named in `names`) into out_dir (created);
// checkpoint files go to out_dir/checkpoint/.
int Results(const ClientOptions& options, const std::string& id, const std::string& out_dir,
            const std::vector<std::string>& names);
// grpc.health.v1 Check of service "": 0 when SERVING, 1 otherwise, 4 when unreachable.
int Health(const ClientOptions& options);

// "queued", "RUNNING", "experiment_state_succeeded" ... -> the state; UNSPECIFIED if none.
v1::ExperimentState ParseState(const std::string& text);

}  // namespace engram::cli

#endif  // ENGRAM_DEPLOY_CLI_COMMANDS_H_
