#include "common/metrics.h"

#include <exception>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/build_info.h"

ABSL_FLAG(int, metrics_port, 0,
          "TCP port for the Prometheus /metrics endpoint (0 = pick a free port and log it; "
          "-1 = no endpoint).");

namespace engram {

const char* EngramVersion() { return ENGRAM_VERSION_STRING; }

std::unique_ptr<Metrics> Metrics::CreateUnexposed(absl::string_view process) {
  return std::unique_ptr<Metrics>(
      new Metrics(std::string(process), std::make_shared<prometheus::Registry>(), nullptr, -1));
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(absl::string_view process, int port,
                                                        absl::string_view bind_host) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics port must be in [0, 65535], got ", port));
  }
  auto registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> exposer =
      MetricsHttpServer::Start(bind_host, port, registry);
  if (!exposer.ok()) {
    return absl::Status(exposer.status().code(),
                        absl::StrCat("cannot serve metrics: ", exposer.status().message()));
  }
  const int bound = (*exposer)->port();
  return std::unique_ptr<Metrics>(
      new Metrics(std::string(process), std::move(registry), *std::move(exposer), bound));
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::StartFromFlags(absl::string_view process) {
  const int port = absl::GetFlag(FLAGS_metrics_port);
  if (port < 0) return CreateUnexposed(process);
  return Start(process, port);
}

Metrics::Metrics(std::string process, std::shared_ptr<prometheus::Registry> registry,
                 std::unique_ptr<MetricsHttpServer> exposer, int port)
    : process_(std::move(process)),
      registry_(std::move(registry)),
      exposer_(std::move(exposer)),
      port_(port) {
  AddGauge(*registry_, "build_info", "Engram build; the value is always 1.")
      .Add({{"version", EngramVersion()}, {"git_commit", ENGRAM_GIT_COMMIT}, {"process", process_}})
      .Set(1);
}

Metrics::~Metrics() = default;

std::string MetricName(absl::string_view name) {
  if (absl::StartsWith(name, "engram_")) return std::string(name);
  return absl::StrCat("engram_", name);
}

prometheus::Family<prometheus::Counter>& AddCounter(prometheus::Registry& registry,
                                                    absl::string_view name,
                                                    absl::string_view help) {
  return prometheus::BuildCounter()
      .Name(MetricName(name))
      .Help(std::string(help))
      .Register(registry);
}

prometheus::Family<prometheus::Gauge>& AddGauge(prometheus::Registry& registry,
                                                absl::string_view name, absl::string_view help) {
  return prometheus::BuildGauge().Name(MetricName(name)).Help(std::string(help)).Register(registry);
}

prometheus::Family<prometheus::Histogram>& AddHistogram(prometheus::Registry& registry,
                                                        absl::string_view name,
                                                        absl::string_view help) {
  return prometheus::BuildHistogram()
      .Name(MetricName(name))
      .Help(std::string(help))
      .Register(registry);
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  prometheus::Histogram::BucketBoundaries buckets;
  for (double b = 1e-5; b < 20.0; b *= 2.5) buckets.push_back(b);
  return buckets;
}

}  // namespace engram
