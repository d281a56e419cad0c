// Operating a running cluster, as a user does: `engram local` in serve mode (the topology of
// docker-compose.yml: two replay shards, a learner taking experiments over RPC, pool actors
// and an evaluation actor), driven by the `engram` tool, and watched by a real Prometheus
// (Debian's package) that scrapes every process and answers every Grafana panel's query.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/server.h"
#include "common/subprocess.h"
#include "episodic_store/client.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/run_command.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kEngram = ENGRAM_BIN_DIR "/engram";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// A CartPole spec for this test: `frames` training frames; checkpoints in the experiment's
// directory when `checkpoints`.
std::string WriteSpec(const fs::path& dir, const std::string& name, int64_t frames,
                      bool checkpoints = false) {
  std::string spec =
      ReadFile(fs::path(ENGRAM_SOURCE_DIR) / "deploy/experiments/cartpole_apex.textproto");
  const size_t budget = spec.find("budget {");
  const size_t end = spec.find("\n}\n", budget);  // the block ends at a line "}"
  spec.replace(budget, end + 2 - budget, absl::StrCat("budget { total_frames: ", frames, " }"));
  if (checkpoints) spec += "\ncheckpoint { directory: \"checkpoints\" }\n";
  const fs::path path = dir / (name + ".textproto");
  std::ofstream(path) << spec;
  return path.string();
}

// GET http://127.0.0.1:port/target; the body, or "" on failure.
std::string HttpGet(int port, const std::string& target) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return "";
  }
  const std::string request =
      absl::StrCat("GET ", target, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[8192];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "%%%02X", c);
    }
  }
  return out;
}

// A free TCP port on loopback (bound, read back, released).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

class ClusterOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("cluster-ops-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // Six processes get consecutive metrics ports from a free one up.
    metrics_base_ = FreePort();
    absl::StatusOr<std::unique_ptr<Subprocess>> cluster = Subprocess::Start(
        {kEngram, "local", absl::StrCat("--run_dir=", (dir_ / "cluster").string()), "--shards=2",
         "--actors=2", absl::StrCat("--metrics_port_base=", metrics_base_)},
        (dir_ / "local.err").string(), /*own_process_group=*/true);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    absl::StatusOr<std::string> up = cluster_->WaitForLine("learner at ", absl::Seconds(60));
    ASSERT_TRUE(up.ok()) << up.status() << "\n" << cluster_->ReadStderr();
    server_ = std::string(absl::StripAsciiWhitespace(up->substr(0, up->find(','))));
    const size_t store = up->find("episodic store at ");
    ASSERT_NE(store, std::string::npos) << *up;
    const size_t from = store + std::string("episodic store at ").size();
    episodic_ = up->substr(from, up->find(';', from) - from);
  }

  void TearDown() override {
    if (prometheus_ != nullptr) (void)prometheus_->Terminate(absl::Seconds(10));
    if (cluster_ != nullptr) {
      absl::StatusOr<int> code = cluster_->Terminate(absl::Seconds(90));
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, 130) << "engram local stops the cluster on SIGTERM and reports it";
      for (const char* name : {"learner", "actor-0", "replay-1"}) {
        EXPECT_THAT(ReadFile(dir_ / "cluster" / "logs" / absl::StrCat(name, ".log")),
                    HasSubstr("stopped"))
            << name << " did not shut down cleanly";
      }
    }
  }

  CommandResult Engram(std::vector<std::string> args, absl::Duration timeout = absl::Seconds(30)) {
    args.insert(args.begin(), kEngram);
    args.push_back(absl::StrCat("--server=", server_));
    return RunCommand(args, timeout);
  }

  // Waits until `id` is RUNNING with frames counted.
  bool WaitRunning(const std::string& id) {
    for (absl::Time give_up = absl::Now() + absl::Seconds(60); absl::Now() < give_up;) {
      CommandResult status = Engram({"status", id, "--textproto"});
      if (absl::StrContains(status.output, "state: EXPERIMENT_STATE_RUNNING") &&
          absl::StrContains(status.output, "\nframes: ")) {  // text format omits zeros
        return true;
      }
      absl::SleepFor(absl::Milliseconds(500));
    }
    return false;
  }

  fs::path dir_;
  int metrics_base_ = 0;
  std::unique_ptr<Subprocess> cluster_;
  std::unique_ptr<Subprocess> prometheus_;
  std::string server_;
  std::string episodic_;  // the episodic store's host:port
};

