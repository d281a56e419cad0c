// The episodic store over loopback gRPC, the setting of the episodic control agent: a real
// engram_episodic_store as a child process holding one memory of --actions x --keys keys of
// --dim dimensions; writes in batches of --write_batch through EpisodicClient, then batched
// lookups for every action (batch --batch, k = --k) from --clients client threads. Recall
// of the approximate index is measured against an exact memory on the same keys, and the
// same lookups are run in process, as the limit RPC adds to: through Memory (1 and 2
// threads), and with FAISS's own IndexIVFFlat (one per action, the same list size and
// nprobe as the store's defaults; Debian's FAISS is built for baseline x86-64).
//
//   episodic_store_bench [--actions=6] [--keys=100000] [--dim=64] [--batch=64] [--k=50]
//                        [--key_source=minatar/space_invaders|synthetic] [--seconds=10]
//                        [--clients=1,2] [--store_flags=--approximate_index=hnsw,...]
//                        [--json=PATH]
//
// Keys (bench/episodic/projected_keys.h): with a game, the --keys distinct observations a
// random policy meets, projected, are written to every action (an agent's action memories
// hold keys of the same states), and the queries are further distinct observations;
// synthetic keys differ per action.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/common/bench_report.h"
#include "bench/episodic/projected_keys.h"
#include "common/server.h"
#include "common/subprocess.h"
#include "episodic_store/client.h"
#include "episodic_store/memory.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexIVFFlat.h"

ABSL_FLAG(int32_t, actions, 6, "Actions of the memory.");
ABSL_FLAG(int64_t, keys, 100000, "Keys per action.");
ABSL_FLAG(int32_t, dim, 64, "Key dimension.");
ABSL_FLAG(int32_t, write_batch, 1024, "Writes per Write request.");
ABSL_FLAG(int32_t, batch, 64, "Queries per Lookup request.");
ABSL_FLAG(int32_t, k, 50, "Neighbours per query and action.");
ABSL_FLAG(double, seconds, 10, "Seconds of lookups per client count.");
ABSL_FLAG(std::string, clients, "1,2", "Client thread counts to measure.");
ABSL_FLAG(std::string, key_source, "minatar/space_invaders",
          "Keys: a MinAtar game (its distinct observations, projected) or synthetic (projected "
          "sparse binary observations, a higher intrinsic dimension).");
ABSL_FLAG(std::vector<std::string>, store_flags, {},
          "Extra flags for engram_episodic_store, comma-separated (e.g. "
          "--approximate_index=hnsw,--hnsw_m=16).");
ABSL_FLAG(int32_t, seed, 1, "Seed of the keys, queries and projection.");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this path.");

namespace engram::episodic {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int Run() {
  const int actions = absl::GetFlag(FLAGS_actions);
  const int64_t per_action = absl::GetFlag(FLAGS_keys);
  const int dim = absl::GetFlag(FLAGS_dim);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int k = absl::GetFlag(FLAGS_k);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  absl::BitGen gen(std::seed_seq{absl::GetFlag(FLAGS_seed)});
  const int64_t total = per_action * actions;
  std::printf("episodic_store_bench: %d actions x %lld keys x %d dims, lookups of %d x k=%d\n",
              actions, static_cast<long long>(per_action), dim, batch, k);
  const std::string source = absl::GetFlag(FLAGS_key_source);
  constexpr int64_t kQueries = 4096;
  std::vector<float> keys, queries;
  if (source == "synthetic") {
    keys = ProjectedKeys(total, dim, gen);
    queries = ProjectedKeys(kQueries, dim, gen);
  } else {
    absl::StatusOr<std::vector<float>> game = GameKeys(source, per_action + kQueries, dim, gen);
    if (!game.ok()) {
      std::fprintf(stderr, "episodic_store_bench: %s\n", game.status().ToString().c_str());
      return 2;
    }
    queries.assign(game->begin() + per_action * dim, game->end());
    keys.resize(total * dim);
    for (int64_t i = 0; i < total; ++i) {  // key i % actions... of action i % actions
      std::memcpy(keys.data() + i * dim, game->data() + (i / actions) * dim, dim * sizeof(float));
    }
  }
  std::vector<int32_t> key_actions(total);
  std::vector<float> values(total);
  for (int64_t i = 0; i < total; ++i) {
    key_actions[i] = static_cast<int32_t>(i % actions);
    values[i] = static_cast<float>(i);
  }

