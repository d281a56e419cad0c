// Faults under load, with the real binaries on loopback:
//   - kill -9 of a replay shard in durable mode (--durability=log) while a writer streams
//     into it: every acknowledged item is there after the restart, and the writer
//     reconnects and resends what was not acknowledged without storing anything twice;
//   - kill -9 of the learner: restarted on its address, it resumes from its checkpoint, the
//     actor (never restarted) keeps stepping and pulling weights, the counters continue;
//   - kill -9 of the actor: learner and replay carry on, a restarted actor rejoins;
//   - kill -9 of the episodic store: Ape-X actors writing to it go on acting by their
//     network, and refill it once it is back.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/server.h"
#include "common/subprocess.h"
#include "engram/v1/episodic.grpc.pb.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "engram/v1/replay.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "replay_server/checkpoint.h"
#include "replay_server/client/writer.h"
#include "replay_server/testing/test_items.h"
#include "tests/experiment_status.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "fault_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Subprocess> Start(const std::string& binary, std::vector<std::string> args) {
    args.insert(args.begin(), absl::StrCat(ENGRAM_BIN_DIR, "/", binary));
    auto child =
        Subprocess::Start(args, (dir_ / absl::StrCat(binary, ++children_, ".log")).string());
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? *std::move(child) : nullptr;
  }

  // Waits for a server's listening line and returns its address ("" on failure).
  std::string Listen(Subprocess& child) {
    absl::StatusOr<std::string> line = child.WaitForLine("listening on ", absl::Seconds(60));
    EXPECT_TRUE(line.ok()) << line.status() << "\n" << child.ReadStderr();
    return line.ok() ? std::string(absl::StripAsciiWhitespace(*line)) : "";
  }

  static void Kill9(Subprocess& child) {
    child.Signal(SIGKILL);
    absl::StatusOr<int> code = child.Wait(absl::Seconds(10));
    ASSERT_TRUE(code.ok());
  }

  fs::path dir_;
  int children_ = 0;
};

// ---- replay shard -------------------------------------------------------------------------

// Appends items with fresh keys from a thread until stopped, retrying an item whose Append
// timed out (the shard is down and the writer's queue full); `keys` are the appended ones,
// in order.
class Appender {
 public:
  Appender(replay::ReplayWriter* writer, uint32_t process_id, int64_t limit)
      : generator_(process_id), thread_([this, writer, limit] {
          while (!stop_.load() && static_cast<int64_t>(keys_.size()) < limit) {
            const uint64_t key = generator_.Next();
            while (!stop_.load()) {
              absl::Status appended = writer->Append(replay::testing::TestTransition(key),
                                                     absl::Now() + absl::Milliseconds(200));
              if (appended.ok() || !absl::IsDeadlineExceeded(appended) ||
                  !absl::StrContains(appended.message(), "not appended")) {
                // Appended (an error about an earlier request would also mean that).
                EXPECT_TRUE(appended.ok()) << appended;
                keys_.push_back(key);
                break;
              }
            }
          }
        }) {}
  // Stops and returns the appended keys.
  const std::vector<uint64_t>& Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return keys_;
  }
  const std::vector<uint64_t>& Join() {
    if (thread_.joinable()) thread_.join();
    return keys_;
  }
  ~Appender() { Stop(); }

 private:
  replay::KeyGenerator generator_;
  std::atomic<bool> stop_{false};
  std::vector<uint64_t> keys_;
  std::thread thread_;
};

