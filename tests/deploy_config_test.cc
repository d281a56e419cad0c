// Structural checks of the cluster definitions, with no Docker engine and no cluster: the
// compose file validates with docker-compose; every container command parses with the
// binaries built from this tree (--only_check_args); addresses, ports, probes and scrape
// targets agree between the services; the Kubernetes manifests are well formed; the Grafana
// dashboard covers the required topics with the provisioned data source.
//
// ENGRAM_SOURCE_DIR names the repository root and ENGRAM_BIN_DIR the directory of the
// binaries (compiled in by CMake; environment variables of the same names override them).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/run_command.h"
#include "yaml-cpp/yaml.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

// The compose services and Kubernetes workloads every cluster definition must have.
const std::vector<std::string> kComposeEngramServices = {"replay-0", "replay-1", "episodic-store",
                                                         "learner",  "actor",    "evaluator"};
const std::vector<std::string> kK8sEngramWorkloads = {
    "StatefulSet/replay", "StatefulSet/episodic-store", "StatefulSet/learner", "Deployment/actor",
    "Deployment/evaluator"};
// The flags naming a directory a server keeps its state in: it must be on a volume.
constexpr const char* kStateDirFlags[] = {"checkpoint_dir", "snapshot_dir", "runs_dir"};
constexpr char kMetricsPort[] = "9100";

// ---- helpers ---------------------------------------------------------------------------

// The full path of `name` on PATH, or "" when it is not there.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    const fs::path candidate = fs::path(std::string(dir)) / name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// ---- reading YAML and flags ------------------------------------------------------------

