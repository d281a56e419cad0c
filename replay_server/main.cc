// engram_replay_server: one replay shard (engram.v1.ReplayService) as a process.
//
// Flags, tables from config, restore, serve, periodic checkpoints, and a drain on
// SIGTERM/SIGINT: health NOT_SERVING, tables closed (UNAVAILABLE), calls given 5 s to end,
// a final checkpoint, exit 0. Bad flags or configs exit 2 with one line naming the flag;
// other start-up failures exit 1.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/client_limits.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/server.h"
#include "common/signals.h"
#include "common/status_macros.h"
#include "common/text_proto.h"
#include "engram/v1/experiment.pb.h"
#include "engram/v1/replay.pb.h"
#include "replay_server/checkpoint.h"
#include "replay_server/service.h"
#include "replay_server/table.h"
#include "replay_server/wal.h"

ABSL_FLAG(std::string, address, "0.0.0.0:7700",
          "host:port to serve gRPC on. Port 0 picks a free port. Once serving, the process "
          "prints `engram_replay_server listening on <host>:<port>` (the bound port) on stdout.");
ABSL_FLAG(int32_t, shard_index, 0,
          "This shard's index, >= 0 (0 when unsharded). Reported by Info and part of checkpoint "
          "directory names.");
ABSL_FLAG(bool, shard_index_from_hostname, false,
          "Take the shard index from this host's name, which must end in -<N> (a Kubernetes "
          "StatefulSet pod: replay-0, replay-1, ...), instead of --shard_index.");
ABSL_FLAG(std::string, experiment, "",
          "Path to an engram.v1.ExperimentSpec .textproto. Every table in its replay.tables is "
          "created at start (a restored table with an identical spec is kept; a different spec "
          "is an error). Empty: no tables from an experiment.");
ABSL_FLAG(std::string, tables_textproto, "",
          "Path to a text-format engram.v1.ListTablesResponse, i.e. a list of "
          "`tables { name: \"...\" selector: ... max_size: ... }`, created at start like "
          "--experiment's tables. Optional; may be combined with --experiment.");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "Directory for checkpoints of this shard (created if needed). Empty: no checkpoints "
          "(the Checkpoint RPC returns FAILED_PRECONDITION). With it, a final checkpoint is "
          "written on SIGTERM/SIGINT.");
ABSL_FLAG(absl::Duration, checkpoint_every, absl::ZeroDuration(),
          "Time between periodic checkpoints, as a duration (e.g. 10m, 1h30m). 0 (the default) "
          "= only on request and at shutdown. Needs --checkpoint_dir.");
ABSL_FLAG(int32_t, checkpoint_keep, 3,
          "Checkpoints of this shard kept in --checkpoint_dir, >= 1; older ones are deleted.");
ABSL_FLAG(std::string, durability, "none",
          "What an acknowledged insert survives. `none` (default): memory only; checkpoints "
          "are written on request, at shutdown and every --checkpoint_every when "
          "--checkpoint_dir is set. `checkpoint`: the same, but --checkpoint_dir and "
          "--checkpoint_every are required; a crash loses the inserts since the last "
          "checkpoint. `log`: a write-ahead log in <checkpoint_dir>/wal-shard<k>; every insert "
          "request is fsync'd (concurrent ones share an fsync) before it is acknowledged, so a "
          "crash (kill -9) loses nothing acknowledged; needs --checkpoint_dir, and checkpoints "
          "every --checkpoint_every (10m when not given) bound the log's size.");
ABSL_FLAG(int64_t, wal_checkpoint_bytes, int64_t{2} << 30,
          "--durability=log: also write a checkpoint (which ends the log's current segment) "
          "once this many bytes were logged since the last one, so that the log's disk use "
          "and the replay at a restart stay bounded under a high insert rate. >= 1 MiB.");
ABSL_FLAG(bool, restore, true,
          "At start, restore every table from the newest checkpoint in --checkpoint_dir if "
          "there is one, then (--durability=log) replay the write-ahead log (default true; "
          "--norestore starts empty and moves an existing log aside).");
ABSL_FLAG(int32_t, max_insert_batch, 4096,
          "Most items one InsertRequest may carry, >= 1. A larger request ends its stream with "
          "RESOURCE_EXHAUSTED.");