// Polls `condition` every 20 ms for up to `timeout`.
template <typename Pred>
bool Eventually(Pred condition, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

// The keys stored in the shard, read from a checkpoint it writes now.
absl::flat_hash_set<uint64_t> StoredKeys(v1::ReplayService::Stub& stub, int64_t* inserts) {
  v1::ReplayCheckpointResponse response;
  grpc::Status status;
  for (int attempt = 0; attempt < 100; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    context.set_wait_for_ready(true);  // the channel may still be reconnecting to a restart
    status = stub.Checkpoint(&context, {}, &response);
    // RESOURCE_EXHAUSTED: a periodic checkpoint is being written right now.
    if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(status.ok()) << status.error_message();
  absl::flat_hash_set<uint64_t> keys;
  auto tables = replay::LoadCheckpoint(response.path(), {});
  EXPECT_TRUE(tables.ok()) << tables.status();
  if (!tables.ok() || tables->size() != 1) return keys;
  replay::TableCounters counters;
  (*tables)[0]->Export(
      [&keys](const v1::Item& item, int32_t) { EXPECT_TRUE(keys.insert(item.key()).second); },
      &counters);
  *inserts = counters.inserts;
  return keys;
}

TEST_F(FaultTest, DurableReplayShardKilledMidStreamLosesNoAcknowledgedItem) {
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  const std::string tables = (dir_ / "tables.textproto").string();
  std::ofstream(tables) << "tables { name: \"replay\" selector: SELECTOR_UNIFORM "
                           "max_size: 1000000 }\n";
  // Checkpoints every second, so that log rotation happens under load too.
  const std::vector<std::string> args = {absl::StrCat("--address=127.0.0.1:", port),
                                         "--tables_textproto=" + tables,
                                         "--checkpoint_dir=" + (dir_ / "ckpt").string(),
                                         "--durability=log",
                                         "--checkpoint_every=1s",
                                         "--metrics_port=-1"};
  std::unique_ptr<Subprocess> server = Start("engram_replay_server", args);
  ASSERT_FALSE(Listen(*server).empty());
  auto channel = replay::testing::FastReconnectChannel(port);
  const replay::ReplayWriterOptions options = {.table = "replay",
                                               .max_items_per_request = 32,
                                               .max_unacked_requests = 16,
                                               .initial_backoff = absl::Milliseconds(20),
                                               .max_backoff = absl::Milliseconds(200)};

  // 1. Killed while a writer streams: what was acknowledged is there after the restart.
  //    The writer is then dropped, so nothing is resent: the items come from the log.
  std::vector<uint64_t> acknowledged;
  {
    auto writer = replay::ReplayWriter::Create(channel, options);
    ASSERT_TRUE(writer.ok());
    Appender appender(writer->get(), 1, int64_t{1} << 40);
    ASSERT_TRUE(Eventually([&] { return (*writer)->stats().items_acknowledged >= 3000; },
                           absl::Seconds(60)))
        << server->ReadStderr();
    Kill9(*server);
    // Acks the dead server sent before it died may still be read; none come after.
    absl::SleepFor(absl::Milliseconds(300));
    const std::vector<uint64_t>& keys = appender.Stop();
    const int64_t acked = (*writer)->stats().items_acknowledged;
    ASSERT_LE(acked, static_cast<int64_t>(keys.size()));
    acknowledged.assign(keys.begin(), keys.begin() + acked);  // acks come in append order
  }
  server = Start("engram_replay_server", args);
  ASSERT_FALSE(Listen(*server).empty());
  EXPECT_THAT(server->ReadStderr(), HasSubstr("replayed"));
  auto stub = v1::ReplayService::NewStub(channel);
  int64_t inserts = 0;
  absl::flat_hash_set<uint64_t> stored = StoredKeys(*stub, &inserts);
  int64_t missing = 0;
  for (uint64_t key : acknowledged) missing += stored.contains(key) ? 0 : 1;
  EXPECT_GE(acknowledged.size(), 3000u);
  EXPECT_EQ(missing, 0) << "of " << acknowledged.size() << " acknowledged items";
  const size_t after_first = stored.size();

  // 2. Killed under a writer that lives on: it reconnects with backoff and resends what was
  //    not acknowledged; every item ends up stored exactly once.
  constexpr int64_t kItems = 12000;
  auto writer = replay::ReplayWriter::Create(channel, options);
  ASSERT_TRUE(writer.ok());
  Appender appender(writer->get(), 2, kItems);
  ASSERT_TRUE(
      Eventually([&] { return (*writer)->stats().items_acknowledged >= 2000; }, absl::Seconds(60)));
  Kill9(*server);
  absl::SleepFor(absl::Milliseconds(500));
  server = Start("engram_replay_server", args);
  ASSERT_FALSE(Listen(*server).empty());
  const std::vector<uint64_t>& keys = appender.Join();
  ASSERT_EQ(static_cast<int64_t>(keys.size()), kItems);
  absl::Status flushed = (*writer)->Flush(absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(flushed.ok()) << flushed;
  const replay::ReplayWriter::Stats stats = (*writer)->stats();
  EXPECT_GE(stats.reconnects, 1);
  EXPECT_EQ(stats.items_acknowledged, kItems);
  EXPECT_EQ(stats.items_dropped, 0);
  ASSERT_TRUE((*writer)->Close(absl::Now() + absl::Seconds(10)).ok());

  stored = StoredKeys(*stub, &inserts);
  missing = 0;
  for (uint64_t key : keys) missing += stored.contains(key) ? 0 : 1;
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(stored.size(), after_first + kItems);
  // Nothing was stored twice: every insert the table counts is one of its items.
  EXPECT_EQ(inserts, static_cast<int64_t>(stored.size()));

  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(absl::Seconds(20)).value_or(-1), 0) << server->ReadStderr();
}

// ---- learner and actors -------------------------------------------------------------------

v1::ExperimentStatus Status(const std::string& learner) {
  return testing::ExperimentStatusOf(learner, "cartpole-apex");
}

// Polls the learner's status until `done` holds or 90 s pass.
v1::ExperimentStatus WaitFor(const std::string& learner,
                             const std::function<bool(const v1::ExperimentStatus&)>& done) {
  return testing::WaitForExperiment(learner, "cartpole-apex", done, absl::Seconds(90));
}

int CountCheckpoints(const fs::path& dir) {
  int n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (fs::exists(it->path() / "state.textproto")) ++n;
  }
  return n;
}

TEST_F(FaultTest, KilledLearnerResumesAndKilledActorsRejoin) {
  // CartPole with a checkpoint every 2 s.
  std::ifstream in(absl::StrCat(ENGRAM_SOURCE_DIR, "/deploy/experiments/cartpole_apex.textproto"));
  std::string spec(std::istreambuf_iterator<char>(in), {});
  spec += absl::StrCat("\ncheckpoint { directory: \"", (dir_ / "ckpt").string(),
                       "\" interval { seconds: 2 } keep: 2 }\n");
  const std::string spec_path = (dir_ / "spec.textproto").string();
  std::ofstream(spec_path) << spec;

  std::unique_ptr<Subprocess> replay = Start("engram_replay_server", {"--address=127.0.0.1:0"});
  const std::string replay_address = Listen(*replay);
  ASSERT_FALSE(replay_address.empty());
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  const std::string learner_address = absl::StrCat("127.0.0.1:", port);
  const std::vector<std::string> learner_args = {
      "--experiment=" + spec_path, "--address=" + learner_address,
      "--replay_addresses=" + replay_address, "--output_dir=" + (dir_ / "out").string()};
  const std::vector<std::string> actor_args = {"--experiment=" + spec_path, "--actor_index=0",
                                               "--replay_addresses=" + replay_address,
                                               "--learner_address=" + learner_address};
  std::unique_ptr<Subprocess> learner = Start("engram_learner", learner_args);
  ASSERT_FALSE(Listen(*learner).empty());
  std::unique_ptr<Subprocess> actor = Start("engram_actor", actor_args);

  // Training, with a checkpoint written after some updates.
  const v1::ExperimentStatus before = WaitFor(learner_address, [](const v1::ExperimentStatus& s) {
    return s.learner_updates() >= 50 && s.frames() >= 3000;
  });
  ASSERT_GE(before.learner_updates(), 50) << learner->ReadStderr();
  const int checkpoints = CountCheckpoints(dir_ / "ckpt");
  ASSERT_TRUE(
      Eventually([&] { return CountCheckpoints(dir_ / "ckpt") > checkpoints; }, absl::Seconds(30)))
      << learner->ReadStderr();

  // kill -9 of the learner: the actor keeps running, and the restarted learner (same
  // address) resumes from the newest checkpoint with the counters continuing.
  Kill9(*learner);
  absl::SleepFor(absl::Seconds(1));
  EXPECT_FALSE(actor->Wait(absl::ZeroDuration()).ok()) << "the actor exited:\n"
                                                       << actor->ReadStderr();
  learner = Start("engram_learner", learner_args);
  ASSERT_FALSE(Listen(*learner).empty());
  const v1::ExperimentStatus resumed = WaitFor(learner_address, [](const v1::ExperimentStatus& s) {
    return s.state() == v1::EXPERIMENT_STATE_RUNNING;
  });
  EXPECT_THAT(learner->ReadStderr(), HasSubstr("resumes from"));
  EXPECT_GE(resumed.learner_updates(), before.learner_updates());
  EXPECT_GE(resumed.frames(), before.frames());
  EXPECT_GE(resumed.parameter_version(), before.parameter_version());
  // The same actor process reports frames to the new learner and trains it further.
  const v1::ExperimentStatus later = WaitFor(learner_address, [&](const v1::ExperimentStatus& s) {
    return s.learner_updates() > resumed.learner_updates() + 20 &&
           s.frames() > resumed.frames() + 2000;
  });
  EXPECT_GT(later.learner_updates(), resumed.learner_updates() + 20) << learner->ReadStderr();
  EXPECT_GT(later.frames(), resumed.frames() + 2000) << actor->ReadStderr();

  // kill -9 of the actor: learner and replay carry on; a restarted actor rejoins.
  Kill9(*actor);
  absl::SleepFor(absl::Seconds(2));
  const v1::ExperimentStatus without = Status(learner_address);
  EXPECT_EQ(without.state(), v1::EXPERIMENT_STATE_RUNNING);
  EXPECT_FALSE(learner->Wait(absl::ZeroDuration()).ok());
  EXPECT_FALSE(replay->Wait(absl::ZeroDuration()).ok());
  actor = Start("engram_actor", actor_args);
  const v1::ExperimentStatus rejoined =
      WaitFor(learner_address,
              [&](const v1::ExperimentStatus& s) { return s.frames() > without.frames() + 2000; });
  EXPECT_GT(rejoined.frames(), without.frames() + 2000) << actor->ReadStderr();

  for (Subprocess* child : {actor.get(), learner.get(), replay.get()}) {
    absl::StatusOr<int> exit = child->Terminate(absl::Seconds(45));
    ASSERT_TRUE(exit.ok());
    EXPECT_EQ(*exit, 0) << child->ReadStderr();
  }

  // A damaged learner.pt is refused by its checksum before LibTorch reads it.
  fs::path newest;
  for (const auto& entry : fs::directory_iterator(dir_ / "ckpt")) {
    if (fs::exists(entry.path() / "state.textproto") && entry.path() > newest) {
      newest = entry.path();
    }
  }
  ASSERT_FALSE(newest.empty());
  {
    std::fstream model(newest / "learner.pt", std::ios::binary | std::ios::in | std::ios::out);
    model.seekp(static_cast<std::streamoff>(fs::file_size(newest / "learner.pt") / 2));
    model.put('\x5a');
  }
  learner = Start("engram_learner", learner_args);
  absl::StatusOr<int> refused = learner->Wait(absl::Seconds(60));
  ASSERT_TRUE(refused.ok());
  EXPECT_NE(*refused, 0);
  EXPECT_THAT(learner->ReadStderr(), HasSubstr("learner.pt is damaged"));
}

// ---- episodic store ---------------------------------------------------------------------

// Sum of writes into `memory` on the store at `address` (-1 when it does not answer or has
// no such memory).
int64_t EpisodicWrites(const std::string& address, const std::string& memory) {
  auto channel = CreateChannel(address, ChannelOptions());
  if (!channel.ok()) return -1;
  auto stub = v1::EpisodicStore::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  v1::MemoryInfoRequest request;
  request.add_memories(memory);
  v1::MemoryInfoResponse response;
  if (!stub->Info(&context, request, &response).ok() || response.memories_size() != 1) return -1;
  return response.memories(0).writes_total();
}

// Ape-X actors that also write their episodes to the episodic store act by their network:
// a store that stops costs them nothing but the writes, and once it is back (empty) they
// create their memory again and fill it.
TEST_F(FaultTest, ActorsCarryOnWhileTheEpisodicStoreIsDownAndRefillItAfter) {
  std::ifstream in(absl::StrCat(ENGRAM_SOURCE_DIR, "/deploy/experiments/cartpole_apex.textproto"));
  std::string spec(std::istreambuf_iterator<char>(in), {});
  const size_t apex = spec.find("apex_dqn {");
  ASSERT_NE(apex, std::string::npos);
  spec.insert(apex + std::string("apex_dqn {").size(), "\n  write_episodic: true");
  const std::string spec_path = (dir_ / "spec.textproto").string();
  std::ofstream(spec_path) << spec;
  const std::string memory = "ec_cartpole_apex";

  const int store_port = FreeLoopbackPort();
  ASSERT_GT(store_port, 0);
  const std::string store_address = absl::StrCat("127.0.0.1:", store_port);
  const std::vector<std::string> store_args = {"--address=" + store_address, "--metrics_port=-1"};
  std::unique_ptr<Subprocess> store = Start("engram_episodic_store", store_args);
  ASSERT_FALSE(Listen(*store).empty());
  std::unique_ptr<Subprocess> replay = Start("engram_replay_server", {"--address=127.0.0.1:0"});
  const std::string replay_address = Listen(*replay);
  std::unique_ptr<Subprocess> learner =
      Start("engram_learner",
            {"--experiment=" + spec_path, "--address=127.0.0.1:0",
             "--replay_addresses=" + replay_address, "--output_dir=" + (dir_ / "out").string()});
  const std::string learner_address = Listen(*learner);
  ASSERT_FALSE(learner_address.empty());
  std::unique_ptr<Subprocess> actor =
      Start("engram_actor",
            {"--experiment=" + spec_path, "--actor_index=0", "--replay_addresses=" + replay_address,
             "--learner_address=" + learner_address, "--episodic_address=" + store_address});
  ASSERT_TRUE(
      Eventually([&] { return EpisodicWrites(store_address, memory) > 500; }, absl::Seconds(60)))
      << actor->ReadStderr();

  Kill9(*store);
  const v1::ExperimentStatus down = Status(learner_address);
  absl::SleepFor(absl::Seconds(5));  // longer than the actor's 2 s per store call
  // The actor went on stepping (and training the learner) without the store.
  const v1::ExperimentStatus still = Status(learner_address);
  EXPECT_GT(still.frames(), down.frames() + 2000) << actor->ReadStderr();
  EXPECT_FALSE(actor->Wait(absl::ZeroDuration()).ok());

  store = Start("engram_episodic_store", store_args);
  ASSERT_FALSE(Listen(*store).empty());
  // Empty at first, then filled again by the same actor.
  EXPECT_TRUE(
      Eventually([&] { return EpisodicWrites(store_address, memory) > 500; }, absl::Seconds(60)))
      << actor->ReadStderr();
  EXPECT_THAT(actor->ReadStderr(), HasSubstr("episodic store"));

  for (Subprocess* child : {actor.get(), learner.get(), replay.get(), store.get()}) {
    absl::StatusOr<int> exit = child->Terminate(absl::Seconds(45));
    ASSERT_TRUE(exit.ok());
    EXPECT_EQ(*exit, 0) << child->ReadStderr();
  }
}

}  // namespace
}  // namespace engram
