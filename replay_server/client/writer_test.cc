#include "replay_server/client/writer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "replay_server/service.h"
#include "replay_server/testing/test_items.h"

namespace engram::replay {
namespace {

using ::engram::replay::testing::FastReconnectChannel;
using ::engram::replay::testing::Loopback;
using ::engram::replay::testing::TestObservation;
using ::engram::replay::testing::TestTransition;

using ::testing::HasSubstr;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

v1::TableSpec Spec(const std::string& name, int64_t max_size = 100000) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_selector(v1::SELECTOR_UNIFORM);
  spec.set_priority_exponent(1.0);
  spec.set_max_size(max_size);
  return spec;
}

// Inserts wait once the table holds 2 items more than were sampled (samples_per_insert 1,
// min_size_to_sample 1, error_buffer 1: max_diff 2); batches are at most 1 item.
v1::TableSpec RateLimitedSpec(const std::string& name) {
  v1::TableSpec spec = Spec(name);
  spec.mutable_rate_limiter()->set_samples_per_insert(1);
  spec.mutable_rate_limiter()->set_min_size_to_sample(1);
  spec.mutable_rate_limiter()->set_error_buffer(1);
  return spec;
}

// Waits for `done` to hold, checking every few milliseconds, for at most `timeout`.
// For state only visible by asking (a table's size), never as a substitute for an event.
template <typename F>
bool WaitFor(F done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = In(timeout);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// One shard: a service with one table, served on a loopback port that survives restarts.
class Shard {
 public:
  explicit Shard(const v1::TableSpec& spec) : service_(ReplayServiceImpl::Options()) {
    EXPECT_TRUE(service_.CreateTableFromSpec(spec).ok());
    Start(0);
  }
  ~Shard() { Stop(); }

  void Start(int port) {
    auto server = Server::Start(Loopback(port), {&service_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
  }
  void Stop() {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
  }
  void Restart() {
    const int port = server_->port();
    Stop();
    Start(port);
    ASSERT_EQ(server_->port(), port);
  }

  int port() const { return server_->port(); }
  std::shared_ptr<grpc::Channel> InProcessChannel() const { return server_->InProcessChannel(); }
  Table& table() { return *service_.Tables().front(); }
  v1::TableInfo info() { return table().Info(); }

 private:
  ReplayServiceImpl service_;
  std::unique_ptr<Server> server_;
};

ReplayWriterOptions WriterOptions(const std::string& table, int items_per_request = 4,
                                  int max_unacked = 8) {
  ReplayWriterOptions options;
  options.table = table;
  options.max_items_per_request = items_per_request;
  options.max_unacked_requests = max_unacked;
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(100);
  return options;
}

// A TCP proxy on a loopback port in front of a server, which can hold back everything the
// server sends (so the server stores requests whose acknowledgements never arrive) and
// drop its connections (so the client's stream breaks).
class TcpProxy {
 public:
  explicit TcpProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~TcpProxy() {
    stop_ = true;
    accept_thread_.join();
    DropConnections();
    absl::MutexLock lock(&mu_);
    for (std::thread& t : pumps_) t.join();
    for (int fd : fds_) close(fd);
    close(listen_fd_);
  }

  int port() const { return port_; }
  // Server-to-client bytes stay unread in the kernel until resumed (or dropped).
  void PauseDownstream() { paused_ = true; }
  void ResumeDownstream() { paused_ = false; }
  // Ends every proxied connection; bytes not forwarded yet are lost.
  void DropConnections() {
    absl::MutexLock lock(&mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
  }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      const int upstream = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(upstream_port_);
      if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(upstream);
        continue;
      }
      absl::MutexLock lock(&mu_);
      fds_.push_back(client);
      fds_.push_back(upstream);
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream, false); });
      pumps_.emplace_back([this, client, upstream] { Pump(upstream, client, true); });
    }
  }

  void Pump(int from, int to, bool downstream) {
    char buffer[16384];
    while (!stop_) {
      if (downstream && paused_) {
        absl::SleepFor(absl::Milliseconds(2));
        // A dropped connection must still end this pump.
        pollfd p{to, POLLRDHUP, 0};
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) break;
        continue;
      }
      pollfd p{from, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      if (downstream && paused_) continue;  // paused while polling: leave the bytes unread
      const ssize_t n = recv(from, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      ssize_t sent = 0;
      while (sent < n) {
        const ssize_t m = send(to, buffer + sent, n - sent, MSG_NOSIGNAL);
        if (m <= 0) break;
        sent += m;
      }
      if (sent < n) break;
    }
    shutdown(from, SHUT_RDWR);
    shutdown(to, SHUT_RDWR);
  }

  const int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::thread accept_thread_;
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
};

