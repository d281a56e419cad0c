#include "episodic_store/client.h"

#include <cstring>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/status.h"
#include "episodic_store/memory.h"

namespace engram::episodic {

EpisodicClient::EpisodicClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : options_(std::move(options)), stub_(v1::EpisodicStore::NewStub(channel)) {}

absl::StatusOr<std::unique_ptr<EpisodicClient>> EpisodicClient::Connect(
    std::shared_ptr<grpc::Channel> channel, ClientOptions options) {
  if (absl::Status valid = ValidateMemorySpec(options.spec); !valid.ok()) return valid;
  if (options.write_batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("write_batch: must be >= 1, got ", options.write_batch));
  }
  if (absl::Status valid = ValidateBackoff(options.initial_backoff, options.max_backoff);
      !valid.ok()) {
    return valid;
  }
  if (options.probe_timeout <= absl::ZeroDuration() ||
      options.max_unreachable_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(
        "probe_timeout: must be > 0, and max_unreachable_backoff >= initial_backoff");
  }
  std::unique_ptr<EpisodicClient> client(new EpisodicClient(std::move(channel), options));
  if (absl::Status created = client->CreateMemory(client->options_.connect_timeout);
      !created.ok()) {
    return created;
  }
  return client;
}

absl::Status EpisodicClient::CreateMemory(absl::Duration timeout) {
  v1::CreateMemoryRequest request;
  *request.mutable_spec() = options_.spec;
  return Retry(
      [&](grpc::ClientContext& context) {
        v1::CreateMemoryResponse response;
        return stub_->CreateMemory(&context, request, &response);
      },
      timeout);
}

template <typename Call>
absl::Status EpisodicClient::Retry(Call call, absl::Duration timeout) {
  // While unreachable, one short attempt (a probe) instead of retries up to the timeout.
  const bool probe = failures_ > 0;
  const absl::Time deadline = absl::Now() + (probe ? options_.probe_timeout : timeout);
  for (int64_t attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    const absl::Status status = FromGrpc(call(context));
    if (status.ok() || !IsTransient(status) || probe) return status;
    const absl::Duration wait =
        JitteredBackoff(attempt, options_.initial_backoff, options_.max_backoff, rng_);
    if (absl::Now() + wait >= deadline) return status;
    absl::SleepFor(wait);
  }
}

template <typename Call>
absl::Status EpisodicClient::Guarded(Call call) {
  if (failures_ > 0 && absl::Now() < next_probe_) {
    return absl::UnavailableError(absl::StrCat(
        "episodic store unreachable (", last_error_.message(), "); next attempt in ",
        absl::FormatDuration(absl::Ceil(next_probe_ - absl::Now(), absl::Milliseconds(1)))));
  }
  absl::Status status = Retry(call, options_.timeout);
  if (absl::IsNotFound(status) && absl::StrContains(status.message(), options_.spec.name())) {
    // The store lost the memory (restarted without its snapshot): create it again.
    status = CreateMemory(options_.timeout);
    if (status.ok()) {
      ++recreated_;
      status = Retry(call, options_.timeout);
    }
  }
  if (status.ok() || !IsTransient(status)) {
    failures_ = 0;
    return status;
  }
  ++failures_;
  last_error_ = status;
  next_probe_ = absl::Now() + JitteredBackoff(failures_, options_.initial_backoff * 10,
                                              options_.max_unreachable_backoff, rng_);
  return status;
}

absl::Status EpisodicClient::Write(const float* key, int32_t action, float value) {
  const int dim = options_.spec.key_dim();
  keys_.insert(keys_.end(), key, key + dim);
  actions_.push_back(action);
  values_.push_back(value);
  if (static_cast<int>(actions_.size()) >= options_.write_batch) return Flush();
  return absl::OkStatus();
}

absl::Status EpisodicClient::Flush() {
  if (actions_.empty()) return absl::OkStatus();
  v1::WriteRequest request;
  request.set_memory(options_.spec.name());
  v1::Tensor* keys = request.mutable_keys();
  keys->set_dtype(v1::DTYPE_FLOAT32);
  keys->add_shape(static_cast<int64_t>(actions_.size()));
  keys->add_shape(options_.spec.key_dim());
  keys->set_data(keys_.data(), keys_.size() * sizeof(float));
  request.mutable_actions()->Add(actions_.begin(), actions_.end());
  request.mutable_values()->Add(values_.begin(), values_.end());
  absl::Status written = Guarded([&](grpc::ClientContext& context) {
    v1::WriteResponse response;
    return stub_->Write(&context, request, &response);
  });
  // Whatever the outcome, these writes are done: a rejected batch would be rejected again,
  // and an actor must not buffer without bound while the store is down.
  if (!written.ok()) dropped_writes_ += static_cast<int64_t>(actions_.size());
  keys_.clear();
  actions_.clear();
  values_.clear();
  return written;
}

absl::StatusOr<ActionValues> EpisodicClient::LookupAll(const float* queries, int64_t n, int k) {
  const int dim = options_.spec.key_dim();
  v1::LookupRequest request;
  request.set_memory(options_.spec.name());
  v1::Tensor* tensor = request.mutable_queries();
  tensor->set_dtype(v1::DTYPE_FLOAT32);
  tensor->add_shape(n);
  tensor->add_shape(dim);
  tensor->set_data(queries, static_cast<size_t>(n) * dim * sizeof(float));
  request.set_k(k);
  v1::LookupResponse response;
  absl::Status status = Guarded(
      [&](grpc::ClientContext& context) { return stub_->Lookup(&context, request, &response); });
  if (!status.ok()) return status;
  ActionValues values;
  values.n = n;
  values.num_actions = options_.spec.num_actions();
  const size_t cells = static_cast<size_t>(n) * values.num_actions;
  if (response.value_estimates().data().size() != cells * sizeof(float) ||
      response.counts().data().size() != cells * sizeof(int32_t)) {
    return absl::InternalError("episodic store: lookup answer of the wrong size");
  }
  values.estimates.resize(cells);
  values.counts.resize(cells);
  std::memcpy(values.estimates.data(), response.value_estimates().data().data(),
              cells * sizeof(float));
  std::memcpy(values.counts.data(), response.counts().data().data(), cells * sizeof(int32_t));
  return values;
}

}  // namespace engram::episodic
