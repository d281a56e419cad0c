#include "common/client_limits.h"

#include <algorithm>
#include <cmath>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/process.h"

ABSL_FLAG(double, max_requests_per_second_per_client, 0,
          "Requests per second one client connection may make (each replay InsertRequest and "
          "UpdatePriorities, episodic Write and Lookup, experiment Submit counts one), with "
          "bursts of one second's worth; more gets RESOURCE_EXHAUSTED and is retried by the "
          "client. 0 (default): no limit.");

namespace engram {
namespace {

// Beyond this many buckets, idle full ones are dropped (they would start full anyway).
constexpr size_t kPruneAbove = 4096;

}  // namespace

ClientRateLimiter::ClientRateLimiter(double per_second)
    : per_second_(per_second), burst_(std::max(1.0, per_second)) {}

absl::Status ClientRateLimiter::Admit(absl::string_view client, absl::string_view method,
                                      absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = buckets_.try_emplace(client);
  Bucket& bucket = it->second;
  if (inserted) {
    bucket.tokens = burst_;
  } else {
    const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - bucket.updated));
    bucket.tokens = std::min(burst_, bucket.tokens + elapsed * per_second_);
  }
  bucket.updated = now;
  if (bucket.tokens < 1) {
    return absl::ResourceExhaustedError(
        absl::StrCat(method, ": client ", client, " is over its limit of ", per_second_,
                     " requests/s (--max_requests_per_second_per_client); retry later"));
  }
  bucket.tokens -= 1;
  if (inserted && buckets_.size() > kPruneAbove) {
    absl::erase_if(buckets_, [&](const auto& entry) {
      const Bucket& b = entry.second;
      return b.tokens + absl::ToDoubleSeconds(now - b.updated) * per_second_ >= burst_;
    });
  }
  return absl::OkStatus();
}

size_t ClientRateLimiter::clients() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

absl::Status AdmitClient(ClientRateLimiter* limiter, const grpc::ServerContextBase& context,
                         absl::string_view method) {
  if (limiter == nullptr) return absl::OkStatus();
  return limiter->Admit(context.peer(), method);
}

std::shared_ptr<ClientRateLimiter> ClientRateLimiterFromFlags() {
  const double rate = absl::GetFlag(FLAGS_max_requests_per_second_per_client);
  if (!std::isfinite(rate) || rate < 0) {
    Exit(2, absl::StrCat("--max_requests_per_second_per_client: must be >= 0, got ", rate));
  }
  if (rate == 0) return nullptr;
  return std::make_shared<ClientRateLimiter>(rate);
}

}  // namespace engram
