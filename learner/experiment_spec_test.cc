#include "learner/experiment_spec.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/text_proto.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace engram::learner {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

v1::ExperimentSpec Parse(const std::string& text) {
  v1::ExperimentSpec spec;
  const absl::Status status = ParseTextProto(text, &spec);
  EXPECT_TRUE(status.ok()) << status;
  return spec;
}

// The smallest valid Ape-X spec; tests merge overrides into it (see Spec).
constexpr char kApex[] = R"pb(
  seed: 7
  environment { name: "minatar/breakout" }
  apex_dqn {}
  actors { num_actors: 2 }
  budget { total_frames: 1000 }
)pb";

// Two MinAtar games with the same observations (uint8 [10,10,4]) and actions (6).
constexpr char kTwoTasks[] = R"pb(
  seed: 7
  task_sequence {
    tasks {
      environment { name: "minatar/breakout" }
      frames: 300
    }
    tasks {
      name: "second"
      environment { name: "minatar/asterix" }
      frames: 200
    }
    cycles: 2
  }
  actors { num_actors: 1 }
)pb";

// `base` with `overrides` merged in (set scalars replace, messages merge, repeated fields
// append; a proto3 scalar set to 0 in `overrides` changes nothing).
v1::ExperimentSpec Spec(const std::string& base, const std::string& overrides = "") {
  v1::ExperimentSpec spec = Parse(base);
  spec.MergeFrom(Parse(overrides));
  return spec;
}

v1::ExperimentSpec Resolve(const std::string& base, const std::string& overrides = "") {
  absl::StatusOr<v1::ExperimentSpec> resolved = ResolveExperimentSpec(Spec(base, overrides));
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  return resolved.ok() ? *resolved : v1::ExperimentSpec();
}

// The INVALID_ARGUMENT message resolving the spec gives ("" if it resolves).
std::string Problems(const std::string& base, const std::string& overrides = "") {
  absl::StatusOr<v1::ExperimentSpec> resolved = ResolveExperimentSpec(Spec(base, overrides));
  if (resolved.ok()) return "";
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(resolved.status().message());
}

std::vector<std::string> ExampleFiles() {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ENGRAM_SOURCE_DIR) +
                                                               "/deploy/experiments")) {
    if (entry.path().extension() == ".textproto") paths.push_back(entry.path().string());
  }
  return paths;
}

// ---- defaults ------------------------------------------------------------------------------

TEST(ResolveExperimentSpecTest, FillsApexDqnDefaults) {
  const v1::ExperimentSpec spec = Resolve(kApex);
  const v1::ApexDqnConfig& apex = spec.apex_dqn();
  EXPECT_EQ(apex.torso(), v1::TORSO_MINATAR);
  EXPECT_EQ(apex.n_step(), 3);
  EXPECT_DOUBLE_EQ(apex.gamma(), 0.99);
  EXPECT_EQ(apex.optimizer().kind(), v1::OPTIMIZER_KIND_CENTERED_RMSPROP);
  EXPECT_DOUBLE_EQ(apex.optimizer().learning_rate(), 0.00025 / 4);
  EXPECT_DOUBLE_EQ(apex.optimizer().decay(), 0.95);
  EXPECT_DOUBLE_EQ(apex.optimizer().epsilon(), 1.5e-7);
  EXPECT_FALSE(apex.optimizer().has_beta1());  // not read by RMSProp
  EXPECT_FALSE(apex.optimizer().has_beta2());
  EXPECT_EQ(apex.batch_size(), 512);
  EXPECT_EQ(apex.target_update_period(), 2500);
  EXPECT_DOUBLE_EQ(apex.importance_beta_start(), 0.4);
  EXPECT_DOUBLE_EQ(apex.importance_beta_end(), 0.4);
  EXPECT_EQ(apex.importance_beta_anneal_frames(), 1000);  // budget.total_frames
  EXPECT_DOUBLE_EQ(apex.gradient_clip_norm(), 40);
  EXPECT_DOUBLE_EQ(apex.epsilon_base(), 0.4);
  EXPECT_DOUBLE_EQ(apex.epsilon_alpha(), 7);
  EXPECT_TRUE(apex.has_double_q());
  EXPECT_TRUE(apex.double_q());
  EXPECT_EQ(apex.replay_table(), "replay");
  // Carried by the derived table instead.
  EXPECT_FALSE(apex.has_priority_exponent());
  EXPECT_FALSE(apex.has_replay_capacity());
  EXPECT_FALSE(apex.has_min_replay_size());
  EXPECT_FALSE(apex.has_samples_per_insert());
}

TEST(ResolveExperimentSpecTest, FillsTheRestOfTheSpec) {
  const v1::ExperimentSpec spec = Resolve(kApex);
  EXPECT_EQ(spec.seed(), 7u);
  EXPECT_EQ(spec.actors().num_actors(), 2);
  EXPECT_EQ(spec.actors().envs_per_actor(), 1);
  EXPECT_EQ(spec.actors().weight_sync_steps(), 400);
  EXPECT_EQ(spec.actors().insert_batch_size(), 64);
  EXPECT_EQ(spec.replay().num_shards(), 1);
  EXPECT_EQ(spec.evaluation().every_frames(), 0);
  EXPECT_EQ(spec.evaluation().episodes(), 10);
  EXPECT_DOUBLE_EQ(spec.evaluation().epsilon(), 0.001);
  EXPECT_EQ(spec.learner_device(), "cpu");
  EXPECT_FALSE(spec.has_checkpoint());  // no directory: no checkpoints, nothing filled
  EXPECT_TRUE(spec.environment().options().empty());
}

