#ifndef ENGRAM_COMMON_SIGNALS_H_
#define ENGRAM_COMMON_SIGNALS_H_

// Clean shutdown on SIGTERM / SIGINT for every process.
//
// Usage in main(), before any thread is started:
//   engram::ShutdownSignal shutdown;   // blocks SIGTERM/SIGINT in this and later threads
//   ... start servers and workers ...
//   int signo = shutdown.Wait();       // returns when a signal arrives (or Trigger())
//   ... drain, checkpoint, exit 0 ...
//
// Signals are received synchronously with sigwait on a dedicated thread, so no work is
// done in a signal handler. Thread-safe.

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

  sigset_t set_;
  std::atomic<bool> flag_{false};
  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool waiter_done_ ABSL_GUARDED_BY(mu_) = false;
  int signal_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread waiter_;
};

}  // namespace engram

#endif  // ENGRAM_COMMON_SIGNALS_H_
