#include "actor/envs/registry.h"

#include <algorithm>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "actor/envs/bandits/bandits.h"
#include "actor/envs/classic/cartpole.h"
#include "actor/envs/minatar/minatar_env.h"
#include "common/status_macros.h"

namespace engram::envs {
namespace {

// Typed access to validated options: every value either parses or names itself.
class OptionReader {
 public:
  OptionReader(const EnvInfo& info, const EnvOptions& given) : info_(info), given_(given) {}

  const std::string& Raw(const std::string& key) const {
    auto it = given_.find(key);
    if (it != given_.end()) return it->second;
    for (const EnvOptionInfo& o : info_.options) {
      if (o.name == key) return o.default_value;
    }
    static const std::string* empty = new std::string;
    return *empty;
  }

  absl::StatusOr<bool> Bool(const std::string& key) const {
    bool value;
    if (!absl::SimpleAtob(Raw(key), &value)) return Bad(key, "true or false");
    return value;
  }

  absl::StatusOr<int> Int(const std::string& key, int min, int max) const {
    int value;
    if (!absl::SimpleAtoi(Raw(key), &value) || value < min || value > max) {
      return Bad(key, absl::StrCat("an integer in [", min, ", ", max, "]"));
    }
    return value;
  }

  absl::StatusOr<double> Double(const std::string& key, double min, double max) const {
    double value;
    if (!absl::SimpleAtod(Raw(key), &value) || !(value >= min && value <= max)) {
      return Bad(key, absl::StrCat("a number in [", min, ", ", max, "]"));
    }
    return value;
  }

  absl::StatusOr<std::string> OneOf(const std::string& key,
                                    const std::vector<std::string>& allowed) const {
    const std::string& value = Raw(key);
    if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
      return Bad(key, absl::StrCat("one of ", absl::StrJoin(allowed, ", ")));
    }
    return value;
  }

 private:
  absl::Status Bad(const std::string& key, absl::string_view expected) const {
    return absl::InvalidArgumentError(absl::StrCat(info_.name, ": option ", key, "=\"", Raw(key),
                                                   "\" is invalid; expected ", expected));
  }

  const EnvInfo& info_;
  const EnvOptions& given_;
};

using Builder = std::function<absl::StatusOr<std::unique_ptr<Env>>(const OptionReader&)>;

struct Registration {
  EnvInfo info;
  Builder build;
};

constexpr int kMaxSteps = 1 << 30;

std::vector<Registration> MakeRegistrations() {
  std::vector<Registration> all;
  const std::vector<EnvOptionInfo> minatar_options = {
      {"sticky_action_prob", "0.1",
       "probability that the previous executed action repeats instead of the chosen one"},
      {"difficulty_ramping", "true",
       "speed the game up over time (Asterix, Seaquest, "
       "Space Invaders; ignored by the others)"},
      {"minimal_action_set", "false", "use the game's minimal action set instead of all 6"},
      {"max_episode_steps", "0", "truncate episodes after this many steps; 0 = never"},
      {"cell_permutation_seed", "0",
       "not MinAtar: permute the 100 grid cells of every observation by the permutation this "
       "seed draws (continual-learning task pairs); 0 = none"},
  };
  for (const std::string& game : minatar::MinAtarEnv::GameNames()) {
    all.push_back(Registration{
        {absl::StrCat("minatar/", game),
         absl::StrCat("MinAtar ", game, " (10x10 grid, uint8 [10,10,C] channels last)"),
         minatar_options},
        [game](const OptionReader& r) -> absl::StatusOr<std::unique_ptr<Env>> {
          minatar::MinAtarOptions options;
          ENGRAM_ASSIGN_OR_RETURN(options.sticky_action_prob,
                                  r.Double("sticky_action_prob", 0.0, 1.0));
          ENGRAM_ASSIGN_OR_RETURN(options.difficulty_ramping, r.Bool("difficulty_ramping"));
          ENGRAM_ASSIGN_OR_RETURN(options.minimal_action_set, r.Bool("minimal_action_set"));
          ENGRAM_ASSIGN_OR_RETURN(options.max_episode_steps,
                                  r.Int("max_episode_steps", 0, kMaxSteps));
          ENGRAM_ASSIGN_OR_RETURN(options.cell_permutation_seed,
                                  r.Int("cell_permutation_seed", 0, kMaxSteps));
          ENGRAM_ASSIGN_OR_RETURN(auto env, minatar::MinAtarEnv::Create(game, options));
          return std::unique_ptr<Env>(std::move(env));
        }});
  }
  all.push_back(Registration{
      {"classic/cartpole",
       "Cart-pole balancing (float32 [4]; 2 actions)",
       {{"max_episode_steps", "500", "truncate episodes after this many steps (> 0)"},
        {"signed_permutation_seed", "0",
         "not classic: permute and sign-flip the 4 observation variables as this seed draws "
         "(continual-learning task pairs); 0 = none"},
        {"observation_offset", "0",
         "not classic: added to every observation variable (after the permutation), so that "
         "a second task's observations differ from the classic task's"}}},
      [](const OptionReader& r) -> absl::StatusOr<std::unique_ptr<Env>> {
        ENGRAM_ASSIGN_OR_RETURN(const int steps, r.Int("max_episode_steps", 1, kMaxSteps));
        ENGRAM_ASSIGN_OR_RETURN(const int permutation,
                                r.Int("signed_permutation_seed", 0, kMaxSteps));
        ENGRAM_ASSIGN_OR_RETURN(const double offset, r.Double("observation_offset", -1e6, 1e6));
        return std::unique_ptr<Env>(
            new classic::CartPole(steps, permutation, static_cast<float>(offset)));
      }});
  const EnvOptionInfo trials{"num_trials", "100", "trials (arm pulls) per episode"};
  all.push_back(Registration{{"bandit/independent",
                              "Two-armed Bernoulli bandit, p0 and p1 ~ U[0,1] independently",
                              {trials}},
                             [](const OptionReader& r) -> absl::StatusOr<std::unique_ptr<Env>> {
                               ENGRAM_ASSIGN_OR_RETURN(const int n,
                                                       r.Int("num_trials", 1, kMaxSteps));
                               return std::unique_ptr<Env>(new bandits::TwoArmedBandit(
                                   bandits::TwoArmedBandit::Family::kIndependent, n));
                             }});
  all.push_back(Registration{
      {"bandit/dependent",
       "Two-armed Bernoulli bandit with p1 = 1 - p0",
       {trials,
        {"difficulty", "uniform",
         "uniform: p0 ~ U[0,1]; easy: {0.1,0.9}; medium: {0.25,0.75}; hard: {0.4,0.6}"}}},
      [](const OptionReader& r) -> absl::StatusOr<std::unique_ptr<Env>> {
        ENGRAM_ASSIGN_OR_RETURN(const int n, r.Int("num_trials", 1, kMaxSteps));
        ENGRAM_ASSIGN_OR_RETURN(const std::string difficulty,
                                r.OneOf("difficulty", {"uniform", "easy", "medium", "hard"}));
        using Family = bandits::TwoArmedBandit::Family;
        const Family family = difficulty == "easy"     ? Family::kDependentEasy
                              : difficulty == "medium" ? Family::kDependentMedium
                              : difficulty == "hard"   ? Family::kDependentHard
                                                       : Family::kDependentUniform;
        return std::unique_ptr<Env>(new bandits::TwoArmedBandit(family, n));
      }});
  all.push_back(Registration{{"bandit/two_step",
                              "Two-step task (Daw et al. 2011), drifting reward probabilities",
                              {{"num_trials", "100", "trials per episode (2 steps each)"}}},
                             [](const OptionReader& r) -> absl::StatusOr<std::unique_ptr<Env>> {
                               ENGRAM_ASSIGN_OR_RETURN(const int n,
                                                       r.Int("num_trials", 1, kMaxSteps));
                               return std::unique_ptr<Env>(new bandits::TwoStepTask(n));
                             }});
  std::sort(all.begin(), all.end(),
            [](const Registration& a, const Registration& b) { return a.info.name < b.info.name; });
  return all;
}

const std::vector<Registration>& Registrations() {
  static const auto* registrations = new std::vector<Registration>(MakeRegistrations());
  return *registrations;
}

}  // namespace