// node[key1][key2]...; an undefined node when a key on the way is missing or a node on the way
// is not a map (yaml-cpp throws when a missing key's node is indexed further).
YAML::Node At(const YAML::Node& node, std::initializer_list<std::string> keys) {
  YAML::Node current(node);
  for (const std::string& key : keys) {
    if (!current.IsDefined() || !current.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node next = static_cast<const YAML::Node&>(current)[key];
    if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    current.reset(next);  // not `=`: that would overwrite the node `current` refers to
  }
  return current;
}

bool IsMap(const YAML::Node& node) { return node.IsDefined() && node.IsMap(); }
bool IsSequence(const YAML::Node& node) { return node.IsDefined() && node.IsSequence(); }

// A scalar's text; "" for anything else (missing, a map, a list).
std::string Str(const YAML::Node& node) {
  return node.IsDefined() && node.IsScalar() ? node.Scalar() : "";
}

// A scalar's integer value; -1 for anything else.
int Int(const YAML::Node& node) {
  int value = -1;
  return absl::SimpleAtoi(Str(node), &value) ? value : -1;
}

// A list of scalars (what compose and Kubernetes take as a command); {} when `node` is not a
// list, e.g. a command given as one shell string.
std::vector<std::string> Strings(const YAML::Node& node) {
  std::vector<std::string> out;
  if (!node.IsDefined() || !node.IsSequence()) return out;
  for (const YAML::Node& item : node) out.push_back(Str(item));
  return out;
}

// The value of `--name=value` in a command; nullopt when the flag is absent.
std::optional<std::string> Flag(const std::vector<std::string>& command, absl::string_view name) {
  const std::string prefix = absl::StrCat("--", name, "=");
  for (const std::string& arg : command) {
    if (absl::StartsWith(arg, prefix)) return arg.substr(prefix.size());
  }
  return std::nullopt;
}

bool HasArg(const std::vector<std::string>& command, absl::string_view arg) {
  for (const std::string& a : command) {
    if (a == arg) return true;
  }
  return false;
}

struct HostPort {
  std::string host;
  int port = -1;
};

// "host:port" split at the last colon; port -1 when there is none or it is not a number.
HostPort SplitHostPort(absl::string_view address) {
  HostPort out;
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return out;
  out.host = std::string(address.substr(0, colon));
  if (!absl::SimpleAtoi(address.substr(colon + 1), &out.port)) out.port = -1;
  return out;
}

std::vector<std::string> SplitList(absl::string_view list) {
  return absl::StrSplit(list, ',', absl::SkipEmpty());
}

bool IsEngramImage(const std::string& image) {
  return image == "engram" || absl::StartsWith(image, "engram:");
}

// Whether `expr` uses the metric `name` (a whole identifier, not part of a longer one).
bool UsesMetric(absl::string_view expr, absl::string_view name) {
  auto is_name_char = [](char c) { return absl::ascii_isalnum(c) || c == '_' || c == ':'; };
  for (size_t pos = expr.find(name); pos != absl::string_view::npos;
       pos = expr.find(name, pos + 1)) {
    const size_t end = pos + name.size();
    if ((pos == 0 || !is_name_char(expr[pos - 1])) &&
        (end == expr.size() || !is_name_char(expr[end]))) {
      return true;
    }
  }
  return false;
}

// ---- Kubernetes objects ----------------------------------------------------------------

struct K8sObject {
  std::string file;  // file name within deploy/k8s
  YAML::Node node;
};

// One container of a Deployment or StatefulSet.
struct K8sContainer {
  std::string workload;  // "StatefulSet/replay"
  YAML::Node workload_node;
  YAML::Node container;
  std::vector<std::string> command;
  std::map<std::string, int> ports_by_name;
  std::set<int> ports;
};

std::vector<K8sContainer> Containers(const std::vector<K8sObject>& objects) {
  std::vector<K8sContainer> out;
  for (const K8sObject& object : objects) {
    const std::string kind = Str(object.node["kind"]);
    if (kind != "Deployment" && kind != "StatefulSet") continue;
    for (const YAML::Node& container :
         At(object.node, {"spec", "template", "spec", "containers"})) {
      K8sContainer c;
      c.workload = absl::StrCat(kind, "/", Str(At(object.node, {"metadata", "name"})));
      // reset(), not `=`, for yaml-cpp nodes throughout: `=` assigns into the node referred to.
      c.workload_node.reset(object.node);
      c.container.reset(container);
      c.command = Strings(container["command"]);
      for (const YAML::Node& port : container["ports"]) {
        c.ports.insert(Int(port["containerPort"]));
        if (port["name"]) c.ports_by_name[Str(port["name"])] = Int(port["containerPort"]);
      }
      out.push_back(std::move(c));
    }
  }
  return out;
}

// A probe's port: grpc.port, or httpGet/tcpSocket port (a number or a container port name).
int ProbePort(const K8sContainer& c, const YAML::Node& probe) {
  if (probe["grpc"]) return Int(At(probe, {"grpc", "port"}));
  for (const char* handler : {"httpGet", "tcpSocket"}) {
    if (!probe[handler]) continue;
    const std::string port = Str(At(probe, {handler, "port"}));
    int number = -1;
    if (absl::SimpleAtoi(port, &number)) return number;
    auto it = c.ports_by_name.find(port);
    return it == c.ports_by_name.end() ? -1 : it->second;
  }
  return -1;
}

// ---- JSON (google.protobuf.Struct) -----------------------------------------------------

const Value* Field(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? nullptr : &it->second;
}

std::string StringField(const Struct& s, const std::string& key) {
  const Value* v = Field(s, key);
  return v != nullptr && v->kind_case() == Value::kStringValue ? v->string_value() : "";
}

// Every panel, those inside (collapsed) rows included, rows themselves excluded.
void CollectPanels(const Struct& parent, std::vector<const Struct*>* panels) {
  const Value* list = Field(parent, "panels");
  if (list == nullptr || list->kind_case() != Value::kListValue) return;
  for (const Value& v : list->list_value().values()) {
    if (v.kind_case() != Value::kStructValue) continue;
    if (StringField(v.struct_value(), "type") != "row") panels->push_back(&v.struct_value());
    CollectPanels(v.struct_value(), panels);
  }
}

// The uid of every "datasource": {..., "uid": ...} anywhere in the JSON.
void CollectDatasourceUids(const Value& value, std::vector<std::string>* uids) {
  if (value.kind_case() == Value::kListValue) {
    for (const Value& v : value.list_value().values()) CollectDatasourceUids(v, uids);
  } else if (value.kind_case() == Value::kStructValue) {
    for (const auto& [key, v] : value.struct_value().fields()) {
      if (key == "datasource" && v.kind_case() == Value::kStructValue) {
        uids->push_back(StringField(v.struct_value(), "uid"));
      }
      CollectDatasourceUids(v, uids);
    }
  }
}

// ---- the fixture -----------------------------------------------------------------------

class DeployConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* root = std::getenv("ENGRAM_SOURCE_DIR");
    const char* bin_dir = std::getenv("ENGRAM_BIN_DIR");
    if (root == nullptr || *root == '\0') root = ENGRAM_SOURCE_DIR;
    if (bin_dir == nullptr || *bin_dir == '\0') bin_dir = ENGRAM_BIN_DIR;
    root_ = root;
    bin_dir_ = bin_dir;
    ASSERT_TRUE(fs::exists(root_ / "docker-compose.yml")) << root_;
  }

  YAML::Node Compose() const { return YAML::LoadFile((root_ / "docker-compose.yml").string()); }

  // name -> service, for the services that run the engram image.
  std::map<std::string, YAML::Node> EngramServices() const {
    std::map<std::string, YAML::Node> out;
    for (const auto& entry : Compose()["services"]) {
      if (IsEngramImage(Str(entry.second["image"]))) out.emplace(Str(entry.first), entry.second);
    }
    return out;
  }

  // Every object of every manifest in deploy/k8s (kustomization.yaml excluded).
  std::vector<K8sObject> K8sObjects() const {
    std::vector<K8sObject> out;
    for (const std::string& file : K8sFiles()) {
      if (file == "kustomization.yaml") continue;
      for (const YAML::Node& doc : YAML::LoadAllFromFile((root_ / "deploy/k8s" / file).string())) {
        if (doc.IsNull()) continue;  // an empty document, e.g. after a trailing "---"
        out.push_back({file, doc});
      }
    }
    return out;
  }

  std::set<std::string> K8sFiles() const {
    std::set<std::string> files;
    for (const auto& entry : fs::directory_iterator(root_ / "deploy/k8s")) {
      const std::string ext = entry.path().extension().string();
      if (ext == ".yaml" || ext == ".yml") files.insert(entry.path().filename().string());
    }
    return files;
  }

  // The binary a command starts exists in ENGRAM_BIN_DIR, and its flags parse there.
  void ExpectFlagsParse(const std::vector<std::string>& command) {
    ASSERT_FALSE(command.empty()) << "no command (it must be a YAML list)";
    SCOPED_TRACE(absl::StrJoin(command, " "));
    EXPECT_EQ(command[0].find('/'), std::string::npos)
        << "the binary is named, not given as a path: the image has them on PATH";
    const fs::path binary = bin_dir_ / command[0];
    ASSERT_TRUE(fs::exists(binary)) << binary << " does not exist";
    std::vector<std::string> argv = command;
    argv[0] = binary.string();
    argv.push_back("--only_check_args");
    const CommandResult result = RunCommand(argv);
    EXPECT_EQ(result.exit_code, 0) << result.output;
  }

  fs::path root_;
  fs::path bin_dir_;
};

