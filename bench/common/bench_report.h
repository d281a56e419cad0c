#ifndef ENGRAM_BENCH_COMMON_BENCH_REPORT_H_
#define ENGRAM_BENCH_COMMON_BENCH_REPORT_H_

// The output every benchmark under bench/ shares (DESIGN.md, "Benchmarks"): a readable
// table on stdout and, on request, JSON of the form
//   {"bench": NAME, "config": {...}, "results": [{"name": STR, "value": NUMBER,
//    "unit": STR}, ...]}
// Result names are stable once published (e.g. "minatar/breakout/steps_per_s").

#include <cstdint>
#include <string>
#include <utility>
#include <vector>


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

  // Writes the JSON document to `path` (atomically: temp file + rename). Returns "" on
  // success, else what went wrong. Standard library only, so benchmarks built with
  // LibTorch alone (learner/core on a GPU machine) can use it.
  std::string WriteJson(const std::string& path) const;
  // The end of every benchmark's main: writes JSON when `path` is not empty and says so.
  // Returns the process exit code (0, or 1 with the error on stderr).
  int Finish(const std::string& path) const;
  std::string ToJson() const;

 private:
  std::string bench_;
  std::vector<std::pair<std::string, std::string>> config_;
  std::vector<Result> results_;
};

// The random policy of the benchmarks: a cheap xorshift generator, separate from the
// environments' own streams, so measuring costs next to nothing.
class PolicyRng {
 public:
  explicit PolicyRng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  // Uniform in [0, n).
  int Action(int n) {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return static_cast<int>((state_ >> 33) % static_cast<uint64_t>(n));
  }

 private:
  uint64_t state_;
};

}  // namespace engram::bench

#endif  // ENGRAM_BENCH_COMMON_BENCH_REPORT_H_
