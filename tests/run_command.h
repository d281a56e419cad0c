#ifndef ENGRAM_TESTS_RUN_COMMAND_H_
#define ENGRAM_TESTS_RUN_COMMAND_H_

// Running a program from a test and collecting what it printed and how it exited.

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace engram {

struct CommandResult {
  int exit_code = -1;  // 128 + N when killed by signal N; -1 when it could not start
  std::string output;  // stdout and stderr together
};

// Runs argv (argv[0] searched on PATH when it has no slash) with stdin from /dev/null and
// stdout and stderr on one pipe; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(30));

}  // namespace engram

#endif  // ENGRAM_TESTS_RUN_COMMAND_H_
