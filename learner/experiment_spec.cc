#include "learner/experiment_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "actor/envs/registry.h"
#include "actor/nstep.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "common/text_proto.h"
#include "replay_server/rate_limiter.h"
#include "replay_server/table.h"

namespace engram::learner {
namespace {

// ---- problem collection ------------------------------------------------------------------

// Every problem of a spec, reported together in the order the fields are declared in
// (not the order they were found in, which follows what depends on what).
class Problems {
 public:
  void Add(std::string path, std::string what) {
    // "; " separates problems, so it must not appear inside one.
    list_.push_back({std::move(path), absl::StrReplaceAll(what, {{"; ", ", "}})});
  }
  size_t size() const { return list_.size(); }
  bool empty() const { return list_.empty(); }

  absl::Status ToStatus() const {
    std::vector<std::pair<std::vector<int64_t>, const Problem*>> sorted;
    for (const Problem& p : list_) sorted.emplace_back(Rank(p.path), &p);
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    return absl::InvalidArgumentError(
        absl::StrJoin(sorted, "; ", [](std::string* out, const auto& ranked) {
          absl::StrAppend(out, ranked.second->path, ": ", ranked.second->what);
        }));
  }

 private:
  struct Problem {
    std::string path;
    std::string what;
  };

  // Sort key of a field path such as `replay.tables[1].signature.num_actions`: at each
  // level the field number (a oneof's name ranks as its first member; unknown names
  // last), followed by the index for repeated fields. Map keys add nothing, so problems
  // with them keep the order they were added in.
  static std::vector<int64_t> Rank(absl::string_view path) {
    std::vector<int64_t> rank;
    const google::protobuf::Descriptor* message = v1::ExperimentSpec::descriptor();
    while (!path.empty()) {
      const size_t end = std::min(path.find_first_of(".["), path.size());
      const std::string name(path.substr(0, end));
      path.remove_prefix(end);
      const google::protobuf::FieldDescriptor* field = nullptr;
      if (message != nullptr) {
        field = message->FindFieldByName(name);
        const google::protobuf::OneofDescriptor* oneof = message->FindOneofByName(name);
        if (field == nullptr && oneof != nullptr) field = oneof->field(0);
      }
      rank.push_back(field != nullptr ? field->number() : std::numeric_limits<int>::max());
      message = field != nullptr ? field->message_type() : nullptr;
      if (absl::ConsumePrefix(&path, "[")) {
        // `[17]` or `["key"]`
        const size_t close = path.find(absl::StartsWith(path, "\"") ? "\"]" : "]");
        if (close == absl::string_view::npos) break;
        int64_t index;
        if (absl::SimpleAtoi(path.substr(0, close), &index)) rank.push_back(index);
        path.remove_prefix(path.find(']', close) + 1);
      }
      absl::ConsumePrefix(&path, ".");
    }
    return rank;
  }

  std::vector<Problem> list_;
};

// Range checks of the fields of one message, reported under its path.
class Checker {
 public:
  Checker(Problems* problems, std::string prefix)
      : problems_(problems), prefix_(std::move(prefix)) {}

  std::string Path(absl::string_view field) const {
    return prefix_.empty() ? std::string(field) : absl::StrCat(prefix_, ".", field);
  }
  Checker Sub(absl::string_view field) const { return Checker(problems_, Path(field)); }
  void Fail(absl::string_view field, std::string what) const {
    problems_->Add(Path(field), std::move(what));
  }

  // value >= min, or value in [min, max] when a max is given.
  void Int(absl::string_view field, int64_t value, int64_t min,
           int64_t max = std::numeric_limits<int64_t>::max()) const {
    if (value >= min && value <= max) return;
    Fail(field, max == std::numeric_limits<int64_t>::max()
                    ? absl::StrCat("must be >= ", min, ", got ", value)
                    : absl::StrCat("must be in [", min, ", ", max, "], got ", value));
  }
  // The double checks reject NaN and infinities.
  void NonNegative(absl::string_view field, double value) const {
    if (!(std::isfinite(value) && value >= 0)) {
      Fail(field, absl::StrCat("must be >= 0, got ", value));
    }
  }
  void Positive(absl::string_view field, double value) const {
    if (!(std::isfinite(value) && value > 0)) Fail(field, absl::StrCat("must be > 0, got ", value));
  }
  void Unit(absl::string_view field, double value) const {
    if (!(value >= 0 && value <= 1)) Fail(field, absl::StrCat("must be in [0, 1], got ", value));
  }
  void UnitOpen(absl::string_view field, double value) const {
    if (!(value >= 0 && value < 1)) Fail(field, absl::StrCat("must be in [0, 1), got ", value));
  }