const std::vector<EnvInfo>& RegisteredEnvs() {
  static const auto* infos = [] {
    auto* v = new std::vector<EnvInfo>;
    for (const Registration& r : Registrations()) v->push_back(r.info);
    return v;
  }();
  return *infos;
}

absl::StatusOr<std::unique_ptr<Env>> MakeEnv(absl::string_view name, const EnvOptions& options) {
  const Registration* found = nullptr;
  std::vector<std::string> names;
  for (const Registration& r : Registrations()) {
    names.push_back(r.info.name);
    if (r.info.name == name) found = &r;
  }
  if (found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown environment \"", name,
                                                   "\"; registered: ", absl::StrJoin(names, ", ")));
  }
  for (const auto& entry : options) {
    const auto& key = entry.first;  // a structured binding cannot be captured in C++17
    const auto& known = found->info.options;
    if (std::none_of(known.begin(), known.end(),
                     [&](const EnvOptionInfo& o) { return o.name == key; })) {
      std::vector<std::string> accepted;
      for (const EnvOptionInfo& o : known) accepted.push_back(o.name);
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": unknown option \"", key,
          "\"; accepted: ", accepted.empty() ? "(none)" : absl::StrJoin(accepted, ", ")));
    }
  }
  return found->build(OptionReader(found->info, options));
}

absl::StatusOr<std::pair<std::string, EnvOptions>> ParseEnvString(absl::string_view text) {
  const std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits('?', 1));
  if (parts.first.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("environment \"", text, "\" has no name"));
  }
  EnvOptions options;
  if (!parts.second.empty()) {
    for (absl::string_view pair : absl::StrSplit(parts.second, '&')) {
      const size_t eq = pair.find('=');
      if (eq == absl::string_view::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("environment \"", text, "\": option \"", pair, "\" is not key=value"));
      }
      const std::string key(pair.substr(0, eq));
      if (!options.emplace(key, std::string(pair.substr(eq + 1))).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("environment \"", text, "\": option \"", key, "\" given twice"));
      }
    }
  }
  return std::make_pair(std::string(parts.first), std::move(options));
}

}  // namespace engram::envs
