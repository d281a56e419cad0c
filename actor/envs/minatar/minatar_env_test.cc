#include "actor/envs/minatar/minatar_env.h"

#include "gtest/gtest.h"

namespace engram::envs::minatar {
namespace {

TEST(MinAtarEnvTest, UnknownGameIsRejected) {
  auto env = MinAtarEnv::Create("pong", MinAtarOptions{});
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(env.status().message().find("pong"), absl::string_view::npos);
}

}  // namespace
}  // namespace engram::envs::minatar
