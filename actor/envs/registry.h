#ifndef ENGRAM_ACTOR_ENVS_REGISTRY_H_
#define ENGRAM_ACTOR_ENVS_REGISTRY_H_

// Builds environments by name with string options, as an ExperimentSpec names them:
//
//   MakeEnv("minatar/breakout", {{"sticky_action_prob", "0"}, {"minimal_action_set", "true"}})
//   MakeEnv("bandit/dependent", {{"difficulty", "easy"}})
//
// Registered: minatar/{asterix,breakout,freeway,seaquest,space_invaders},
// classic/cartpole, bandit/{independent,dependent,two_step}. Unknown names, unknown
// options and unparsable or out-of-range values are INVALID_ARGUMENT with a message that
// names the option and lists what is accepted. Thread-safe (the registry is immutable).

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "actor/envs/env.h"

namespace engram::envs {

using EnvOptions = std::map<std::string, std::string>;

struct EnvOptionInfo {
  std::string name;
  std::string default_value;
  std::string help;
};

struct EnvInfo {
  std::string name;
  std::string description;
  std::vector<EnvOptionInfo> options;
};

absl::StatusOr<std::unique_ptr<Env>> MakeEnv(absl::string_view name,
                                             const EnvOptions& options = {});

// Every registered environment, sorted by name, with its options and defaults.
const std::vector<EnvInfo>& RegisteredEnvs();

// Parses "name" or "name?key=value&key=value" (the command-line form) into a name and
// options. INVALID_ARGUMENT for an empty name, a pair without '=' or a repeated key.
absl::StatusOr<std::pair<std::string, EnvOptions>> ParseEnvString(absl::string_view text);

}  // namespace engram::envs

#endif  // ENGRAM_ACTOR_ENVS_REGISTRY_H_