namespace engram::replay {
namespace {

constexpr char kProgram[] = "engram_replay_server";
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
constexpr absl::Duration kStatusFlushGrace = absl::Milliseconds(250);

// Reads text-format `path` into `message`, or exits 2 naming `flag`, the file and the
// position of the error.
void ParseTextFile(const char* flag, const std::string& path, google::protobuf::Message* message) {
  if (const absl::Status status = ReadTextProtoFile(path, message); !status.ok()) {
    Exit(2, absl::StrCat("--", flag, ": ", status.message()));
  }
}

struct ConfiguredTable {
  std::string where;  // "--experiment=<path>: replay.tables[2]"
  v1::TableSpec spec;
};

std::vector<ConfiguredTable> TablesFromFlags() {
  std::vector<ConfiguredTable> tables;
  if (const std::string path = absl::GetFlag(FLAGS_experiment); !path.empty()) {
    v1::ExperimentSpec experiment;
    ParseTextFile("experiment", path, &experiment);
    for (int i = 0; i < experiment.replay().tables_size(); ++i) {
      tables.push_back({absl::StrCat("--experiment=", path, ": replay.tables[", i, "]"),
                        experiment.replay().tables(i)});
    }
    if (experiment.replay().tables().empty()) {
      Log(absl::StrCat("warning: --experiment=", path,
                       " lists no replay.tables; no tables are created from it (tables derived "
                       "from the algorithm are created by whoever resolves the experiment)"));
    }
  }
  if (const std::string path = absl::GetFlag(FLAGS_tables_textproto); !path.empty()) {
    v1::ListTablesResponse list;
    ParseTextFile("tables_textproto", path, &list);
    for (int i = 0; i < list.tables_size(); ++i) {
      tables.push_back(
          {absl::StrCat("--tables_textproto=", path, ": tables[", i, "]"), list.tables(i)});
    }
  }
  for (const ConfiguredTable& table : tables) {
    if (absl::Status status = ValidateTableSpec(table.spec); !status.ok()) {
      Exit(2, absl::StrCat(table.where, ": ", status.message()));
    }
  }
  return tables;
}

// Splits "host:port" ("[::1]:7700" too); exits 2 when it is not one.
std::pair<std::string, int> SplitAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(address).substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    Exit(2, absl::StrCat("--address: expected host:port with a port in [0, 65535], got \"", address,
                         "\""));
  }
  return {address.substr(0, colon), port};
}

