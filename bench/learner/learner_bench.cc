// learner/core update rate: DqnLearner::Update (double DQN, centered RMSProp, gradient
// clipping at 40, the Ape-X defaults) on MinAtar Breakout-shaped batches.
//
//   build/release/bench/learner_bench [--device=auto|cpu|cuda|cuda:N] [--batch_size=256]
//       [--seconds=3] [--torso=minatar|dueling|mlp] [--threads=N] [--tune_malloc=true]
//       [--json=PATH]
//
// Batches: observations uint8 [B, 10, 10, 4] (about 5% of cells set, as MinAtar grids
// are), 6 actions; with --torso=mlp CartPole's float [B, 4] and 2 actions instead.
// Variants, each measured for --seconds after a warm-up:
//   host       a fresh CPU batch per update (cloned from a pool of random ones, as the
//              sampler hands the learner newly decoded tensors); the copy to the device and
//              back (priorities) is inside the measured time
//   pinned     (CUDA only) page-locked CPU batches, copied without blocking
//   on_device  batches already on the device: the update alone
//
// Results, per variant (host has no suffix; the others end in /pinned or /on_device;
// a torso other than minatar adds /torso=NAME after the batch):
//   learner/updates_per_s/<cpu|cuda>/batch=<B>      updates per second
//   learner/samples_per_s/<cpu|cuda>/batch=<B>      transitions per second (updates * B)
//   learner/update_latency_p50_ms/<cpu|cuda>/batch=<B>, _p99_ms   one Update() call
//
// LibTorch and the standard library only (no Abseil), so that it builds on a GPU machine
// with nothing but a CUDA LibTorch: cmake --preset core -DTorch_DIR=...

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/common/bench_report.h"
#include "learner/core/compute_threads.h"
#include "learner/core/dqn.h"
#include "learner/core/host_allocator.h"
#include "torch/cuda.h"
#include "torch/utils.h"
#include "torch/version.h"

namespace engram::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string device = "auto";
  int64_t batch_size = 256;
  double seconds = 3.0;
  std::string torso = "minatar";
  int threads = 1;
  bool tune_malloc = true;
  std::string json;
};

constexpr char kUsage[] =
    "learner_bench: DqnLearner::Update rate on MinAtar Breakout-shaped batches.\n"
    "Usage: learner_bench [--device=auto|cpu|cuda|cuda:N] [--batch_size=256] [--seconds=3]\n"
    "                     [--torso=minatar|dueling|mlp] [--threads=1] [--tune_malloc=true]\n"
    "                     [--json=PATH]\n"
    "  --device      LibTorch device; auto = CUDA when available, else the CPU\n"
    "  --batch_size  transitions per update (>= 1)\n"
    "  --seconds     measuring time per variant, after a warm-up\n"
    "  --torso       Q-network: minatar (conv 16 -> 128 -> 6), dueling, or mlp (CartPole)\n"
    "  --threads     torch::set_num_threads (intra-op CPU threads)\n"
    "  --tune_malloc learner::TuneHostAllocatorForTraining() at start (glibc heap reuse)\n"
    "  --json        also write the results as JSON to this path\n";

// Parses --key=value and --key value. Returns "" or what is wrong.
std::string ParseArgs(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) return "unexpected argument \"" + arg + "\"";
    std::string key = arg.substr(2), value;
    if (const size_t eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return "--" + key + " needs a value";
    }
    char* end = nullptr;
    if (key == "device") {
      options->device = value;
    } else if (key == "torso") {
      options->torso = value;
    } else if (key == "json") {
      options->json = value;
    } else if (key == "tune_malloc") {
      if (value != "true" && value != "false") {
        return "--tune_malloc: expected true or false, got \"" + value + "\"";
      }
      options->tune_malloc = value == "true";
    } else if (key == "batch_size") {
      options->batch_size = std::strtoll(value.c_str(), &end, 10);
      if (*end != '\0' || value.empty() || options->batch_size < 1) {
        return "--batch_size: expected an integer >= 1, got \"" + value + "\"";
      }
    } else if (key == "seconds") {
      options->seconds = std::strtod(value.c_str(), &end);
      if (*end != '\0' || value.empty() || !(options->seconds > 0)) {
        return "--seconds: expected a number > 0, got \"" + value + "\"";
      }
    } else if (key == "threads") {
      options->threads = static_cast<int>(std::strtol(value.c_str(), &end, 10));
      if (*end != '\0' || value.empty() || options->threads < 1) {
        return "--threads: expected an integer >= 1, got \"" + value + "\"";
      }
    } else {
      return "unknown flag --" + key;
    }
  }
  if (options->torso != "minatar" && options->torso != "dueling" && options->torso != "mlp") {
    return "--torso: expected minatar, dueling or mlp, got \"" + options->torso + "\"";
  }
  return "";
}

