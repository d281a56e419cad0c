#ifndef ENGRAM_COMMON_METRICS_H_
#define ENGRAM_COMMON_METRICS_H_

// The one owner of a process's Prometheus registry and its /metrics endpoint
// (common/metrics_http.h).
//
// Each process creates one Metrics (port from --metrics_port) and passes its registry()
// to components, which add their families through the helpers below so every name
// carries the "engram_" prefix. It also exports
//   engram_build_info{version="...",process="..."} 1
// so dashboards can show what runs where.
//
// Thread-safe: prometheus-cpp families and metrics are internally synchronized.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/metrics_http.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace engram {

// Engram's version string (CMake project version).
const char* EngramVersion();

class Metrics {
 public:
  // A registry without an HTTP endpoint (tests, tools). Never fails.
  static std::unique_ptr<Metrics> CreateUnexposed(absl::string_view process);

  // Serves /metrics on `bind_host`:`port`; port 0 picks a free port, read back with
  // port(). UNAVAILABLE when the port cannot be bound; INVALID_ARGUMENT for a port
  // outside [0, 65535].
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(absl::string_view process, int port,
                                                        absl::string_view bind_host = "0.0.0.0");

  // Like Start() with --metrics_port; a negative flag value disables the endpoint.
  static absl::StatusOr<std::unique_ptr<Metrics>> StartFromFlags(absl::string_view process);

  ~Metrics();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }
  // The bound port, or -1 when not exposed.
  int port() const { return port_; }
  const std::string& process() const { return process_; }

 private:
  Metrics(std::string process, std::shared_ptr<prometheus::Registry> registry,
          std::unique_ptr<MetricsHttpServer> exposer, int port);

  std::string process_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> exposer_;
  int port_;
};

// "engram_" + name, unless `name` already starts with it.
std::string MetricName(absl::string_view name);

// Family helpers: the name gets the engram_ prefix. Counters should end in "_total".
prometheus::Family<prometheus::Counter>& AddCounter(prometheus::Registry& registry,
                                                    absl::string_view name, absl::string_view help);
prometheus::Family<prometheus::Gauge>& AddGauge(prometheus::Registry& registry,
                                                absl::string_view name, absl::string_view help);
prometheus::Family<prometheus::Histogram>& AddHistogram(prometheus::Registry& registry,
                                                        absl::string_view name,
                                                        absl::string_view help);

// Exponential histogram buckets for latencies in seconds: 10us .. ~10s.
prometheus::Histogram::BucketBoundaries LatencyBuckets();

}  // namespace engram

#endif  // ENGRAM_COMMON_METRICS_H_