  std::vector<std::string> argv = {ENGRAM_EPISODIC_STORE_BIN, "--address=127.0.0.1:0",
                                   "--metrics_port=-1"};
  for (const std::string& flag : absl::GetFlag(FLAGS_store_flags)) argv.push_back(flag);
  absl::StatusOr<std::unique_ptr<Subprocess>> store = Subprocess::Start(argv, "");
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::string> line = (*store)->WaitForLine("listening on ", absl::Seconds(30));
  if (!line.ok()) return 1;
  const std::string address(absl::StripAsciiWhitespace(*line));
  auto channel = *CreateChannel(address, ChannelOptions());

  v1::MemorySpec spec;
  spec.set_name("bench");
  spec.set_key_dim(dim);
  spec.set_num_actions(actions);
  spec.set_capacity_per_action(per_action);
  spec.set_update_rule(v1::UPDATE_RULE_MFEC_MAX);
  spec.set_kernel(v1::KERNEL_MEAN);
  spec.set_index(v1::INDEX_KIND_APPROXIMATE);
  bench::Report report("episodic_store_bench");
  report.AddConfig("actions", absl::StrCat(actions));
  report.AddConfig("keys_per_action", absl::StrCat(per_action));
  report.AddConfig("dim", absl::StrCat(dim));
  report.AddConfig("batch", absl::StrCat(batch));
  report.AddConfig("k", absl::StrCat(k));
  report.AddConfig("key_source", source);
  report.AddConfig("store_flags", absl::StrJoin(absl::GetFlag(FLAGS_store_flags), " "));

  // Writes, approximate and exact memories.
  for (v1::IndexKind kind : {v1::INDEX_KIND_APPROXIMATE, v1::INDEX_KIND_EXACT}) {
    spec.set_name(kind == v1::INDEX_KIND_EXACT ? "exact" : "approximate");
    spec.set_index(kind);
    auto client = EpisodicClient::Connect(channel, {.spec = spec,
                                                    .write_batch = absl::GetFlag(FLAGS_write_batch),
                                                    .timeout = absl::Minutes(5)});
    if (!client.ok()) {
      std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
      return 1;
    }
    const auto start = Clock::now();
    for (int64_t i = 0; i < total; ++i) {
      absl::Status written = (*client)->Write(keys.data() + i * dim, key_actions[i], values[i]);
      if (!written.ok()) {
        std::fprintf(stderr, "write: %s\n", written.ToString().c_str());
        return 1;
      }
    }
    if (!(*client)->Flush().ok()) return 1;
    const double rate = total / Since(start);
    std::printf("  writes, %-12s %10.0f writes/s over RPC\n", spec.name().c_str(), rate);
    report.Add(absl::StrCat("rpc/", spec.name(), "/writes_per_s"), rate, "1/s");
  }

