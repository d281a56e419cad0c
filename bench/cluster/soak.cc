// Soak: a local cluster (durable replay shard, learner, actors writing to the episodic
// store, the store) trained for --duration with a fault every --fault_every, in turn:
// kill -9 of the replay shard, the learner, an actor, the episodic store, each restarted
// on its address 2 s later. Not a test (it takes half an hour); scripts/soak.sh runs it.
//
//   build/release/bench/soak [--duration=30m] [--fault_every=3m] [--sample_every=10s]
//       [--out_dir=DIR] [--json=PATH]
//
// It reports:
//   - memory: the resident set (VmRSS) of every process every --sample_every, written to
//     <out_dir>/memory.csv; the table shows each process's RSS at the start and end of its
//     longest incarnation and the growth over that incarnation's second half, per hour;
//   - items lost: a probe writer streams small items into table "soak_probe" of the replay
//     shard (--durability=log) all along, through the shard's faults; at the end every
//     appended item must be in the shard (read from a checkpoint it writes then): the
//     count of those missing is the figure, and must be 0;
//   - throughput around each fault: training frames/s and learner updates/s over the 60 s
//     before it and over 60 s starting 30 s after the restart (the learner's counters,
//     polled every --sample_every).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/common/bench_report.h"
#include "common/server.h"
#include "common/subprocess.h"
#include "common/text_proto.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "engram/v1/replay.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "grpcpp/client_context.h"
#include "replay_server/checkpoint.h"
#include "replay_server/client/writer.h"
#include "replay_server/testing/test_items.h"

ABSL_FLAG(absl::Duration, duration, absl::Minutes(30), "How long the cluster runs.");
ABSL_FLAG(absl::Duration, fault_every, absl::Minutes(3), "Time between faults.");
ABSL_FLAG(absl::Duration, sample_every, absl::Seconds(10),
          "Time between memory and counter samples.");
ABSL_FLAG(std::string, experiment, ENGRAM_SOURCE_DIR "/deploy/experiments/cartpole_apex.textproto",
          "The Ape-X experiment trained (its budget is replaced by --duration; actors also "
          "write to the episodic store).");
ABSL_FLAG(std::string, bin_dir, ENGRAM_BIN_DIR, "Where the engram_* binaries are.");
ABSL_FLAG(std::string, out_dir, "", "Logs, checkpoints and memory.csv (default: a new temp dir).");
ABSL_FLAG(double, probe_items_per_second, 200,
          "Rate of the probe writer's items (its table of 1M slots grows by these all along).");
ABSL_FLAG(std::string, json, "", "If set, also write the results as JSON to this path.");

namespace engram::bench {
namespace {

namespace fs = std::filesystem;

void Say(const std::string& line) {
  std::fprintf(stderr, "%s soak: %s\n",
               absl::FormatTime("%H:%M:%S", absl::Now(), absl::LocalTimeZone()).c_str(),
               line.c_str());
}

// One process of the cluster, restartable with the same arguments.
struct Process {
  std::string name;
  std::vector<std::string> argv;
  std::unique_ptr<Subprocess> child;
  int incarnation = 0;
};

class Cluster {
 public:
  explicit Cluster(fs::path dir) : dir_(std::move(dir)) {}

  Process& Add(std::string name, std::vector<std::string> argv) {
    auto process = std::make_unique<Process>();
    process->name = std::move(name);
    process->argv = std::move(argv);
    processes_.push_back(std::move(process));
    return *processes_.back();
  }

  bool Start(Process& p, bool wait_listening) {
    ++p.incarnation;
    auto child = Subprocess::Start(
        p.argv, (dir_ / absl::StrCat(p.name, ".", p.incarnation, ".log")).string());
    if (!child.ok()) {
      Say(absl::StrCat(p.name, ": ", child.status().ToString()));
      return false;
    }
    p.child = *std::move(child);
    if (wait_listening && !p.child->WaitForLine("listening on ", absl::Seconds(60)).ok()) {
      Say(absl::StrCat(p.name, " did not start:\n", p.child->ReadStderr()));
      return false;
    }
    return true;
  }

  void Kill9(Process& p) {
    p.child->Signal(SIGKILL);
    (void)p.child->Wait(absl::Seconds(10));
  }

  std::vector<std::unique_ptr<Process>>& processes() { return processes_; }

 private:
  fs::path dir_;
  std::vector<std::unique_ptr<Process>> processes_;
};

int64_t RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      rest = absl::StripAsciiWhitespace(absl::StripSuffix(absl::StripAsciiWhitespace(rest), "kB"));
      int64_t kb = 0;
      return absl::SimpleAtoi(rest, &kb) ? kb : -1;
    }
  }
  return -1;
}

