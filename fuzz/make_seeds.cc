// Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/): valid inputs of every
// kind each target reads, so that fuzzing starts from the real formats. The text specs are
// copied from deploy/experiments/ by fuzz/CMakeLists.txt's users; this program writes the
// binary ones. Run it again when a format changes:
//   fuzz_make_seeds fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engram/v1/episodic.pb.h"
#include "engram/v1/replay.pb.h"
#include "engram/v1/tensor.pb.h"
#include "episodic_store/memory.h"
#include "learner/core/dqn.h"
#include "replay_server/checkpoint.h"
#include "replay_server/table.h"
#include "replay_server/wal.h"

namespace {

namespace fs = std::filesystem;

void Put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

engram::v1::Tensor Floats(const std::vector<float>& values, std::vector<int64_t> shape) {
  engram::v1::Tensor t;
  t.set_dtype(engram::v1::DTYPE_FLOAT32);
  for (int64_t d : shape) t.add_shape(d);
  t.set_data(values.data(), values.size() * sizeof(float));
  return t;
}

engram::v1::Tensor Bytes(int n) {
  engram::v1::Tensor t;
  t.set_dtype(engram::v1::DTYPE_UINT8);
  t.add_shape(n);
  t.set_data(std::string(n, '\1'));
  return t;
}

std::vector<float> Keys(int n, int dim) {
  std::vector<float> keys(n * dim);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<float>((i * 7919) % 13) - 6;
  return keys;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];

  // tensor_codec: each dtype, a scalar, an empty tensor.
  Put(root / "tensor_codec", "float32", Floats({1, 2, 3, 4, 5, 6}, {2, 3}).SerializeAsString());
  Put(root / "tensor_codec", "uint8", Bytes(10).SerializeAsString());
  Put(root / "tensor_codec", "scalar", Floats({7}, {}).SerializeAsString());
  Put(root / "tensor_codec", "empty", Floats({}, {0, 4}).SerializeAsString());

  // replay_requests: a selector byte, then the message.
  engram::v1::InsertRequest insert;
  insert.set_table("fuzz");
  for (uint64_t key : {1, 2, 3}) {
    engram::v1::Item* item = insert.add_items();
    item->set_key(key);
    item->set_priority(1.0 + static_cast<double>(key));
    engram::v1::Transition* t = item->mutable_transition();
    *t->mutable_observation() = Bytes(4);
    *t->mutable_next_observation() = Bytes(4);
    t->set_action(1);
    t->set_reward(0.5f);
    t->set_discount(0.99f);
    t->set_steps(1);
  }
  Put(root / "replay_requests", "insert", std::string(1, '\0') + insert.SerializeAsString());
  engram::v1::SampleRequest sample;
  sample.set_table("fuzz");
  sample.set_batch_size(2);
  sample.set_importance_beta(0.4);
  Put(root / "replay_requests", "sample", std::string(1, '\1') + sample.SerializeAsString());
  engram::v1::UpdatePrioritiesRequest update;
  update.set_table("fuzz");
  update.add_keys(2);
  update.add_priorities(3.5);
  Put(root / "replay_requests", "update", std::string(1, '\2') + update.SerializeAsString());

  // episodic_requests: a selector byte, then the message.
  engram::v1::WriteRequest write;
  write.set_memory("approx");
  *write.mutable_keys() = Floats(Keys(24, 4), {24, 4});
  for (int i = 0; i < 24; ++i) {
    write.add_actions(i % 3);
    write.add_values(static_cast<float>(i));
  }
  Put(root / "episodic_requests", "write", std::string(1, '\0') + write.SerializeAsString());
  write.set_memory("exact");
  Put(root / "episodic_requests", "write_exact", std::string(1, '\0') + write.SerializeAsString());
  engram::v1::LookupRequest lookup;
  lookup.set_memory("approx");
  *lookup.mutable_queries() = Floats(Keys(2, 4), {2, 4});
  lookup.set_k(3);
  lookup.set_return_keys(true);
  Put(root / "episodic_requests", "lookup", std::string(1, '\1') + lookup.SerializeAsString());
  engram::v1::CreateMemoryRequest create;
  engram::v1::MemorySpec* spec = create.mutable_spec();
  spec->set_name("made");
  spec->set_key_dim(2);
  spec->set_num_actions(2);
  spec->set_capacity_per_action(8);
  spec->set_update_rule(engram::v1::UPDATE_RULE_NEC);
  spec->set_kernel(engram::v1::KERNEL_INVERSE_DISTANCE);
  spec->set_index(engram::v1::INDEX_KIND_APPROXIMATE);
  Put(root / "episodic_requests", "create", std::string(1, '\2') + create.SerializeAsString());