TEST(ResolveExperimentSpecTest, EnvironmentSeedIsDerivedFromTheExperimentSeed) {
  const v1::ExperimentSpec a = Resolve(kApex);
  ASSERT_TRUE(a.environment().has_seed());
  EXPECT_EQ(Resolve(kApex).environment().seed(), a.environment().seed());
  EXPECT_NE(a.environment().seed(), a.seed());  // mixed, not copied
  const v1::ExperimentSpec b = Resolve(kApex, "seed: 8");
  EXPECT_NE(b.environment().seed(), a.environment().seed());
  // An explicit seed is kept.
  EXPECT_EQ(Resolve(kApex, "environment { seed: 5 }").environment().seed(), 5u);
}

TEST(ResolveExperimentSpecTest, DrawsASeedWhenAbsent) {
  v1::ExperimentSpec spec = Parse(kApex);
  spec.clear_seed();
  absl::StatusOr<v1::ExperimentSpec> resolved = ResolveExperimentSpec(spec);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_TRUE(resolved->has_seed());
  EXPECT_TRUE(resolved->environment().has_seed());
  absl::StatusOr<v1::ExperimentSpec> again = ResolveExperimentSpec(*resolved);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->seed(), resolved->seed());
}

TEST(ResolveExperimentSpecTest, AdamForApexTakesAdamDefaults) {
  const v1::OptimizerConfig o =
      Resolve(kApex, "apex_dqn { optimizer { kind: OPTIMIZER_KIND_ADAM } }").apex_dqn().optimizer();
  EXPECT_DOUBLE_EQ(o.learning_rate(), 0.0001);
  EXPECT_DOUBLE_EQ(o.epsilon(), 1e-8);
  EXPECT_DOUBLE_EQ(o.beta1(), 0.9);
  EXPECT_DOUBLE_EQ(o.beta2(), 0.999);
  EXPECT_FALSE(o.has_decay());
}

TEST(ResolveExperimentSpecTest, ExplicitOptimizerValuesAreKept) {
  const v1::OptimizerConfig o =
      Resolve(kApex, "apex_dqn { optimizer { learning_rate: 0.5 decay: 0 } }")
          .apex_dqn()
          .optimizer();
  EXPECT_EQ(o.kind(), v1::OPTIMIZER_KIND_CENTERED_RMSPROP);
  EXPECT_DOUBLE_EQ(o.learning_rate(), 0.5);
  EXPECT_TRUE(o.has_decay());
  EXPECT_DOUBLE_EQ(o.decay(), 0);  // an explicit 0 is honoured
  EXPECT_DOUBLE_EQ(o.epsilon(), 1.5e-7);
}

// ---- derived tables ------------------------------------------------------------------------

TEST(ResolveExperimentSpecTest, DerivesThePrioritizedTableFromApexDefaults) {
  const v1::ExperimentSpec spec = Resolve(kApex);
  ASSERT_EQ(spec.replay().tables_size(), 1);
  const v1::TableSpec& table = spec.replay().tables(0);
  EXPECT_EQ(table.name(), "replay");
  EXPECT_EQ(table.selector(), v1::SELECTOR_PRIORITIZED);
  EXPECT_DOUBLE_EQ(table.priority_exponent(), 0.6);
  EXPECT_EQ(table.remover(), v1::REMOVER_FIFO);
  EXPECT_EQ(table.max_size(), 1000000);
  EXPECT_EQ(table.max_times_sampled(), 0);
  EXPECT_DOUBLE_EQ(table.rate_limiter().samples_per_insert(), 0);
  EXPECT_EQ(table.rate_limiter().min_size_to_sample(), 20000);
  EXPECT_DOUBLE_EQ(table.rate_limiter().error_buffer(), 512 * 100);
  EXPECT_EQ(table.signature().payload(), v1::PAYLOAD_KIND_TRANSITION);
  EXPECT_EQ(table.signature().observation().dtype(), v1::DTYPE_UINT8);
  EXPECT_THAT(table.signature().observation().shape(), ElementsAre(10, 10, 4));
  EXPECT_EQ(table.signature().num_actions(), 6);
  EXPECT_EQ(&AlgorithmTable(spec), &spec.replay().tables(0));
}

