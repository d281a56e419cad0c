// In-process replay table: insert and sample rates without RPC, and memory per item.
//
//   build/release/bench/table_bench [--items=200000] [--seconds=2] [--json=PATH]
//
// Items are MinAtar-sized n-step transitions as an actor makes them: observation and
// next_observation uint8 [10,10,10] (sparse 0/1 grids), n = 3, so transition t's next
// observation is transition t+3's observation and the table's frame store keeps each
// distinct observation once.
//
// Results: table/insert_transitions_per_s (batches of 64), table/sample_transitions_per_s
// (prioritized, batch 256), table/bytes_per_item (resident memory of a full table divided
// by its items, everything included), table/payload_bytes_per_item (observation frames and
// serialized remainders only).

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/common/bench_report.h"
#include "replay_server/table.h"

ABSL_FLAG(int, items, 200000, "Table capacity, and items inserted for the memory figure.");
ABSL_FLAG(double, seconds, 2.0, "Measuring time for the insert and sample rates.");
ABSL_FLAG(std::string, json, "", "If set, also write the results as JSON to this path.");

namespace engram::bench {
namespace {

constexpr int kObsBytes = 10 * 10 * 10;
constexpr int kNStep = 3;

// Resident set size of this process, bytes.
int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * sysconf(_SC_PAGESIZE);
}

// A MinAtar-like frame: about 5% of cells set, deterministic in t.
void Frame(uint64_t t, std::string* out) {
  out->assign(kObsBytes, '\0');
  uint64_t x = t * 0x9E3779B97F4A7C15ull + 1;
  for (int i = 0; i < kObsBytes; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (*out)[i] = (x % 20) == 0 ? 1 : 0;
  }
}

void MakeTransition(uint64_t t, v1::Item* item) {
  item->set_key(t + 1);
  item->set_priority(1.0 + static_cast<double>(t % 17));
  v1::Transition* tr = item->mutable_transition();
  for (v1::Tensor* obs : {tr->mutable_observation(), tr->mutable_next_observation()}) {
    obs->set_dtype(v1::DTYPE_UINT8);
    obs->clear_shape();
    obs->add_shape(10);
    obs->add_shape(10);
    obs->add_shape(10);
  }
  Frame(t, tr->mutable_observation()->mutable_data());
  Frame(t + kNStep, tr->mutable_next_observation()->mutable_data());
  tr->set_action(static_cast<int>(t % 6));
  tr->set_reward(0.5f);
  tr->set_discount(0.970299f);
  tr->set_steps(kNStep);
}

v1::TableSpec Spec(int64_t max_size) {
  v1::TableSpec spec;
  spec.set_name("bench");
  spec.set_selector(v1::SELECTOR_PRIORITIZED);
  spec.set_priority_exponent(0.6);
  spec.set_max_size(max_size);
  auto* obs = spec.mutable_signature()->mutable_observation();
  obs->set_dtype(v1::DTYPE_UINT8);
  for (int d : {10, 10, 10}) obs->add_shape(d);
  spec.mutable_signature()->set_num_actions(6);
  return spec;
}

int Main() {
  const int items = absl::GetFlag(FLAGS_items);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  if (items < 1000 || !(seconds > 0)) {
    std::fprintf(stderr, "--items must be >= 1000 and --seconds > 0\n");
    return 2;
  }
  Report report("replay_table");
  report.AddConfig("items", absl::StrCat(items));
  report.AddConfig("observation", "uint8 [10,10,10], n_step 3");

  // Memory: fill a table of `items` and compare resident memory before and after.
  const int64_t rss_before = ResidentBytes();
  auto table = replay::Table::Create(Spec(items)).value();
  google::protobuf::RepeatedPtrField<v1::Item> batch;
  uint64_t t = 0;
  const absl::Time fill_start = absl::Now();
  while (t < static_cast<uint64_t>(items)) {
    batch.Clear();
    for (int i = 0; i < 64 && t < static_cast<uint64_t>(items); ++i)
      MakeTransition(t++, batch.Add());
    if (!table->Insert(&batch, absl::InfiniteFuture()).ok()) return 1;
  }
  const double fill_seconds = absl::ToDoubleSeconds(absl::Now() - fill_start);
  const double bytes_per_item = static_cast<double>(ResidentBytes() - rss_before) / items;
  const double payload_per_item = static_cast<double>(table->payload_bytes()) / items;

  // Insert rate into the full table (every insert evicts), items prepared in advance.
  std::vector<google::protobuf::RepeatedPtrField<v1::Item>> prepared(256);
  for (auto& b : prepared) {
    for (int i = 0; i < 64; ++i) MakeTransition(t++, b.Add());
  }
  uint64_t inserted = 0;
  absl::Duration insert_time;
  std::vector<google::protobuf::RepeatedPtrField<v1::Item>> work(prepared.size());
  while (insert_time < absl::Seconds(seconds)) {
    for (size_t b = 0; b < prepared.size(); ++b) {
      // The copy (Insert consumes its batch) and fresh keys are not timed.
      work[b] = prepared[b];
      for (v1::Item& item : work[b]) {
        // Fresh keys, and fresh frames as an actor would send them: stamp observation t
        // and next observation t + n so that each frame is new and shared by two items.
        ++t;
        item.set_key(t + (uint64_t{1} << 40));
        const uint64_t stamps[2] = {t, t + kNStep};
        std::memcpy(item.mutable_transition()->mutable_observation()->mutable_data()->data(),
                    &stamps[0], sizeof(uint64_t));
        std::memcpy(item.mutable_transition()->mutable_next_observation()->mutable_data()->data(),
                    &stamps[1], sizeof(uint64_t));
      }
      const absl::Time begin = absl::Now();
      if (!table->Insert(&work[b], absl::InfiniteFuture()).ok()) return 1;
      insert_time += absl::Now() - begin;
      inserted += 64;
    }
  }
  const double insert_rate = inserted / absl::ToDoubleSeconds(insert_time);

  v1::SampleResponse response;
  uint64_t sampled = 0;
  absl::Time start = absl::Now();
  absl::Time now = start;
  while (now - start < absl::Seconds(seconds)) {
    for (int i = 0; i < 16; ++i) {
      if (!table->Sample(256, 0.4, absl::InfiniteFuture(), &response).ok()) return 1;
      sampled += 256;
    }
    now = absl::Now();
  }
  const double sample_rate = sampled / absl::ToDoubleSeconds(now - start);

  std::printf("%-40s %14s %10s\n", "result", "value", "unit");
  const auto row = [&](const std::string& name, double value, const std::string& unit) {
    std::printf("%-40s %14.0f %10s\n", name.c_str(), value, unit.c_str());
    report.Add(name, value, unit);
  };
  row("table/insert_transitions_per_s", insert_rate, "items/s");
  row("table/fill_transitions_per_s", items / fill_seconds, "items/s");
  row("table/sample_transitions_per_s", sample_rate, "items/s");
  row("table/bytes_per_item", bytes_per_item, "bytes");
  row("table/payload_bytes_per_item", payload_per_item, "bytes");
  return report.Finish(absl::GetFlag(FLAGS_json));
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "In-process replay table: insert/sample rates and memory per item.\n"
      "Usage: table_bench [--items=200000] [--seconds=2] [--json=PATH]");
  absl::ParseCommandLine(argc, argv);
  return engram::bench::Main();
}
