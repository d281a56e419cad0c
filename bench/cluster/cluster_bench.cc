// The whole local cluster on this machine: for each experiment spec, runs `engram local`
// for a fixed wall time and reports throughput (env frames/s, learner updates/s with the
// batch size, samples per insert, policy lag) and learning (final and best evaluation
// return, time and frames to a target return) from the run's progress.csv and
// evaluations.csv.
//
//   build/release/bench/cluster_bench --specs=deploy/experiments/cartpole_apex.textproto \
//       --targets=475 --max_wall_time=3m --json=cluster.json
//
// Each run is a real cluster (replay shards, learner, actors, evaluation actor) and uses
// every core: run nothing else meanwhile.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "bench/common/bench_report.h"
#include "common/subprocess.h"

ABSL_FLAG(std::string, specs, "deploy/experiments/cartpole_apex.textproto",
          "Comma-separated experiment specs, run one after another.");
ABSL_FLAG(std::string, targets, "",
          "Comma-separated target evaluation returns, one per spec (empty or 0: none); "
          "time-to-target is the wall time of the first evaluation whose mean reaches it.");
ABSL_FLAG(absl::Duration, max_wall_time, absl::Minutes(3), "Wall time of each run.");
ABSL_FLAG(int64_t, max_frames, 0,
          "Training frames of each run (0: the spec's); the run ends at whichever limit comes "
          "first.");
ABSL_FLAG(std::string, out_dir, "/tmp/engram-cluster-bench",
          "Run directories (one per spec, replaced) with logs and CSV files.");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this path.");