TEST(ResolveExperimentSpecTest, DerivedTableIsPerShardWithCeilings) {
  const v1::ExperimentSpec spec = Resolve(kApex, R"pb(
    apex_dqn {
      replay_table: "mine"
      replay_capacity: 1000001
      min_replay_size: 2001
      batch_size: 32
      samples_per_insert: 40
      priority_exponent: 0.5
    }
    replay { num_shards: 2 }
    environment { options { key: "minimal_action_set" value: "true" } }
  )pb");
  ASSERT_EQ(spec.replay().tables_size(), 1);
  const v1::TableSpec& table = spec.replay().tables(0);
  EXPECT_EQ(table.name(), "mine");
  EXPECT_DOUBLE_EQ(table.priority_exponent(), 0.5);
  EXPECT_EQ(table.max_size(), 500001);
  EXPECT_EQ(table.rate_limiter().min_size_to_sample(), 1001);
  EXPECT_DOUBLE_EQ(table.rate_limiter().samples_per_insert(), 40);
  EXPECT_DOUBLE_EQ(table.rate_limiter().error_buffer(), 40 * 100);  // max(32, 40) * 100
  EXPECT_EQ(table.signature().num_actions(), 3);                    // breakout's minimal set
  EXPECT_FALSE(spec.apex_dqn().has_replay_capacity());
}

TEST(ResolveExperimentSpecTest, MetaRlDefaultsAndDerivedQueue) {
  const v1::ExperimentSpec spec = Resolve(R"pb(
    seed: 1
    environment { name: "bandit/independent" }
    meta_rl {}
    actors { num_actors: 4 }
    budget { max_wall_time { seconds: 60 } }
  )pb");
  const v1::MetaRlConfig& meta = spec.meta_rl();
  EXPECT_EQ(meta.lstm_size(), 48);
  EXPECT_EQ(meta.unroll_length(), 100);
  EXPECT_EQ(meta.batch_size(), 16);
  EXPECT_DOUBLE_EQ(meta.gamma(), 0.9);
  EXPECT_DOUBLE_EQ(meta.entropy_cost(), 0.05);
  EXPECT_DOUBLE_EQ(meta.value_cost(), 0.05);
  EXPECT_DOUBLE_EQ(meta.vtrace_rho_clip(), 1.0);
  EXPECT_DOUBLE_EQ(meta.vtrace_c_clip(), 1.0);
  EXPECT_EQ(meta.optimizer().kind(), v1::OPTIMIZER_KIND_ADAM);
  EXPECT_DOUBLE_EQ(meta.optimizer().learning_rate(), 0.0007);
  EXPECT_DOUBLE_EQ(meta.optimizer().epsilon(), 1e-8);
  EXPECT_DOUBLE_EQ(meta.optimizer().beta1(), 0.9);
  EXPECT_DOUBLE_EQ(meta.optimizer().beta2(), 0.999);
  EXPECT_FALSE(meta.optimizer().has_decay());
  EXPECT_DOUBLE_EQ(meta.gradient_clip_norm(), 40);
  EXPECT_EQ(meta.task_family(), "bandit/independent");
  EXPECT_TRUE(meta.input_previous_action());
  EXPECT_TRUE(meta.input_previous_reward());
  EXPECT_EQ(meta.replay_table(), "trajectories");

  ASSERT_EQ(spec.replay().tables_size(), 1);
  const v1::TableSpec& table = AlgorithmTable(spec);
  EXPECT_EQ(table.name(), "trajectories");
  EXPECT_EQ(table.selector(), v1::SELECTOR_FIFO);
  EXPECT_EQ(table.max_times_sampled(), 1);
  EXPECT_EQ(table.max_size(), 8 * 16);
  EXPECT_DOUBLE_EQ(table.rate_limiter().samples_per_insert(), 1);
  EXPECT_DOUBLE_EQ(table.rate_limiter().error_buffer(), 8 * 16);
  EXPECT_EQ(table.rate_limiter().min_size_to_sample(), 1);
  EXPECT_EQ(table.signature().payload(), v1::PAYLOAD_KIND_CHUNK);
  EXPECT_EQ(table.signature().observation().dtype(), v1::DTYPE_FLOAT32);
  EXPECT_THAT(table.signature().observation().shape(), ElementsAre(1));
  EXPECT_EQ(table.signature().num_actions(), 2);
  EXPECT_EQ(table.signature().sequence_length(), 100);
}

TEST(ResolveExperimentSpecTest, RmsPropForMetaRlTakesTheApexNumbers) {
  const v1::OptimizerConfig o = Resolve(R"pb(
                                  environment { name: "bandit/independent" }
                                  meta_rl { optimizer { kind: OPTIMIZER_KIND_CENTERED_RMSPROP } }
                                  actors { num_actors: 1 }
                                  budget { total_frames: 10 }
                                )pb")
                                    .meta_rl()
                                    .optimizer();
  EXPECT_DOUBLE_EQ(o.learning_rate(), 0.00025 / 4);
  EXPECT_DOUBLE_EQ(o.decay(), 0.95);
  EXPECT_DOUBLE_EQ(o.epsilon(), 1.5e-7);
}

