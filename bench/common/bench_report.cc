#include "bench/common/bench_report.h"

#include <cmath>
#include <cstdio>
#include <fstream>

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
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned char>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string Number(double value) {
  if (!std::isfinite(value)) return "null";  // JSON has no NaN or infinity
  char text[32];
  std::snprintf(text, sizeof(text), "%.6g", value);
  return text;
}

}  // namespace

std::string Report::ToJson() const {
  std::string json = "{\"bench\": " + Quote(bench_) + ", \"config\": {";
  for (size_t i = 0; i < config_.size(); ++i) {
    json += (i ? ", " : "") + Quote(config_[i].first) + ": " + Quote(config_[i].second);
  }
  json += "}, \"results\": [";
  for (size_t i = 0; i < results_.size(); ++i) {
    const Result& r = results_[i];
    json += (i ? ",\n  " : "\n  ") + std::string("{\"name\": ") + Quote(r.name) +
            ", \"value\": " + Number(r.value) + ", \"unit\": " + Quote(r.unit) + "}";
  }
  json += "\n]}\n";
  return json;
}

std::string Report::WriteJson(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return "cannot write \"" + tmp + "\"";
    out << ToJson();
    if (!out.flush()) return "short write to \"" + tmp + "\"";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return "cannot rename \"" + tmp + "\" to \"" + path + "\"";
  }
  return "";
}

int Report::Finish(const std::string& path) const {
  if (path.empty()) return 0;
  if (const std::string error = WriteJson(path); !error.empty()) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::printf("wrote %s\n", path.c_str());
  return 0;
}

}  // namespace engram::bench