  // episodic_snapshot: a real snapshot of a small memory.
  engram::v1::MemorySpec small;
  small.set_name("snap");
  small.set_key_dim(4);
  small.set_num_actions(2);
  small.set_capacity_per_action(16);
  small.set_update_rule(engram::v1::UPDATE_RULE_MFEC_MAX);
  small.set_kernel(engram::v1::KERNEL_MEAN);
  small.set_index(engram::v1::INDEX_KIND_EXACT);
  auto memory = engram::episodic::Memory::Create(small).value();
  const std::vector<float> keys = Keys(10, 4);
  std::vector<int32_t> actions(10);
  std::vector<float> values(10);
  for (int i = 0; i < 10; ++i) {
    actions[i] = i % 2;
    values[i] = static_cast<float>(i);
  }
  (void)memory->Write(keys.data(), 10, actions.data(), values.data());
  std::ostringstream saved;
  (void)memory->Save(saved);
  Put(root / "episodic_snapshot", "small", saved.str());

  const fs::path tmp = fs::temp_directory_path() / "engram_fuzz_make_seeds";
  fs::remove_all(tmp);
  const auto read_file = [](const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };

  // replay_checkpoint: the table file of a real checkpoint of table "t" with 3 items.
  engram::v1::TableSpec table_spec;
  table_spec.set_name("t");
  table_spec.set_selector(engram::v1::SELECTOR_PRIORITIZED);
  table_spec.set_priority_exponent(0.6);
  table_spec.set_max_size(10);
  auto table = std::shared_ptr<engram::replay::Table>(
      engram::replay::Table::Create(table_spec).value().release());
  engram::v1::InsertRequest copy = insert;
  (void)table->Insert(copy.mutable_items(), absl::InfiniteFuture());
  const auto checkpoint =
      engram::replay::WriteCheckpoint((tmp / "ckpt").string(), {table}, 0).value();
  Put(root / "replay_checkpoint", "three_items", read_file(fs::path(checkpoint.path) / "t.table"));

  // replay_wal: a segment creating table "fuzz", inserting into it and deleting another.
  {
    auto wal = engram::replay::WriteAheadLog::Open((tmp / "wal").string(), 0).value();
    engram::v1::TableSpec fuzz_spec = table_spec;
    fuzz_spec.set_name("fuzz");
    (void)wal->Append(engram::replay::WalRecord::kCreateTable, fuzz_spec.SerializeAsString());
    (void)wal->Append(engram::replay::WalRecord::kInsert, insert.SerializeAsString());
    (void)wal->Append(engram::replay::WalRecord::kDeleteTable, "other");
  }
  Put(root / "replay_wal", "create_insert_delete",
      read_file(tmp / "wal" / "wal-00000000000000000000.log"));

  // learner_checkpoint: a saved CartPole learner as the target builds it.
  engram::learner::DqnConfig dqn;
  dqn.network.torso = engram::learner::Torso::kMlp;
  dqn.network.observation_shape = {4};
  dqn.network.num_actions = 2;
  dqn.network.hidden_sizes = {8};
  std::string error;
  auto learner = engram::learner::DqnLearner::Create(dqn, torch::kCPU, &error);
  (void)learner->Save((tmp / "learner.pt").string());
  Put(root / "learner_checkpoint", "cartpole", read_file(tmp / "learner.pt"));
  fs::remove_all(tmp);
  return 0;
}