v1::ReplayCheckpointResponse ToResponse(const CheckpointInfo& info) {
  v1::ReplayCheckpointResponse response;
  response.set_path(info.path);
  const int64_t seconds = absl::ToUnixSeconds(info.time);
  response.mutable_time()->set_seconds(seconds);
  response.mutable_time()->set_nanos(
      static_cast<int32_t>((info.time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  response.set_items(info.items);
  response.set_bytes(info.bytes);
  return response;
}

std::string Describe(const v1::ReplayCheckpointResponse& checkpoint) {
  return absl::StrCat(checkpoint.path(), " (", checkpoint.items(), " items, ", checkpoint.bytes(),
                      " bytes)");
}

// Restores the newest checkpoint under `dir` into `service`, if there is one, and returns
// its path ("" when there is none).
std::string Restore(const std::string& dir, int32_t shard_index, ReplayServiceImpl& service) {
  absl::StatusOr<std::string> latest = LatestCheckpoint(dir);
  if (absl::IsNotFound(latest.status())) {
    Log(absl::StrCat("no checkpoint in ", dir));
    return "";
  }
  if (!latest.ok()) Exit(1, absl::StrCat("restore: ", latest.status().message()));
  // Another shard's checkpoint would silently mix shards' data.
  if (!absl::EndsWith(*latest, absl::StrCat("-shard", shard_index))) {
    Exit(2, absl::StrCat("--checkpoint_dir: the newest checkpoint ", *latest,
                         " is not of --shard_index=", shard_index,
                         "; give every shard its own directory"));
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<std::unique_ptr<Table>>> tables = LoadCheckpoint(
      *latest, [&service](const std::string& name) { return service.MetricsFor(name); });
  if (!tables.ok()) {
    Exit(1, absl::StrCat("restore from ", *latest, ": ", tables.status().ToString(),
                         " (--norestore starts empty)"));
  }
  int64_t items = 0;
  const size_t count = tables->size();
  for (std::unique_ptr<Table>& table : *tables) {
    items += table->size();
    if (absl::Status status = service.AdoptTable(std::move(table)); !status.ok()) {
      Exit(1, absl::StrCat("restore from ", *latest, ": ", status.message()));
    }
  }
  Log(absl::StrCat("restored ", count, " tables, ", items, " items from ", *latest, " in ",
                   absl::FormatDuration(absl::Now() - start)));
  return *latest;
}

// Replays the write-ahead log in `wal_dir` after `checkpoint` (a path, or "" for none) into
// `service`; returns the next free segment.
int64_t ReplayLog(const std::string& wal_dir, const std::string& checkpoint,
                  ReplayServiceImpl& service) {
  int64_t from = 0;
  if (!checkpoint.empty()) {
    absl::StatusOr<int64_t> segment = CheckpointWalSegment(checkpoint);
    if (!segment.ok()) Exit(1, absl::StrCat("restore: ", segment.status().ToString()));
    from = *segment;
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<WalReplayInfo> info =
      ReplayWal(wal_dir, from, [&service](WalRecord type, absl::string_view payload) {
        return service.ApplyLogRecord(type, payload);
      });
  if (!info.ok()) {
    Exit(1, absl::StrCat("replaying the write-ahead log: ", info.status().ToString(),
                         " (--norestore starts empty)"));
  }
  int64_t items = 0;
  for (const std::shared_ptr<Table>& table : service.Tables()) items += table->size();
  Log(absl::StrCat("replayed ", info->records, " write-ahead log records from ", info->segments,
                   " segments (from segment ", from, ") in ",
                   absl::FormatDuration(absl::Now() - start), "; ", items, " items in ",
                   service.Tables().size(), " tables now"));
  if (info->truncated_bytes > 0 || !info->truncated_file.empty()) {
    Log(absl::StrCat("cut ", info->truncated_bytes, " bytes of an unacknowledged torn write off ",
                     info->truncated_file));
  }
  return info->next_segment;
}

// Moves a write-ahead log that will not be replayed out of the way (so that a later
// recovery never mixes it with newer state), keeping it for inspection.
void SetLogAside(const std::string& wal_dir, const char* why) {
  std::error_code ec;
  if (!std::filesystem::exists(wal_dir, ec)) return;
  const std::string aside = absl::StrCat(
      wal_dir, ".set-aside-", absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()));
  std::filesystem::rename(wal_dir, aside, ec);
  if (ec)
    Exit(1, absl::StrCat("cannot move the write-ahead log ", wal_dir, " aside: ", ec.message()));
  Log(absl::StrCat("moved the write-ahead log ", wal_dir, " to ", aside, " (", why, ")"));
}

int Run(int argc, char** argv) {
  InitProcess(argc, argv,
              {.program = kProgram,
               .usage = absl::StrCat(
                   "One replay shard: serves engram.v1.ReplayService (plus grpc.health.v1 and "
                   "reflection).\nUsage: ",
                   kProgram,
                   " --address=0.0.0.0:7700 --experiment=exp.textproto "
                   "--checkpoint_dir=/ckpt/replay-0\n"
                   "Metrics: --metrics_port (Prometheus /metrics). TLS: --tls_cert, --tls_key, "
                   "--tls_ca."),
               .flag_files = {"replay_server/main.cc", "common/server.cc", "common/auth.cc",
                              "common/client_limits.cc", "common/metrics.cc"}});

  int32_t shard_index = absl::GetFlag(FLAGS_shard_index);
  if (absl::GetFlag(FLAGS_shard_index_from_hostname)) {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    const std::string host(name);
    const size_t dash = host.rfind('-');
    if (dash == std::string::npos || !absl::SimpleAtoi(host.substr(dash + 1), &shard_index)) {
      Exit(2, absl::StrCat("--shard_index_from_hostname: host name \"", host,
                           "\" does not end in -<shard index>"));
    }
  }
  const int32_t max_insert_batch = absl::GetFlag(FLAGS_max_insert_batch);
  const std::string checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  absl::Duration checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  const std::string durability = absl::GetFlag(FLAGS_durability);
  const int32_t checkpoint_keep = absl::GetFlag(FLAGS_checkpoint_keep);
  if (shard_index < 0) Exit(2, absl::StrCat("--shard_index: must be >= 0, got ", shard_index));
  if (max_insert_batch < 1) {
    Exit(2, absl::StrCat("--max_insert_batch: must be >= 1, got ", max_insert_batch));
  }
  if (checkpoint_every < absl::ZeroDuration()) {
    Exit(2, absl::StrCat("--checkpoint_every: must be >= 0, got ",
                         absl::FormatDuration(checkpoint_every)));
  }
  if (checkpoint_every > absl::ZeroDuration() && checkpoint_dir.empty()) {
    Exit(2, "--checkpoint_every: needs --checkpoint_dir");
  }
  if (checkpoint_keep < 1) {
    Exit(2, absl::StrCat("--checkpoint_keep: must be >= 1, got ", checkpoint_keep));
  }
  if (durability != "none" && durability != "checkpoint" && durability != "log") {
    Exit(2,
         absl::StrCat("--durability: expected none, checkpoint or log, got \"", durability, "\""));
  }
  if (durability != "none" && checkpoint_dir.empty()) {
    Exit(2, absl::StrCat("--durability=", durability, ": needs --checkpoint_dir"));
  }
  if (durability == "checkpoint" && checkpoint_every == absl::ZeroDuration()) {
    Exit(2, "--durability=checkpoint: needs --checkpoint_every (e.g. 10m)");
  }
  if (durability == "log" && checkpoint_every == absl::ZeroDuration()) {
    checkpoint_every = absl::Minutes(10);
  }
  const int64_t wal_checkpoint_bytes = absl::GetFlag(FLAGS_wal_checkpoint_bytes);
  if (wal_checkpoint_bytes < (int64_t{1} << 20)) {
    Exit(2, absl::StrCat("--wal_checkpoint_bytes: must be >= 1 MiB (1048576), got ",
                         wal_checkpoint_bytes));
  }
  const bool logged = durability == "log";
  const std::string wal_dir =
      checkpoint_dir.empty()
          ? ""
          : (std::filesystem::path(checkpoint_dir) / absl::StrCat("wal-shard", shard_index))
                .string();
  const std::string address = absl::GetFlag(FLAGS_address);
  const std::string host = SplitAddress(address).first;
  const std::vector<ConfiguredTable> configured = TablesFromFlags();

  // Before any thread exists, so that every later thread has SIGTERM/SIGINT blocked.
  ShutdownSignal shutdown;

  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::StartFromFlags("replay_server");
  if (!metrics.ok()) Exit(1, absl::StrCat("--metrics_port: ", metrics.status().message()));
  if ((*metrics)->port() >= 0) Log(absl::StrCat("metrics on port ", (*metrics)->port()));

  // Declared before the service, which calls it from checkpoints, so that it outlives it.
  std::unique_ptr<WriteAheadLog> wal;
  ReplayServiceImpl::Options options;
  options.shard_index = shard_index;
  options.max_insert_batch = max_insert_batch;
  options.registry = &(*metrics)->registry();
  options.authorizer = AuthorizerFromFlags();
  options.client_limiter = ClientRateLimiterFromFlags();
  if (!checkpoint_dir.empty()) {
    options.checkpoint = [checkpoint_dir, shard_index, checkpoint_keep,
                          &wal](const std::vector<std::shared_ptr<Table>>& tables)
        -> absl::StatusOr<v1::ReplayCheckpointResponse> {
      // Later records go to a new segment; the checkpoint holds everything before it.
      int64_t segment = 0;
      if (wal != nullptr) {
        ENGRAM_ASSIGN_OR_RETURN(segment, wal->Rotate());
      }
      ENGRAM_ASSIGN_OR_RETURN(
          CheckpointInfo info,
          WriteCheckpoint(checkpoint_dir, tables, shard_index, checkpoint_keep, segment));
      if (wal != nullptr) {
        if (absl::Status dropped = wal->DropBefore(segment); !dropped.ok()) {
          Log(absl::StrCat("warning: ", dropped.message()));
        }
      }
      return ToResponse(info);
    };
  }
  ReplayServiceImpl service(std::move(options));

  const bool restore = !checkpoint_dir.empty() && absl::GetFlag(FLAGS_restore);
  std::error_code ec;
  const bool log_exists = !wal_dir.empty() && std::filesystem::exists(wal_dir, ec);
  int64_t next_segment = 0;
  if (restore) {
    const std::string restored = Restore(checkpoint_dir, shard_index, service);
    // A log left by an earlier --durability=log run holds acknowledged items: replay it
    // whatever this run's mode.
    if (log_exists) next_segment = ReplayLog(wal_dir, restored, service);
  } else if (log_exists) {
    SetLogAside(wal_dir, "--norestore");
  }
  if (logged) {
    absl::StatusOr<std::unique_ptr<WriteAheadLog>> opened =
        WriteAheadLog::Open(wal_dir, next_segment, WalMetrics::Create((*metrics)->registry()));
    if (!opened.ok()) Exit(1, absl::StrCat("--durability=log: ", opened.status().message()));
    wal = *std::move(opened);
    service.AttachLog(wal.get());
    Log(absl::StrCat("durable: inserts are acknowledged once in the write-ahead log ", wal_dir,
                     " (segment ", wal->stats().segment, "); checkpoints every ",
                     absl::FormatDuration(checkpoint_every)));
  }
  for (const ConfiguredTable& table : configured) {
    absl::StatusOr<bool> created = service.CreateTableFromSpec(table.spec);
    if (!created.ok()) Exit(2, absl::StrCat(table.where, ": ", created.status().message()));
    Log(absl::StrCat(*created ? "created" : "kept restored", " table \"", table.spec.name(), "\""));
  }
  // A checkpoint of the starting state where the newest one on disk is not it: after
  // --norestore in log mode (a crash must not bring back the old checkpoint), and after
  // replaying a log that this mode will not keep.
  if ((logged && !restore) || (!logged && restore && log_exists)) {
    absl::StatusOr<v1::ReplayCheckpointResponse> checkpoint = service.CheckpointNow();
    if (!checkpoint.ok()) {
      Exit(1, absl::StrCat("checkpoint of the starting state failed: ",
                           checkpoint.status().ToString()));
    }
    Log(absl::StrCat("checkpoint of the starting state written: ", Describe(*checkpoint)));
    if (!logged) SetLogAside(wal_dir, "replayed and checkpointed; not --durability=log");
  }

  ServerOptions server_options;
  server_options.address = address;
  server_options.tls = TlsOptionsFromFlags();
  server_options.registry = &(*metrics)->registry();
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(server_options, {&service});
  if (!server.ok()) {
    const bool bad_flag = absl::IsInvalidArgument(server.status());
    Exit(bad_flag ? 2 : 1, absl::StrCat(bad_flag ? "" : "--address: ", server.status().message()));
  }
  const std::string listening = absl::StrCat(host, ":", (*server)->port());
  std::printf("%s listening on %s\n", kProgram, listening.c_str());
  std::fflush(stdout);
  Log(absl::StrCat("serving shard ", shard_index, " on ", listening, " with ",
                   service.Tables().size(), " tables"));

  std::thread checkpointer;
  if (checkpoint_every > absl::ZeroDuration()) {
    checkpointer = std::thread([&] {
      // With a log, its size is looked at every second as well.
      const absl::Duration poll =
          wal != nullptr ? std::min(checkpoint_every, absl::Seconds(1)) : checkpoint_every;
      absl::Time due = absl::Now() + checkpoint_every;
      absl::Time retry_after = absl::InfinitePast();  // after a failed checkpoint
      while (!shutdown.WaitFor(poll)) {
        const bool log_full = wal != nullptr && wal->stats().segment_bytes >= wal_checkpoint_bytes;
        const absl::Time now = absl::Now();
        if ((now < due && !log_full) || now < retry_after) continue;
        absl::StatusOr<v1::ReplayCheckpointResponse> checkpoint = service.CheckpointNow();
        if (checkpoint.ok()) {
          Log(absl::StrCat(
              "checkpoint written",
              log_full ? absl::StrCat(" (the log reached ", wal_checkpoint_bytes, " bytes)") : "",
              ": ", Describe(*checkpoint)));
          due = absl::Now() + checkpoint_every;
        } else {
          Log(absl::StrCat("periodic checkpoint failed (next try in 30s): ",
                           checkpoint.status().ToString()));
          retry_after = absl::Now() + absl::Seconds(30);
        }
      }
    });
  }

  const int signo = shutdown.Wait();
  Log(absl::StrCat(signo == 0 ? "shutdown requested" : absl::StrCat("signal ", signo),
                   ": draining (grace ", absl::FormatDuration(kShutdownGrace), ")"));
  (*server)->SetServing(false);
  // Blocked inserts and samples end now with UNAVAILABLE; other calls get the grace.
  service.Close(absl::UnavailableError("the replay server is shutting down"));
  if (!service.AwaitNoCalls(absl::Now() + kShutdownGrace)) {
    Log(absl::StrCat(service.calls_in_flight(), " calls still open after the grace; cancelling"));
  }
  // Server::Shutdown waits its whole grace for idle client connections to close, so our
  // calls were awaited above; this short grace only lets their final statuses go out.
  (*server)->Shutdown(kStatusFlushGrace);
  if (checkpointer.joinable()) checkpointer.join();
  if (!checkpoint_dir.empty()) {
    absl::StatusOr<v1::ReplayCheckpointResponse> checkpoint =
        service.CheckpointNow(/*wait_for_running=*/true);
    if (!checkpoint.ok()) {
      Exit(1, absl::StrCat("final checkpoint failed: ", checkpoint.status().ToString()));
    }
    Log(absl::StrCat("final checkpoint written: ", Describe(*checkpoint)));
  }
  server->reset();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace engram::replay

int main(int argc, char** argv) { return engram::replay::Run(argc, argv); }