// ---- docker-compose --------------------------------------------------------------------

TEST_F(DeployConfigTest, ComposeFileValidatesWithDockerCompose) {
  const std::string docker_compose = FindOnPath("docker-compose");
  if (docker_compose.empty()) GTEST_SKIP() << "docker-compose is not on PATH";
  const std::string compose = (root_ / "docker-compose.yml").string();
  CommandResult result = RunCommand({docker_compose, "-f", compose, "config", "-q"});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // With the GPU override on top.
  result = RunCommand({docker_compose, "-f", compose, "-f",
                       (root_ / "docker-compose.gpu.yml").string(), "config", "-q"});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // The override reserves a GPU for the learner.
  const YAML::Node gpu = YAML::LoadFile((root_ / "docker-compose.gpu.yml").string());
  const YAML::Node devices =
      At(gpu, {"services", "learner", "deploy", "resources", "reservations", "devices"});
  ASSERT_TRUE(IsSequence(devices));
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(Str(devices[0]["driver"]), "nvidia");
  EXPECT_THAT(Strings(devices[0]["capabilities"]), Contains("gpu"));
}

TEST_F(DeployConfigTest, ComposeCommandsParseWithTheBuiltBinaries) {
  const std::map<std::string, YAML::Node> services = EngramServices();
  ASSERT_FALSE(services.empty()) << "no service runs image engram:latest";
  int health_commands = 0;
  for (const auto& [name, service] : services) {
    SCOPED_TRACE(absl::StrCat("compose service ", name));
    ExpectFlagsParse(Strings(service["command"]));
    const std::vector<std::string> test = Strings(At(service, {"healthcheck", "test"}));
    ASSERT_GE(test.size(), 2u) << "no healthcheck";
    EXPECT_EQ(test[0], "CMD");
    if (test[1] == "engram") {
      ExpectFlagsParse(std::vector<std::string>(test.begin() + 1, test.end()));
      ++health_commands;
    }
  }
  EXPECT_GE(health_commands, 4)
      << "replay-0, replay-1, the episodic store and the learner check grpc health";
}