TEST_F(ClusterOpsTest, SubmitWatchResultsAndCancelWithTheEngramTool) {
  // A spec with problems: each is named, nothing is queued.
  const fs::path bad = dir_ / "bad.textproto";
  std::ofstream(bad) << R"pb(
    environment { name: "classic/cartpole" }
    apex_dqn { torso: TORSO_MLP n_step: 0 }
    actors { num_actors: 1 envs_per_actor: 0 }
    budget { total_frames: 1000 }
  )pb";
  CommandResult rejected = Engram({"submit", bad.string()});
  EXPECT_EQ(rejected.exit_code, 2) << rejected.output;
  EXPECT_THAT(rejected.output, HasSubstr("apex_dqn.n_step: must be in [1, 100], got 0"));
  EXPECT_THAT(rejected.output, HasSubstr("actors.envs_per_actor"));
  CommandResult unknown = Engram({"status", "no-such-run"});
  EXPECT_EQ(unknown.exit_code, 3) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("no experiment \"no-such-run\""));
  CommandResult nowhere =
      RunCommand({kEngram, "list", "--server=127.0.0.1:1", "--timeout=2s"}, absl::Seconds(20));
  EXPECT_EQ(nowhere.exit_code, 4) << nowhere.output;
  EXPECT_THAT(nowhere.output, HasSubstr("cannot reach the learner"));

  // Submit and watch a short run to the end: the pool actors are assigned and train it.
  CommandResult watched = Engram({"submit", WriteSpec(dir_, "short", 20000, /*checkpoints=*/true),
                                  "--id=short", "--watch", "--interval=1s"},
                                 absl::Minutes(3));
  ASSERT_EQ(watched.exit_code, 0) << watched.output;
  EXPECT_THAT(watched.output, HasSubstr("submitted short"));
  EXPECT_THAT(watched.output, HasSubstr("RUNNING"));
  EXPECT_THAT(watched.output, HasSubstr("state            SUCCEEDED"));
  CommandResult again = Engram({"submit", WriteSpec(dir_, "short", 20000), "--id=short"});
  EXPECT_EQ(again.exit_code, 3) << again.output;  // the id is taken

  // Its results, byte for byte what the learner wrote.
  const fs::path results = dir_ / "results";
  CommandResult fetched =
      Engram({"results", "short", absl::StrCat("--out_dir=", results.string())});
  ASSERT_EQ(fetched.exit_code, 0) << fetched.output;
  for (const char* file : {"progress.csv", "evaluations.csv", "experiment.textproto"}) {
    const std::string served = ReadFile(results / file);
    EXPECT_FALSE(served.empty()) << file;
    EXPECT_EQ(served, ReadFile(dir_ / "cluster" / "short" / file)) << file;
  }
  EXPECT_THAT(ReadFile(results / "evaluations.csv"), HasSubstr("mean_return"));
  // The final checkpoint, from the experiment's own directory (a relative directory in the
  // spec is taken relative to it).
  std::vector<fs::path> checkpoints;
  for (const auto& entry : fs::directory_iterator(dir_ / "cluster" / "short" / "checkpoints")) {
    checkpoints.push_back(entry.path());
  }
  ASSERT_FALSE(checkpoints.empty());
  std::sort(checkpoints.begin(), checkpoints.end());
  const std::string model = ReadFile(results / "checkpoint" / "learner.pt");
  EXPECT_GT(model.size(), 1000u);
  EXPECT_EQ(model, ReadFile(checkpoints.back() / "learner.pt"));

  // A long run, cancelled while it trains; the actors go back to the pool.
  ASSERT_EQ(Engram({"submit", WriteSpec(dir_, "long", 50'000'000), "--id=long"}).exit_code, 0);
  ASSERT_TRUE(WaitRunning("long")) << Engram({"status", "long"}).output;
  CommandResult listed = Engram({"list", "--state=running"});
  EXPECT_EQ(listed.exit_code, 0);
  EXPECT_THAT(listed.output, HasSubstr("long"));
  EXPECT_THAT(listed.output, ::testing::Not(HasSubstr("short")));
  CommandResult cancel = Engram({"cancel", "long", "--reason=test"});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.output;
  CommandResult ended = Engram({"status", "long", "--watch", "--interval=1s"}, absl::Minutes(2));
  EXPECT_EQ(ended.exit_code, 5) << ended.output;  // CANCELLED
  EXPECT_THAT(ended.output, HasSubstr("cancelled: test"));
  // The actors hear it at their next report (about a second).
  const fs::path actor_log = dir_ / "cluster" / "logs" / "actor-1.log";
  for (absl::Time give_up = absl::Now() + absl::Seconds(15);
       absl::Now() < give_up && !absl::StrContains(ReadFile(actor_log), "\"long\" is over");) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_THAT(ReadFile(actor_log), HasSubstr("experiment \"long\" is over"));
}

