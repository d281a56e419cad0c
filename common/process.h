#ifndef ENGRAM_COMMON_PROCESS_H_
#define ENGRAM_COMMON_PROCESS_H_

// What every Engram binary's main() shares: its name in log lines, one-line timestamped
// logging to stderr, exiting with a message, and command-line parsing with the exit codes
// every process promises (2 for a bad flag or config, naming the flag).
//
//   int main(int argc, char** argv) {
//     engram::InitProcess(argc, argv, {.program = "engram_learner", .usage = "...",
//                                      .flag_files = {"learner/main.cc"}});
//     ...
//     if (bad) engram::Exit(2, "--batch_size: must be >= 1, got 0");
//   }

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace engram {

struct ProcessOptions {
  // Name in log lines and usage, e.g. "engram_learner".
  std::string program;
  // First lines of --help (what the program does, an example invocation).
  std::string usage;
  // Source files (path suffixes, e.g. "learner/main.cc") whose flags --help lists; servers
  // add "common/server.cc" (TLS) and "common/metrics.cc" (--metrics_port).
  std::vector<std::string> flag_files;
  // Whether positional arguments are accepted (returned by InitProcess); otherwise one is
  // a bad flag (exit 2).
  bool allow_positional = false;
};

// Sets the program name and usage, checks every flag (an unknown flag, a missing or
// unparsable value exits 2 with one line naming it; absl itself would exit 1), parses the
// command line and returns the positional arguments (argv[0] excluded).
std::vector<std::string> InitProcess(int argc, char** argv, const ProcessOptions& options);

// The program name given to InitProcess ("engram" before it).
const std::string& ProgramName();

// Writes "<UTC time> <program>: <message>\n" to stderr in one call, so that lines of
// concurrent threads do not interleave. Thread-safe.
void Log(absl::string_view message);

// Logs "error: <message>" and exits with `code` at once (std::_Exit: background gRPC and
// metrics threads may still run, and static destructors must not race them).
[[noreturn]] void Exit(int code, absl::string_view message);

}  // namespace engram

#endif  // ENGRAM_COMMON_PROCESS_H_