TEST_F(DeployConfigTest, ComposeAddressesPortsAndScrapeTargetsAgree) {
  const YAML::Node compose = Compose();
  const std::map<std::string, YAML::Node> services = EngramServices();
  std::vector<std::string> names;
  for (const auto& entry : services) names.push_back(entry.first);
  ASSERT_THAT(names, IsSupersetOf(kComposeEngramServices));

  // What each service listens on (its --address) and which shard it is.
  std::map<std::string, int> listen_port;
  std::map<std::string, int> shard_index;
  for (const auto& [name, service] : services) {
    const std::vector<std::string> command = Strings(service["command"]);
    if (std::optional<std::string> address = Flag(command, "address")) {
      const HostPort hp = SplitHostPort(*address);
      EXPECT_EQ(hp.host, "0.0.0.0") << name << ": other containers must reach it";
      EXPECT_GT(hp.port, 0) << name << ": --address=" << *address;
      listen_port[name] = hp.port;
    }
    if (std::optional<std::string> shard = Flag(command, "shard_index")) {
      int index = -1;
      EXPECT_TRUE(absl::SimpleAtoi(*shard, &index)) << name;
      shard_index[name] = index;
    }
  }
  ASSERT_EQ(shard_index.size(), 2u) << "two replay shards";

  for (const auto& [name, service] : services) {
    SCOPED_TRACE(absl::StrCat("compose service ", name));
    const std::vector<std::string> command = Strings(service["command"]);
    EXPECT_EQ(Flag(command, "metrics_port"), kMetricsPort);
    EXPECT_EQ(Str(service["restart"]), "unless-stopped");
    absl::Duration grace;
    EXPECT_TRUE(absl::ParseDuration(Str(service["stop_grace_period"]), &grace));
    EXPECT_GE(grace, absl::Seconds(60)) << "time for the final checkpoint";

    // Checkpoints, snapshots and runs outlive the container: a volume is mounted there.
    for (const char* flag : kStateDirFlags) {
      const std::optional<std::string> dir = Flag(command, flag);
      if (!dir) continue;
      bool mounted = false;
      for (const std::string& volume : Strings(service["volumes"])) {
        const std::vector<std::string> parts = absl::StrSplit(volume, ':');
        mounted |= parts.size() >= 2 && parts[1] == *dir;
      }
      EXPECT_TRUE(mounted) << "--" << flag << "=" << *dir << " is on no volume";
    }

    // Every address names a service listening on that port; the services it talks to
    // start first and are healthy.
    for (const char* flag : {"replay_addresses", "learner_address"}) {
      const std::optional<std::string> value = Flag(command, flag);
      if (!value) continue;
      const std::vector<std::string> addresses = SplitList(*value);
      for (size_t i = 0; i < addresses.size(); ++i) {
        const HostPort hp = SplitHostPort(addresses[i]);
        auto it = listen_port.find(hp.host);
        ASSERT_NE(it, listen_port.end())
            << "--" << flag << ": " << addresses[i] << " names no service with --address";
        EXPECT_EQ(hp.port, it->second) << "--" << flag << ": " << addresses[i];
        EXPECT_EQ(Str(At(service, {"depends_on", hp.host, "condition"})), "service_healthy")
            << "depends_on " << hp.host;
        if (std::string(flag) == "replay_addresses") {
          auto shard = shard_index.find(hp.host);
          EXPECT_TRUE(shard != shard_index.end() && shard->second == static_cast<int>(i))
              << addresses[i] << " is entry " << i << " of --replay_addresses: it must be the "
              << "service started with --shard_index=" << i;
        }
      }
      if (std::string(flag) == "replay_addresses") {
        EXPECT_EQ(addresses.size(), shard_index.size()) << "every shard, once";
      }
    }

    // Servers: grpc health on their own port. Actors (no gRPC server): the metrics port.
    const std::vector<std::string> test = Strings(At(service, {"healthcheck", "test"}));
    ASSERT_GE(test.size(), 3u) << "no healthcheck";
    auto listens = listen_port.find(name);
    if (listens != listen_port.end()) {
      EXPECT_EQ(test[1], "engram");
      EXPECT_EQ(test[2], "health");
      const HostPort hp = SplitHostPort(Flag(test, "address").value_or(""));
      EXPECT_THAT(hp.host, ::testing::AnyOf("localhost", "127.0.0.1"));
      EXPECT_EQ(hp.port, listens->second) << absl::StrJoin(test, " ");
    } else {
      EXPECT_THAT(absl::StrJoin(test, " "),
                  HasSubstr(absl::StrCat("/dev/tcp/127.0.0.1/", kMetricsPort)));
    }
  }

  // The actors scale: replicas, no fixed name, no host ports.
  const YAML::Node& actor = services.at("actor");
  EXPECT_EQ(Int(At(actor, {"deploy", "replicas"})), 4);
  EXPECT_FALSE(actor["container_name"]) << "a fixed name prevents --scale";
  EXPECT_FALSE(actor["ports"]) << "fixed host ports prevent --scale";
  EXPECT_EQ(Flag(Strings(services.at("evaluator")["command"]), "role"), "evaluation");
  // The episodic store keeps snapshots, and the actors (of episodic-control experiments) start
  // once it is healthy.
  const std::vector<std::string> episodic = Strings(services.at("episodic-store")["command"]);
  EXPECT_EQ(episodic.empty() ? "" : episodic[0], "engram_episodic_store");
  EXPECT_TRUE(Flag(episodic, "snapshot_dir").has_value());
  for (const char* name : {"actor", "evaluator"}) {
    EXPECT_EQ(Str(At(services.at(name), {"depends_on", "episodic-store", "condition"})),
              "service_healthy")
        << name << " depends_on episodic-store";
  }
  // The CLI reaches the learner from the host.
  const int learner_port = listen_port["learner"];
  EXPECT_THAT(Strings(services.at("learner")["ports"]),
              Contains(absl::StrCat(learner_port, ":", learner_port)));
  EXPECT_THAT(Strings(At(compose, {"services", "prometheus", "ports"})), Contains("9090:9090"));
  EXPECT_THAT(Strings(At(compose, {"services", "grafana", "ports"})), Contains("3000:3000"));

  // Prometheus resolves every engram service by DNS, on the metrics port.
  const YAML::Node prometheus =
      YAML::LoadFile((root_ / "deploy/prometheus/prometheus.yml").string());
  std::map<std::string, int> dns_port;
  for (const YAML::Node& job : prometheus["scrape_configs"]) {
    for (const YAML::Node& sd : job["dns_sd_configs"]) {
      EXPECT_EQ(Str(sd["type"]), "A") << Str(job["job_name"]);
      for (const YAML::Node& dns_name : sd["names"]) dns_port[Str(dns_name)] = Int(sd["port"]);
    }
  }
  for (const auto& entry : services) {
    auto it = dns_port.find(entry.first);
    ASSERT_NE(it, dns_port.end()) << "prometheus.yml does not scrape " << entry.first;
    EXPECT_EQ(absl::StrCat(it->second), kMetricsPort) << entry.first;
  }
  for (const auto& entry : dns_port) {
    EXPECT_TRUE(services.count(entry.first))
        << "prometheus.yml scrapes " << entry.first << ", which is no engram service";
  }
}