TEST(ResolveExperimentSpecTest, EwcDefaultsOverATaskSequence) {
  const v1::ExperimentSpec spec = Resolve(kTwoTasks, "ewc {}");
  const v1::EwcConfig& ewc = spec.ewc();
  EXPECT_DOUBLE_EQ(ewc.lambda(), 400);
  EXPECT_EQ(ewc.fisher_minibatches(), 100);
  EXPECT_TRUE(ewc.has_online());
  EXPECT_FALSE(ewc.online());
  EXPECT_DOUBLE_EQ(ewc.online_gamma(), 1.0);
  EXPECT_EQ(ewc.dqn().n_step(), 3);
  EXPECT_EQ(ewc.dqn().optimizer().kind(), v1::OPTIMIZER_KIND_CENTERED_RMSPROP);
  // No total_frames: the sequence bounds the run, (300 + 200) * 2 frames.
  EXPECT_EQ(ewc.dqn().importance_beta_anneal_frames(), 1000);
  EXPECT_EQ(AlgorithmTable(spec).name(), "replay");

  const v1::TaskSequence& sequence = spec.task_sequence();
  EXPECT_EQ(sequence.cycles(), 2);
  EXPECT_EQ(sequence.tasks(0).name(), "breakout");  // after the last "/"
  EXPECT_EQ(sequence.tasks(1).name(), "second");
  EXPECT_EQ(sequence.tasks(1).environment().seed() - sequence.tasks(0).environment().seed(),
            uint64_t{1} << 33);
  EXPECT_FALSE(spec.has_environment());
}

TEST(ResolveExperimentSpecTest, AnnealFramesUseTheSmallerOfBudgetAndSequence) {
  const v1::ExperimentSpec spec = Resolve(kTwoTasks, "ewc {} budget { total_frames: 600 }");
  EXPECT_EQ(spec.ewc().dqn().importance_beta_anneal_frames(), 600);
  const v1::ExperimentSpec wall_only = Resolve(R"pb(
    environment { name: "minatar/breakout" }
    apex_dqn {}
    actors { num_actors: 1 }
    budget { max_wall_time { seconds: 60 } }
  )pb");
  EXPECT_EQ(wall_only.apex_dqn().importance_beta_anneal_frames(), 1000000);
}

TEST(ResolveExperimentSpecTest, EpisodicControlDefaultsAndNoTable) {
  const v1::ExperimentSpec spec = Resolve(R"pb(
    environment { name: "minatar/breakout" }
    episodic_control {}
    actors { num_actors: 1 }
    budget { total_frames: 10 }
  )pb");
  const v1::EpisodicControlConfig& ec = spec.episodic_control();
  EXPECT_EQ(ec.key_dim(), 64);
  EXPECT_EQ(ec.k(), 50);
  EXPECT_EQ(ec.capacity_per_action(), 1000000);
  EXPECT_DOUBLE_EQ(ec.epsilon(), 0.005);
  EXPECT_DOUBLE_EQ(ec.gamma(), 0.99);
  EXPECT_EQ(ec.update_rule(), v1::UPDATE_RULE_MFEC_MAX);
  EXPECT_EQ(ec.kernel(), v1::KERNEL_MEAN);
  EXPECT_EQ(ec.index(), v1::INDEX_KIND_APPROXIMATE);
  EXPECT_EQ(ec.embedding(), v1::EMBEDDING_RANDOM_PROJECTION);
  EXPECT_TRUE(spec.replay().tables().empty());
}

TEST(ResolveExperimentSpecTest, CheckpointDefaultsWhenADirectoryIsSet) {
  const v1::CheckpointSpec c = Resolve(kApex, "checkpoint { directory: \"/tmp/c\" }").checkpoint();
  EXPECT_EQ(c.interval().seconds(), 600);
  EXPECT_EQ(c.keep(), 3);
  EXPECT_TRUE(c.has_include_replay());
  EXPECT_FALSE(c.include_replay());
}

TEST(ResolveExperimentSpecTest, AcceptsLearnerDevices) {
  for (const char* device : {"cpu", "cuda", "cuda:0", "cuda:12", "auto"}) {
    EXPECT_EQ(Resolve(kApex, std::string("learner_device: \"") + device + "\"").learner_device(),
              device);
  }
}

// ---- problems ------------------------------------------------------------------------------

TEST(ResolveExperimentSpecTest, ReportsEveryProblemInFieldOrder) {
  EXPECT_EQ(Problems(R"pb(
              environment { name: "minatar/breakout" }
              apex_dqn { n_step: 0 }
              actors { num_actors: 0 }
              budget { total_frames: 1 }
            )pb"),
            "apex_dqn.n_step: must be in [1, 100], got 0; "
            "actors.num_actors: must be >= 1, got 0");
}

