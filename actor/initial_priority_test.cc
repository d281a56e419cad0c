#include "actor/initial_priority.h"

#include <limits>

#include "gtest/gtest.h"

namespace engram::actor {
namespace {

TEST(InitialPriorityTest, AbsoluteNStepTdError) {
  // target = 1.5 + 0.9 * 2 = 3.3; |3.3 - 1| = 2.3
  EXPECT_NEAR(InitialPriority(/*q_taken=*/1.0, /*reward=*/1.5, /*discount=*/0.9,
                              /*bootstrap_value=*/2.0),
              2.3, 1e-12);
  // The sign does not matter: |1.5 + 0.9 * 2 - 5| = 1.7
  EXPECT_NEAR(InitialPriority(5.0, 1.5, 0.9, 2.0), 1.7, 1e-12);
}

TEST(InitialPriorityTest, TerminalTransitionsIgnoreTheBootstrap) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_DOUBLE_EQ(InitialPriority(0.25, 1.0, 0.0, nan), 0.75);
  EXPECT_DOUBLE_EQ(InitialPriority(0.25, 1.0, 0.0, 1e30), 0.75);
}

TEST(InitialPriorityTest, NonFiniteResultsBecomeZero) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(InitialPriority(inf, 1.0, 0.9, 0.0), 0.0);
  EXPECT_EQ(InitialPriority(0.0, 1.0, 0.9, std::numeric_limits<double>::quiet_NaN()), 0.0);
}

}  // namespace
}  // namespace engram::actor