// ---- Grafana ---------------------------------------------------------------------------

TEST_F(DeployConfigTest, DashboardCoversTheTopicsWithTheProvisionedDataSource) {
  // The provisioned data source: its uid, and a URL naming the compose service.
  const YAML::Node datasources =
      YAML::LoadFile((root_ / "deploy/grafana/provisioning/datasources/prometheus.yml").string());
  ASSERT_TRUE(IsSequence(datasources["datasources"]));
  ASSERT_EQ(datasources["datasources"].size(), 1u);
  const YAML::Node datasource = datasources["datasources"][0];
  EXPECT_EQ(Str(datasource["type"]), "prometheus");
  const std::string uid = Str(datasource["uid"]);
  ASSERT_FALSE(uid.empty());
  const YAML::Node compose = Compose();
  const std::string url = Str(datasource["url"]);
  ASSERT_TRUE(absl::StartsWith(url, "http://")) << url;
  const HostPort prometheus = SplitHostPort(absl::string_view(url).substr(7));
  EXPECT_TRUE(At(compose, {"services", prometheus.host})) << url << " names no compose service";
  EXPECT_EQ(prometheus.port, 9090) << url;

  // The dashboard provider reads the folder compose mounts deploy/grafana/dashboards on.
  const YAML::Node providers =
      YAML::LoadFile((root_ / "deploy/grafana/provisioning/dashboards/engram.yml").string());
  ASSERT_TRUE(IsSequence(providers["providers"]));
  ASSERT_EQ(providers["providers"].size(), 1u);
  const std::string path = Str(At(providers["providers"][0], {"options", "path"}));
  EXPECT_EQ(Str(providers["providers"][0]["type"]), "file");
  const std::vector<std::string> volumes = Strings(At(compose, {"services", "grafana", "volumes"}));
  EXPECT_THAT(volumes, Contains(absl::StrCat("./deploy/grafana/dashboards:", path, ":ro")));
  EXPECT_THAT(volumes, Contains("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro"));

  std::ifstream in(root_ / "deploy/grafana/dashboards/engram.json");
  ASSERT_TRUE(in.good());
  const std::string json(std::istreambuf_iterator<char>(in), {});
  Struct dashboard;
  const auto parsed = google::protobuf::util::JsonStringToMessage(json, &dashboard);
  ASSERT_TRUE(parsed.ok()) << parsed.ToString();
  EXPECT_FALSE(StringField(dashboard, "uid").empty());
  EXPECT_FALSE(StringField(dashboard, "title").empty());

  std::vector<const Struct*> panels;
  CollectPanels(dashboard, &panels);
  ASSERT_FALSE(panels.empty());
  std::vector<std::string> titles;
  std::vector<std::string> exprs;
  std::set<double> ids;
  for (const Struct* panel : panels) {
    const std::string title = StringField(*panel, "title");
    SCOPED_TRACE(absl::StrCat("panel \"", title, "\""));
    EXPECT_FALSE(title.empty());
    titles.push_back(absl::AsciiStrToLower(title));
    const Value* id = Field(*panel, "id");
    ASSERT_NE(id, nullptr);
    EXPECT_TRUE(ids.insert(id->number_value()).second) << "duplicate panel id";
    const Value* targets = Field(*panel, "targets");
    ASSERT_TRUE(targets != nullptr && targets->kind_case() == Value::kListValue &&
                targets->list_value().values_size() > 0)
        << "no targets";
    std::set<std::string> ref_ids;
    for (const Value& target : targets->list_value().values()) {
      ASSERT_EQ(target.kind_case(), Value::kStructValue);
      const std::string expr = StringField(target.struct_value(), "expr");
      EXPECT_FALSE(expr.empty());
      const std::string ref_id = StringField(target.struct_value(), "refId");
      EXPECT_FALSE(ref_id.empty());
      EXPECT_TRUE(ref_ids.insert(ref_id).second) << "duplicate refId " << ref_id;
      EXPECT_FALSE(StringField(target.struct_value(), "legendFormat").empty()) << expr;
      exprs.push_back(expr);
    }
  }

  // Every data source reference is the provisioned one, and every panel has one.
  Value root;
  *root.mutable_struct_value() = dashboard;
  std::vector<std::string> uids;
  CollectDatasourceUids(root, &uids);
  EXPECT_GE(uids.size(), panels.size());
  for (const std::string& u : uids) EXPECT_EQ(u, uid);

  for (const char* topic : {"frames", "updates", "return", "loss", "replay size", "evictions",
                            "rate limiter", "latency", "rpc errors", "policy lag", "up"}) {
    const bool covered = std::any_of(titles.begin(), titles.end(), [&](const std::string& t) {
      // "up" as a word: "updates" does not count.
      if (std::string(topic) == "up") return UsesMetric(t, "up");
      return absl::StrContains(t, topic);
    });
    EXPECT_TRUE(covered) << "no panel title mentions \"" << topic
                         << "\"; titles: " << absl::StrJoin(titles, ", ");
  }
  for (const char* metric :
       {"engram_actor_frames_total", "engram_learner_updates_total", "engram_replay_inserts_total",
        "engram_replay_samples_total", "engram_learner_train_return", "engram_learner_eval_return",
        "engram_learner_loss", "engram_replay_items", "engram_replay_removals_total",
        "engram_replay_rate_limiter_blocked_seconds_total",
        "engram_replay_sample_latency_seconds_bucket",
        "engram_replay_insert_latency_seconds_bucket", "engram_rpc_server_handled_total",
        "engram_learner_policy_lag_versions", "engram_learner_parameter_version", "up",
        "engram_build_info"}) {
    const bool used = std::any_of(exprs.begin(), exprs.end(),
                                  [&](const std::string& e) { return UsesMetric(e, metric); });
    EXPECT_TRUE(used) << "no panel queries " << metric;
  }
  // Counters and histogram buckets are only meaningful as rates.
  for (const std::string& expr : exprs) {
    if (absl::StrContains(expr, "_total") || absl::StrContains(expr, "_bucket")) {
      EXPECT_THAT(expr, HasSubstr("rate(")) << "a raw counter";
    }
  }
}

