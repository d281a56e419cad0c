#ifndef ENGRAM_COMMON_METRICS_HTTP_H_
#define ENGRAM_COMMON_METRICS_HTTP_H_

// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics answers the registry in
// the text exposition format (prometheus-cpp's TextSerializer); anything else is 404.
//
// Why not prometheus-cpp's Exposer: it runs on civetweb, whose worker threads get a fixed
// ~100 KiB stack, and glibc refuses to create a thread whose stack cannot hold the static
// TLS of the loaded libraries. OpenBLAS alone has 60 KiB of static TLS, so in every process
// that loads LibTorch (learner, actors) civetweb fails with "Cannot create first worker
// thread". This server uses ordinary threads and serves one connection at a time, which is
// what a scrape every few seconds needs.

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prometheus/registry.h"

namespace engram {

class MetricsHttpServer {
 public:
  // Listens on `host`:`port` (port 0 picks a free one) and serves `registry` from one
  // background thread. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      absl::string_view host, int port, std::shared_ptr<prometheus::Registry> registry);
  // Stops serving and joins the thread.
  ~MetricsHttpServer();

  int port() const { return port_; }

 private:
  MetricsHttpServer(int listen_fd, int port, std::shared_ptr<prometheus::Registry> registry);
  void Serve();
  void HandleConnection(int fd);

  const int listen_fd_;
  const int port_;
  const std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace engram

#endif  // ENGRAM_COMMON_METRICS_HTTP_H_
