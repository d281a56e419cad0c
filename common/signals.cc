#include "common/signals.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "common/check.h"

namespace engram {
namespace {

// The write end of the active ShutdownSignal's pipe; -1 when none. The handler only
// writes one byte to it (write is async-signal-safe).
std::atomic<int> g_pipe_write{-1};

void OnSignal(int signo) {
  const int saved_errno = errno;
  const int fd = g_pipe_write.load();
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signo);
    (void)!::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

}  // namespace

ShutdownSignal::ShutdownSignal() {
  ENGRAM_CHECK(::pipe2(pipe_, O_CLOEXEC) == 0);
  int expected = -1;
  ENGRAM_CHECK(g_pipe_write.compare_exchange_strong(expected, pipe_[1]))
      << "only one ShutdownSignal may exist at a time";
  struct sigaction action = {};
  action.sa_handler = &OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &action, &previous_term_);
  ::sigaction(SIGINT, &action, &previous_int_);
  waiter_ = std::thread([this] {
    while (true) {
      unsigned char byte = 0;
      const ssize_t n = ::read(pipe_[0], &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || byte == 0) return;  // the destructor's wake-up
      Request(byte);
    }
  });
}

ShutdownSignal::~ShutdownSignal() {
  Trigger();
  ::sigaction(SIGTERM, &previous_term_, nullptr);
  ::sigaction(SIGINT, &previous_int_, nullptr);
  g_pipe_write.store(-1);
  const unsigned char wake = 0;
  (void)!::write(pipe_[1], &wake, 1);
  waiter_.join();
  ::close(pipe_[0]);
  ::close(pipe_[1]);
}

void ShutdownSignal::Request(int signo) {
  absl::MutexLock lock(&mu_);
  if (requested_) return;
  requested_ = true;
  signal_ = signo;
  flag_.store(true);
}

int ShutdownSignal::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&requested_));
  return signal_;
}

bool ShutdownSignal::WaitFor(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&requested_), timeout);
}

bool ShutdownSignal::requested() const {
  absl::MutexLock lock(&mu_);
  return requested_;
}

void ShutdownSignal::Trigger() { Request(0); }

}  // namespace engram