// ---- KeyGenerator -----------------------------------------------------------------------------

TEST(KeyGeneratorTest, KeysAreUniqueAcrossThreadsAndCarryTheProcessId) {
  KeyGenerator keys(0xabcdef01u);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::vector<uint64_t>> drawn(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&keys, &drawn, t] {
      for (int i = 0; i < kPerThread; ++i) drawn[t].push_back(keys.Next());
    });
  }
  for (std::thread& t : threads) t.join();
  absl::flat_hash_set<uint64_t> unique;
  for (const auto& v : drawn) {
    for (uint64_t key : v) {
      EXPECT_EQ(key >> 32, 0xabcdef01u);
      const uint64_t counter = key & 0xffffffffu;
      EXPECT_GE(counter, 1u);
      EXPECT_LE(counter, static_cast<uint64_t>(kThreads * kPerThread));
      unique.insert(key);
    }
  }
  EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(KeyGeneratorTest, DrawsANonZeroProcessIdAndStartsTheCounterAtOne) {
  KeyGenerator keys;
  EXPECT_NE(keys.process_id(), 0u);
  EXPECT_EQ(keys.Next(), (static_cast<uint64_t>(keys.process_id()) << 32) | 1u);
  EXPECT_EQ(keys.Next(), (static_cast<uint64_t>(keys.process_id()) << 32) | 2u);
}

// ---- ReplayWriter -----------------------------------------------------------------------------

