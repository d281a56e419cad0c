#include "common/text_proto.h"

#include <cerrno>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace engram {
namespace {

// Later errors are usually consequences of the first, so only the first is kept.
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (error_.empty()) error_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

}  // namespace

absl::Status ParseTextProto(absl::string_view text, google::protobuf::Message* message) {
  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  if (parser.ParseFromString(std::string(text), message)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(errors.error().empty() ? "?" : errors.error(),
                                                 " (expected a text-format ",
                                                 message->GetTypeName(), ")"));
}

absl::Status ReadTextProtoFile(const std::string& path, google::protobuf::Message* message) {
  const std::string what = absl::StrCat("cannot read \"", path, "\"");
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return absl::ErrnoToStatus(errno, what);
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  // fread does not distinguish the end of the file from an error (e.g. EISDIR for a
  // directory, which fopen accepts); ferror does.
  const int read_errno = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (read_errno != 0) return absl::ErrnoToStatus(read_errno, what);
  if (absl::Status status = ParseTextProto(text, message); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace engram