namespace engram::bench {
namespace {

namespace fs = std::filesystem;

using Row = std::map<std::string, double>;

// Rows of a CSV file with a header, numeric cells only (empty cells are left out).
std::vector<Row> ReadCsv(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<Row> rows;
  if (!std::getline(in, line)) return rows;
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  while (std::getline(in, line)) {
    const std::vector<std::string> cells = absl::StrSplit(line, ',');
    Row row;
    for (size_t i = 0; i < cells.size() && i < header.size(); ++i) {
      double value;
      if (absl::SimpleAtod(cells[i], &value)) row[header[i]] = value;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// The first `field: <number>` in a text proto, or `fallback`.
double TextField(const fs::path& path, const std::string& field, double fallback) {
  std::ifstream in(path);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  std::smatch match;
  if (std::regex_search(text, match, std::regex("\\b" + field + ": ([0-9.e+-]+)"))) {
    double value;
    if (absl::SimpleAtod(match[1].str(), &value)) return value;
  }
  return fallback;
}

double Mean(const std::vector<Row>& rows, const std::string& column, size_t skip) {
  double sum = 0;
  int n = 0;
  for (size_t i = skip; i < rows.size(); ++i) {
    auto it = rows[i].find(column);
    if (it == rows[i].end()) continue;
    sum += it->second;
    ++n;
  }
  return n > 0 ? sum / n : 0;
}

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::vector<std::string> specs =
      absl::StrSplit(absl::GetFlag(FLAGS_specs), ',', absl::SkipWhitespace());
  const std::vector<std::string> target_text =
      absl::StrSplit(absl::GetFlag(FLAGS_targets), ',', absl::SkipWhitespace());
  const absl::Duration wall = absl::GetFlag(FLAGS_max_wall_time);
  Report report("cluster");
  report.AddConfig("max_wall_time", absl::FormatDuration(wall));
  report.AddConfig("specs", absl::GetFlag(FLAGS_specs));
  report.AddConfig("cores", std::to_string(std::thread::hardware_concurrency()));

  std::printf("%-22s %8s %9s %9s %6s %8s %7s %9s %9s %16s\n", "experiment", "seconds", "frames/s",
              "updates/s", "batch", "smp/ins", "lag", "final ev", "best ev", "to target");
  for (size_t i = 0; i < specs.size(); ++i) {
    double target = 0;
    if (i < target_text.size()) (void)absl::SimpleAtod(target_text[i], &target);
    const std::string id = fs::path(specs[i]).stem().string();
    const fs::path run_dir = fs::path(absl::GetFlag(FLAGS_out_dir)) / id;
    fs::remove_all(run_dir);
    fs::create_directories(run_dir);
    absl::StatusOr<std::unique_ptr<Subprocess>> run =
        Subprocess::Start({ENGRAM_BIN, "local", specs[i],
                           absl::StrCat("--max_wall_time=", absl::FormatDuration(wall)),
                           absl::StrCat("--max_frames=", absl::GetFlag(FLAGS_max_frames)),
                           absl::StrCat("--run_dir=", run_dir.string()), "--progress_interval=1h",
                           "--learner_flags=--csv_interval=5s"},
                          (run_dir / "launcher.err").string());
    if (!run.ok()) {
      std::fprintf(stderr, "%s: %s\n", specs[i].c_str(), run.status().ToString().c_str());
      return 1;
    }
    absl::StatusOr<int> code = (*run)->Wait(wall + absl::Minutes(10));
    if (!code.ok() || *code != 0) {
      std::fprintf(
          stderr, "%s: engram local failed (%s); see %s\n", specs[i].c_str(),
          code.ok() ? absl::StrCat("exit ", *code).c_str() : code.status().ToString().c_str(),
          run_dir.c_str());
      return 1;
    }
    // The experiment's files are in <run_dir>/<experiment id>/.
    fs::path experiment_dir = run_dir;
    for (const fs::directory_entry& entry : fs::directory_iterator(run_dir)) {
      if (fs::exists(entry.path() / "experiment.textproto")) experiment_dir = entry.path();
    }
    const std::vector<Row> progress = ReadCsv(experiment_dir / "progress.csv");
    const std::vector<Row> evaluations = ReadCsv(experiment_dir / "evaluations.csv");
    if (progress.empty()) {
      std::fprintf(stderr, "%s: no progress.csv rows in %s\n", specs[i].c_str(), run_dir.c_str());
      return 1;
    }
    const Row& last = progress.back();
    const double seconds = last.count("wall_time_s") ? last.at("wall_time_s") : 0;
    const double frames_per_s = seconds > 0 ? last.at("frames") / seconds : 0;
    const double updates_per_s = seconds > 0 ? last.at("updates") / seconds : 0;
    // Rates and lag once learning runs (rows after the first update).
    size_t learning = 0;
    while (learning < progress.size() && progress[learning].count("updates") &&
           progress[learning].at("updates") == 0) {
      ++learning;
    }
    const double sampled = Mean(progress, "sampled_per_s", learning);
    const double inserted = Mean(progress, "inserted_per_s", learning);
    const double samples_per_insert = inserted > 0 ? sampled / inserted : 0;
    const double lag = Mean(progress, "policy_lag", learning);
    const double batch = TextField(run_dir / "spec.textproto", "batch_size", 0);
    double final_eval = 0, best_eval = 0, seconds_to_target = -1, frames_to_target = -1;
    for (const Row& e : evaluations) {
      best_eval = std::max(best_eval, e.at("mean_return"));
      if (target > 0 && seconds_to_target < 0 && e.at("mean_return") >= target) {
        seconds_to_target = e.at("wall_time_s");
        frames_to_target = e.at("frames");
      }
    }
    if (!evaluations.empty()) final_eval = evaluations.back().at("mean_return");
    const std::string to_target =
        target <= 0 ? "-"
        : seconds_to_target < 0
            ? absl::StrFormat("not %.0f", target)
            : absl::StrFormat("%.0fs/%.2gM fr", seconds_to_target, frames_to_target / 1e6);
    std::printf("%-22s %8.0f %9.0f %9.1f %6.0f %8.2f %7.1f %9.2f %9.2f %16s\n", id.c_str(), seconds,
                frames_per_s, updates_per_s, batch, samples_per_insert, lag, final_eval, best_eval,
                to_target.c_str());
    std::fflush(stdout);
    report.Add(id + "/frames_per_s", frames_per_s, "frames/s");
    report.Add(id + "/updates_per_s", updates_per_s, "updates/s");
    report.Add(id + "/batch_size", batch, "transitions");
    report.Add(id + "/samples_per_insert", samples_per_insert, "ratio");
    report.Add(id + "/policy_lag", lag, "versions");
    report.Add(id + "/final_eval_return", final_eval, "return");
    report.Add(id + "/best_eval_return", best_eval, "return");
    if (target > 0) {
      report.Add(id + "/seconds_to_target", seconds_to_target, "s (-1: not reached)");
      report.Add(id + "/frames_to_target", frames_to_target, "frames (-1: not reached)");
    }
  }
  std::printf("run directories (logs, progress.csv, evaluations.csv): %s\n",
              absl::GetFlag(FLAGS_out_dir).c_str());
  return report.Finish(absl::GetFlag(FLAGS_json));
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) { return engram::bench::Main(argc, argv); }
