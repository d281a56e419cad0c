#include "common/signals.h"

#include <csignal>
#include <thread>

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

TEST(ShutdownSignalTest, DestroyingWithoutSignalRestoresTheMask) {
  { ShutdownSignal shutdown; }
  { ShutdownSignal again; }
  sigset_t blocked;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, nullptr, &blocked), 0);
  EXPECT_EQ(sigismember(&blocked, SIGTERM), 0);
  EXPECT_EQ(sigismember(&blocked, SIGINT), 0);
}

}  // namespace
}  // namespace engram
