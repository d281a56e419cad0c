#include "common/subprocess.h"

#include <csignal>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

TEST(SubprocessTest, ReadsAMarkedLineAndTheExitCode) {
  auto child = Subprocess::Start(
      {"/bin/sh", "-c", "echo starting; echo 'server listening on 127.0.0.1:4242'; exit 3"});
  ASSERT_TRUE(child.ok()) << child.status();
  auto line = (*child)->WaitForLine("listening on ", absl::Seconds(10));
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(*line, "127.0.0.1:4242");
  EXPECT_EQ((*child)->Wait(absl::Seconds(10)).value(), 3);
  EXPECT_FALSE((*child)->running());
}

TEST(SubprocessTest, StderrGoesToTheFile) {
  const std::string path = ::testing::TempDir() + "/subprocess_test_stderr";
  auto child = Subprocess::Start({"/bin/sh", "-c", "echo oops >&2"}, path).value();
  EXPECT_EQ(child->Wait(absl::Seconds(10)).value(), 0);
  EXPECT_EQ(child->ReadStderr(), "oops\n");
}

TEST(SubprocessTest, ExitBeforeTheLineIsFailedPrecondition) {
  auto child = Subprocess::Start({"/bin/sh", "-c", "echo nothing here"}).value();
  EXPECT_EQ(child->WaitForLine("listening", absl::Seconds(10)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SubprocessTest, TimeoutsAndTerminate) {
  auto child = Subprocess::Start({"/bin/sleep", "30"}).value();
  EXPECT_EQ(child->WaitForLine("x", absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(child->Wait(absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(child->Terminate(absl::Seconds(10)).value(), 128 + SIGTERM);
}

TEST(SubprocessTest, MissingBinaryIsAnError) {
  auto child = Subprocess::Start({"/nonexistent/binary"});
  ASSERT_FALSE(child.ok());
  EXPECT_THAT(child.status().message(), ::testing::HasSubstr("/nonexistent/binary"));
  EXPECT_EQ(Subprocess::Start({}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram
