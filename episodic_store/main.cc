// engram_episodic_store: the episodic store process (engram.v1.EpisodicStore).
//
// Serves per-action k-NN memories on --address; actors create a memory per experiment,
// write (key, action, return) after episodes and look up batches of keys. With
// --snapshot_dir it snapshots every --snapshot_every and on SIGTERM/SIGINT, and restores
// the newest snapshot at start. Exit codes: 0 after a clean stop, 2 for bad flags, 1 for
// other failures.

#include <omp.h>

#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/client_limits.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/signals.h"
#include "episodic_store/service.h"

ABSL_FLAG(std::string, address, "0.0.0.0:7900",
          "host:port to serve gRPC on. Port 0 picks a free port. Once serving, the process "
          "prints `engram_episodic_store listening on <host>:<port>` on stdout.");
ABSL_FLAG(std::string, snapshot_dir, "",
          "Directory for snapshots (created). Empty: no snapshots (Snapshot is "
          "FAILED_PRECONDITION). With it, a snapshot is written on SIGTERM/SIGINT.");
ABSL_FLAG(absl::Duration, snapshot_every, absl::ZeroDuration(),
          "Time between periodic snapshots (e.g. 10m); 0 = on request and at shutdown only.");
ABSL_FLAG(int32_t, snapshot_keep, 3, "Snapshots kept in --snapshot_dir, >= 1.");
ABSL_FLAG(bool, restore, true,
          "At start, restore the newest snapshot in --snapshot_dir if there is one.");
ABSL_FLAG(std::string, restore_from, "",
          "Restore this snapshot directory at start (instead of the newest in --snapshot_dir).");
ABSL_FLAG(int64_t, max_batch, 16384, "Most writes or queries per request, >= 1.");
ABSL_FLAG(int64_t, max_memory_bytes, int64_t{8} << 30,
          "Bytes of keys all memories may hold together (capacity x actions x key_dim x 4, "
          "twice that for approximate memories).");
ABSL_FLAG(std::string, approximate_index, "ivf",
          "Index of INDEX_KIND_APPROXIMATE memories: ivf (inverted file, k-means lists) or "
          "hnsw (graph).");
ABSL_FLAG(
    int32_t, ivf_list_size, 256,
    "IVF: keys per list (at each training, lists = keys expected by the next / list_size), >= 1.");
ABSL_FLAG(int32_t, ivf_nprobe, 8, "IVF: lists scanned per query, >= 1.");
ABSL_FLAG(int64_t, ivf_train_at, 4096,
          "IVF: keys an action holds before its first k-means training (exact scan until "
          "then), >= 2.");
ABSL_FLAG(int32_t, hnsw_m, 32, "HNSW: graph degree, >= 2.");
ABSL_FLAG(int32_t, hnsw_ef_construction, 100, "HNSW: candidates while inserting.");
ABSL_FLAG(int32_t, hnsw_ef_search, 256,
          "HNSW: candidates while searching (raised to k when smaller).");
ABSL_FLAG(int32_t, threads, 1,
          "Threads FAISS's exact search may use per call (OpenMP), >= 1; gRPC calls already run "
          "in parallel.");

