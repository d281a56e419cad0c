// Tests of the wire contracts: the example experiment parses to the values it states,
// text parsing is strict, services have the names and streaming shapes clients rely on,
// tensors round-trip, and every element of every .proto is documented and named by the
// conventions.

#include <cctype>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engram/v1/episodic.grpc.pb.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "engram/v1/parameters.grpc.pb.h"
#include "engram/v1/replay.grpc.pb.h"
#include "engram/v1/tensor.pb.h"
#include "engram/v1/trajectory.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace engram::v1 {
namespace {

using ::google::protobuf::DescriptorPool;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::MethodDescriptor;
using ::google::protobuf::ServiceDescriptor;
using ::google::protobuf::TextFormat;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Collects TextFormat errors so a failing test says what was wrong.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(absl::StrCat(line + 1, ":", column + 1, ": ", message));
  }
  std::string errors() const { return absl::StrJoin(errors_, "\n"); }

 private:
  std::vector<std::string> errors_;
};

// Parses `text` strictly (unknown fields and enum values are errors).
bool ParseText(const std::string& text, google::protobuf::Message* message, std::string* errors) {
  ErrorCollector collector;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  const bool ok = parser.ParseFromString(text, message);
  *errors = collector.errors();
  return ok;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// --- The example experiment ----------------------------------------------------------------

TEST(ExperimentSpecTest, BreakoutApexExampleParsesToItsValues) {
  const std::string path =
      std::string(ENGRAM_SOURCE_DIR) + "/deploy/experiments/breakout_apex.textproto";
  const std::string text = ReadFile(path);
  ASSERT_FALSE(text.empty()) << "cannot read " << path;

  ExperimentSpec spec;
  std::string errors;
  ASSERT_TRUE(ParseText(text, &spec, &errors)) << path << ":\n" << errors;

  EXPECT_EQ(spec.id(), "breakout-apex");
  ASSERT_TRUE(spec.has_seed());
  EXPECT_EQ(spec.seed(), 1u);
  EXPECT_EQ(spec.environment().name(), "minatar/breakout");
  EXPECT_EQ(spec.environment().options().at("sticky_action_prob"), "0.1");
  EXPECT_EQ(spec.environment().options().at("minimal_action_set"), "false");
  EXPECT_FALSE(spec.environment().has_seed());  // derived from spec.seed
  EXPECT_FALSE(spec.has_task_sequence());

  ASSERT_EQ(spec.algorithm_case(), ExperimentSpec::kApexDqn);
  const ApexDqnConfig& apex = spec.apex_dqn();
  EXPECT_EQ(apex.torso(), TORSO_DUELING);
  EXPECT_EQ(apex.n_step(), 3);
  EXPECT_DOUBLE_EQ(apex.gamma(), 0.99);
  EXPECT_EQ(apex.optimizer().kind(), OPTIMIZER_KIND_CENTERED_RMSPROP);
  EXPECT_DOUBLE_EQ(apex.optimizer().learning_rate(), 0.00025);
  EXPECT_DOUBLE_EQ(apex.optimizer().decay(), 0.95);
  EXPECT_FALSE(apex.optimizer().has_beta1());
  EXPECT_EQ(apex.batch_size(), 64);
  EXPECT_EQ(apex.target_update_period(), 1000);
  EXPECT_DOUBLE_EQ(apex.importance_beta_start(), 0.4);
  EXPECT_DOUBLE_EQ(apex.importance_beta_end(), 1.0);
  EXPECT_EQ(apex.importance_beta_anneal_frames(), 5000000);
  EXPECT_DOUBLE_EQ(apex.epsilon_base(), 0.4);
  EXPECT_DOUBLE_EQ(apex.epsilon_alpha(), 7.0);
  EXPECT_EQ(apex.replay_table(), "breakout_replay");
  // The table spec owns these when replay.tables is set.
  EXPECT_FALSE(apex.has_priority_exponent());
  EXPECT_FALSE(apex.has_replay_capacity());
  EXPECT_FALSE(apex.has_min_replay_size());
  EXPECT_FALSE(apex.has_samples_per_insert());

  EXPECT_EQ(spec.actors().num_actors(), 4);
  EXPECT_EQ(spec.actors().envs_per_actor(), 16);
  EXPECT_EQ(spec.actors().weight_sync_steps(), 25);

  EXPECT_EQ(spec.replay().num_shards(), 2);
  ASSERT_EQ(spec.replay().tables_size(), 1);
  const TableSpec& table = spec.replay().tables(0);
  EXPECT_EQ(table.name(), apex.replay_table());
  EXPECT_EQ(table.selector(), SELECTOR_PRIORITIZED);
  EXPECT_DOUBLE_EQ(table.priority_exponent(), 0.6);
  EXPECT_EQ(table.remover(), REMOVER_FIFO);
  EXPECT_EQ(table.max_size(), 250000);
  EXPECT_EQ(table.max_times_sampled(), 0);
  EXPECT_DOUBLE_EQ(table.rate_limiter().samples_per_insert(), 16.0);
  EXPECT_EQ(table.rate_limiter().min_size_to_sample(), 5000);
  // The rate limiter cannot deadlock with the learner's batch size.
  EXPECT_GE(2 * table.rate_limiter().error_buffer(),
            table.rate_limiter().samples_per_insert() + apex.batch_size());
  EXPECT_EQ(table.signature().payload(), PAYLOAD_KIND_TRANSITION);
  EXPECT_EQ(table.signature().observation().dtype(), DTYPE_UINT8);
  EXPECT_THAT(table.signature().observation().shape(), ElementsAre(10, 10, 4));
  EXPECT_EQ(table.signature().num_actions(), 6);

  EXPECT_EQ(spec.evaluation().every_frames(), 100000);
  EXPECT_EQ(spec.evaluation().episodes(), 10);
  EXPECT_DOUBLE_EQ(spec.evaluation().epsilon(), 0.001);
  EXPECT_EQ(spec.budget().total_frames(), 5000000);
  EXPECT_EQ(spec.budget().max_wall_time().seconds(), 21600);
  EXPECT_EQ(spec.checkpoint().directory(), "checkpoints/breakout-apex");
  EXPECT_EQ(spec.checkpoint().interval().seconds(), 600);
  EXPECT_EQ(spec.checkpoint().keep(), 3);
  EXPECT_EQ(spec.learner_device(), "cpu");
}

TEST(ExperimentSpecTest, TextRoundTripsThroughBinary) {
  const std::string text =
      ReadFile(std::string(ENGRAM_SOURCE_DIR) + "/deploy/experiments/breakout_apex.textproto");
  ExperimentSpec spec;
  std::string errors;
  ASSERT_TRUE(ParseText(text, &spec, &errors)) << errors;
  ExperimentSpec copy;
  ASSERT_TRUE(copy.ParseFromString(spec.SerializeAsString()));
  EXPECT_TRUE(MessageDifferencer::Equals(spec, copy));
  EXPECT_TRUE(copy.apex_dqn().has_gamma());  // presence survives the wire
}

TEST(ExperimentSpecTest, UnknownFieldFailsToParseAndNamesIt) {
  ExperimentSpec spec;
  std::string errors;
  EXPECT_FALSE(ParseText("id: \"x\"\napex_dqn { n_stpe: 3 }\n", &spec, &errors));
  EXPECT_THAT(errors, HasSubstr("n_stpe"));
  EXPECT_THAT(errors, HasSubstr("2:"));  // the line of the typo
}

TEST(ExperimentSpecTest, UnknownEnumValueFailsToParse) {
  ExperimentSpec spec;
  std::string errors;
  EXPECT_FALSE(ParseText("replay { tables { selector: SELECTOR_PRIORITISED } }", &spec, &errors));
  EXPECT_THAT(errors, HasSubstr("SELECTOR_PRIORITISED"));
}

TEST(ExperimentSpecTest, SecondAlgorithmInOneofFailsToParse) {
  ExperimentSpec spec;
  std::string errors;
  EXPECT_FALSE(ParseText("apex_dqn {} meta_rl {}", &spec, &errors));
  EXPECT_THAT(errors, HasSubstr("oneof"));
}

TEST(ExperimentSpecTest, OptionalFieldsTrackPresenceSoDefaultsCanBeApplied) {
  ApexDqnConfig apex;
  EXPECT_FALSE(apex.has_gamma());  // absent: the documented default (0.99) applies
  apex.set_gamma(0.0);
  EXPECT_TRUE(apex.has_gamma());  // an explicit 0 is honoured
  ApexDqnConfig copy;
  ASSERT_TRUE(copy.ParseFromString(apex.SerializeAsString()));
  EXPECT_TRUE(copy.has_gamma());
  EXPECT_EQ(copy.gamma(), 0.0);
}

// --- Services --------------------------------------------------------------------------------

struct MethodShape {
  std::string name;
  std::string input;
  std::string output;
  bool client_streaming;
  bool server_streaming;
};

// `anchor` is any message of the service's file: referencing it links that file's
// generated code (from the static library) and so registers it in the generated pool.
void ExpectService(const google::protobuf::Descriptor* anchor, const std::string& full_name,
                   const std::vector<MethodShape>& methods) {
  ASSERT_NE(anchor, nullptr);
  const ServiceDescriptor* service = DescriptorPool::generated_pool()->FindServiceByName(full_name);
  ASSERT_NE(service, nullptr) << full_name;
  std::vector<std::string> actual_names;
  for (int i = 0; i < service->method_count(); ++i) {
    actual_names.push_back(service->method(i)->name());
  }
  std::vector<std::string> expected_names;
  for (const MethodShape& m : methods) expected_names.push_back(m.name);
  EXPECT_EQ(actual_names, expected_names) << full_name;
  for (const MethodShape& m : methods) {
    const MethodDescriptor* method = service->FindMethodByName(m.name);
    ASSERT_NE(method, nullptr) << full_name << "." << m.name;
    EXPECT_EQ(method->input_type()->full_name(), m.input) << method->full_name();
    EXPECT_EQ(method->output_type()->full_name(), m.output) << method->full_name();
    EXPECT_EQ(method->client_streaming(), m.client_streaming) << method->full_name();
    EXPECT_EQ(method->server_streaming(), m.server_streaming) << method->full_name();
  }
}

TEST(ServiceTest, ReplayService) {
  EXPECT_EQ(std::string(ReplayService::service_full_name()), "engram.v1.ReplayService");
  ExpectService(
      TableSpec::descriptor(), "engram.v1.ReplayService",
      {
          {"CreateTable", "engram.v1.CreateTableRequest", "engram.v1.CreateTableResponse", false,
           false},
          {"DeleteTable", "engram.v1.DeleteTableRequest", "engram.v1.DeleteTableResponse", false,
           false},
          {"ListTables", "engram.v1.ListTablesRequest", "engram.v1.ListTablesResponse", false,
           false},
          {"Insert", "engram.v1.InsertRequest", "engram.v1.InsertResponse", true, true},
          {"Sample", "engram.v1.SampleRequest", "engram.v1.SampleResponse", true, true},
          {"UpdatePriorities", "engram.v1.UpdatePrioritiesRequest",
           "engram.v1.UpdatePrioritiesResponse", false, false},
          {"Info", "engram.v1.ReplayInfoRequest", "engram.v1.ReplayInfoResponse", false, false},
          {"Checkpoint", "engram.v1.ReplayCheckpointRequest", "engram.v1.ReplayCheckpointResponse",
           false, false},
      });
}

TEST(ServiceTest, EpisodicStore) {
  EXPECT_EQ(std::string(EpisodicStore::service_full_name()), "engram.v1.EpisodicStore");
  ExpectService(
      MemorySpec::descriptor(), "engram.v1.EpisodicStore",
      {
          {"CreateMemory", "engram.v1.CreateMemoryRequest", "engram.v1.CreateMemoryResponse", false,
           false},
          {"DeleteMemory", "engram.v1.DeleteMemoryRequest", "engram.v1.DeleteMemoryResponse", false,
           false},
          {"Write", "engram.v1.WriteRequest", "engram.v1.WriteResponse", false, false},
          {"Lookup", "engram.v1.LookupRequest", "engram.v1.LookupResponse", false, false},
          {"Info", "engram.v1.MemoryInfoRequest", "engram.v1.MemoryInfoResponse", false, false},
          {"Snapshot", "engram.v1.SnapshotRequest", "engram.v1.SnapshotResponse", false, false},
      });
}

TEST(ServiceTest, ParameterService) {
  EXPECT_EQ(std::string(ParameterService::service_full_name()), "engram.v1.ParameterService");
  ExpectService(
      ParameterSet::descriptor(), "engram.v1.ParameterService",
      {
          {"Publish", "engram.v1.PublishRequest", "engram.v1.PublishResponse", false, false},
          {"GetParameters", "engram.v1.GetParametersRequest", "engram.v1.GetParametersResponse",
           false, false},
          {"GetVersion", "engram.v1.GetVersionRequest", "engram.v1.GetVersionResponse", false,
           false},
      });
}

TEST(ServiceTest, ExperimentService) {
  EXPECT_EQ(std::string(ExperimentService::service_full_name()), "engram.v1.ExperimentService");
  ExpectService(
      ExperimentSpec::descriptor(), "engram.v1.ExperimentService",
      {
          {"Submit", "engram.v1.SubmitExperimentRequest", "engram.v1.SubmitExperimentResponse",
           false, false},
          {"List", "engram.v1.ListExperimentsRequest", "engram.v1.ListExperimentsResponse", false,
           false},
          {"Get", "engram.v1.GetExperimentRequest", "engram.v1.ExperimentStatus", false, false},
          {"Cancel", "engram.v1.CancelExperimentRequest", "engram.v1.ExperimentStatus", false,
           false},
          {"Watch", "engram.v1.WatchExperimentRequest", "engram.v1.ExperimentStatus", false, true},
          {"ListResults", "engram.v1.ListResultsRequest", "engram.v1.ListResultsResponse", false,
           false},
          {"ReadResult", "engram.v1.ReadResultRequest", "engram.v1.ResultChunk", false, true},
      });
}

// --- Messages on the wire ----------------------------------------------------------------------

Tensor MakeFloatTensor(std::vector<int64_t> shape, const std::vector<float>& values) {
  Tensor t;
  t.set_dtype(DTYPE_FLOAT32);
  for (int64_t d : shape) t.add_shape(d);
  t.set_data(
      std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return t;
}

TEST(WireTest, TensorRoundTripsThroughBinary) {
  const std::vector<float> values = {0.f, -1.5f, 2.25f, 3e8f, -0.f, 1e-30f};
  const Tensor original = MakeFloatTensor({2, 3}, values);
  std::string bytes;
  ASSERT_TRUE(original.SerializeToString(&bytes));

  Tensor parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_TRUE(MessageDifferencer::Equals(original, parsed));
  EXPECT_EQ(parsed.dtype(), DTYPE_FLOAT32);
  EXPECT_THAT(parsed.shape(), ElementsAre(2, 3));
  ASSERT_EQ(parsed.data().size(), values.size() * sizeof(float));
  std::vector<float> decoded(values.size());
  std::memcpy(decoded.data(), parsed.data().data(), parsed.data().size());
  EXPECT_EQ(decoded, values);
}

TEST(WireTest, ScalarTensorHasEmptyShape) {
  Tensor scalar = MakeFloatTensor({}, {4.0f});
  Tensor parsed;
  ASSERT_TRUE(parsed.ParseFromString(scalar.SerializeAsString()));
  EXPECT_THAT(parsed.shape(), IsEmpty());
  EXPECT_EQ(parsed.data().size(), sizeof(float));
}

TEST(WireTest, ItemKeepsKeyPriorityAndPayloadKind) {
  Item item;
  item.set_key(0xDEADBEEF00000001ull);
  item.set_priority(0.75);
  Transition* t = item.mutable_transition();
  *t->mutable_observation() = MakeFloatTensor({2}, {1.f, 2.f});
  *t->mutable_next_observation() = MakeFloatTensor({2}, {3.f, 4.f});
  t->set_action(2);
  t->set_reward(1.5f);
  t->set_discount(0.970299f);
  t->set_steps(3);
  t->mutable_provenance()->set_policy_version(42);

  Item parsed;
  ASSERT_TRUE(parsed.ParseFromString(item.SerializeAsString()));
  EXPECT_EQ(parsed.payload_case(), Item::kTransition);
  EXPECT_EQ(parsed.key(), 0xDEADBEEF00000001ull);
  EXPECT_TRUE(MessageDifferencer::Equals(item, parsed));

  // Setting the other payload replaces the first: exactly one is ever set.
  parsed.mutable_chunk();
  EXPECT_EQ(parsed.payload_case(), Item::kChunk);
  EXPECT_FALSE(parsed.has_transition());
}

TEST(WireTest, SampleRequestBetaPresenceDistinguishesUnchangedFromZero) {
  SampleRequest more_credits;
  more_credits.set_credits(1);
  EXPECT_FALSE(more_credits.has_importance_beta());  // "unchanged"
  SampleRequest zero_beta;
  zero_beta.set_importance_beta(0.0);
  SampleRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(zero_beta.SerializeAsString()));
  EXPECT_TRUE(parsed.has_importance_beta());
}

// --- Documentation and naming conventions ------------------------------------------------------

// Every engram.v1 file, built from a descriptor set that keeps comments.
class ProtoSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string bytes = ReadFile(ENGRAM_PROTO_DESCRIPTOR_SET);
    ASSERT_FALSE(bytes.empty()) << "cannot read " << ENGRAM_PROTO_DESCRIPTOR_SET;
    google::protobuf::FileDescriptorSet set;
    ASSERT_TRUE(set.ParseFromString(bytes));
    for (const auto& file : set.file()) {  // --include_imports: dependencies first
      const FileDescriptor* built = pool_.BuildFile(file);
      ASSERT_NE(built, nullptr) << file.name();
      if (absl::StartsWith(file.name(), "engram/")) files_.push_back(built);
    }
  }

  static bool Documented(const google::protobuf::SourceLocation& loc) {
    return !absl::StripAsciiWhitespace(loc.leading_comments).empty() ||
           !absl::StripAsciiWhitespace(loc.trailing_comments).empty();
  }

  template <typename D>
  void Check(const D* d, std::vector<std::string>* missing) {
    // tensor.proto predates this check and is kept as is; DType's value names are the
    // documentation.
    if constexpr (std::is_same_v<D, google::protobuf::EnumValueDescriptor>) {
      if (d->type()->full_name() == "engram.v1.DType") return;
    }
    google::protobuf::SourceLocation loc;
    if (!d->GetSourceLocation(&loc) || !Documented(loc)) {
      missing->push_back(absl::StrCat(d->file()->name(), ": ", d->full_name()));
    }
  }

  void CheckMessage(const google::protobuf::Descriptor* m, std::vector<std::string>* missing) {
    if (m->options().map_entry()) return;  // synthesized for map<,> fields
    Check(m, missing);
    for (int i = 0; i < m->field_count(); ++i) Check(m->field(i), missing);
    for (int i = 0; i < m->real_oneof_decl_count(); ++i) Check(m->oneof_decl(i), missing);
    for (int i = 0; i < m->nested_type_count(); ++i) CheckMessage(m->nested_type(i), missing);
    for (int i = 0; i < m->enum_type_count(); ++i) CheckEnum(m->enum_type(i), missing);
  }

  void CheckEnum(const google::protobuf::EnumDescriptor* e, std::vector<std::string>* missing) {
    Check(e, missing);
    for (int i = 0; i < e->value_count(); ++i) Check(e->value(i), missing);
  }

  DescriptorPool pool_;
  std::vector<const FileDescriptor*> files_;
};