// ---- Kubernetes ------------------------------------------------------------------------

TEST_F(DeployConfigTest, K8sManifestsAreWellFormed) {
  // kustomization.yaml lists every manifest of the folder, and only those.
  const std::set<std::string> files = K8sFiles();
  ASSERT_TRUE(files.count("kustomization.yaml"));
  const YAML::Node kustomization =
      YAML::LoadFile((root_ / "deploy/k8s/kustomization.yaml").string());
  EXPECT_EQ(Str(kustomization["kind"]), "Kustomization");
  const std::vector<std::string> resources = Strings(kustomization["resources"]);
  std::set<std::string> expected = files;
  expected.erase("kustomization.yaml");
  EXPECT_EQ(std::set<std::string>(resources.begin(), resources.end()), expected);
  EXPECT_EQ(resources.size(), expected.size()) << "a file listed twice";

  const std::vector<K8sObject> objects = K8sObjects();
  std::map<std::string, YAML::Node> services;  // name -> Service
  bool has_namespace = false;
  for (const K8sObject& object : objects) {
    const YAML::Node& node = object.node;
    const std::string kind = Str(node["kind"]);
    const std::string name = Str(At(node, {"metadata", "name"}));
    SCOPED_TRACE(absl::StrCat(object.file, ": ", kind, "/", name));
    EXPECT_FALSE(Str(node["apiVersion"]).empty());
    EXPECT_FALSE(kind.empty());
    EXPECT_FALSE(name.empty());
    if (kind == "Namespace") {
      EXPECT_EQ(name, "engram");
      has_namespace = true;
    } else {
      EXPECT_EQ(Str(At(node, {"metadata", "namespace"})), "engram");
    }
    if (kind == "Service") services.emplace(name, node);
  }
  EXPECT_TRUE(has_namespace);

  std::set<std::string> workloads;
  for (const K8sObject& object : objects) {
    const YAML::Node& node = object.node;
    const std::string kind = Str(node["kind"]);
    if (kind != "Deployment" && kind != "StatefulSet") continue;
    const std::string name = Str(At(node, {"metadata", "name"}));
    workloads.insert(absl::StrCat(kind, "/", name));
    SCOPED_TRACE(absl::StrCat(object.file, ": ", kind, "/", name));
    const YAML::Node spec = At(node, {"spec"});
    const YAML::Node labels = At(spec, {"template", "metadata", "labels"});
    ASSERT_TRUE(IsMap(At(spec, {"selector", "matchLabels"})));
    EXPECT_GT(At(spec, {"selector", "matchLabels"}).size(), 0u);
    for (const auto& label : At(spec, {"selector", "matchLabels"})) {
      EXPECT_EQ(Str(labels[Str(label.first)]), Str(label.second))
          << "selector label " << Str(label.first) << " is not on the pod template";
    }
    if (kind == "StatefulSet") {
      const std::string service_name = Str(spec["serviceName"]);
      auto it = services.find(service_name);
      ASSERT_NE(it, services.end()) << "serviceName " << service_name << " names no Service";
      EXPECT_EQ(Str(At(it->second, {"spec", "clusterIP"})), "None") << "not headless";
      for (const auto& label : At(it->second, {"spec", "selector"})) {
        EXPECT_EQ(Str(labels[Str(label.first)]), Str(label.second))
            << "the Service's selector does not select the pods";
      }
      // Each claim template is mounted.
      ASSERT_TRUE(IsSequence(spec["volumeClaimTemplates"]));
      for (const YAML::Node& claim : spec["volumeClaimTemplates"]) {
        const std::string claim_name = Str(At(claim, {"metadata", "name"}));
        bool mounted = false;
        for (const YAML::Node& container : At(spec, {"template", "spec", "containers"})) {
          for (const YAML::Node& mount : container["volumeMounts"]) {
            mounted |= Str(mount["name"]) == claim_name;
          }
        }
        EXPECT_TRUE(mounted) << "volume claim " << claim_name << " is not mounted";
      }
    }
  }
  EXPECT_THAT(workloads, IsSupersetOf(kK8sEngramWorkloads));

  for (const K8sContainer& c : Containers(objects)) {
    SCOPED_TRACE(absl::StrCat(c.workload, " container ", Str(c.container["name"])));
    EXPECT_TRUE(IsMap(At(c.container, {"resources", "requests"}))) << "no resource requests";
    for (const char* probe : {"readinessProbe", "livenessProbe"}) {
      ASSERT_TRUE(IsMap(At(c.container, {probe}))) << "no " << probe;
      const int port = ProbePort(c, At(c.container, {probe}));
      EXPECT_TRUE(c.ports.count(port)) << probe << " port " << port << " is no containerPort";
    }
  }

  // The scrape config: pods of the namespace with the annotation.
  const YAML::Node* config_map = nullptr;
  for (const K8sObject& object : objects) {
    if (Str(object.node["kind"]) == "ConfigMap" &&
        Str(At(object.node, {"metadata", "name"})) == "prometheus-config") {
      config_map = &object.node;
    }
  }
  ASSERT_NE(config_map, nullptr) << "no ConfigMap prometheus-config";
  const YAML::Node prometheus = YAML::Load(Str(At((*config_map), {"data", "prometheus.yml"})));
  bool pod_discovery = false;
  bool keeps_annotated = false;
  for (const YAML::Node& job : prometheus["scrape_configs"]) {
    for (const YAML::Node& sd : job["kubernetes_sd_configs"]) {
      pod_discovery |= Str(sd["role"]) == "pod" && Strings(At(sd, {"namespaces", "names"})) ==
                                                       std::vector<std::string>{"engram"};
    }
    for (const YAML::Node& relabel : job["relabel_configs"]) {
      keeps_annotated |=
          Str(relabel["action"]) == "keep" && Str(relabel["regex"]) == "true" &&
          Strings(relabel["source_labels"]) ==
              std::vector<std::string>{"__meta_kubernetes_pod_annotation_prometheus_io_scrape"};
    }
  }
  EXPECT_TRUE(pod_discovery) << "no kubernetes_sd_configs with role pod in namespace engram";
  EXPECT_TRUE(keeps_annotated) << "no relabel keeping pods annotated prometheus.io/scrape";
}