  // Lookups over RPC (approximate memory), 1 and 2 client threads.
  spec.set_name("approximate");
  spec.set_index(v1::INDEX_KIND_APPROXIMATE);
  for (absl::string_view text : absl::StrSplit(absl::GetFlag(FLAGS_clients), ',')) {
    int clients = 1;
    if (!absl::SimpleAtoi(text, &clients) || clients < 1) return 2;
    std::atomic<int64_t> answered{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    const auto start = Clock::now();
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        auto client = EpisodicClient::Connect(channel, {.spec = spec});
        if (!client.ok()) {
          failed = true;
          return;
        }
        for (int64_t i = c; Since(start) < seconds; ++i) {
          const int64_t row = (i * batch) % (kQueries - batch);
          if (!(*client)->LookupAll(queries.data() + row * dim, batch, k).ok()) {
            failed = true;
            return;
          }
          answered += batch;
        }
      });
    }
    for (std::thread& t : threads) t.join();
    if (failed) return 1;
    const double rate = answered.load() / Since(start);
    std::printf("  lookups over RPC, %d client(s): %10.0f queries/s (each for %d actions)\n",
                clients, rate, actions);
    report.Add(absl::StrCat("rpc/approximate/queries_per_s/clients=", clients), rate, "1/s");
  }

  // Recall of the approximate memory against the exact one, through the server.
  v1::MemorySpec exact_spec = spec;
  exact_spec.set_name("exact");
  exact_spec.set_index(v1::INDEX_KIND_EXACT);
  auto stub = v1::EpisodicStore::NewStub(channel);
  auto neighbour_values = [&](const std::string& memory) {
    v1::LookupRequest request;
    request.set_memory(memory);
    v1::Tensor* t = request.mutable_queries();
    t->set_dtype(v1::DTYPE_FLOAT32);
    t->add_shape(256);
    t->add_shape(dim);
    t->set_data(queries.data(), 256 * dim * sizeof(float));
    request.set_k(k);
    grpc::ClientContext context;
    v1::LookupResponse response;
    stub->Lookup(&context, request, &response);
    std::vector<float> out(response.values().data().size() / sizeof(float));
    std::memcpy(out.data(), response.values().data().data(), out.size() * sizeof(float));
    return out;
  };
  const std::vector<float> truth = neighbour_values("exact");
  const std::vector<float> found = neighbour_values("approximate");
  if (truth.size() != found.size() || truth.empty()) return 1;
  int64_t hits = 0;
  const int64_t cells = static_cast<int64_t>(truth.size()) / k;
  for (int64_t c = 0; c < cells; ++c) {
    std::set<float> ids(truth.begin() + c * k, truth.begin() + (c + 1) * k);
    for (int j = 0; j < k; ++j) hits += ids.count(found[c * k + j]);
  }
  const double recall = static_cast<double>(hits) / static_cast<double>(truth.size());
  std::printf("  recall@%d of the approximate memory: %.4f\n", k, recall);
  report.Add("rpc/approximate/recall_at_k", recall, "");
  (void)(*store)->Terminate(absl::Seconds(30));

  // The same lookups in process: the limit.
  absl::StatusOr<std::unique_ptr<Memory>> memory = Memory::Create(spec);
  if (!memory.ok()) return 1;
  (*memory)->Write(keys.data(), total, key_actions.data(), values.data()).IgnoreError();
  for (int threads : {1, 2}) {
    std::atomic<int64_t> answered{0};
    std::vector<std::thread> workers;
    const auto start = Clock::now();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int64_t i = t; Since(start) < seconds; i += threads) {
          const int64_t row = (i * batch) % (kQueries - batch);
          if (!(*memory)->Lookup(queries.data() + row * dim, batch, {}, k, false).ok()) return;
          answered += batch;
        }
      });
    }
    for (std::thread& w : workers) w.join();
    const double rate = answered.load() / Since(start);
    std::printf("  lookups in process (Memory), %d thread(s): %10.0f queries/s\n", threads, rate);
    report.Add(absl::StrCat("in_process/approximate/queries_per_s/threads=", threads), rate, "1/s");
  }

  // FAISS directly: IndexIVFFlat per action, trained on that action's keys.
  const IvfOptions ivf;
  std::vector<std::unique_ptr<faiss::IndexFlatL2>> quantizers;
  std::vector<std::unique_ptr<faiss::IndexIVFFlat>> indices;
  for (int a = 0; a < actions; ++a) {
    std::vector<float> own;
    for (int64_t i = a; i < total; i += actions) {
      own.insert(own.end(), keys.begin() + i * dim, keys.begin() + (i + 1) * dim);
    }
    const int64_t n = static_cast<int64_t>(own.size()) / dim;
    const size_t lists = static_cast<size_t>(std::max<int64_t>(1, n / ivf.list_size));
    quantizers.push_back(std::make_unique<faiss::IndexFlatL2>(dim));
    indices.push_back(std::make_unique<faiss::IndexIVFFlat>(quantizers.back().get(), dim, lists));
    indices.back()->nprobe = ivf.nprobe;
    indices.back()->train(n, own.data());
    indices.back()->add(n, own.data());
  }
  std::vector<float> distances(batch * k);
  std::vector<faiss::Index::idx_t> labels(batch * k);
  int64_t answered = 0;
  const auto start = Clock::now();
  for (int64_t i = 0; Since(start) < seconds; ++i) {
    const int64_t row = (i * batch) % (kQueries - batch);
    for (auto& index : indices) {
      index->search(batch, queries.data() + row * dim, k, distances.data(), labels.data());
    }
    answered += batch;
  }
  const double faiss_rate = answered / Since(start);
  std::printf("  lookups in process (FAISS IndexIVFFlat, nprobe %d), 1 thread: %10.0f queries/s\n",
              ivf.nprobe, faiss_rate);
  report.Add("in_process/faiss_ivf_flat/queries_per_s", faiss_rate, "1/s");
  return report.Finish(absl::GetFlag(FLAGS_json));
}

}  // namespace
}  // namespace engram::episodic

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return engram::episodic::Run();
}