TEST(ResolveExperimentSpecTest, ReportsManyProblemsWithExactPaths) {
  const std::string problems = Problems(R"pb(
    id: "Bad_Id"
    environment {
      name: "minatar/breakout"
      options { key: "sticky_action_prob" value: "2" }
      options { key: "speed" value: "fast" }
    }
    apex_dqn {
      gamma: 1.5
      optimizer { kind: OPTIMIZER_KIND_ADAM decay: 0.9 learning_rate: 0 }
      min_replay_size: 10
      replay_capacity: 5
    }
    actors { num_actors: 1 envs_per_actor: 0 }
    evaluation { every_frames: -1 epsilon: 2 }
    budget { max_wall_time { seconds: -5 } }
    checkpoint { keep: 0 }
    learner_device: "gpu"
  )pb");
  EXPECT_EQ(
      problems,
      "id: must be 1 to 63 characters from [a-z0-9-] starting with a letter, got \"Bad_Id\"; "
      "environment.options[\"speed\"]: unknown option of minatar/breakout (accepted: "
      "sticky_action_prob, difficulty_ramping, minimal_action_set, max_episode_steps, "
      "cell_permutation_seed); "
      "environment.options[\"sticky_action_prob\"]: \"2\" is invalid, expected a number in [0, "
      "1]; "
      "apex_dqn.gamma: must be in [0, 1], got 1.5; "
      "apex_dqn.optimizer.learning_rate: must be > 0, got 0; "
      "apex_dqn.optimizer.decay: not read by OPTIMIZER_KIND_ADAM (remove it or change kind); "
      "apex_dqn.min_replay_size: must be in [1, 5], got 10; "
      "actors.envs_per_actor: must be >= 1, got 0; "
      "evaluation.every_frames: must be >= 0, got -1; "
      "evaluation.epsilon: must be in [0, 1], got 2; "
      "budget: the run has no limit: set budget.total_frames, budget.max_wall_time or a "
      "task_sequence; "
      "budget.max_wall_time: must be >= 0, got -5s; "
      "checkpoint.keep: must be >= 1, got 0; "
      "learner_device: must be \"cpu\", \"cuda\", \"cuda:<index>\" or \"auto\", got \"gpu\"");
}

TEST(ResolveExperimentSpecTest, RequiresAnAlgorithmAnEnvironmentAndActors) {
  EXPECT_EQ(Problems("budget { total_frames: 1 }"),
            "environment: required (or a task_sequence); "
            "algorithm: exactly one of apex_dqn, meta_rl, ewc or episodic_control is required; "
            "actors.num_actors: must be >= 1, got 0");
}

TEST(ResolveExperimentSpecTest, UnknownEnvironmentListsTheRegisteredOnes) {
  const std::string problems = Problems(kApex, "environment { name: \"minatar/pong\" }");
  EXPECT_THAT(problems, StartsWith("environment.name: unknown environment \"minatar/pong\" "
                                   "(registered: bandit/dependent, bandit/independent,"));
  EXPECT_THAT(problems, HasSubstr("minatar/breakout"));
}

TEST(ResolveExperimentSpecTest, RejectsNaN) {
  EXPECT_EQ(Problems(kApex, "apex_dqn { gamma: nan epsilon_alpha: inf }"),
            "apex_dqn.gamma: must be in [0, 1], got nan; "
            "apex_dqn.epsilon_alpha: must be >= 0, got inf");
}

TEST(ResolveExperimentSpecTest, GivenTablesForbidDerivedOnlyFields) {
  const std::string tables = R"pb(
    replay { tables { name: "t" selector: SELECTOR_UNIFORM max_size: 100 } }
  )pb";
  EXPECT_EQ(
      Problems(
          kApex,
          tables + "apex_dqn { replay_table: \"t\" priority_exponent: 0.6 samples_per_insert: 1 }"),
      "apex_dqn.priority_exponent: must be absent when replay.tables is set (the table spec says "
      "it); apex_dqn.samples_per_insert: must be absent when replay.tables is set (the table spec "
      "says it)");
  EXPECT_EQ(Problems(kApex, tables),
            "apex_dqn.replay_table: \"replay\" names no table in replay.tables (\"t\")");
  EXPECT_EQ(AlgorithmTable(Resolve(kApex, tables + "apex_dqn { replay_table: "
                                                   "\"t\" }"))
                .max_size(),
            100);
}

TEST(ResolveExperimentSpecTest, ChecksGivenTables) {
  EXPECT_EQ(Problems(kApex, R"pb(
              apex_dqn { replay_table: "a" batch_size: 64 }
              replay {
                tables {
                  name: "a"
                  selector: SELECTOR_PRIORITIZED
                  max_size: 100
                  rate_limiter { samples_per_insert: 4 error_buffer: 10 }
                  signature {
                    payload: PAYLOAD_KIND_CHUNK
                    observation {
                      dtype: DTYPE_FLOAT32
                      shape: [ 10, -1, 5 ]
                    }
                    num_actions: 3
                  }
                }
                tables { name: "a" selector: SELECTOR_FIFO max_size: 0 }
              }
            )pb"),
            "apex_dqn.batch_size: table \"a\": batch_size 64 exceeds 2 * error_buffer - "
            "samples_per_insert (16): the rate limiter could block inserts and samples at once; "
            "replay.tables[0].signature.payload: must be PAYLOAD_KIND_TRANSITION (or unspecified) "
            "for apex_dqn, got PAYLOAD_KIND_CHUNK; "
            "replay.tables[0].signature.observation.dtype: DTYPE_FLOAT32 does not match the "
            "environment's DTYPE_UINT8; "
            "replay.tables[0].signature.observation.shape: [10,-1,5] does not match the "
            "environment's [10,10,4]; "
            "replay.tables[0].signature.num_actions: 3 does not match the environment's 6; "
            "replay.tables[1].name: \"a\" is also the name of tables[0]; "
            "replay.tables[1].max_size: must be in [1, 2^31], got 0");
}

