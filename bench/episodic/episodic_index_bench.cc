// The episodic store's k-NN indices in process, without RPC: for the exact index (FAISS
// brute force) and the approximate ones (our IVF, hnswlib's HNSW) at several settings, insert rate,
// batched lookup rate and recall@k against the exact answers. This is the measurement that
// picks the approximate index's defaults, and the in-process limit for the store's RPC
// lookups (episodic_store_bench).
//
//   episodic_index_bench [--keys=100000] [--dim=64] [--queries=2000] [--k=50]
//                        [--key_source=synthetic|gaussian|minatar/GAME] [--only=NAME]
//                        [--json=PATH]
//
// Keys (bench/episodic/projected_keys.h) are Gaussian random projections of observations:
// synthetic sparse binary ones (default; i.i.d. cells, a high intrinsic dimension), or the
// distinct observations a random policy meets in a MinAtar game (--key_source=minatar/breakout;
// the queries are further distinct observations of the same game); --key_source=gaussian uses
// i.i.d. Gaussian keys (the hardest case for approximate search).

#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/common/bench_report.h"
#include "bench/episodic/projected_keys.h"
#include "episodic_store/memory.h"

ABSL_FLAG(int64_t, keys, 100000, "Keys in the memory (one action).");
ABSL_FLAG(int32_t, dim, 64, "Key dimension.");
ABSL_FLAG(int32_t, queries, 2000, "Lookup queries (in batches of --batch).");
ABSL_FLAG(int32_t, batch, 64, "Queries per lookup call.");
ABSL_FLAG(int32_t, k, 50, "Neighbours per query.");
ABSL_FLAG(std::string, key_source, "synthetic",
          "synthetic (projected sparse binary observations), gaussian, or a MinAtar game "
          "(e.g. minatar/breakout: its distinct observations under a random policy).");
ABSL_FLAG(std::string, only, "",
          "Measure only the indices whose name contains this (e.g. ivf); exact always runs "
          "(it gives the recall's reference).");
ABSL_FLAG(int32_t, seed, 1, "Seed of the keys, queries and projection.");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this path.");

