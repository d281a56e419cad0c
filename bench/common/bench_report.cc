#include "bench/common/bench_report.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace engram::bench {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

std::string Report::ToJson() const {
  std::string json = absl::StrCat("{\"bench\": ", Quote(bench_), ", \"config\": {");
  for (size_t i = 0; i < config_.size(); ++i) {
    absl::StrAppend(&json, i ? ", " : "", Quote(config_[i].first), ": ", Quote(config_[i].second));
  }
  absl::StrAppend(&json, "}, \"results\": [");
  for (size_t i = 0; i < results_.size(); ++i) {
    const Result& r = results_[i];
    // JSON has no NaN or infinity.
    const std::string value = std::isfinite(r.value) ? absl::StrFormat("%.6g", r.value) : "null";
    absl::StrAppend(&json, i ? ",\n  " : "\n  ", "{\"name\": ", Quote(r.name),
                    ", \"value\": ", value, ", \"unit\": ", Quote(r.unit), "}");
  }
  absl::StrAppend(&json, "\n]}\n");
  return json;
}

absl::Status Report::WriteJson(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return absl::InvalidArgumentError(absl::StrCat("cannot write \"", tmp, "\""));
    out << ToJson();
    if (!out.flush()) return absl::DataLossError(absl::StrCat("short write to \"", tmp, "\""));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename \"", tmp, "\" to \"", path, "\""));
  }
  return absl::OkStatus();
}

int Report::Finish(const std::string& path) const {
  if (path.empty()) return 0;
  if (absl::Status s = WriteJson(path); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("wrote %s\n", path.c_str());
  return 0;
}

}  // namespace engram::bench
