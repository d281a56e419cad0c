#include "common/signals.h"

#include <pthread.h>

namespace engram {

ShutdownSignal::ShutdownSignal() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGINT);
  // Threads created after this inherit the mask, so only the waiter receives the signals.
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  waiter_ = std::thread([this] {
    int signo = 0;
    while (sigwait(&set_, &signo) != 0) {
    }
    Request(signo);
    absl::MutexLock lock(&mu_);
    waiter_done_ = true;
  });
}

ShutdownSignal::~ShutdownSignal() {
  Trigger();
  {
    absl::MutexLock lock(&mu_);
    // Wake a waiter still in sigwait; the signal is consumed there, never delivered.
    if (!waiter_done_) pthread_kill(waiter_.native_handle(), SIGTERM);
  }
  waiter_.join();
  pthread_sigmask(SIG_UNBLOCK, &set_, nullptr);
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
