#ifndef ENGRAM_COMMON_SIGNALS_H_
#define ENGRAM_COMMON_SIGNALS_H_

// Clean shutdown on SIGTERM / SIGINT for every process.
//
// Usage in main(), early:
//   engram::ShutdownSignal shutdown;   // SIGTERM/SIGINT now request shutdown
//   ... start servers and workers ...
//   int signo = shutdown.Wait();       // returns when a signal arrives (or Trigger())
//   ... drain, checkpoint, exit 0 ...
//
// A handler for SIGTERM and SIGINT, whichever thread receives them, writes the signal
// number to a pipe; a dedicated thread reads it and requests shutdown, so no work is done
// in the handler. (Blocking the signals and sigwait-ing instead does not work in processes
// whose libraries start threads before main, as OpenBLAS does: those threads would take
// the default action and kill the process.) One ShutdownSignal at a time; the previous
// handlers are restored on destruction. Thread-safe.

#include <atomic>
#include <csignal>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace engram {

class ShutdownSignal {
 public:
  ShutdownSignal();
  ~ShutdownSignal();
  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  // Blocks until SIGTERM or SIGINT arrives or Trigger() is called. Returns the signal
  // number, or 0 for Trigger().
  int Wait();
  // Like Wait() but gives up after `timeout`; true when shutdown was requested.
  bool WaitFor(absl::Duration timeout);
  bool requested() const ABSL_LOCKS_EXCLUDED(mu_);
  // Becomes true when shutdown is requested: for loops that poll a flag between steps
  // (e.g. RunApexActor's `stop`). Lock-free.
  const std::atomic<bool>& flag() const { return flag_; }

  // Requests shutdown from inside the process (e.g. a fatal error or a finished run).
  void Trigger() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Request(int signo) ABSL_LOCKS_EXCLUDED(mu_);

  int pipe_[2] = {-1, -1};
  struct sigaction previous_term_ = {};
  struct sigaction previous_int_ = {};
  std::atomic<bool> flag_{false};
  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  int signal_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread waiter_;
};

}  // namespace engram

#endif  // ENGRAM_COMMON_SIGNALS_H_
