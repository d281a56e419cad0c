#ifndef ENGRAM_BENCH_COMMON_BENCH_REPORT_H_
#define ENGRAM_BENCH_COMMON_BENCH_REPORT_H_

// The output every benchmark under bench/ shares (DESIGN.md, "Benchmarks"): a readable
// table on stdout and, on request, JSON of the form
//   {"bench": NAME, "config": {...}, "results": [{"name": STR, "value": NUMBER,
//    "unit": STR}, ...]}
// Result names are stable once published (e.g. "minatar/breakout/steps_per_s").

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace engram::bench {

struct Result {
  std::string name;
  double value;
  std::string unit;
};

class Report {
 public:
  explicit Report(std::string bench) : bench_(std::move(bench)) {}

  // Config entries are written as JSON strings.
  void AddConfig(std::string key, std::string value) {
    config_.emplace_back(std::move(key), std::move(value));
  }
  void Add(std::string name, double value, std::string unit) {
    results_.push_back(Result{std::move(name), value, std::move(unit)});
  }
  const std::vector<Result>& results() const { return results_; }

  // Writes the JSON document to `path` (atomically: temp file + rename).
  absl::Status WriteJson(const std::string& path) const;
  std::string ToJson() const;

 private:
  std::string bench_;
  std::vector<std::pair<std::string, std::string>> config_;
  std::vector<Result> results_;
};

}  // namespace engram::bench

#endif  // ENGRAM_BENCH_COMMON_BENCH_REPORT_H_
