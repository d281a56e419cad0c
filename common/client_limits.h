#ifndef ENGRAM_COMMON_CLIENT_LIMITS_H_
#define ENGRAM_COMMON_CLIENT_LIMITS_H_

// Per-client request rate limits of a server (--max_requests_per_second_per_client): a
// token bucket per client connection, so that one runaway or hostile client cannot take a
// shard's, store's or learner's capacity from the others.
//
// A client is the peer of its connection as gRPC reports it ("ipv4:10.0.0.7:53412"): every
// process (each actor, the learner) has its own channel and so its own bucket, also when
// several run on one host. A bucket holds one second's worth of requests (at least 1) and
// refills continuously. A request over the limit is refused with RESOURCE_EXHAUSTED naming
// the client, the call and the limit, and changes nothing; Engram's clients treat that as
// transient and retry with backoff (a replay writer resends the request).
//
// What counts as one request: each InsertRequest of a replay Insert stream, each
// UpdatePriorities call, each episodic Write and Lookup, each experiment Submit.
//
// Thread-safe.
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"

namespace engram {

class ClientRateLimiter {
 public:
  // `per_second` > 0 requests per second per client.
  explicit ClientRateLimiter(double per_second);

  // Takes one request from `client`'s bucket: OK, or RESOURCE_EXHAUSTED naming `method`.
  absl::Status Admit(absl::string_view client, absl::string_view method,
                     absl::Time now = absl::Now()) ABSL_LOCKS_EXCLUDED(mu_);

  double per_second() const { return per_second_; }
  // Clients with a bucket now (idle full buckets are forgotten once there are many).
  size_t clients() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };

  const double per_second_;
  const double burst_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// Admit() for the client of `context` (its peer); OK when `limiter` is null (no limit).
absl::Status AdmitClient(ClientRateLimiter* limiter, const grpc::ServerContextBase& context,
                         absl::string_view method);

// From --max_requests_per_second_per_client: null when it is 0 (no limit, the default);
// exits 2 naming the flag when it is negative or not finite.
std::shared_ptr<ClientRateLimiter> ClientRateLimiterFromFlags();

}  // namespace engram

#endif  // ENGRAM_COMMON_CLIENT_LIMITS_H_