 private:
  Problems* problems_;
  std::string prefix_;
};

// ---- formatting and small helpers --------------------------------------------------------

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

std::string Describe(const EnvironmentInfo& info) {
  return absl::StrCat(v1::DType_Name(info.observation_dtype), " ",
                      ShapeString(info.observation_shape), " observations, ", info.num_actions,
                      " actions");
}

bool SameInterface(const EnvironmentInfo& a, const EnvironmentInfo& b) {
  return a.observation_shape == b.observation_shape && a.observation_dtype == b.observation_dtype &&
         a.num_actions == b.num_actions;
}

// Whether one network can serve both: same dtype, actions and observation rank, and the
// same sizes in every dimension but the last (channels), which is padded to the larger.
bool CompatibleInterface(const EnvironmentInfo& a, const EnvironmentInfo& b) {
  const std::vector<int64_t>& x = a.observation_shape;
  const std::vector<int64_t>& y = b.observation_shape;
  return a.observation_dtype == b.observation_dtype && a.num_actions == b.num_actions &&
         x.size() == y.size() && !x.empty() && std::equal(x.begin(), x.end() - 1, y.begin());
}

// `shared` widened to fit `info` (CompatibleInterface): the larger channel count.
void WidenChannels(const EnvironmentInfo& info, EnvironmentInfo* shared) {
  shared->observation_shape.back() =
      std::max(shared->observation_shape.back(), info.observation_shape.back());
}

// Table, task and experiment names share this alphabet (lower-case, digits, `extra`).
bool NameChars(absl::string_view name, char extra) {
  return std::all_of(name.begin(), name.end(), [extra](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == extra;
  });
}

// A bijective 64-bit mix (Steele et al.'s SplitMix64 finalizer): environment seeds derived
// from the experiment seed share no structure with it.
uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum;
  return __builtin_add_overflow(a, b, &sum) ? std::numeric_limits<int64_t>::max() : sum;
}

int64_t SaturatingMul(int64_t a, int64_t b) {
  int64_t product;
  return __builtin_mul_overflow(a, b, &product) ? std::numeric_limits<int64_t>::max() : product;
}

int64_t CeilDiv(int64_t a, int64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// "" when `d` is a valid duration >= 0, else what is wrong with it.
std::string DurationProblem(const google::protobuf::Duration& d) {
  constexpr int64_t kMaxSeconds = 315576000000;  // google.protobuf.Duration's range
  if (d.seconds() < 0 || d.nanos() < 0) {
    return absl::StrCat("must be >= 0, got ", absl::FormatDuration(absl::Seconds(d.seconds()) +
                                                                   absl::Nanoseconds(d.nanos())));
  }
  if (d.seconds() > kMaxSeconds || d.nanos() > 999999999) {
    return absl::StrCat("not a valid duration (seconds ", d.seconds(), ", nanos ", d.nanos(), ")");
  }
  return "";
}

bool IsZero(const google::protobuf::Duration& d) { return d.seconds() == 0 && d.nanos() == 0; }

// ---- environments ------------------------------------------------------------------------

v1::DType ToProto(envs::DType dtype) {
  switch (dtype) {
    case envs::DType::kUint8:
      return v1::DTYPE_UINT8;
    case envs::DType::kFloat32:
      return v1::DTYPE_FLOAT32;
  }
  return v1::DTYPE_UNSPECIFIED;
}

const envs::EnvInfo* FindRegistered(absl::string_view name) {
  for (const envs::EnvInfo& info : envs::RegisteredEnvs()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

std::string RegisteredNames() {
  std::vector<std::string> names;
  for (const envs::EnvInfo& info : envs::RegisteredEnvs()) names.push_back(info.name);
  return absl::StrJoin(names, ", ");
}

// Builds `name` with `options`; the registry's message on failure.
absl::StatusOr<EnvironmentInfo> Build(const std::string& name, const envs::EnvOptions& options) {
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<envs::Env> env, envs::MakeEnv(name, options));
  const envs::EnvSpec& spec = env->spec();
  return EnvironmentInfo{spec.observation_shape, ToProto(spec.observation_dtype), spec.num_actions};
}

// DescribeEnvironment with problems reported under `path` (e.g. "task_sequence.tasks[1].
// environment"); nullopt when there were any.
std::optional<EnvironmentInfo> DescribeInto(const v1::EnvironmentSpec& environment,
                                            const Checker& check) {
  const std::string& name = environment.name();
  const envs::EnvInfo* registered = FindRegistered(name);
  if (registered == nullptr) {
    check.Fail("name",
               absl::StrCat(name.empty() ? "required" : "unknown environment \"" + name + "\"",
                            " (registered: ", RegisteredNames(), ")"));
    return std::nullopt;
  }
  // Protobuf maps iterate in no particular order; problems are reported by key.
  const envs::EnvOptions options(environment.options().begin(), environment.options().end());
  absl::StatusOr<EnvironmentInfo> info = Build(name, options);
  if (info.ok()) return *std::move(info);

  // Attribute the failure to the options one by one, so that each bad one is named.
  bool named = false;
  for (const auto& [key, value] : options) {
    const std::string field = absl::StrCat("options[\"", key, "\"]");
    const auto& known = registered->options;
    if (std::none_of(known.begin(), known.end(),
                     [&key = key](const envs::EnvOptionInfo& o) { return o.name == key; })) {
      std::vector<std::string> accepted;
      for (const envs::EnvOptionInfo& o : known) accepted.push_back(o.name);
      check.Fail(field,
                 absl::StrCat("unknown option of ", name, " (accepted: ",
                              accepted.empty() ? "none" : absl::StrJoin(accepted, ", "), ")"));
      named = true;
      continue;
    }
    if (absl::Status alone = Build(name, {{key, value}}).status(); !alone.ok()) {
      // The registry says "<name>: option <key>=<value> is invalid; expected ...".
      absl::string_view what = alone.message();
      absl::ConsumePrefix(&what, absl::StrCat(name, ": "));
      absl::ConsumePrefix(&what, absl::StrCat("option ", key, "="));
      check.Fail(field, std::string(what));
      named = true;
    }
  }
  // Options that are fine alone but not together.
  if (!named) check.Fail("options", std::string(info.status().message()));
  return std::nullopt;
}

// Fills environment.seed and describes the environment.
std::optional<EnvironmentInfo> ResolveEnvironment(v1::EnvironmentSpec* environment,
                                                  uint64_t default_seed, const Checker& check) {
  if (!environment->has_seed()) environment->set_seed(default_seed);
  return DescribeInto(*environment, check);
}

// Resolves `environment` or `task_sequence`; returns the interface all tasks share, or
// nullopt when it cannot be known (problems were reported).
std::optional<EnvironmentInfo> ResolveEnvironments(v1::ExperimentSpec* spec, Problems* problems) {
  const uint64_t base_seed = SplitMix64(spec->seed());
  if (!spec->has_task_sequence()) {
    if (!spec->has_environment()) {
      problems->Add("environment", "required (or a task_sequence)");
      return std::nullopt;
    }
    return ResolveEnvironment(spec->mutable_environment(), base_seed,
                              Checker(problems, "environment"));
  }
  if (spec->has_environment()) {
    problems->Add("environment",
                  "must be unset when task_sequence is set (each task names its "
                  "environment)");
  }
  v1::TaskSequence* sequence = spec->mutable_task_sequence();
  const Checker check(problems, "task_sequence");
  if (!sequence->has_cycles()) sequence->set_cycles(1);
  check.Int("cycles", sequence->cycles(), 1);
  if (sequence->tasks().empty()) {
    check.Fail("tasks", "at least one task is required");
    return std::nullopt;
  }
  std::optional<EnvironmentInfo> first;
  std::optional<EnvironmentInfo> shared;
  bool all_described = true;
  bool reported_difference = false;
  std::map<std::string, int> names;
  for (int k = 0; k < sequence->tasks_size(); ++k) {
    v1::Task* task = sequence->mutable_tasks(k);
    const Checker task_check = check.Sub(absl::StrCat("tasks[", k, "]"));
    const std::string& env_name = task->environment().name();
    // The part after the last '/' (all of it when there is none: npos + 1 == 0).
    if (task->name().empty()) task->set_name(env_name.substr(env_name.rfind('/') + 1));
    if (!task->name().empty() && (task->name().size() > 64 || !NameChars(task->name(), '_'))) {
      task_check.Fail("name", absl::StrCat("must be 1 to 64 characters from [a-z0-9_], got \"",
                                           task->name(), "\""));
    }
    if (const auto [it, fresh] = names.emplace(task->name(), k); !fresh) {
      // Names label metrics and CSV rows: two tasks of one environment need their own.
      task_check.Fail("name", absl::StrCat("\"", task->name(), "\" is also tasks[", it->second,
                                           "]'s name: give each task its own"));
    }
    task_check.Int("frames", task->frames(), 1);
    const std::optional<EnvironmentInfo> info = ResolveEnvironment(
        task->mutable_environment(), base_seed + (static_cast<uint64_t>(k) << 33),
        task_check.Sub("environment"));
    if (!info.has_value()) {
      all_described = false;
    } else if (!first.has_value()) {
      first = shared = info;
    } else if (!reported_difference && !CompatibleInterface(*info, *first)) {
      // One network serves every task; naming the first that differs is enough.
      task_check.Fail(
          "environment",
          absl::StrCat(Describe(*info), " differ from the first task's ", Describe(*first),
                       " (one network serves all tasks: only the last dimension, "
                       "channels, may differ)"));
      reported_difference = true;
    } else {
      WidenChannels(*info, &*shared);
    }
  }
  if (!all_described || reported_difference) return std::nullopt;
  return shared;
}

// ---- algorithms --------------------------------------------------------------------------

// Hyper-parameters of one optimizer kind, as defaults.
struct OptimizerDefaults {
  v1::OptimizerKind kind;
  double learning_rate;
  double epsilon;
  double decay;  // centered RMSProp only
  double beta1;  // Adam only
  double beta2;  // Adam only
};

// Ape-X (Horgan et al. 2018): DQN's centered RMSProp with a 4x smaller step.
constexpr OptimizerDefaults kApexRmsProp{
    v1::OPTIMIZER_KIND_CENTERED_RMSPROP, 0.00025 / 4, 1.5e-7, 0.95, 0, 0};
constexpr OptimizerDefaults kAdam{v1::OPTIMIZER_KIND_ADAM, 0.0001, 1e-8, 0, 0.9, 0.999};
constexpr OptimizerDefaults kMetaRlAdam{v1::OPTIMIZER_KIND_ADAM, 0.0007, 1e-8, 0, 0.9, 0.999};

// The algorithm's own kind takes the algorithm's numbers; another kind takes that kind's.
void ResolveOptimizer(v1::OptimizerConfig* o, const OptimizerDefaults& algorithm_default,
                      const Checker& check) {
  if (o->kind() == v1::OPTIMIZER_KIND_UNSPECIFIED) o->set_kind(algorithm_default.kind);
  if (!v1::OptimizerKind_IsValid(o->kind())) {
    check.Fail("kind", absl::StrCat("unknown value ", o->kind()));
    return;
  }
  const bool adam = o->kind() == v1::OPTIMIZER_KIND_ADAM;
  const OptimizerDefaults& d = o->kind() == algorithm_default.kind ? algorithm_default
                               : adam                              ? kAdam
                                                                   : kApexRmsProp;
  if (!o->has_learning_rate()) o->set_learning_rate(d.learning_rate);
  if (!o->has_epsilon()) o->set_epsilon(d.epsilon);
  check.Positive("learning_rate", o->learning_rate());
  check.Positive("epsilon", o->epsilon());
  const std::string not_read = absl::StrCat("not read by ", v1::OptimizerKind_Name(o->kind()),
                                            " (remove it or change kind)");
  if (adam) {
    if (!o->has_beta1()) o->set_beta1(d.beta1);
    if (!o->has_beta2()) o->set_beta2(d.beta2);
    check.UnitOpen("beta1", o->beta1());
    check.UnitOpen("beta2", o->beta2());
    if (o->has_decay()) check.Fail("decay", not_read);
  } else {
    if (!o->has_decay()) o->set_decay(d.decay);
    check.UnitOpen("decay", o->decay());
    if (o->has_beta1()) check.Fail("beta1", not_read);
    if (o->has_beta2()) check.Fail("beta2", not_read);
  }
}

// Frames the run trains at most: the default importance-sampling anneal horizon.
int64_t FrameBudget(const v1::ExperimentSpec& spec) {
  int64_t budget = std::numeric_limits<int64_t>::max();
  if (spec.budget().total_frames() > 0) budget = spec.budget().total_frames();
  if (spec.has_task_sequence()) {
    int64_t sequence = 0;
    for (const v1::Task& task : spec.task_sequence().tasks()) {
      sequence = SaturatingAdd(sequence, std::max<int64_t>(task.frames(), 0));
    }
    sequence = SaturatingMul(sequence, std::max(spec.task_sequence().cycles(), 1));
    if (sequence > 0) budget = std::min(budget, sequence);
  }
  return budget == std::numeric_limits<int64_t>::max() ? 1000000 : budget;
}

// Fields of ApexDqnConfig that only parameterise the derived table.
void ClearDerivedOnly(v1::ApexDqnConfig* c) {
  c->clear_priority_exponent();
  c->clear_replay_capacity();
  c->clear_min_replay_size();
  c->clear_samples_per_insert();
}

// `derive_table`: replay.tables is empty, so the derived-only fields take their defaults;
// otherwise they must be absent.
void ResolveDqn(v1::ApexDqnConfig* c, int64_t frame_budget, bool derive_table,
                const Checker& check) {
  if (c->torso() == v1::TORSO_UNSPECIFIED) c->set_torso(v1::TORSO_MINATAR);
  if (!v1::Torso_IsValid(c->torso()))
    check.Fail("torso", absl::StrCat("unknown value ", c->torso()));
  if (!c->has_n_step()) c->set_n_step(3);
  if (!c->has_gamma()) c->set_gamma(0.99);
  ResolveOptimizer(c->mutable_optimizer(), kApexRmsProp, check.Sub("optimizer"));
  if (!c->has_batch_size()) c->set_batch_size(512);
  if (!c->has_target_update_period()) c->set_target_update_period(2500);
  if (!c->has_importance_beta_start()) c->set_importance_beta_start(0.4);
  if (!c->has_importance_beta_end()) c->set_importance_beta_end(0.4);
  if (!c->has_importance_beta_anneal_frames()) c->set_importance_beta_anneal_frames(frame_budget);
  if (!c->has_gradient_clip_norm()) c->set_gradient_clip_norm(40);
  if (!c->has_epsilon_base()) c->set_epsilon_base(0.4);
  if (!c->has_epsilon_alpha()) c->set_epsilon_alpha(7);
  if (!c->has_double_q()) c->set_double_q(true);
  if (!c->has_replay_table()) c->set_replay_table("replay");

  // The torso decides how many entries it takes (learner/apex_config.h checks the fit).
  for (int i = 0; i < c->hidden_sizes_size(); ++i) {
    check.Int(absl::StrCat("hidden_sizes[", i, "]"), c->hidden_sizes(i), 1);
  }
  check.Int("n_step", c->n_step(), 1, 100);
  check.Unit("gamma", c->gamma());
  check.Int("batch_size", c->batch_size(), 1);
  check.Int("target_update_period", c->target_update_period(), 1);
  check.Unit("importance_beta_start", c->importance_beta_start());
  check.Unit("importance_beta_end", c->importance_beta_end());
  check.Int("importance_beta_anneal_frames", c->importance_beta_anneal_frames(), 1);
  check.NonNegative("gradient_clip_norm", c->gradient_clip_norm());
  check.Unit("epsilon_base", c->epsilon_base());
  check.NonNegative("epsilon_alpha", c->epsilon_alpha());

  if (!derive_table) {
    const std::string why = "must be absent when replay.tables is set (the table spec says it)";
    if (c->has_priority_exponent()) check.Fail("priority_exponent", why);
    if (c->has_replay_capacity()) check.Fail("replay_capacity", why);
    if (c->has_min_replay_size()) check.Fail("min_replay_size", why);
    if (c->has_samples_per_insert()) check.Fail("samples_per_insert", why);
    return;
  }
  if (!c->has_priority_exponent()) c->set_priority_exponent(0.6);
  if (!c->has_replay_capacity()) c->set_replay_capacity(1000000);
  if (!c->has_min_replay_size()) c->set_min_replay_size(20000);
  if (!c->has_samples_per_insert()) c->set_samples_per_insert(0);
  check.Unit("priority_exponent", c->priority_exponent());
  check.Int("replay_capacity", c->replay_capacity(), 1);
  check.Int("min_replay_size", c->min_replay_size(), 1, std::max<int64_t>(c->replay_capacity(), 1));
  check.NonNegative("samples_per_insert", c->samples_per_insert());
}

void ResolveMetaRl(v1::MetaRlConfig* c, const v1::ExperimentSpec& spec, const Checker& check) {
  if (!c->has_lstm_size()) c->set_lstm_size(48);
  if (!c->has_unroll_length()) c->set_unroll_length(100);
  if (!c->has_batch_size()) c->set_batch_size(16);
  if (!c->has_gamma()) c->set_gamma(0.9);
  if (!c->has_entropy_cost()) c->set_entropy_cost(0.05);
  if (!c->has_value_cost()) c->set_value_cost(0.05);
  if (!c->has_vtrace_rho_clip()) c->set_vtrace_rho_clip(1.0);
  if (!c->has_vtrace_c_clip()) c->set_vtrace_c_clip(1.0);
  ResolveOptimizer(c->mutable_optimizer(), kMetaRlAdam, check.Sub("optimizer"));
  if (!c->has_gradient_clip_norm()) c->set_gradient_clip_norm(40);
  if (c->task_family().empty() && !spec.has_task_sequence()) {
    c->set_task_family(spec.environment().name());
  }
  if (!c->has_input_previous_action()) c->set_input_previous_action(true);
  if (!c->has_input_previous_reward()) c->set_input_previous_reward(true);
  if (!c->has_replay_table()) c->set_replay_table("trajectories");

  check.Int("lstm_size", c->lstm_size(), 1);
  check.Int("unroll_length", c->unroll_length(), 1);
  check.Int("batch_size", c->batch_size(), 1);
  check.Unit("gamma", c->gamma());
  check.NonNegative("entropy_cost", c->entropy_cost());
  check.NonNegative("value_cost", c->value_cost());
  check.Positive("vtrace_rho_clip", c->vtrace_rho_clip());
  check.Positive("vtrace_c_clip", c->vtrace_c_clip());
  check.NonNegative("gradient_clip_norm", c->gradient_clip_norm());
}

// A task family other than the environment must be registered and look the same to the
// network.
void CheckTaskFamily(const v1::MetaRlConfig& c, const v1::ExperimentSpec& spec,
                     const std::optional<EnvironmentInfo>& env, const Checker& check) {
  const std::string& family = c.task_family();
  if (family.empty() || (!spec.has_task_sequence() && family == spec.environment().name())) {
    return;
  }
  if (FindRegistered(family) == nullptr) {
    check.Fail("task_family", absl::StrCat("unknown environment \"", family,
                                           "\" (registered: ", RegisteredNames(), ")"));
    return;
  }
  absl::StatusOr<EnvironmentInfo> info = Build(family, {});
  if (!info.ok()) {
    check.Fail("task_family", std::string(info.status().message()));
  } else if (env.has_value() && !SameInterface(*info, *env)) {
    check.Fail("task_family", absl::StrCat(family, " has ", Describe(*info), ", the environment ",
                                           Describe(*env)));
  }
}

void ResolveEwc(v1::EwcConfig* c, const v1::ExperimentSpec& spec, bool derive_table,
                const Checker& check) {
  ResolveDqn(c->mutable_dqn(), FrameBudget(spec), derive_table, check.Sub("dqn"));
  if (!c->has_lambda()) c->set_lambda(400);
  if (!c->has_fisher_minibatches()) c->set_fisher_minibatches(100);
  if (!c->has_online()) c->set_online(false);
  if (!c->has_online_gamma()) c->set_online_gamma(1.0);
  check.NonNegative("lambda", c->lambda());
  check.Int("fisher_minibatches", c->fisher_minibatches(), 1);
  check.Unit("online_gamma", c->online_gamma());
}

void ResolveEpisodicControl(v1::EpisodicControlConfig* c, const Checker& check) {
  if (!c->has_key_dim()) c->set_key_dim(64);
  if (!c->has_k()) c->set_k(50);
  if (!c->has_capacity_per_action()) c->set_capacity_per_action(1000000);
  if (!c->has_epsilon()) c->set_epsilon(0.005);
  if (!c->has_gamma()) c->set_gamma(0.99);
  if (c->update_rule() == v1::UPDATE_RULE_UNSPECIFIED) {
    c->set_update_rule(v1::UPDATE_RULE_MFEC_MAX);
  }
  if (c->kernel() == v1::KERNEL_UNSPECIFIED) c->set_kernel(v1::KERNEL_MEAN);
  if (c->index() == v1::INDEX_KIND_UNSPECIFIED) c->set_index(v1::INDEX_KIND_APPROXIMATE);
  if (c->embedding() == v1::EMBEDDING_UNSPECIFIED) {
    c->set_embedding(v1::EMBEDDING_RANDOM_PROJECTION);
  }
  check.Int("key_dim", c->key_dim(), 1);
  check.Int("k", c->k(), 1);
  check.Int("capacity_per_action", c->capacity_per_action(), 1);
  check.Unit("epsilon", c->epsilon());
  check.Unit("gamma", c->gamma());
  if (!v1::UpdateRule_IsValid(c->update_rule())) {
    check.Fail("update_rule", absl::StrCat("unknown value ", c->update_rule()));
  }
  if (!v1::Kernel_IsValid(c->kernel())) {
    check.Fail("kernel", absl::StrCat("unknown value ", c->kernel()));
  }
  if (!v1::IndexKind_IsValid(c->index())) {
    check.Fail("index", absl::StrCat("unknown value ", c->index()));
  }
  if (!v1::Embedding_IsValid(c->embedding())) {
    check.Fail("embedding", absl::StrCat("unknown value ", c->embedding()));
  }
}

// ---- replay ------------------------------------------------------------------------------

void SetObservation(const std::optional<EnvironmentInfo>& env, v1::TrajectorySignature* sig) {
  if (!env.has_value()) return;
  sig->mutable_observation()->set_dtype(env->observation_dtype);
  sig->mutable_observation()->mutable_shape()->Add(env->observation_shape.begin(),
                                                   env->observation_shape.end());
  sig->set_num_actions(env->num_actions);
}

// The table apex_dqn.replay_table's comment describes.
v1::TableSpec DeriveDqnTable(const v1::ApexDqnConfig& c, int num_shards,
                             const std::optional<EnvironmentInfo>& env) {
  v1::TableSpec table;
  table.set_name(c.replay_table());
  table.set_selector(v1::SELECTOR_PRIORITIZED);
  table.set_priority_exponent(c.priority_exponent());
  table.set_remover(v1::REMOVER_FIFO);
  table.set_max_size(CeilDiv(c.replay_capacity(), num_shards));
  table.set_max_times_sampled(0);
  v1::RateLimiterSpec* limiter = table.mutable_rate_limiter();
  limiter->set_samples_per_insert(c.samples_per_insert());
  limiter->set_min_size_to_sample(CeilDiv(c.min_replay_size(), num_shards));
  limiter->set_error_buffer(std::max<double>(c.batch_size(), c.samples_per_insert()) * 100);
  table.mutable_signature()->set_payload(v1::PAYLOAD_KIND_TRANSITION);
  SetObservation(env, table.mutable_signature());
  return table;
}

// The queue meta_rl.replay_table's comment describes.
v1::TableSpec DeriveMetaRlTable(const v1::MetaRlConfig& c,
                                const std::optional<EnvironmentInfo>& env) {
  v1::TableSpec table;
  table.set_name(c.replay_table());
  table.set_selector(v1::SELECTOR_FIFO);
  table.set_remover(v1::REMOVER_FIFO);
  table.set_max_size(int64_t{8} * c.batch_size());
  table.set_max_times_sampled(1);
  // Inserts wait while the queue holds max_size unsampled chunks (diff = inserts - samples).
  table.mutable_rate_limiter()->set_min_size_to_sample(1);
  table.mutable_rate_limiter()->set_samples_per_insert(1);
  table.mutable_rate_limiter()->set_error_buffer(static_cast<double>(table.max_size()));
  table.mutable_signature()->set_payload(v1::PAYLOAD_KIND_CHUNK);
  SetObservation(env, table.mutable_signature());
  table.mutable_signature()->set_sequence_length(c.unroll_length());
  return table;
}

// How an algorithm uses its replay table.
struct TableUse {
  std::string path;  // the algorithm config's path: "apex_dqn", "ewc.dqn", "meta_rl"
  std::string name;  // its replay_table
  v1::PayloadKind payload;
  int batch_size;
  int sequence_length;  // chunks' T; 0 for transitions
};

// Either adds the derived table to replay.tables, or checks the given table the algorithm
// names against the algorithm. `config_ok`: no problem was found in the algorithm's own
// fields (a derived table from bad fields is bad for reasons already reported).
void AttachTable(const TableUse& use, const std::optional<v1::TableSpec>& derived, bool config_ok,
                 v1::ReplaySpec* replay, Problems* problems) {
  const Checker check(problems, use.path);
  if (derived.has_value()) {
    if (absl::Status status = replay::ValidateTableSpec(*derived); config_ok && !status.ok()) {
      check.Fail("replay_table", absl::StrCat("the derived table \"", derived->name(),
                                              "\" would be invalid: ", status.message()));
    }
    *replay->add_tables() = *derived;
    return;
  }
  const auto& tables = replay->tables();
  const auto it = std::find_if(tables.begin(), tables.end(),
                               [&](const v1::TableSpec& t) { return t.name() == use.name; });
  if (it == tables.end()) {
    std::vector<std::string> names;
    for (const v1::TableSpec& t : tables) names.push_back("\"" + t.name() + "\"");
    check.Fail("replay_table", absl::StrCat("\"", use.name, "\" names no table in replay.tables (",
                                            absl::StrJoin(names, ", "), ")"));
    return;
  }
  const Checker table_check(problems,
                            absl::StrCat("replay.tables[", it - tables.begin(), "].signature"));
  const v1::TrajectorySignature& sig = it->signature();
  if (sig.payload() != v1::PAYLOAD_KIND_UNSPECIFIED && sig.payload() != use.payload) {
    table_check.Fail("payload", absl::StrCat("must be ", v1::PayloadKind_Name(use.payload),
                                             " (or unspecified) for ", use.path, ", got ",
                                             v1::PayloadKind_Name(sig.payload())));
  }
  if (use.sequence_length > 0 && sig.sequence_length() != 0 &&
      sig.sequence_length() != use.sequence_length) {
    table_check.Fail("sequence_length",
                     absl::StrCat("must be 0 or ", use.path, ".unroll_length (",
                                  use.sequence_length, "), got ", sig.sequence_length()));
  }
  if (absl::StatusOr<replay::RateLimiter> limiter = replay::RateLimiter::Create(it->rate_limiter());
      limiter.ok()) {
    if (absl::Status status = limiter->CheckBatchSize(use.batch_size); !status.ok()) {
      check.Fail("batch_size", absl::StrCat("table \"", use.name, "\": ", status.message()));
    }
  }  // else the table's own check reported it
}

// Checks the given tables: what the server would reject, duplicate names, and
// signatures that contradict the environment.
void CheckGivenTables(const v1::ReplaySpec& replay, const std::optional<EnvironmentInfo>& env,
                      Problems* problems) {
  for (int i = 0; i < replay.tables_size(); ++i) {
    const v1::TableSpec& table = replay.tables(i);
    const Checker check(problems, absl::StrCat("replay.tables[", i, "]"));
    if (absl::Status status = replay::ValidateTableSpec(table); !status.ok()) {
      // The server says "spec.<field>: <what is wrong>".
      std::pair<absl::string_view, absl::string_view> field_what =
          absl::StrSplit(status.message(), absl::MaxSplits(": ", 1));
      if (absl::ConsumePrefix(&field_what.first, "spec.") && !field_what.second.empty()) {
        check.Fail(field_what.first, std::string(field_what.second));
      } else {
        problems->Add(absl::StrCat("replay.tables[", i, "]"), std::string(status.message()));
      }
    }
    for (int j = 0; j < i; ++j) {
      if (replay.tables(j).name() == table.name()) {
        check.Fail("name",
                   absl::StrCat("\"", table.name(), "\" is also the name of tables[", j, "]"));
        break;
      }
    }
    if (!env.has_value()) continue;
    const v1::TrajectorySignature& sig = table.signature();
    const Checker sig_check = check.Sub("signature");
    if (sig.has_observation()) {
      const v1::TensorSpec& o = sig.observation();
      if (o.dtype() != v1::DTYPE_UNSPECIFIED && o.dtype() != env->observation_dtype) {
        sig_check.Fail("observation.dtype",
                       absl::StrCat(v1::DType_Name(o.dtype()), " does not match the environment's ",
                                    v1::DType_Name(env->observation_dtype)));
      }
      const std::vector<int64_t> shape(o.shape().begin(), o.shape().end());
      bool matches = shape.size() == env->observation_shape.size();
      for (size_t d = 0; matches && d < shape.size(); ++d) {
        matches = shape[d] == -1 || shape[d] == env->observation_shape[d];
      }
      if (!matches) {
        sig_check.Fail("observation.shape",
                       absl::StrCat(ShapeString(shape), " does not match the environment's ",
                                    ShapeString(env->observation_shape)));
      }
    }
    if (sig.num_actions() != 0 && sig.num_actions() != env->num_actions) {
      sig_check.Fail(
          "num_actions",
          absl::StrCat(sig.num_actions(), " does not match the environment's ", env->num_actions));
    }
  }
}

// The algorithm, its replay table, and the replay shards.
void ResolveAlgorithmAndReplay(v1::ExperimentSpec* spec, const std::optional<EnvironmentInfo>& env,
                               Problems* problems) {
  v1::ReplaySpec* replay = spec->mutable_replay();
  if (!replay->has_num_shards()) replay->set_num_shards(1);
  Checker(problems, "replay").Int("num_shards", replay->num_shards(), 1);
  const int num_shards = std::max(replay->num_shards(), 1);
  const bool derive = replay->tables().empty();
  CheckGivenTables(*replay, env, problems);

  switch (spec->algorithm_case()) {
    case v1::ExperimentSpec::kApexDqn:
    case v1::ExperimentSpec::kEwc: {
      const bool ewc = spec->has_ewc();
      const size_t problems_before = problems->size();
      if (ewc) {
        ResolveEwc(spec->mutable_ewc(), *spec, derive, Checker(problems, "ewc"));
        if (!spec->has_task_sequence()) problems->Add("task_sequence", "required by ewc");
      } else {
        ResolveDqn(spec->mutable_apex_dqn(), FrameBudget(*spec), derive,
                   Checker(problems, "apex_dqn"));
      }
      v1::ApexDqnConfig* dqn = ewc ? spec->mutable_ewc()->mutable_dqn() : spec->mutable_apex_dqn();
      std::optional<v1::TableSpec> derived;
      if (derive) derived = DeriveDqnTable(*dqn, num_shards, env);
      AttachTable({ewc ? "ewc.dqn" : "apex_dqn", dqn->replay_table(), v1::PAYLOAD_KIND_TRANSITION,
                   dqn->batch_size(), 0},
                  derived, problems->size() == problems_before, replay, problems);
      ClearDerivedOnly(dqn);  // the derived table carries them now
      break;
    }
    case v1::ExperimentSpec::kMetaRl: {
      v1::MetaRlConfig* meta = spec->mutable_meta_rl();
      const Checker check(problems, "meta_rl");
      const size_t problems_before = problems->size();
      ResolveMetaRl(meta, *spec, check);
      CheckTaskFamily(*meta, *spec, env, check);
      if (spec->has_task_sequence()) {
        problems->Add("task_sequence",
                      "meta_rl learns one task family (meta_rl.task_family): task sequences run "
                      "with apex_dqn or ewc");
      }
      std::optional<v1::TableSpec> derived;
      if (derive) derived = DeriveMetaRlTable(*meta, env);
      AttachTable({"meta_rl", meta->replay_table(), v1::PAYLOAD_KIND_CHUNK, meta->batch_size(),
                   meta->unroll_length()},
                  derived, problems->size() == problems_before, replay, problems);
      break;
    }
    case v1::ExperimentSpec::kEpisodicControl:
      ResolveEpisodicControl(spec->mutable_episodic_control(),
                             Checker(problems, "episodic_control"));
      if (spec->has_task_sequence()) {
        problems->Add("task_sequence", "task sequences run with apex_dqn or ewc");
      }
      if (!derive) {
        problems->Add("replay.tables", "must be empty for episodic_control (it uses no replay)");
      }
      break;
    case v1::ExperimentSpec::ALGORITHM_NOT_SET:
      problems->Add("algorithm",
                    "exactly one of apex_dqn, meta_rl, ewc or episodic_control is required");
      break;
  }
}

// ---- the rest of the spec ----------------------------------------------------------------

void ResolveIdentity(v1::ExperimentSpec* spec, Problems* problems) {
  const std::string& id = spec->id();
  if (!id.empty() && (id.size() > 63 || !absl::ascii_islower(id[0]) || !NameChars(id, '-'))) {
    problems->Add("id", absl::StrCat("must be 1 to 63 characters from [a-z0-9-] starting with a "
                                     "letter, got \"",
                                     id, "\""));
  }
  if (!spec->has_seed()) {
    absl::BitGen gen;
    spec->set_seed(absl::Uniform<uint64_t>(gen));
  }
}

void ResolveActors(v1::ActorsSpec* actors, const Checker& check) {
  if (!actors->has_envs_per_actor()) actors->set_envs_per_actor(1);
  if (!actors->has_weight_sync_steps()) actors->set_weight_sync_steps(400);
  if (!actors->has_insert_batch_size()) actors->set_insert_batch_size(64);
  check.Int("num_actors", actors->num_actors(), 1);
  check.Int("envs_per_actor", actors->envs_per_actor(), 1);
  check.Int("weight_sync_steps", actors->weight_sync_steps(), 1);
  check.Int("insert_batch_size", actors->insert_batch_size(), 1);
  // Environment indices (i * envs_per_actor + j) are ints.
  const int64_t total = int64_t{actors->num_actors()} * actors->envs_per_actor();
  if (total > std::numeric_limits<int>::max()) {
    check.Fail("envs_per_actor", absl::StrCat("num_actors * envs_per_actor must be <= ",
                                              std::numeric_limits<int>::max(), ", got ", total));
  }
}

void ResolveEvaluation(v1::EvaluationSpec* evaluation, const Checker& check) {
  if (!evaluation->has_episodes()) evaluation->set_episodes(10);
  if (!evaluation->has_epsilon()) evaluation->set_epsilon(0.001);
  check.Int("every_frames", evaluation->every_frames(), 0);
  check.Int("episodes", evaluation->episodes(), 1);
  check.Unit("epsilon", evaluation->epsilon());
}

void ResolveBudget(const v1::ExperimentSpec& spec, Problems* problems) {
  const v1::BudgetSpec& budget = spec.budget();
  const Checker check(problems, "budget");
  check.Int("total_frames", budget.total_frames(), 0);
  if (std::string what = DurationProblem(budget.max_wall_time()); !what.empty()) {
    check.Fail("max_wall_time", what);
  }
  const bool wall_limit =
      DurationProblem(budget.max_wall_time()).empty() && !IsZero(budget.max_wall_time());
  if (budget.total_frames() <= 0 && !wall_limit && !spec.has_task_sequence()) {
    problems->Add("budget",
                  "the run has no limit: set budget.total_frames, budget.max_wall_time or a "
                  "task_sequence");
  }
}

// Defaults apply when checkpointing is on (a directory is set); otherwise the message is
// left as given, and only what is set is checked.
void ResolveCheckpoint(v1::ExperimentSpec* spec, const Checker& check) {
  if (!spec->checkpoint().directory().empty()) {
    v1::CheckpointSpec* checkpoint = spec->mutable_checkpoint();
    if (!checkpoint->has_interval()) checkpoint->mutable_interval()->set_seconds(600);
    if (!checkpoint->has_keep()) checkpoint->set_keep(3);
    if (!checkpoint->has_include_replay()) checkpoint->set_include_replay(false);
  }
  const v1::CheckpointSpec& checkpoint = spec->checkpoint();
  if (checkpoint.has_interval()) {
    if (std::string what = DurationProblem(checkpoint.interval()); !what.empty()) {
      check.Fail("interval", what);
    } else if (IsZero(checkpoint.interval())) {
      check.Fail("interval", "must be > 0, got 0");
    }
  }
  if (checkpoint.has_keep()) check.Int("keep", checkpoint.keep(), 1);
}

void ResolveLearnerDevice(v1::ExperimentSpec* spec, Problems* problems) {
  if (spec->learner_device().empty()) spec->set_learner_device("cpu");
  const std::string& device = spec->learner_device();
  absl::string_view index = device;
  if (device == "cpu" || device == "cuda" || device == "auto") return;
  if (absl::ConsumePrefix(&index, "cuda:") && !index.empty() && index.size() <= 6 &&
      std::all_of(index.begin(), index.end(), absl::ascii_isdigit)) {
    return;
  }
  problems->Add("learner_device", absl::StrCat("must be \"cpu\", \"cuda\", \"cuda:<index>\" or "
                                               "\"auto\", got \"",
                                               device, "\""));
}

}  // namespace

absl::StatusOr<v1::ExperimentSpec> ResolveExperimentSpec(const v1::ExperimentSpec& spec) {
  v1::ExperimentSpec resolved = spec;
  Problems problems;
  // Order matters where one part's defaults read another's: the seed before the
  // environment seeds, the task sequence before the frame budget, the environment before
  // the replay signature.
  ResolveIdentity(&resolved, &problems);
  const std::optional<EnvironmentInfo> env = ResolveEnvironments(&resolved, &problems);
  ResolveActors(resolved.mutable_actors(), Checker(&problems, "actors"));
  ResolveEvaluation(resolved.mutable_evaluation(), Checker(&problems, "evaluation"));
  ResolveBudget(resolved, &problems);
  ResolveCheckpoint(&resolved, Checker(&problems, "checkpoint"));
  ResolveLearnerDevice(&resolved, &problems);
  ResolveAlgorithmAndReplay(&resolved, env, &problems);
  if (!problems.empty()) return problems.ToStatus();
  return resolved;
}

absl::StatusOr<v1::ExperimentSpec> ReadExperimentSpec(const std::string& path) {
  v1::ExperimentSpec spec;
  ENGRAM_RETURN_IF_ERROR(ReadTextProtoFile(path, &spec));
  absl::StatusOr<v1::ExperimentSpec> resolved = ResolveExperimentSpec(spec);
  if (!resolved.ok()) {
    return absl::Status(resolved.status().code(),
                        absl::StrCat(path, ": ", resolved.status().message()));
  }
  return resolved;
}

absl::StatusOr<EnvironmentInfo> DescribeEnvironment(const v1::EnvironmentSpec& environment) {
  Problems problems;
  std::optional<EnvironmentInfo> info =
      DescribeInto(environment, Checker(&problems, "environment"));
  if (!info.has_value()) return problems.ToStatus();
  return *std::move(info);
}

const v1::ApexDqnConfig& DqnAlgorithmConfig(const v1::ExperimentSpec& resolved) {
  ENGRAM_CHECK(resolved.has_apex_dqn() || resolved.has_ewc())
      << "a DQN configuration needs apex_dqn or ewc, the spec has algorithm case "
      << resolved.algorithm_case();
  return resolved.has_ewc() ? resolved.ewc().dqn() : resolved.apex_dqn();
}

std::string DqnAlgorithmPath(const v1::ExperimentSpec& resolved) {
  return resolved.has_ewc() ? "ewc.dqn" : "apex_dqn";
}

absl::StatusOr<EnvironmentInfo> SharedEnvironment(const v1::ExperimentSpec& resolved) {
  if (!resolved.has_task_sequence()) return DescribeEnvironment(resolved.environment());
  std::optional<EnvironmentInfo> shared;
  for (int k = 0; k < resolved.task_sequence().tasks_size(); ++k) {
    absl::StatusOr<EnvironmentInfo> info = DescribeEnvironment(TaskEnvironment(resolved, k));
    if (!info.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("task_sequence.tasks[", k, "].", info.status().message()));
    }
    if (!shared.has_value()) {
      shared = *info;
    } else if (!CompatibleInterface(*info, *shared)) {
      return absl::InvalidArgumentError(
          absl::StrCat("task_sequence.tasks[", k, "].environment: ", Describe(*info),
                       " differ from the first task's ", Describe(*shared)));
    } else {
      WidenChannels(*info, &*shared);
    }
  }
  if (!shared.has_value()) return absl::InvalidArgumentError("task_sequence.tasks: none");
  return *shared;
}

const v1::EnvironmentSpec& TaskEnvironment(const v1::ExperimentSpec& resolved, int task_index) {
  if (!resolved.has_task_sequence()) {
    ENGRAM_CHECK(task_index == 0) << "task " << task_index << " of a spec without task_sequence";
    return resolved.environment();
  }
  ENGRAM_CHECK(task_index >= 0 && task_index < resolved.task_sequence().tasks_size())
      << "task " << task_index << " of " << resolved.task_sequence().tasks_size();
  return resolved.task_sequence().tasks(task_index).environment();
}

TaskPhase TaskPhaseAt(const v1::ExperimentSpec& resolved, int64_t frames) {
  TaskPhase at;
  if (!resolved.has_task_sequence() || resolved.task_sequence().tasks_size() == 0) {
    at.end_frames = std::numeric_limits<int64_t>::max();
    return at;
  }
  const v1::TaskSequence& sequence = resolved.task_sequence();
  const int tasks = sequence.tasks_size();
  const int phases = tasks * std::max(sequence.cycles(), 1);
  int64_t start = 0;
  for (int p = 0; p < phases; ++p) {
    const int64_t end =
        SaturatingAdd(start, std::max<int64_t>(sequence.tasks(p % tasks).frames(), 0));
    at.phase = p;
    at.task_index = p % tasks;
    at.start_frames = start;
    at.end_frames = end;
    if (frames < end) return at;
    start = end;
  }
  at.sequence_done = true;
  return at;
}

v1::TableSpec TaskTable(const v1::ExperimentSpec& resolved, int task_index) {
  v1::TableSpec table = AlgorithmTable(resolved);
  if (!resolved.has_task_sequence()) {
    ENGRAM_CHECK(task_index == 0) << "task " << task_index << " of a spec without task_sequence";
    return table;
  }
  ENGRAM_CHECK(task_index >= 0 && task_index < resolved.task_sequence().tasks_size())
      << "task " << task_index << " of " << resolved.task_sequence().tasks_size();
  table.set_name(absl::StrCat(table.name(), "_t", task_index));
  return table;
}

uint64_t TrainingEnvSeed(const v1::ExperimentSpec& resolved, int actor_index, int env_index,
                         int task_index) {
  const int envs_per_actor = resolved.actors().envs_per_actor();
  ENGRAM_CHECK(actor_index >= 0 && actor_index < resolved.actors().num_actors() && env_index >= 0 &&
               env_index < envs_per_actor)
      << "actor " << actor_index << ", env " << env_index;
  return TaskEnvironment(resolved, task_index).seed() +
         static_cast<uint64_t>(actor_index) * static_cast<uint64_t>(envs_per_actor) +
         static_cast<uint64_t>(env_index);
}

uint64_t EvaluationEnvSeed(const v1::ExperimentSpec& resolved, int index, int task_index) {
  ENGRAM_CHECK(index >= 0) << "evaluation env " << index;
  return TaskEnvironment(resolved, task_index).seed() + (uint64_t{1} << 32) +
         static_cast<uint64_t>(index);
}

double ApexActorEpsilon(const v1::ExperimentSpec& resolved, int actor_index, int env_index) {
  const v1::ApexDqnConfig& dqn = DqnAlgorithmConfig(resolved);
  const int envs_per_actor = resolved.actors().envs_per_actor();
  ENGRAM_CHECK(env_index >= 0 && env_index < envs_per_actor)
      << "env " << env_index << " of " << envs_per_actor;
  return actor::ApexEpsilon(actor_index * envs_per_actor + env_index,
                            resolved.actors().num_actors() * envs_per_actor, dqn.epsilon_base(),
                            dqn.epsilon_alpha());
}

int ShardOfActor(const v1::ExperimentSpec& resolved, int actor_index) {
  ENGRAM_CHECK(actor_index >= 0 && resolved.replay().num_shards() >= 1)
      << "actor " << actor_index << ", shards " << resolved.replay().num_shards();
  return actor_index % resolved.replay().num_shards();
}

const v1::TableSpec& AlgorithmTable(const v1::ExperimentSpec& resolved) {
  const std::string* name = nullptr;
  if (resolved.has_apex_dqn()) name = &resolved.apex_dqn().replay_table();
  if (resolved.has_ewc()) name = &resolved.ewc().dqn().replay_table();
  if (resolved.has_meta_rl()) name = &resolved.meta_rl().replay_table();
  ENGRAM_CHECK(name != nullptr) << "algorithm case " << resolved.algorithm_case()
                                << " has no replay table";
  for (const v1::TableSpec& table : resolved.replay().tables()) {
    if (table.name() == *name) return table;
  }
  ENGRAM_CHECK(false) << "replay table \"" << *name << "\" not in the spec: is it resolved?";
  std::abort();  // unreachable
}

}  // namespace engram::learner