namespace engram::episodic {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// n keys of dimension dim from --key_source.
absl::StatusOr<std::vector<float>> MakeKeys(const std::string& source, int64_t n, int dim,
                                            absl::BitGen& gen) {
  if (source == "synthetic") return ProjectedKeys(n, dim, gen);
  if (source == "gaussian") {
    std::vector<float> keys(n * dim);
    for (float& x : keys) x = absl::Gaussian<float>(gen);
    return keys;
  }
  return GameKeys(source, n, dim, gen);
}

int Run() {
  const int64_t n = absl::GetFlag(FLAGS_keys);
  const int dim = absl::GetFlag(FLAGS_dim);
  const int num_queries = absl::GetFlag(FLAGS_queries);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int k = absl::GetFlag(FLAGS_k);
  const std::string source = absl::GetFlag(FLAGS_key_source);
  absl::BitGen gen(std::seed_seq{absl::GetFlag(FLAGS_seed)});
  // Keys and queries drawn together (for a game: distinct observations, queries last).
  absl::StatusOr<std::vector<float>> all = MakeKeys(source, n + num_queries, dim, gen);
  if (!all.ok()) {
    std::fprintf(stderr, "episodic_index_bench: %s\n", all.status().ToString().c_str());
    return 2;
  }
  const std::vector<float> keys(all->begin(), all->begin() + n * dim);
  const std::vector<float> queries(all->begin() + n * dim, all->end());
  std::vector<int32_t> actions(n, 0);
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<float>(i);  // value = key id

  v1::MemorySpec spec;
  spec.set_name("bench");
  spec.set_key_dim(dim);
  spec.set_num_actions(1);
  spec.set_capacity_per_action(n);
  spec.set_update_rule(v1::UPDATE_RULE_MFEC_MAX);
  spec.set_kernel(v1::KERNEL_MEAN);

  bench::Report report("episodic_index_bench");
  report.AddConfig("keys", absl::StrCat(n));
  report.AddConfig("dim", absl::StrCat(dim));
  report.AddConfig("k", absl::StrCat(k));
  report.AddConfig("batch", absl::StrCat(batch));
  report.AddConfig("key_source", source);
  std::printf("episodic_index_bench: %lld %s keys of dim %d, %d queries in batches of %d, k=%d\n\n",
              static_cast<long long>(n), source.c_str(), dim, num_queries, batch, k);
  std::printf("%-28s %12s %14s %10s\n", "index", "inserts/s", "queries/s", "recall@k");

  std::vector<float> truth;  // exact neighbours' values (ids), [queries, k]
  struct Variant {
    std::string name;
    v1::IndexKind kind;
    IndexOptions options;
  };
  std::vector<Variant> variants = {{"exact", v1::INDEX_KIND_EXACT, {}}};
  for (int list_size : {64, 128, 256}) {
    for (int nprobe : {6, 8, 10, 12, 16, 32}) {
      IndexOptions options;
      options.ivf.list_size = list_size;
      options.ivf.nprobe = nprobe;
      variants.push_back({absl::StrFormat("ivf list=%d nprobe=%d", list_size, nprobe),
                          v1::INDEX_KIND_APPROXIMATE, options});
    }
  }
  for (int m : {16, 32}) {
    for (int ef : {64, 256}) {
      IndexOptions options;
      options.approximate = IndexOptions::Approximate::kHnsw;
      options.hnsw = HnswOptions{m, 200, ef};
      variants.push_back(
          {absl::StrFormat("hnsw M=%d ef=%d", m, ef), v1::INDEX_KIND_APPROXIMATE, options});
    }
  }
  const std::string only = absl::GetFlag(FLAGS_only);
  for (const Variant& variant : variants) {
    if (variant.kind != v1::INDEX_KIND_EXACT && !absl::StrContains(variant.name, only)) continue;
    spec.set_index(variant.kind);
    std::unique_ptr<Memory> memory = *Memory::Create(spec, variant.options);
    const auto t0 = Clock::now();
    if (!memory->Write(keys.data(), n, actions.data(), values.data()).ok()) return 1;
    const auto t1 = Clock::now();
    std::vector<float> found;
    for (int q = 0; q < num_queries; q += batch) {
      const int rows = std::min(batch, num_queries - q);
      absl::StatusOr<LookupResult> result =
          memory->Lookup(queries.data() + q * dim, rows, {}, k, false);
      if (!result.ok()) return 1;
      found.insert(found.end(), result->values.begin(), result->values.end());
    }
    const auto t2 = Clock::now();
    if (truth.empty()) truth = found;
    int64_t hits = 0;
    for (int q = 0; q < num_queries; ++q) {
      std::set<float> ids(truth.begin() + q * k, truth.begin() + (q + 1) * k);
      for (int j = 0; j < k; ++j) hits += ids.count(found[q * k + j]);
    }
    const double recall = static_cast<double>(hits) / (static_cast<double>(num_queries) * k);
    const double inserts = n / Seconds(t0, t1), lookups = num_queries / Seconds(t1, t2);
    std::printf("%-28s %12.0f %14.0f %10.4f\n", variant.name.c_str(), inserts, lookups, recall);
    std::string key = variant.name;
    for (char& c : key) c = c == ' ' ? '/' : c;
    report.Add(absl::StrCat(key, "/inserts_per_s"), inserts, "1/s");
    report.Add(absl::StrCat(key, "/queries_per_s"), lookups, "1/s");
    report.Add(absl::StrCat(key, "/recall_at_k"), recall, "");
  }
  return report.Finish(absl::GetFlag(FLAGS_json));
}

}  // namespace
}  // namespace engram::episodic

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return engram::episodic::Run();
}