TEST_F(ClusterOpsTest, PrometheusAnswersEveryDashboardQuery) {
  if (!fs::exists("/usr/bin/prometheus")) {
    GTEST_SKIP() << "Debian's prometheus package is not installed (scripts/install_deps.sh "
                    "installs it)";
  }
  const int port = FreePort();
  const fs::path config = dir_ / "prometheus.yml";
  std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                        << "scrape_configs:\n  - job_name: engram\n    file_sd_configs:\n"
                        << "      - files: ['"
                        << (dir_ / "cluster" / "prometheus_targets.json").string()
                        << "']\n        refresh_interval: 1s\n";
  absl::StatusOr<std::unique_ptr<Subprocess>> prometheus =
      Subprocess::Start({"/usr/bin/prometheus", absl::StrCat("--config.file=", config.string()),
                         absl::StrCat("--storage.tsdb.path=", (dir_ / "tsdb").string()),
                         absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                        (dir_ / "prometheus.log").string());
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();
  prometheus_ = *std::move(prometheus);

  ASSERT_EQ(Engram({"submit", WriteSpec(dir_, "long", 50'000'000), "--id=watched"}).exit_code, 0);
  ASSERT_TRUE(WaitRunning("watched"));
  // The episodic store's panels need a memory with keys and some lookups.
  {
    auto channel = CreateChannel(episodic_, ChannelOptions());
    ASSERT_TRUE(channel.ok());
    v1::MemorySpec spec;
    spec.set_name("panels");
    spec.set_key_dim(4);
    spec.set_num_actions(2);
    spec.set_capacity_per_action(100);
    spec.set_update_rule(v1::UPDATE_RULE_MFEC_MAX);
    spec.set_kernel(v1::KERNEL_MEAN);
    spec.set_index(v1::INDEX_KIND_APPROXIMATE);
    auto client = episodic::EpisodicClient::Connect(*channel, {.spec = spec, .write_batch = 8});
    ASSERT_TRUE(client.ok()) << client.status();
    for (int i = 0; i < 8; ++i) {
      const std::vector<float> key = {static_cast<float>(i), 0, 1, 2};
      ASSERT_TRUE((*client)->Write(key.data(), i % 2, static_cast<float>(i)).ok());
    }
    const std::vector<float> query = {1, 0, 1, 2};
    for (int i = 0; i < 20; ++i) ASSERT_TRUE((*client)->LookupAll(query.data(), 1, 3).ok());
  }
  EXPECT_EQ(Engram({"status", "not-there"}).exit_code, 3);  // a NOT_FOUND for the errors panel

  // Every panel's query, from the dashboard Grafana is provisioned with.
  google::protobuf::Struct dashboard;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  ReadFile(fs::path(ENGRAM_SOURCE_DIR) / "deploy/grafana/dashboards/engram.json"),
                  &dashboard)
                  .ok());
  std::vector<std::pair<std::string, std::string>> queries;  // panel title, expr
  for (const google::protobuf::Value& panel :
       dashboard.fields().at("panels").list_value().values()) {
    const auto& fields = panel.struct_value().fields();
    if (!fields.contains("targets")) continue;
    for (const google::protobuf::Value& target : fields.at("targets").list_value().values()) {
      queries.emplace_back(fields.at("title").string_value(),
                           target.struct_value().fields().at("expr").string_value());
    }
  }
  ASSERT_GE(queries.size(), 12u);

  // Rates need two scrapes inside their window: wait until every query has data (or give
  // up after a minute and report the ones that have none).
  std::vector<std::string> empty;
  for (absl::Time give_up = absl::Now() + absl::Seconds(60); absl::Now() < give_up;) {
    empty.clear();
    for (const auto& [title, expr] : queries) {
      const std::string body = HttpGet(port, "/api/v1/query?query=" + UrlEncode(expr));
      google::protobuf::Struct answer;
      if (body.empty() || !google::protobuf::util::JsonStringToMessage(body, &answer).ok() ||
          answer.fields().at("status").string_value() != "success" ||
          answer.fields()
                  .at("data")
                  .struct_value()
                  .fields()
                  .at("result")
                  .list_value()
                  .values_size() == 0) {
        empty.push_back(absl::StrCat(title, ": ", expr, " -> ", body.substr(0, 200)));
      }
    }
    if (empty.empty()) break;
    absl::SleepFor(absl::Seconds(2));
  }
  EXPECT_TRUE(empty.empty()) << "panels without data:\n" << absl::StrJoin(empty, "\n");

  // Every process is scraped and up.
  google::protobuf::Struct up;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  HttpGet(port, "/api/v1/query?query=" + UrlEncode("sum(up)")), &up)
                  .ok());
  const auto& result = up.fields().at("data").struct_value().fields().at("result").list_value();
  ASSERT_EQ(result.values_size(), 1);
  double processes = 0;
  ASSERT_TRUE(absl::SimpleAtod(
      result.values(0).struct_value().fields().at("value").list_value().values(1).string_value(),
      &processes));
  EXPECT_EQ(processes, 7)
      << "2 replay shards, the episodic store, the learner, 2 actors, the evaluation actor";
  EXPECT_EQ(Engram({"cancel", "watched"}).exit_code, 0);
}

}  // namespace
}  // namespace engram