TEST_F(ProtoSourceTest, AllContractFilesArePresent) {
  std::set<std::string> names;
  for (const FileDescriptor* f : files_) names.insert(f->name());
  EXPECT_EQ(names, (std::set<std::string>{"engram/v1/tensor.proto", "engram/v1/trajectory.proto",
                                          "engram/v1/replay.proto", "engram/v1/episodic.proto",
                                          "engram/v1/parameters.proto",
                                          "engram/v1/experiment.proto", "engram/v1/actor.proto"}));
}

TEST_F(ProtoSourceTest, EveryElementHasAComment) {
  std::vector<std::string> missing;
  for (const FileDescriptor* f : files_) {
    for (int i = 0; i < f->message_type_count(); ++i) CheckMessage(f->message_type(i), &missing);
    for (int i = 0; i < f->enum_type_count(); ++i) CheckEnum(f->enum_type(i), &missing);
    for (int i = 0; i < f->service_count(); ++i) {
      Check(f->service(i), &missing);
      for (int j = 0; j < f->service(i)->method_count(); ++j) {
        Check(f->service(i)->method(j), &missing);
      }
    }
  }
  EXPECT_THAT(missing, IsEmpty()) << "undocumented:\n" << absl::StrJoin(missing, "\n");
}

// "PayloadKind" -> "PAYLOADKIND", "PAYLOAD_KIND_CHUNK" -> "PAYLOADKINDCHUNK": compares enum
// value prefixes with enum names without guessing where acronyms split ("DType").
std::string UpperNoUnderscores(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (c != '_') out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

bool IsUpperSnake(const std::string& name) {
  for (char c : name) {
    if (!(std::isupper(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return false;
    }
  }
  return true;
}

TEST_F(ProtoSourceTest, NamingAndOptionConventions) {
  std::vector<std::string> problems;
  for (const FileDescriptor* f : files_) {
    if (f->package() != "engram.v1") problems.push_back(f->name() + ": package");
    if (f->syntax() != FileDescriptor::SYNTAX_PROTO3) problems.push_back(f->name() + ": syntax");
    if (!f->options().cc_enable_arenas()) problems.push_back(f->name() + ": cc_enable_arenas");
    for (int i = 0; i < f->enum_type_count(); ++i) {
      const auto* e = f->enum_type(i);
      const std::string prefix = UpperNoUnderscores(e->name());
      if (UpperNoUnderscores(e->value(0)->name()) != prefix + "UNSPECIFIED" ||
          !absl::EndsWith(e->value(0)->name(), "_UNSPECIFIED") || e->value(0)->number() != 0) {
        problems.push_back(e->full_name() + ": first value must be <ENUM_NAME>_UNSPECIFIED = 0");
      }
      for (int j = 0; j < e->value_count(); ++j) {
        const std::string& value = e->value(j)->name();
        if (!IsUpperSnake(value) || !absl::StartsWith(UpperNoUnderscores(value), prefix)) {
          problems.push_back(e->value(j)->full_name() +
                             ": not UPPER_SNAKE prefixed by the enum name");
        }
      }
    }
    for (int i = 0; i < f->message_type_count(); ++i) {
      const auto* m = f->message_type(i);
      for (int j = 0; j < m->field_count(); ++j) {
        const std::string& name = m->field(j)->name();
        for (char c : name) {
          if (!(std::islower(static_cast<unsigned char>(c)) ||
                std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
            problems.push_back(m->field(j)->full_name() + ": not snake_case");
            break;
          }
        }
      }
    }
  }
  EXPECT_THAT(problems, IsEmpty()) << absl::StrJoin(problems, "\n");
}

}  // namespace
}  // namespace engram::v1