namespace engram::episodic {
namespace {

constexpr char kProgram[] = "engram_episodic_store";
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);

std::string Describe(const v1::SnapshotResponse& s) {
  return absl::StrCat(s.path(), " (", s.keys(), " keys, ", s.bytes(), " bytes)");
}

int Run(int argc, char** argv) {
  InitProcess(argc, argv,
              {.program = kProgram,
               .usage = absl::StrCat(
                   "The episodic store: per-action k-NN memories for episodic control "
                   "(engram.v1.EpisodicStore).\nUsage: ",
                   kProgram, " --address=0.0.0.0:7900 [--snapshot_dir=/var/lib/engram/episodic]"),
               .flag_files = {"episodic_store/main.cc", "common/server.cc", "common/auth.cc",
                              "common/client_limits.cc", "common/metrics.cc"}});
  ShutdownSignal shutdown;
  EpisodicStoreServiceImpl::Options options;
  options.max_batch = absl::GetFlag(FLAGS_max_batch);
  if (options.max_batch < 1) Exit(2, "--max_batch: must be >= 1");
  options.max_memory_bytes = absl::GetFlag(FLAGS_max_memory_bytes);
  if (options.max_memory_bytes < 1) Exit(2, "--max_memory_bytes: must be >= 1");
  options.authorizer = AuthorizerFromFlags();
  options.client_limiter = ClientRateLimiterFromFlags();
  options.snapshot_dir = absl::GetFlag(FLAGS_snapshot_dir);
  options.snapshot_keep = absl::GetFlag(FLAGS_snapshot_keep);
  if (options.snapshot_keep < 1) Exit(2, "--snapshot_keep: must be >= 1");
  const absl::Duration snapshot_every = absl::GetFlag(FLAGS_snapshot_every);
  if (snapshot_every < absl::ZeroDuration()) Exit(2, "--snapshot_every: must be >= 0");
  if (snapshot_every > absl::ZeroDuration() && options.snapshot_dir.empty()) {
    Exit(2, "--snapshot_every: needs --snapshot_dir");
  }
  const std::string approximate = absl::GetFlag(FLAGS_approximate_index);
  if (approximate == "hnsw") {
    options.index.approximate = IndexOptions::Approximate::kHnsw;
  } else if (approximate != "ivf") {
    Exit(2, absl::StrCat("--approximate_index: must be ivf or hnsw, got \"", approximate, "\""));
  }
  IvfOptions& ivf = options.index.ivf;
  ivf.list_size = absl::GetFlag(FLAGS_ivf_list_size);
  ivf.nprobe = absl::GetFlag(FLAGS_ivf_nprobe);
  ivf.train_at = absl::GetFlag(FLAGS_ivf_train_at);
  if (ivf.list_size < 1) Exit(2, "--ivf_list_size: must be >= 1");
  if (ivf.nprobe < 1) Exit(2, "--ivf_nprobe: must be >= 1");
  if (ivf.train_at < 2) Exit(2, "--ivf_train_at: must be >= 2");
  HnswOptions& hnsw = options.index.hnsw;
  hnsw.m = absl::GetFlag(FLAGS_hnsw_m);
  hnsw.ef_construction = absl::GetFlag(FLAGS_hnsw_ef_construction);
  hnsw.ef_search = absl::GetFlag(FLAGS_hnsw_ef_search);
  if (hnsw.m < 2) Exit(2, "--hnsw_m: must be >= 2");
  if (hnsw.ef_construction < 1) Exit(2, "--hnsw_ef_construction: must be >= 1");
  if (hnsw.ef_search < 1) Exit(2, "--hnsw_ef_search: must be >= 1");
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 1) Exit(2, "--threads: must be >= 1");
  omp_set_num_threads(threads);

  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::StartFromFlags("episodic_store");
  if (!metrics.ok()) Exit(1, absl::StrCat("--metrics_port: ", metrics.status().message()));
  if ((*metrics)->port() >= 0) Log(absl::StrCat("metrics on port ", (*metrics)->port()));
  options.registry = &(*metrics)->registry();
  EpisodicStoreServiceImpl service(options);

  std::string restore = absl::GetFlag(FLAGS_restore_from);
  if (restore.empty() && absl::GetFlag(FLAGS_restore)) restore = service.LatestSnapshot();
  if (!restore.empty()) {
    absl::Status restored = service.Restore(restore);
    if (!restored.ok()) Exit(1, absl::StrCat("restoring ", restore, ": ", restored.message()));
    Log(absl::StrCat("restored ", restore));
  }

  ServerOptions server_options;
  server_options.address = absl::GetFlag(FLAGS_address);
  server_options.tls = TlsOptionsFromFlags();
  server_options.registry = &(*metrics)->registry();
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(server_options, {&service});
  if (!server.ok()) {
    Exit(absl::IsInvalidArgument(server.status()) ? 2 : 1,
         absl::StrCat("--address: ", server.status().message()));
  }
  const std::string host = server_options.address.substr(0, server_options.address.rfind(':'));
  std::printf("%s listening on %s:%d\n", kProgram, host.c_str(), (*server)->port());
  std::fflush(stdout);

  std::thread background([&] {
    absl::Time next_snapshot = absl::Now() + snapshot_every;
    while (!shutdown.WaitFor(absl::Seconds(5))) {
      service.UpdateGauges();
      if (snapshot_every > absl::ZeroDuration() && absl::Now() >= next_snapshot) {
        absl::StatusOr<v1::SnapshotResponse> snapshot = service.SnapshotNow();
        Log(snapshot.ok()
                ? absl::StrCat("snapshot written: ", Describe(*snapshot))
                : absl::StrCat("periodic snapshot failed: ", snapshot.status().ToString()));
        next_snapshot = absl::Now() + snapshot_every;
      }
    }
  });

  const int signo = shutdown.Wait();
  Log(absl::StrCat(signo == 0 ? "shutdown requested" : absl::StrCat("signal ", signo),
                   ": draining (grace ", absl::FormatDuration(kShutdownGrace), ")"));
  (*server)->Shutdown(kShutdownGrace);
  background.join();
  if (!options.snapshot_dir.empty()) {
    absl::StatusOr<v1::SnapshotResponse> snapshot = service.SnapshotNow();
    if (!snapshot.ok())
      Exit(1, absl::StrCat("final snapshot failed: ", snapshot.status().ToString()));
    Log(absl::StrCat("final snapshot written: ", Describe(*snapshot)));
  }
  server->reset();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace engram::episodic

int main(int argc, char** argv) { return engram::episodic::Run(argc, argv); }
