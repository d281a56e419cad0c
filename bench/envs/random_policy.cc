// Random-policy episode statistics per environment: mean and standard deviation of the
// episode return and length under a uniformly random policy over the full action set.
// These are the numbers to compare with the reference MinAtar's random-policy
// distributions (same defaults: sticky actions 0.1, difficulty ramping on).
//
//   build/release/bench/random_policy [--episodes=1000] [--max_steps=100000] [--json=PATH]
//
// Results per environment NAME: NAME/random_return_mean, NAME/random_return_sd,
// NAME/random_length_mean, NAME/random_length_sd (and NAME/random_capped_episodes, the
// episodes cut off at --max_steps, which Seaquest needs because a sub that never dives
// lives forever).

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/envs/registry.h"
#include "bench/common/bench_report.h"

ABSL_FLAG(std::string, envs,
          "minatar/asterix,minatar/breakout,minatar/freeway,minatar/seaquest,"
          "minatar/space_invaders,classic/cartpole",
          "Comma-separated environment names.");
ABSL_FLAG(int, episodes, 1000, "Episodes per environment.");
ABSL_FLAG(int, max_steps, 100000, "Cap on one episode's length (counted as capped).");
ABSL_FLAG(uint64_t, seed, 1, "Environment seed; the policy uses its own stream.");
ABSL_FLAG(std::string, json, "", "If set, also write the results as JSON to this path.");

namespace engram::bench {
namespace {

struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void Add(double x) {  // Welford
    ++n;
    const double d = x - mean;
    mean += d / n;
    m2 += d * (x - mean);
  }
  double sd() const { return n > 1 ? std::sqrt(m2 / (n - 1)) : 0.0; }
};

int Main() {
  const int episodes = absl::GetFlag(FLAGS_episodes);
  const int max_steps = absl::GetFlag(FLAGS_max_steps);
  if (episodes < 1 || max_steps < 1) {
    std::cerr << "--episodes and --max_steps must be >= 1\n";
    return 2;
  }
  const std::vector<std::string> names = absl::StrSplit(absl::GetFlag(FLAGS_envs), ',');
  Report report("random_policy");
  report.AddConfig("episodes", absl::StrCat(episodes));
  report.AddConfig("max_steps", absl::StrCat(max_steps));
  report.AddConfig("seed", absl::StrCat(absl::GetFlag(FLAGS_seed)));
  std::printf("%-24s %14s %12s %14s %12s %8s\n", "environment", "return mean", "return sd",
              "length mean", "length sd", "capped");
  for (const std::string& name : names) {
    auto made = envs::MakeEnv(name);
    if (!made.ok()) {
      std::cerr << made.status().message() << "\n";
      return 2;
    }
    envs::Env& env = **made;
    PolicyRng policy(1);
    const int num_actions = env.spec().num_actions;
    Moments returns, lengths;
    int capped = 0;
    env.Reset(absl::GetFlag(FLAGS_seed));
    for (int e = 0; e < episodes; ++e) {
      if (e > 0) env.Reset();
      double total = 0;
      int length = 0;
      envs::StepResult r;
      do {
        r = env.Step(policy.Action(num_actions));
        total += r.reward;
        ++length;
      } while (!r.terminated && !r.truncated && length < max_steps);
      capped += !r.terminated && !r.truncated;
      returns.Add(total);
      lengths.Add(length);
    }
    std::printf("%-24s %14.3f %12.3f %14.1f %12.1f %8d\n", name.c_str(), returns.mean, returns.sd(),
                lengths.mean, lengths.sd(), capped);
    std::fflush(stdout);
    report.Add(absl::StrCat(name, "/random_return_mean"), returns.mean, "return");
    report.Add(absl::StrCat(name, "/random_return_sd"), returns.sd(), "return");
    report.Add(absl::StrCat(name, "/random_length_mean"), lengths.mean, "steps");
    report.Add(absl::StrCat(name, "/random_length_sd"), lengths.sd(), "steps");
    report.Add(absl::StrCat(name, "/random_capped_episodes"), capped, "episodes");
  }
  return report.Finish(absl::GetFlag(FLAGS_json));
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Random-policy return and length statistics per environment.\nUsage: random_policy "
      "[--envs=a,b] [--episodes=1000] [--max_steps=100000] [--seed=1] [--json=PATH]");
  absl::ParseCommandLine(argc, argv);
  return engram::bench::Main();
}
