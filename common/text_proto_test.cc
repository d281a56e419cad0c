#include "common/text_proto.h"

#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "engram/v1/replay.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string WriteTempFile(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

TEST(ParseTextProtoTest, ParsesFields) {
  v1::TableSpec spec;
  spec.set_max_size(99);  // replaced, not merged
  ASSERT_TRUE(ParseTextProto("name: \"replay\"\nselector: SELECTOR_FIFO\n", &spec).ok());
  EXPECT_EQ(spec.name(), "replay");
  EXPECT_EQ(spec.selector(), v1::SELECTOR_FIFO);
  EXPECT_EQ(spec.max_size(), 0);
}

TEST(ParseTextProtoTest, ErrorNamesFirstPositionOneBasedAndExpectedType) {
  v1::TableSpec spec;
  const absl::Status status = ParseTextProto("name: \"replay\"\n  max_sise: 3\nbogus: 1\n", &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("2:11: "));
  EXPECT_THAT(std::string(status.message()), HasSubstr("max_sise"));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("bogus")));
  EXPECT_THAT(std::string(status.message()),
              EndsWith(" (expected a text-format engram.v1.TableSpec)"));
}

TEST(ParseTextProtoTest, BadEnumValueIsInvalidArgument) {
  v1::TableSpec spec;
  const absl::Status status = ParseTextProto("selector: SELECTOR_NOPE", &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("1:"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("SELECTOR_NOPE"));
}

TEST(ReadTextProtoFileTest, ReadsFile) {
  const std::string path = WriteTempFile("ok.textproto", "name: \"queue\" max_size: 7\n");
  v1::TableSpec spec;
  ASSERT_TRUE(ReadTextProtoFile(path, &spec).ok());
  EXPECT_EQ(spec.name(), "queue");
  EXPECT_EQ(spec.max_size(), 7);
}

TEST(ReadTextProtoFileTest, MissingFileIsNotFoundNamingThePath) {
  const std::string path = ::testing::TempDir() + "/does_not_exist.textproto";
  v1::TableSpec spec;
  const absl::Status status = ReadTextProtoFile(path, &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "cannot read \"" + path + "\": No such file or directory");
}

TEST(ReadTextProtoFileTest, DirectoryCannotBeRead) {
  v1::TableSpec spec;
  const absl::Status status = ReadTextProtoFile(::testing::TempDir(), &spec);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), StartsWith("cannot read \""));
}

TEST(ReadTextProtoFileTest, ParseErrorIsPrefixedWithThePath) {
  const std::string path = WriteTempFile("bad.textproto", "name: \"x\"\nmax_size: \"big\"\n");
  v1::TableSpec spec;
  const absl::Status status = ReadTextProtoFile(path, &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith(path + ":2:11: "));
  EXPECT_THAT(std::string(status.message()),
              EndsWith("(expected a text-format engram.v1.TableSpec)"));
}

}  // namespace
}  // namespace engram