TEST(ReplayWriterTest, CreateRejectsBadOptions) {
  Shard shard(Spec("t"));
  ReplayWriterOptions options = WriterOptions("t");
  options.max_items_per_request = 0;
  auto writer = ReplayWriter::Create(shard.InProcessChannel(), options);
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(writer.status().message(), HasSubstr("max_items_per_request"));
  EXPECT_EQ(ReplayWriter::Create(shard.InProcessChannel(), WriterOptions("")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReplayWriterTest, AppendedItemsReachTheTableAndFlushWaitsForTheirAcks) {
  Shard shard(Spec("t"));
  auto writer = ReplayWriter::Create(shard.InProcessChannel(), WriterOptions("t", 8, 4)).value();
  for (uint64_t key = 1; key <= 100; ++key) {
    ASSERT_TRUE(writer->Append(TestTransition(key), In(absl::Seconds(10))).ok());
  }
  ASSERT_TRUE(writer->Flush(In(absl::Seconds(10))).ok());
  // Flush returned only after the acks: everything is stored now, nothing is in flight.
  EXPECT_EQ(shard.info().size(), 100);
  const ReplayWriter::Stats stats = writer->stats();
  EXPECT_EQ(stats.items_appended, 100);
  EXPECT_EQ(stats.items_acknowledged, 100);
  EXPECT_EQ(stats.unacked_items, 0);
  EXPECT_EQ(stats.unacked_requests, 0);
  EXPECT_EQ(stats.requests_sent, 13);  // 12 full requests of 8, one of 4
  EXPECT_EQ(stats.requests_resent, 0);
  EXPECT_EQ(stats.reconnects, 0);
  EXPECT_TRUE(writer->Close(In(absl::Seconds(10))).ok());
}

TEST(ReplayWriterTest, BackpressureBlocksAppendWhileTheRateLimiterHoldsInserts) {
  Shard shard(RateLimitedSpec("t"));
  // One item per request, at most 2 unacknowledged requests.
  auto writer = ReplayWriter::Create(shard.InProcessChannel(), WriterOptions("t", 1, 2)).value();
  ASSERT_TRUE(writer->Append(TestTransition(1), In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(TestTransition(2), In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Flush(In(absl::Seconds(10))).ok());
  EXPECT_EQ(shard.info().size(), 2);

  // The limiter now holds item 3 on the server; 3 and 4 fill the unacked queue.
  ASSERT_TRUE(writer->Append(TestTransition(3), In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(TestTransition(4), In(absl::Seconds(10))).ok());
  const absl::Status blocked = writer->Append(TestTransition(5), In(absl::Milliseconds(200)));
  EXPECT_EQ(blocked.code(), absl::StatusCode::kDeadlineExceeded) << blocked;
  EXPECT_THAT(blocked.message(), HasSubstr("not appended"));
  EXPECT_EQ(writer->stats().unacked_requests, 2);
  // Flush cannot finish either: it really waits for acknowledgements.
  EXPECT_EQ(writer->Flush(In(absl::Milliseconds(100))).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(shard.info().size(), 2);

  // Each sample lets one more insert through.
  std::thread learner([&shard] {
    for (int i = 0; i < 3; ++i) {
      v1::SampleResponse batch;
      ASSERT_TRUE(shard.table().Sample(1, 1.0, In(absl::Seconds(10)), &batch).ok());
    }
  });
  EXPECT_TRUE(writer->Append(TestTransition(5), In(absl::Seconds(10))).ok());
  EXPECT_TRUE(writer->Flush(In(absl::Seconds(10))).ok());
  learner.join();
  EXPECT_EQ(shard.info().size(), 5);
  EXPECT_EQ(writer->stats().items_acknowledged, 5);
}

TEST(ReplayWriterTest, RejectedRequestIsReportedWithItsFirstKeyAndDroppedAlone) {
  Shard shard(Spec("t"));
  auto writer = ReplayWriter::Create(shard.InProcessChannel(), WriterOptions("t", 2, 8)).value();
  v1::Item no_payload;  // exactly one payload must be set
  no_payload.set_key(4);
  no_payload.set_priority(1);
  ASSERT_TRUE(writer->Append(TestTransition(1), In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(TestTransition(2), In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(TestTransition(3), In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(no_payload, In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(TestTransition(5), In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(TestTransition(6), In(absl::Seconds(10))).ok());

  const absl::Status status = writer->Flush(In(absl::Seconds(10)));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("table \"t\""));
  EXPECT_THAT(status.message(), HasSubstr("first key 3"));
  // The request [3, 4] is dropped as a whole; the ones before and after it are stored.
  EXPECT_EQ(shard.info().size(), 4);
  const ReplayWriter::Stats stats = writer->stats();
  EXPECT_EQ(stats.items_dropped, 2);
  EXPECT_EQ(stats.items_acknowledged, 4);
  // Reported once.
  EXPECT_TRUE(writer->Flush(In(absl::Seconds(10))).ok());
  ASSERT_TRUE(writer->Append(TestTransition(7), In(absl::Seconds(10))).ok());
  EXPECT_TRUE(writer->Close(In(absl::Seconds(10))).ok());
  EXPECT_EQ(shard.info().size(), 5);
}

TEST(ReplayWriterTest, UnknownTableIsNotFoundFromTheNextCall) {
  Shard shard(Spec("t"));
  auto writer =
      ReplayWriter::Create(shard.InProcessChannel(), WriterOptions("missing", 1, 8)).value();
  ASSERT_TRUE(writer->Append(TestTransition(11), In(absl::Seconds(10))).ok());
  const absl::Status status = writer->Flush(In(absl::Seconds(10)));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("table \"missing\""));
  EXPECT_THAT(status.message(), HasSubstr("first key 11"));
  // Reported once; later requests fail (and are reported) on their own.
  ASSERT_TRUE(writer->Append(TestTransition(12), In(absl::Seconds(10))).ok());
  absl::Status later = writer->Flush(In(absl::Seconds(10)));
  EXPECT_EQ(later.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(later.message(), HasSubstr("first key 12"));
  EXPECT_EQ(writer->stats().items_dropped, 2);
}

TEST(ReplayWriterTest, AppendRefusesKeyZeroAndCallsAfterClose) {
  Shard shard(Spec("t"));
  auto writer = ReplayWriter::Create(shard.InProcessChannel(), WriterOptions("t")).value();
  const absl::Status zero = writer->Append(TestTransition(0), In(absl::Seconds(1)));
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.message(), HasSubstr("item.key"));
  ASSERT_TRUE(writer->Append(TestTransition(1), In(absl::Seconds(10))).ok());
  // Close flushes the partial request.
  ASSERT_TRUE(writer->Close(In(absl::Seconds(10))).ok());
  EXPECT_EQ(shard.info().size(), 1);
  EXPECT_EQ(writer->Append(TestTransition(2), In(absl::Seconds(1))).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer->Flush(In(absl::Seconds(1))).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(writer->Close(In(absl::Seconds(1))).ok());
}

TEST(ReplayWriterTest, UnreachableServerTimesOutFlushAndDestructionDoesNotHang) {
  // Bind and close a port, so that nothing listens there.
  int port = 0;
  {
    Shard shard(Spec("t"));
    port = shard.port();
  }
  auto writer = ReplayWriter::Create(FastReconnectChannel(port), WriterOptions("t", 1)).value();
  ASSERT_TRUE(writer->Append(TestTransition(1), In(absl::Seconds(1))).ok());
  const absl::Status status = writer->Flush(In(absl::Milliseconds(300)));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("1 insert requests (1 items) still unacknowledged"));
  EXPECT_THAT(status.message(), HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(writer->Close(In(absl::Milliseconds(100))).code(), absl::StatusCode::kDeadlineExceeded);
}

// The brief's scenario: the server goes away in the middle of a stream and comes back on the
// same port (same service, so items acknowledged before are still there). After Flush every
// appended key is in the table exactly once.
TEST(ReplayWriterTest, ServerRestartMidStreamLosesNothingAndStoresNothingTwice) {
  Shard shard(Spec("t"));
  auto writer =
      ReplayWriter::Create(FastReconnectChannel(shard.port()), WriterOptions("t", 4, 8)).value();
  constexpr int kItems = 3000;
  absl::Notification first_part_appended;
  absl::Notification restarted;
  std::thread actor([&] {
    for (uint64_t key = 1; key <= kItems; ++key) {
      ASSERT_TRUE(writer->Append(TestTransition(key), In(absl::Seconds(30))).ok()) << key;
      if (key == 1000) first_part_appended.Notify();
      // Items up to 1500 race with the shutdown; later ones need a new stream.
      if (key == 1500) restarted.WaitForNotification();
    }
  });
  ASSERT_TRUE(first_part_appended.WaitForNotificationWithTimeout(absl::Seconds(30)));
  shard.Restart();
  restarted.Notify();
  actor.join();
  ASSERT_TRUE(writer->Flush(In(absl::Seconds(30))).ok());

  const v1::TableInfo info = shard.info();
  const ReplayWriter::Stats stats = writer->stats();
  std::cout << "restart: reconnects " << stats.reconnects << ", requests resent "
            << stats.requests_resent << ", server duplicates " << info.duplicate_inserts_total()
            << std::endl;
  EXPECT_EQ(info.size(), kItems);
  EXPECT_EQ(info.inserts_total(), kItems);
  EXPECT_EQ(stats.items_acknowledged, kItems);
  EXPECT_GE(stats.reconnects, 1);
  // Whatever was resent and had been stored before came back as a duplicate, not a copy.
  EXPECT_LE(info.duplicate_inserts_total(), 4 * stats.requests_resent);
  EXPECT_TRUE(writer->Close(In(absl::Seconds(10))).ok());
}

// The same, made exact: the server stores 5 requests whose acknowledgements a proxy holds
// back, then restarts on the same port. The writer resends exactly those 5; the server
// acknowledges them as duplicates and stores nothing twice.
TEST(ReplayWriterTest, LostAcksAreResentAndAcknowledgedAsDuplicates) {
  Shard shard(Spec("t"));
  TcpProxy proxy(shard.port());
  auto writer =
      ReplayWriter::Create(FastReconnectChannel(proxy.port()), WriterOptions("t", 1, 16)).value();
  for (uint64_t key = 1; key <= 5; ++key) {
    ASSERT_TRUE(writer->Append(TestTransition(key), In(absl::Seconds(10))).ok());
  }
  ASSERT_TRUE(writer->Flush(In(absl::Seconds(10))).ok());

  proxy.PauseDownstream();
  for (uint64_t key = 6; key <= 10; ++key) {
    ASSERT_TRUE(writer->Append(TestTransition(key), In(absl::Seconds(10))).ok());
  }
  ASSERT_TRUE(WaitFor([&] { return shard.info().size() == 10; }));
  EXPECT_EQ(writer->stats().items_acknowledged, 5);
  EXPECT_EQ(writer->stats().unacked_requests, 5);

  shard.Restart();
  proxy.DropConnections();
  proxy.ResumeDownstream();
  ASSERT_TRUE(writer->Flush(In(absl::Seconds(20))).ok());

  const v1::TableInfo info = shard.info();
  const ReplayWriter::Stats stats = writer->stats();
  EXPECT_EQ(info.size(), 10);
  EXPECT_EQ(info.inserts_total(), 10);
  EXPECT_EQ(info.duplicate_inserts_total(), 5);
  EXPECT_EQ(stats.requests_resent, 5);
  EXPECT_EQ(stats.items_acknowledged, 10);
  EXPECT_GE(stats.reconnects, 1);
  EXPECT_TRUE(writer->Close(In(absl::Seconds(10))).ok());
}

TEST(ReplayWriterTest, ConcurrentAppendsAreAllStored) {
  Shard shard(Spec("t"));
  auto writer = ReplayWriter::Create(shard.InProcessChannel(), WriterOptions("t", 16, 4)).value();
  KeyGenerator keys(7);
  std::vector<std::thread> actors;
  for (int t = 0; t < 4; ++t) {
    actors.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        ASSERT_TRUE(writer->Append(TestTransition(keys.Next()), In(absl::Seconds(30))).ok());
      }
    });
  }
  for (std::thread& t : actors) t.join();
  ASSERT_TRUE(writer->Close(In(absl::Seconds(30))).ok());
  EXPECT_EQ(shard.info().size(), 2000);
  EXPECT_EQ(shard.info().duplicate_inserts_total(), 0);
}

}  // namespace
}  // namespace engram::replay