struct Sample {
  double t = 0;  // seconds since start
  int64_t frames = -1, updates = -1;
};

struct MemorySample {
  double t = 0;
  int incarnation = 0;
  int64_t rss_kb = 0;
};

// Frames/s and updates/s between the samples nearest to [from, to], or -1 when there are
// not two samples in the window or the counters went back (a restarted learner).
std::pair<double, double> Rates(const std::vector<Sample>& samples, double from, double to) {
  const Sample* first = nullptr;
  const Sample* last = nullptr;
  for (const Sample& s : samples) {
    if (s.t < from || s.t > to || s.frames < 0) continue;
    if (first == nullptr) first = &s;
    last = &s;
  }
  if (first == nullptr || last == first || last->frames < first->frames ||
      last->updates < first->updates) {
    return {-1, -1};
  }
  const double dt = last->t - first->t;
  return {(last->frames - first->frames) / dt, (last->updates - first->updates) / dt};
}

int Run() {
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration fault_every = absl::GetFlag(FLAGS_fault_every);
  const absl::Duration sample_every = absl::GetFlag(FLAGS_sample_every);
  const std::string bin = absl::GetFlag(FLAGS_bin_dir);
  fs::path dir = absl::GetFlag(FLAGS_out_dir);
  if (dir.empty()) {
    std::string pattern = (fs::temp_directory_path() / "engram_soak_XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return 1;
    dir = pattern;
  }
  fs::create_directories(dir);
  Say(absl::StrCat("logs, checkpoints and memory.csv in ", dir.string()));

  // The experiment: budget = the soak, periodic learner checkpoints, episodic writes.
  v1::ExperimentSpec spec;
  if (absl::Status read = ReadTextProtoFile(absl::GetFlag(FLAGS_experiment), &spec); !read.ok()) {
    Say(read.ToString());
    return 2;
  }
  if (!spec.has_apex_dqn()) {
    Say("--experiment: needs an apex_dqn experiment");
    return 2;
  }
  spec.mutable_apex_dqn()->set_write_episodic(true);
  spec.mutable_budget()->set_total_frames(int64_t{1} << 50);
  spec.mutable_budget()->mutable_max_wall_time()->set_seconds(
      absl::ToInt64Seconds(duration + absl::Minutes(10)));
  spec.mutable_checkpoint()->set_directory((dir / "learner-ckpt").string());
  spec.mutable_checkpoint()->mutable_interval()->set_seconds(60);
  spec.mutable_checkpoint()->set_keep(2);
  std::string text;
  google::protobuf::TextFormat::PrintToString(spec, &text);
  const std::string spec_path = (dir / "spec.textproto").string();
  std::ofstream(spec_path) << text;

  const std::string replay = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
  const std::string learner = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
  const std::string store = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
  Cluster cluster(dir);
  Process& replay_p = cluster.Add(
      "replay", {bin + "/engram_replay_server", "--address=" + replay, "--metrics_port=-1",
                 "--durability=log", "--checkpoint_dir=" + (dir / "replay-ckpt").string(),
                 "--checkpoint_every=2m"});
  Process& store_p = cluster.Add(
      "episodic", {bin + "/engram_episodic_store", "--address=" + store, "--metrics_port=-1"});
  Process& learner_p =
      cluster.Add("learner", {bin + "/engram_learner", "--experiment=" + spec_path,
                              "--address=" + learner, "--replay_addresses=" + replay,
                              "--metrics_port=-1", "--output_dir=" + (dir / "run").string()});
  std::vector<Process*> actors;
  for (int i = 0; i < spec.actors().num_actors(); ++i) {
    actors.push_back(&cluster.Add(
        absl::StrCat("actor-", i),
        {bin + "/engram_actor", "--experiment=" + spec_path, absl::StrCat("--actor_index=", i),
         "--replay_addresses=" + replay, "--learner_address=" + learner,
         "--episodic_address=" + store, "--metrics_port=-1"}));
  }
  if (!cluster.Start(replay_p, true) || !cluster.Start(store_p, true) ||
      !cluster.Start(learner_p, true)) {
    return 1;
  }
  for (Process* a : actors) {
    if (!cluster.Start(*a, false)) return 1;
  }

  // The probe: items with known keys streamed into their own table through every fault.
  auto channel = replay::testing::FastReconnectChannel(std::stoi(replay.substr(10)));
  {
    auto stub = v1::ReplayService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::CreateTableRequest request;
    request.mutable_spec()->set_name("soak_probe");
    request.mutable_spec()->set_selector(v1::SELECTOR_UNIFORM);
    request.mutable_spec()->set_max_size(int64_t{1} << 20);  // never full in a soak
    v1::CreateTableResponse response;
    if (grpc::Status created = stub->CreateTable(&context, request, &response); !created.ok()) {
      Say("probe table: " + created.error_message());
      return 1;
    }
  }
  auto writer = replay::ReplayWriter::Create(channel, {.table = "soak_probe",
                                                       .max_items_per_request = 32,
                                                       .initial_backoff = absl::Milliseconds(50),
                                                       .max_backoff = absl::Seconds(1)});
  if (!writer.ok()) return 1;
  std::vector<uint64_t> probe_keys;
  std::atomic<bool> probe_stop{false};
  std::thread probe([&] {
    replay::KeyGenerator keys;
    const absl::Duration gap = absl::Seconds(1) / absl::GetFlag(FLAGS_probe_items_per_second);
    absl::Time next = absl::Now();
    while (!probe_stop.load()) {
      const uint64_t key = keys.Next();
      absl::Status appended;
      do {
        appended =
            (*writer)->Append(replay::testing::TestTransition(key), absl::Now() + absl::Seconds(1));
      } while (absl::IsDeadlineExceeded(appended) && !probe_stop.load());
      if (appended.ok()) probe_keys.push_back(key);
      next += gap;
      absl::SleepFor(next - absl::Now());
    }
  });

  // Faults in turn; samples meanwhile.
  std::vector<Process*> faults = {&replay_p, &learner_p, actors[0], &store_p};
  struct Fault {
    std::string process;
    double at = 0;         // seconds, kill -9
    double restarted = 0;  // seconds
  };
  std::vector<Fault> done;
  std::vector<Sample> samples;
  std::map<std::string, std::vector<MemorySample>> memory;
  std::ofstream memory_csv(dir / "memory.csv");
  memory_csv << "seconds,process,incarnation,pid,rss_kb\n";
  auto learner_stub = v1::ExperimentService::NewStub(*CreateChannel(learner, ChannelOptions()));
  const absl::Time start = absl::Now();
  absl::Time next_fault = start + fault_every;
  absl::Time next_sample = start;
  size_t fault_index = 0;
  while (absl::Now() - start < duration) {
    const absl::Time now = absl::Now();
    const double t = absl::ToDoubleSeconds(now - start);
    if (now >= next_sample) {
      Sample s{t};
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(now + absl::Seconds(3)));
      v1::GetExperimentRequest request;
      request.set_id(spec.id());
      v1::ExperimentStatus status;
      if (learner_stub->Get(&context, request, &status).ok()) {
        s.frames = status.frames();
        s.updates = status.learner_updates();
      }
      samples.push_back(s);
      for (const auto& p : cluster.processes()) {
        if (p->child == nullptr || !p->child->running()) continue;
        const int64_t rss = RssKb(p->child->pid());
        if (rss < 0) continue;
        memory[p->name].push_back({t, p->incarnation, rss});
        memory_csv << absl::StrFormat("%.1f,%s,%d,%d,%d\n", t, p->name, p->incarnation,
                                      static_cast<int>(p->child->pid()), rss);
      }
      memory_csv.flush();
      Say(absl::StrFormat("t=%4.0fs frames %d updates %d probe items %d acknowledged %d", t,
                          s.frames, s.updates, (*writer)->stats().items_appended,
                          (*writer)->stats().items_acknowledged));
      next_sample += sample_every;
    }
    if (now >= next_fault && absl::Now() - start + absl::Minutes(2) < duration) {
      Process& p = *faults[fault_index++ % faults.size()];
      Say("fault: kill -9 " + p.name);
      Fault fault{p.name, t};
      cluster.Kill9(p);
      absl::SleepFor(absl::Seconds(2));
      if (!cluster.Start(p, &p != actors[0])) return 1;
      fault.restarted = absl::ToDoubleSeconds(absl::Now() - start);
      Say(absl::StrCat(p.name, " restarted (incarnation ", p.incarnation, ")"));
      done.push_back(fault);
      next_fault += fault_every;
    }
    absl::SleepFor(std::min(next_sample, next_fault) - absl::Now());
  }

  // Items lost: everything appended must be stored once the writer has flushed.
  probe_stop.store(true);
  probe.join();
  const absl::Status flushed = (*writer)->Flush(absl::Now() + absl::Minutes(2));
  if (!flushed.ok()) Say("probe flush: " + flushed.ToString());
  int64_t lost = -1;
  {
    auto stub = v1::ReplayService::NewStub(channel);
    v1::ReplayCheckpointResponse checkpoint;
    grpc::Status status;
    for (int attempt = 0; attempt < 100; ++attempt) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(2)));
      status = stub->Checkpoint(&context, {}, &checkpoint);
      if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
      absl::SleepFor(absl::Seconds(1));
    }
    if (status.ok()) {
      auto tables = replay::LoadCheckpoint(checkpoint.path(), {});
      if (tables.ok()) {
        for (const auto& table : *tables) {
          if (table->name() != "soak_probe") continue;
          absl::flat_hash_set<uint64_t> stored;
          replay::TableCounters counters;
          table->Export([&](const v1::Item& item, int32_t) { stored.insert(item.key()); },
                        &counters);
          lost = 0;
          for (uint64_t key : probe_keys) lost += stored.contains(key) ? 0 : 1;
        }
      }
    } else {
      Say("final checkpoint: " + status.error_message());
    }
  }
  (void)(*writer)->Close(absl::Now() + absl::Seconds(10));
  for (const auto& p : cluster.processes()) {
    if (p->child != nullptr) (void)p->child->Terminate(absl::Seconds(60));
  }

  // The report.
  Report report("soak");
  report.AddConfig("duration", absl::FormatDuration(duration));
  report.AddConfig("fault_every", absl::FormatDuration(fault_every));
  report.AddConfig("experiment", spec.id());
  report.AddConfig("out_dir", dir.string());
  std::printf("\n%-10s %-10s %8s %12s %12s %12s %12s\n", "fault", "process", "at (s)",
              "frames/s bef", "frames/s aft", "updates/s bef", "updates/s aft");
  for (size_t i = 0; i < done.size(); ++i) {
    const Fault& f = done[i];
    const auto before = Rates(samples, f.at - 60, f.at);
    const auto after = Rates(samples, f.restarted + 30, f.restarted + 90);
    std::printf("%-10zu %-10s %8.0f %12.0f %12.0f %12.1f %12.1f\n", i + 1, f.process.c_str(), f.at,
                before.first, after.first, before.second, after.second);
    const std::string name = absl::StrCat("fault", i + 1, "/", f.process);
    report.Add(name + "/frames_per_s_before", before.first, "frames/s");
    report.Add(name + "/frames_per_s_after", after.first, "frames/s");
    report.Add(name + "/updates_per_s_before", before.second, "updates/s");
    report.Add(name + "/updates_per_s_after", after.second, "updates/s");
  }
  std::printf("\n%-10s %5s %10s %10s %10s %16s\n", "process", "incs", "rss start", "rss end",
              "rss max", "growth MB/h (2nd half of longest incarnation)");
  for (const auto& [name, series] : memory) {
    // The longest incarnation.
    std::map<int, std::vector<MemorySample>> by_incarnation;
    for (const MemorySample& m : series) by_incarnation[m.incarnation].push_back(m);
    const std::vector<MemorySample>* longest = nullptr;
    for (const auto& [inc, ms] : by_incarnation) {
      if (longest == nullptr || ms.back().t - ms.front().t > longest->back().t - longest->front().t)
        longest = &ms;
    }
    int64_t max_kb = 0;
    for (const MemorySample& m : series) max_kb = std::max(max_kb, m.rss_kb);
    const MemorySample& first = longest->front();
    const MemorySample& last = longest->back();
    const MemorySample& mid = (*longest)[longest->size() / 2];
    const double hours = (last.t - mid.t) / 3600;
    const double growth = hours > 0 ? (last.rss_kb - mid.rss_kb) / 1024.0 / hours : 0;
    std::printf("%-10s %5zu %9.1fM %9.1fM %9.1fM %16.1f\n", name.c_str(), by_incarnation.size(),
                first.rss_kb / 1024.0, last.rss_kb / 1024.0, max_kb / 1024.0, growth);
    report.Add(name + "/rss_end_mb", last.rss_kb / 1024.0, "MB");
    report.Add(name + "/rss_max_mb", max_kb / 1024.0, "MB");
    report.Add(name + "/rss_growth_mb_per_hour", growth, "MB/h");
  }
  std::printf("\nprobe items appended %zu, lost %lld (goal 0)\n", probe_keys.size(),
              static_cast<long long>(lost));
  report.Add("probe/items_appended", static_cast<double>(probe_keys.size()), "items");
  report.Add("probe/items_lost", static_cast<double>(lost), "items");
  const int code = report.Finish(absl::GetFlag(FLAGS_json));
  return lost == 0 ? code : 1;
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return engram::bench::Run();
}