TEST(ResolveExperimentSpecTest, WildcardShapeMatches) {
  EXPECT_EQ(Problems(kApex, R"pb(
              apex_dqn { replay_table: "a" }
              replay {
                tables {
                  name: "a"
                  selector: SELECTOR_PRIORITIZED
                  max_size: 100
                  signature { observation { shape: [ 10, -1, 4 ] } }
                }
              }
            )pb"),
            "");
}

TEST(ResolveExperimentSpecTest, EpisodicControlRejectsTables) {
  EXPECT_EQ(Problems(R"pb(
              environment { name: "minatar/breakout" }
              episodic_control { k: 0 }
              actors { num_actors: 1 }
              replay { tables { name: "t" selector: SELECTOR_FIFO max_size: 1 } }
              budget { total_frames: 10 }
            )pb"),
            "episodic_control.k: must be >= 1, got 0; "
            "replay.tables: must be empty for episodic_control (it uses no replay)");
}

TEST(ResolveExperimentSpecTest, EwcRequiresATaskSequence) {
  EXPECT_EQ(Problems(R"pb(
              environment { name: "minatar/breakout" }
              ewc { lambda: -1 }
              actors { num_actors: 1 }
              budget { total_frames: 10 }
            )pb"),
            "task_sequence: required by ewc; ewc.lambda: must be >= 0, got -1");
}

TEST(ResolveExperimentSpecTest, TaskSequenceProblems) {
  EXPECT_EQ(Problems(R"pb(
              environment { name: "minatar/breakout" }
              task_sequence {
                tasks {
                  environment { name: "minatar/breakout" }
                  frames: 1
                }
                tasks {
                  name: "Bad"
                  environment { name: "classic/cartpole" }
                  frames: 0
                }
                tasks {
                  environment { name: "minatar/seaquest" }
                  frames: 1
                }
                cycles: 0
              }
              apex_dqn {}
              actors { num_actors: 1 }
            )pb"),
            "environment: must be unset when task_sequence is set (each task names its "
            "environment); "
            "task_sequence.tasks[1].name: must be 1 to 64 characters from [a-z0-9_], got "
            "\"Bad\"; "
            "task_sequence.tasks[1].environment: DTYPE_FLOAT32 [4] observations, 2 actions "
            "differ from the first task's DTYPE_UINT8 [10,10,4] observations, 6 actions (one "
            "network serves all tasks: only the last dimension, channels, may differ); "
            "task_sequence.tasks[1].frames: must be >= 1, got 0; "
            "task_sequence.cycles: must be >= 1, got 0");
  EXPECT_EQ(Problems("task_sequence {} apex_dqn {} actors { num_actors: 1 }"),
            "task_sequence.tasks: at least one task is required");
  EXPECT_EQ(Problems(R"pb(
              task_sequence {
                tasks {
                  environment { name: "minatar/breakout" }
                  frames: 1
                }
                tasks {
                  environment {
                    name: "minatar/breakout"
                    options { key: "cell_permutation_seed" value: "3" }
                  }
                  frames: 1
                }
              }
              apex_dqn {}
              actors { num_actors: 1 }
            )pb"),
            "task_sequence.tasks[1].name: \"breakout\" is also tasks[0]'s name: give each task "
            "its own");
}

TEST(ResolveExperimentSpecTest, TasksWithFewerChannelsArePaddedToTheLargest) {
  const v1::ExperimentSpec resolved = *ResolveExperimentSpec(Parse(R"pb(
    seed: 7
    task_sequence {
      tasks {
        environment { name: "minatar/breakout" }
        frames: 100
      }
      tasks {
        environment { name: "minatar/freeway" }
        frames: 100
      }
    }
    ewc {}
    actors { num_actors: 1 }
  )pb"));
  const absl::StatusOr<EnvironmentInfo> shared = SharedEnvironment(resolved);
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(shared->observation_shape, (std::vector<int64_t>{10, 10, 7}));
  EXPECT_EQ(shared->num_actions, 6);
  const v1::TensorSpec& observation = AlgorithmTable(resolved).signature().observation();
  EXPECT_EQ(std::vector<int64_t>(observation.shape().begin(), observation.shape().end()),
            (std::vector<int64_t>{10, 10, 7}));
  EXPECT_EQ(TaskTable(resolved, 1).signature().observation().shape(2), 7);
  EXPECT_EQ(DqnAlgorithmPath(resolved), "ewc.dqn");
  EXPECT_EQ(&DqnAlgorithmConfig(resolved), &resolved.ewc().dqn());
}

TEST(ResolveExperimentSpecTest, OnlyDqnAlgorithmsRunTaskSequences) {
  const std::string tasks = R"pb(
    task_sequence {
      tasks {
        environment { name: "bandit/independent" }
        frames: 10
      }
    }
    actors { num_actors: 1 }
  )pb";
  EXPECT_THAT(Problems(tasks + "meta_rl {}"),
              HasSubstr("task_sequence: meta_rl learns one task family (meta_rl.task_family): "
                        "task sequences run with apex_dqn or ewc"));
  EXPECT_THAT(Problems(tasks + "episodic_control {}"),
              HasSubstr("task_sequence: task sequences run with apex_dqn or ewc"));
  EXPECT_EQ(Problems(tasks + "apex_dqn {}"), "");
}

