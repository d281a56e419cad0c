#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::testing::HasSubstr;

// GET /metrics from 127.0.0.1:port with a plain socket.
std::string Scrape(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

TEST(MetricsTest, ServesPrefixedFamiliesAndBuildInfo) {
  auto metrics = Metrics::Start("test_process", 0, "127.0.0.1");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  ASSERT_GT((*metrics)->port(), 0);
  AddCounter((*metrics)->registry(), "frames_total", "Frames stepped.").Add({}).Increment(42);
  AddGauge((*metrics)->registry(), "engram_replay_size", "Items.").Add({}).Set(7);

  const std::string body = Scrape((*metrics)->port());
  EXPECT_THAT(body, HasSubstr("200 OK"));
  EXPECT_THAT(body, HasSubstr("engram_frames_total 42"));
  EXPECT_THAT(body, HasSubstr("engram_replay_size 7"));
  EXPECT_THAT(body, HasSubstr("engram_build_info{"));
  EXPECT_THAT(body, HasSubstr("process=\"test_process\""));
  EXPECT_THAT(body, HasSubstr(std::string("version=\"") + EngramVersion() + "\""));
}

TEST(MetricsTest, PortInUseIsUnavailable) {
  auto first = Metrics::Start("a", 0, "127.0.0.1");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Metrics::Start("b", (*first)->port(), "127.0.0.1");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(MetricsTest, BadPortIsInvalidArgument) {
  EXPECT_EQ(Metrics::Start("a", 70000).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Metrics::Start("a", -2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MetricsTest, UnexposedRegistryStillCollects) {
  auto metrics = Metrics::CreateUnexposed("tool");
  EXPECT_EQ(metrics->port(), -1);
  AddCounter(metrics->registry(), "x_total", "x").Add({}).Increment();
  bool found_build_info = false, found_x = false;
  for (const auto& family : metrics->registry().Collect()) {
    found_build_info |= family.name == "engram_build_info";
    found_x |= family.name == "engram_x_total";
  }
  EXPECT_TRUE(found_build_info);
  EXPECT_TRUE(found_x);
  EXPECT_EQ(MetricName("engram_a"), "engram_a");
  EXPECT_EQ(MetricName("a"), "engram_a");
}

}  // namespace
}  // namespace engram