TEST_F(DeployConfigTest, K8sCommandsParseWithTheBuiltBinaries) {
  int checked = 0;
  for (const K8sContainer& c : Containers(K8sObjects())) {
    if (!IsEngramImage(Str(c.container["image"]))) continue;
    SCOPED_TRACE(c.workload);
    ExpectFlagsParse(c.command);
    ++checked;
  }
  EXPECT_GE(checked, static_cast<int>(kK8sEngramWorkloads.size()))
      << "replay, episodic store, learner, actor and evaluator run the engram image";
}

TEST_F(DeployConfigTest, K8sAddressesProbesAndScrapeAnnotationsAgree) {
  const std::vector<K8sObject> objects = K8sObjects();
  std::map<std::string, YAML::Node> services;      // name -> Service
  std::map<std::string, YAML::Node> statefulsets;  // name -> StatefulSet
  for (const K8sObject& object : objects) {
    const std::string kind = Str(object.node["kind"]);
    const std::string name = Str(At(object.node, {"metadata", "name"}));
    if (kind == "Service") services.emplace(name, object.node);
    if (kind == "StatefulSet") statefulsets.emplace(name, object.node);
  }
  std::vector<K8sContainer> containers;
  for (K8sContainer& c : Containers(objects)) {
    if (IsEngramImage(Str(c.container["image"]))) containers.push_back(std::move(c));
  }
  ASSERT_FALSE(containers.empty());
  // StatefulSet name -> the port its engram container listens on.
  std::map<std::string, int> listen_port;
  for (const K8sContainer& c : containers) {
    if (std::optional<std::string> address = Flag(c.command, "address")) {
      listen_port[Str(At(c.workload_node, {"metadata", "name"}))] = SplitHostPort(*address).port;
    }
  }

  for (const K8sContainer& c : containers) {
    SCOPED_TRACE(c.workload);
    const bool statefulset = Str(c.workload_node["kind"]) == "StatefulSet";
    // Metrics: the flag, a declared port, and the scrape annotations naming it.
    const std::optional<std::string> metrics_port = Flag(c.command, "metrics_port");
    EXPECT_EQ(metrics_port, kMetricsPort);
    int metrics = -1;
    ASSERT_TRUE(absl::SimpleAtoi(metrics_port.value_or(""), &metrics));
    EXPECT_TRUE(c.ports.count(metrics)) << "metrics port " << metrics << " is no containerPort";
    const YAML::Node annotations =
        At(c.workload_node, {"spec", "template", "metadata", "annotations"});
    EXPECT_EQ(Str(annotations["prometheus.io/scrape"]), "true");
    EXPECT_EQ(Str(annotations["prometheus.io/port"]), *metrics_port);

    // Servers: grpc probes on their --address port. Actors serve no gRPC: /metrics.
    const std::optional<std::string> address = Flag(c.command, "address");
    for (const char* probe : {"readinessProbe", "livenessProbe"}) {
      const YAML::Node p = At(c.container, {probe});
      if (address) {
        const HostPort hp = SplitHostPort(*address);
        EXPECT_EQ(hp.host, "0.0.0.0");
        EXPECT_TRUE(c.ports.count(hp.port)) << "--address port " << hp.port;
        ASSERT_TRUE(IsMap(At(p, {"grpc"}))) << probe << " is not a grpc probe";
        EXPECT_EQ(Int(At(p, {"grpc", "port"})), hp.port) << probe;
      } else {
        ASSERT_TRUE(IsMap(At(p, {"httpGet"}))) << probe;
        EXPECT_EQ(Str(At(p, {"httpGet", "path"})), "/metrics") << probe;
        EXPECT_EQ(ProbePort(c, p), metrics) << probe;
      }
    }
    // Checkpoints, snapshots and runs outlive the pod: a volume is mounted there.
    for (const char* flag : kStateDirFlags) {
      const std::optional<std::string> dir = Flag(c.command, flag);
      if (!dir) continue;
      bool mounted = false;
      for (const YAML::Node& mount : c.container["volumeMounts"]) {
        mounted |= Str(mount["mountPath"]) == *dir;
      }
      EXPECT_TRUE(mounted) << "--" << flag << "=" << *dir << " is on no volume";
    }
    if (!c.command.empty() && c.command[0] == "engram_episodic_store") {
      EXPECT_TRUE(statefulset) << "its snapshots need a volume that outlives the pod";
      EXPECT_TRUE(Flag(c.command, "snapshot_dir").has_value());
    }
    if (!c.command.empty() && c.command[0] == "engram_replay_server") {
      EXPECT_TRUE(statefulset) << "shards need stable names";
      EXPECT_TRUE(HasArg(c.command, "--shard_index_from_hostname"));
      EXPECT_FALSE(Flag(c.command, "shard_index")) << "one index for every pod";
    }

    // Every address is pod.service of a StatefulSet with that headless Service, and the
    // pod listens on that port. Replay shard i is pod replay-i (index from host name).
    for (const char* flag : {"replay_addresses", "learner_address"}) {
      const std::optional<std::string> value = Flag(c.command, flag);
      if (!value) continue;
      const std::vector<std::string> addresses = SplitList(*value);
      std::string replay_set;
      for (size_t i = 0; i < addresses.size(); ++i) {
        SCOPED_TRACE(absl::StrCat("--", flag, ": ", addresses[i]));
        const HostPort hp = SplitHostPort(addresses[i]);
        const std::vector<std::string> labels = absl::StrSplit(hp.host, '.');
        ASSERT_GE(labels.size(), 2u) << "expected pod.service";
        const std::string& pod = labels[0];
        const std::string& service = labels[1];
        auto svc = services.find(service);
        ASSERT_NE(svc, services.end()) << "no Service " << service;
        EXPECT_EQ(Str(At(svc->second, {"spec", "clusterIP"})), "None");
        bool service_port = false;
        for (const YAML::Node& port : At(svc->second, {"spec", "ports"})) {
          service_port |= Int(port["port"]) == hp.port;
        }
        EXPECT_TRUE(service_port) << "Service " << service << " has no port " << hp.port;
        const size_t dash = pod.rfind('-');
        ASSERT_NE(dash, std::string::npos) << "expected a StatefulSet pod name";
        const std::string set = pod.substr(0, dash);
        int ordinal = -1;
        ASSERT_TRUE(absl::SimpleAtoi(pod.substr(dash + 1), &ordinal)) << pod;
        auto sts = statefulsets.find(set);
        ASSERT_NE(sts, statefulsets.end()) << "no StatefulSet " << set;
        EXPECT_EQ(Str(At(sts->second, {"spec", "serviceName"})), service);
        EXPECT_LT(ordinal, Int(At(sts->second, {"spec", "replicas"}))) << "no pod " << pod;
        EXPECT_EQ(listen_port[set], hp.port) << set << " does not listen on " << hp.port;
        if (std::string(flag) == "replay_addresses") {
          EXPECT_EQ(ordinal, static_cast<int>(i)) << "shard " << i << " is pod " << pod;
          replay_set = set;
        }
      }
      if (!replay_set.empty()) {
        EXPECT_EQ(static_cast<int>(addresses.size()),
                  Int(At(statefulsets[replay_set], {"spec", "replicas"})))
            << "every shard, once";
      }
    }
  }
}

}  // namespace
}  // namespace engram