TEST(ResolveExperimentSpecTest, MetaRlChecksItsTableAndTaskFamily) {
  EXPECT_EQ(Problems(R"pb(
              environment { name: "bandit/independent" }
              meta_rl { task_family: "classic/cartpole" unroll_length: 20 }
              actors { num_actors: 1 }
              replay {
                tables {
                  name: "trajectories"
                  selector: SELECTOR_FIFO
                  max_size: 10
                  signature { sequence_length: 10 }
                }
              }
              budget { total_frames: 10 }
            )pb"),
            "meta_rl.task_family: classic/cartpole has DTYPE_FLOAT32 [4] observations, 2 "
            "actions, the environment DTYPE_FLOAT32 [1] observations, 2 actions; "
            "replay.tables[0].signature.sequence_length: must be 0 or meta_rl.unroll_length "
            "(20), got 10");
}

// ---- idempotence and files -----------------------------------------------------------------

TEST(ResolveExperimentSpecTest, ResolvingIsIdempotent) {
  std::vector<v1::ExperimentSpec> specs = {
      Spec(kApex),
      Spec(kApex, "replay { num_shards: 3 } apex_dqn { samples_per_insert: 8 }"),
      Spec(kTwoTasks, "ewc {}"),
      Spec(R"pb(environment { name: "bandit/dependent" }
                meta_rl {}
                actors { num_actors: 1 }
                budget { total_frames: 1 })pb"),
      Spec(R"pb(environment { name: "classic/cartpole" }
                episodic_control {}
                actors { num_actors: 1 }
                budget { total_frames: 1 }
                checkpoint { directory: "c" })pb"),
  };
  for (const std::string& path : ExampleFiles()) {
    ASSERT_TRUE(ReadTextProtoFile(path, &specs.emplace_back()).ok()) << path;
  }
  for (const v1::ExperimentSpec& spec : specs) {
    absl::StatusOr<v1::ExperimentSpec> once = ResolveExperimentSpec(spec);
    ASSERT_TRUE(once.ok()) << once.status() << "\n" << spec.DebugString();
    absl::StatusOr<v1::ExperimentSpec> twice = ResolveExperimentSpec(*once);
    ASSERT_TRUE(twice.ok()) << twice.status() << "\n" << once->DebugString();
    std::string difference;
    MessageDifferencer differencer;
    differencer.ReportDifferencesToString(&difference);
    EXPECT_TRUE(differencer.Compare(*once, *twice)) << difference << "\n" << spec.DebugString();
  }
}

TEST(ReadExperimentSpecTest, EveryExampleResolves) {
  const std::vector<std::string> paths = ExampleFiles();
  ASSERT_FALSE(paths.empty());
  for (const std::string& path : paths) {
    absl::StatusOr<v1::ExperimentSpec> spec = ReadExperimentSpec(path);
    EXPECT_TRUE(spec.ok()) << spec.status();
  }
}

TEST(ReadExperimentSpecTest, BreakoutExampleKeepsItsTable) {
  absl::StatusOr<v1::ExperimentSpec> spec = ReadExperimentSpec(
      std::string(ENGRAM_SOURCE_DIR) + "/deploy/experiments/breakout_apex.textproto");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->replay().tables_size(), 1);
  EXPECT_EQ(AlgorithmTable(*spec).max_size(), 250000);
  EXPECT_EQ(spec->apex_dqn().optimizer().kind(), v1::OPTIMIZER_KIND_CENTERED_RMSPROP);
  EXPECT_DOUBLE_EQ(spec->apex_dqn().optimizer().epsilon(), 0.01);
  EXPECT_EQ(spec->checkpoint().keep(), 3);
  EXPECT_FALSE(spec->checkpoint().include_replay());
}

TEST(ReadExperimentSpecTest, ErrorsArePrefixedWithThePath) {
  const std::string path = ::testing::TempDir() + "/spec.textproto";
  std::ofstream(path) << "apex_dqn { n_step: 0 }\n";
  absl::StatusOr<v1::ExperimentSpec> spec = ReadExperimentSpec(path);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), StartsWith(path + ": environment: required"));
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("apex_dqn.n_step: must be in [1, 100], got 0"));

  std::ofstream(path) << "apex_dqn {\n  n_stpe: 0 }\n";
  spec = ReadExperimentSpec(path);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), StartsWith(path + ":2:"));

  EXPECT_EQ(ReadExperimentSpec(path + ".missing").status().code(), absl::StatusCode::kNotFound);
}

// ---- environments --------------------------------------------------------------------------

TEST(DescribeEnvironmentTest, DescribesRegisteredEnvironments) {
  v1::EnvironmentSpec environment;
  environment.set_name("minatar/breakout");
  absl::StatusOr<EnvironmentInfo> info = DescribeEnvironment(environment);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->observation_shape, ElementsAre(10, 10, 4));
  EXPECT_EQ(info->observation_dtype, v1::DTYPE_UINT8);
  EXPECT_EQ(info->num_actions, 6);

  environment.set_name("classic/cartpole");
  info = DescribeEnvironment(environment);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->observation_shape, ElementsAre(4));
  EXPECT_EQ(info->observation_dtype, v1::DTYPE_FLOAT32);
  EXPECT_EQ(info->num_actions, 2);
}