learner::DqnBatch RandomBatch(const learner::NetworkConfig& network, int64_t b) {
  std::vector<int64_t> shape = {b};
  shape.insert(shape.end(), network.observation_shape.begin(), network.observation_shape.end());
  auto observation = [&] {
    if (network.torso == learner::Torso::kMlp) return torch::randn(shape);
    return (torch::rand(shape) < 0.05).to(torch::kUInt8);
  };
  learner::DqnBatch batch;
  batch.observations = observation();
  batch.next_observations = observation();
  batch.actions = torch::randint(0, network.num_actions, {b}, torch::kLong);
  batch.rewards = (torch::rand({b}) < 0.1).to(torch::kFloat);
  batch.discounts = torch::where(torch::rand({b}) < 0.01, torch::zeros({b}),
                                 torch::full({b}, 0.99f * 0.99f * 0.99f));
  batch.weights = torch::rand({b}) * 0.5 + 0.5;
  return batch;
}

learner::DqnBatch Map(const learner::DqnBatch& b,
                      const std::function<torch::Tensor(const torch::Tensor&)>& f) {
  return {f(b.observations), f(b.actions),           f(b.rewards),
          f(b.discounts),    f(b.next_observations), f(b.weights)};
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t i = static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(i, values.size() - 1)];
}

struct Run {
  std::string variant;
  int64_t updates = 0;
  double updates_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  float last_loss = 0;
};

// `next(i)` returns the batch of update i (its making is timed: it is the learner's
// receiving of a batch).
template <typename NextBatch>
Run Measure(const std::string& variant, learner::DqnLearner& learner, double seconds,
            NextBatch next) {
  Run run;
  run.variant = variant;
  const auto warm_until = Clock::now() + std::chrono::duration<double>(std::min(1.0, seconds / 3));
  int64_t i = 0;
  for (int warm = 0; warm < 10 || Clock::now() < warm_until; ++warm) learner.Update(next(i++));

  std::vector<double> latencies_ms;
  const auto start = Clock::now();
  const auto stop = start + std::chrono::duration<double>(seconds);
  auto now = start;
  while (now < stop) {
    const auto before = now;
    run.last_loss = learner.Update(next(i++)).loss;
    now = Clock::now();
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - before).count());
  }
  run.updates = static_cast<int64_t>(latencies_ms.size());
  run.updates_per_s = run.updates / std::chrono::duration<double>(now - start).count();
  run.p50_ms = Percentile(latencies_ms, 0.50);
  run.p99_ms = Percentile(latencies_ms, 0.99);
  return run;
}

