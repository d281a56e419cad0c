#ifndef ENGRAM_COMMON_SUBPROCESS_H_
#define ENGRAM_COMMON_SUBPROCESS_H_

// A child process with its stdout on a pipe (read line by line, e.g. for a server's
// "listening on host:port" line) and its stderr in a file. Used by process tests,
// benchmarks and the local launcher.
//
// The child is killed (SIGKILL) and reaped when the Subprocess is destroyed while it still
// runs. Not thread-safe: one thread drives one Subprocess.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace engram {

class Subprocess {
 public:
  // Starts argv[0] (a path) with `argv`. stderr goes to `stderr_path` (created or
  // truncated), or is inherited when empty. INVALID_ARGUMENT for an empty argv; INTERNAL
  // when the process cannot be started (the message names the binary). With
  // `own_process_group` the child leads a new process group, so that a terminal's Ctrl-C
  // (SIGINT to the foreground group) reaches only this process, which then stops its
  // children in the order it chooses.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           const std::string& stderr_path = "",
                                                           bool own_process_group = false);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // Reads stdout until a line containing `marker` arrives and returns what follows the
  // marker on that line. DEADLINE_EXCEEDED after `timeout`; FAILED_PRECONDITION when the
  // child closes its stdout (exits) first.
  absl::StatusOr<std::string> WaitForLine(absl::string_view marker, absl::Duration timeout);

  void Signal(int signo);

  // The exit code once the child exits (128 + N when killed by signal N);
  // DEADLINE_EXCEEDED when it still runs after `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // SIGTERM, then Wait(timeout).
  absl::StatusOr<int> Terminate(absl::Duration timeout);

  // The stderr file's contents so far ("" when stderr was inherited).
  std::string ReadStderr() const;

 private:
  Subprocess(pid_t pid, int stdout_fd, std::string stderr_path);

  pid_t pid_;
  int stdout_fd_;
  std::string stderr_path_;
  std::string buffer_;  // stdout read but not yet consumed
};

// A TCP port on 127.0.0.1 that was free a moment ago (for a server that must come back on
// the same address after a restart); -1 when none could be had. Another process may take
// it in between, so use it at once.
int FreeLoopbackPort();

}  // namespace engram

#endif  // ENGRAM_COMMON_SUBPROCESS_H_
