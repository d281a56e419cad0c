#include "common/auth.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::testing::HasSubstr;

TEST(AuthorizerTest, ParsesTokensAndRolesWithComments) {
  absl::StatusOr<std::shared_ptr<const Authorizer>> authorizer = Authorizer::FromText(
      "# operators\n"
      "0123456789abcdef submit   # the CLI\n"
      "\n"
      "  fedcba9876543210\tadmin,submit\n",
      "tokens");
  ASSERT_TRUE(authorizer.ok()) << authorizer.status();
  EXPECT_TRUE((*authorizer)->enabled());
  EXPECT_FALSE(Authorizer().enabled());
}

TEST(AuthorizerTest, BadFilesNameTheLine) {
  auto problem = [](const char* text) {
    return std::string(Authorizer::FromText(text, "tokens").status().message());
  };
  EXPECT_THAT(problem("0123456789abcdef\n"), HasSubstr("tokens:1: expected `<token> <role>"));
  EXPECT_THAT(problem("# x\n0123456789abcdef root\n"),
              HasSubstr("tokens:2: unknown role \"root\""));
  EXPECT_THAT(problem("short submit\n"), HasSubstr("tokens:1: token too short"));
  EXPECT_THAT(problem("0123456789abcdef submit\n0123456789abcdef admin\n"),
              HasSubstr("tokens:2: duplicate token"));
  EXPECT_THAT(problem("# nothing\n"), HasSubstr("tokens: no tokens"));
  EXPECT_TRUE(absl::IsNotFound(Authorizer::FromFile("/nonexistent/tokens").status()));
}

}  // namespace
}  // namespace engram