TEST(DescribeEnvironmentTest, NamesTheFieldAtFault) {
  v1::EnvironmentSpec environment;
  absl::Status status = DescribeEnvironment(environment).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              StartsWith("environment.name: required (registered: "));

  environment.set_name("bandit/dependent");
  (*environment.mutable_options())["difficulty"] = "extreme";
  status = DescribeEnvironment(environment).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "environment.options[\"difficulty\"]: \"extreme\" is invalid, expected one of "
            "uniform, easy, medium, hard");
}

// ---- derived quantities --------------------------------------------------------------------

TEST(DerivedQuantitiesTest, SeedsFollowTheDocumentedLayout) {
  const v1::ExperimentSpec spec = Resolve(kApex, R"pb(
    environment { seed: 100 }
    actors { num_actors: 3 envs_per_actor: 4 }
  )pb");
  EXPECT_EQ(TrainingEnvSeed(spec, 0, 0), 100u);
  EXPECT_EQ(TrainingEnvSeed(spec, 2, 3), 100u + 2 * 4 + 3);
  EXPECT_EQ(EvaluationEnvSeed(spec, 0), 100u + (uint64_t{1} << 32));
  EXPECT_EQ(EvaluationEnvSeed(spec, 5), 100u + (uint64_t{1} << 32) + 5);

  const v1::ExperimentSpec tasks = Resolve(kTwoTasks, "ewc {}");
  EXPECT_EQ(TrainingEnvSeed(tasks, 0, 0, 1), tasks.task_sequence().tasks(1).environment().seed());
  EXPECT_EQ(&TaskEnvironment(tasks, 1), &tasks.task_sequence().tasks(1).environment());
}

TEST(DerivedQuantitiesTest, TaskPhasesFollowTheSequenceAndItsCycles) {
  // kTwoTasks: breakout for 300 frames, then "second" for 200, twice.
  const v1::ExperimentSpec tasks = Resolve(kTwoTasks, "ewc {}");
  auto at = [&](int64_t frames) { return TaskPhaseAt(tasks, frames); };
  EXPECT_EQ(at(0).phase, 0);
  EXPECT_EQ(at(0).task_index, 0);
  EXPECT_EQ(at(299).end_frames, 300);
  EXPECT_EQ(at(300).phase, 1);
  EXPECT_EQ(at(300).task_index, 1);
  EXPECT_EQ(at(300).start_frames, 300);
  EXPECT_EQ(at(500).phase, 2);
  EXPECT_EQ(at(500).task_index, 0);
  EXPECT_EQ(at(999).phase, 3);
  EXPECT_EQ(at(999).task_index, 1);
  EXPECT_FALSE(at(999).sequence_done);
  EXPECT_TRUE(at(1000).sequence_done);
  EXPECT_EQ(at(1000).phase, 3);
  EXPECT_EQ(at(1000).end_frames, 1000);

  const v1::ExperimentSpec single = Resolve(kApex);
  EXPECT_EQ(TaskPhaseAt(single, 1 << 30).task_index, 0);
  EXPECT_FALSE(TaskPhaseAt(single, 1 << 30).sequence_done);
  EXPECT_EQ(TaskTable(single, 0).name(), AlgorithmTable(single).name());
  // Each task its own table, otherwise the algorithm table's spec.
  const v1::TableSpec second = TaskTable(tasks, 1);
  EXPECT_EQ(second.name(), AlgorithmTable(tasks).name() + "_t1");
  EXPECT_EQ(second.max_size(), AlgorithmTable(tasks).max_size());
}

TEST(DerivedQuantitiesTest, ApexEpsilonsSpanAllEnvironments) {
  const v1::ExperimentSpec spec = Resolve(kApex, R"pb(
    actors { num_actors: 2 envs_per_actor: 3 }
    apex_dqn { epsilon_base: 0.5 epsilon_alpha: 5 }
  )pb");
  EXPECT_DOUBLE_EQ(ApexActorEpsilon(spec, 0, 0), 0.5);
  EXPECT_DOUBLE_EQ(ApexActorEpsilon(spec, 1, 2), std::pow(0.5, 6));        // i = 5 of N = 6
  EXPECT_DOUBLE_EQ(ApexActorEpsilon(spec, 1, 0), std::pow(0.5, 1 + 3.0));  // i = 3
  const v1::ExperimentSpec one = Resolve(kApex, "actors { num_actors: 1 }");
  EXPECT_DOUBLE_EQ(ApexActorEpsilon(one, 0, 0), 0.4);
}

TEST(DerivedQuantitiesTest, ActorsWriteToShardsRoundRobin) {
  const v1::ExperimentSpec spec =
      Resolve(kApex, "replay { num_shards: 3 } actors { num_actors: 7 }");
  EXPECT_EQ(ShardOfActor(spec, 0), 0);
  EXPECT_EQ(ShardOfActor(spec, 4), 1);
  EXPECT_EQ(ShardOfActor(spec, 6), 0);
}

}  // namespace
}  // namespace engram::learner