int Main(int argc, char** argv) {
  Options options;
  if (const std::string error = ParseArgs(argc, argv, &options); !error.empty()) {
    std::fprintf(stderr, "learner_bench: %s\n\n%s", error.c_str(), kUsage);
    return 2;
  }
  torch::Device device(torch::kCPU);
  if (const std::string error = learner::ParseDevice(options.device, &device); !error.empty()) {
    std::fprintf(stderr, "learner_bench: --device: %s\n", error.c_str());
    return 2;
  }
  const bool malloc_tuned = options.tune_malloc && learner::TuneHostAllocatorForTraining();
  engram::learner::SetComputeThreads(options.threads);
  torch::manual_seed(0);

  learner::DqnConfig config;
  if (options.torso == "mlp") {
    config.network.torso = learner::Torso::kMlp;
    config.network.observation_shape = {4};
    config.network.num_actions = 2;
  } else {
    config.network.torso =
        options.torso == "dueling" ? learner::Torso::kMinAtarDueling : learner::Torso::kMinAtar;
    config.network.observation_shape = {10, 10, 4};  // Breakout: 4 channels
    config.network.num_actions = 6;                  // the full MinAtar action set
  }
  std::string error;
  auto learner = learner::DqnLearner::Create(config, device, &error);
  if (!learner) {
    std::fprintf(stderr, "learner_bench: %s\n", error.c_str());
    return 2;
  }

  const std::string device_name = device.is_cuda() ? "cuda" : "cpu";
  const int64_t b = options.batch_size;
  std::string suffix = "/" + device_name + "/batch=" + std::to_string(b);
  if (options.torso != "minatar") suffix += "/torso=" + options.torso;

  std::printf(
      "learner_bench: LibTorch %s, device %s, torso %s (%lld parameters), batch %lld, "
      "%d thread(s), malloc tuned: %s, %.1f s per variant\n",
      TORCH_VERSION, device.str().c_str(), options.torso.c_str(),
      static_cast<long long>(learner::ParameterCount(learner->online())), static_cast<long long>(b),
      torch::get_num_threads(), malloc_tuned ? "yes" : "no", options.seconds);

  constexpr int kPool = 16;
  std::vector<learner::DqnBatch> host;
  for (int i = 0; i < kPool; ++i) host.push_back(RandomBatch(config.network, b));

  std::vector<Run> runs;
  runs.push_back(Measure("host", *learner, options.seconds, [&](int64_t i) {
    return Map(host[i % kPool], [](const torch::Tensor& t) { return t.clone(); });
  }));
  if (device.is_cuda()) {
    std::vector<learner::DqnBatch> pinned;
    for (const auto& batch : host) {
      pinned.push_back(Map(batch, [](const torch::Tensor& t) { return t.pin_memory(); }));
    }
    runs.push_back(
        Measure("pinned", *learner, options.seconds, [&](int64_t i) { return pinned[i % kPool]; }));
  }
  std::vector<learner::DqnBatch> resident;
  for (const auto& batch : host) {
    resident.push_back(Map(batch, [&](const torch::Tensor& t) { return t.to(device); }));
  }
  runs.push_back(Measure("on_device", *learner, options.seconds,
                         [&](int64_t i) { return resident[i % kPool]; }));

  Report report("learner_bench");
  report.AddConfig("device", device.str());
  report.AddConfig("batch_size", std::to_string(b));
  report.AddConfig("seconds", std::to_string(options.seconds));
  report.AddConfig("torso", options.torso);
  report.AddConfig("threads", std::to_string(torch::get_num_threads()));
  report.AddConfig("libtorch", TORCH_VERSION);
  report.AddConfig("malloc_tuned", malloc_tuned ? "true" : "false");

  std::printf("\n%-10s %10s %12s %10s %10s %9s\n", "variant", "updates/s", "samples/s", "p50 ms",
              "p99 ms", "updates");
  for (const Run& run : runs) {
    std::printf("%-10s %10.1f %12.0f %10.3f %10.3f %9lld\n", run.variant.c_str(), run.updates_per_s,
                run.updates_per_s * b, run.p50_ms, run.p99_ms, static_cast<long long>(run.updates));
    if (!std::isfinite(run.last_loss)) {
      std::fprintf(stderr, "learner_bench: %s: non-finite loss\n", run.variant.c_str());
      return 1;
    }
    const std::string s = suffix + (run.variant == "host" ? "" : "/" + run.variant);
    report.Add("learner/updates_per_s" + s, run.updates_per_s, "updates/s");
    report.Add("learner/samples_per_s" + s, run.updates_per_s * b, "samples/s");
    report.Add("learner/update_latency_p50_ms" + s, run.p50_ms, "ms");
    report.Add("learner/update_latency_p99_ms" + s, run.p99_ms, "ms");
  }
  return report.Finish(options.json);
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) { return engram::bench::Main(argc, argv); }
