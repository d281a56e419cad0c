#include "common/signals.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

TEST(ShutdownSignalTest, SigtermEndsTheWait) {
  ShutdownSignal shutdown;
  EXPECT_FALSE(shutdown.requested());
  EXPECT_FALSE(shutdown.WaitFor(absl::Milliseconds(20)));
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_EQ(shutdown.Wait(), SIGTERM);
  EXPECT_TRUE(shutdown.requested());
}

TEST(ShutdownSignalTest, SigintEndsTheWait) {
  ShutdownSignal shutdown;
  ASSERT_EQ(kill(getpid(), SIGINT), 0);
  EXPECT_TRUE(shutdown.WaitFor(absl::Seconds(10)));
  EXPECT_EQ(shutdown.Wait(), SIGINT);
}

TEST(ShutdownSignalTest, TriggerFromAnotherThread) {
  ShutdownSignal shutdown;
  std::thread t([&] { shutdown.Trigger(); });
  EXPECT_EQ(shutdown.Wait(), 0);
  t.join();
  shutdown.Trigger();  // idempotent
  EXPECT_TRUE(shutdown.requested());
}

TEST(ShutdownSignalTest, DestroyingRestoresThePreviousHandlers) {
  { ShutdownSignal shutdown; }
  { ShutdownSignal again; }
  struct sigaction current = {};
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &current), 0);
  EXPECT_EQ(current.sa_handler, SIG_DFL);
  ASSERT_EQ(sigaction(SIGINT, nullptr, &current), 0);
  EXPECT_EQ(current.sa_handler, SIG_DFL);
}

TEST(ShutdownSignalTest, SignalToAThreadStartedBeforehandIsCaught) {
  // Threads that exist before the ShutdownSignal (started by libraries before main) must
  // not take the default action and kill the process.
  absl::Notification go;
  absl::Notification done;
  pid_t tid = 0;
  std::thread early([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    go.Notify();
    done.WaitForNotification();
  });
  go.WaitForNotification();
  ShutdownSignal shutdown;
  ASSERT_EQ(syscall(SYS_tgkill, getpid(), tid, SIGTERM), 0);
  EXPECT_TRUE(shutdown.WaitFor(absl::Seconds(10)));
  EXPECT_EQ(shutdown.Wait(), SIGTERM);
  EXPECT_TRUE(shutdown.flag().load());
  done.Notify();
  early.join();
}

}  // namespace
}  // namespace engram
