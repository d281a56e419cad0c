#include "bench/common/bench_report.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace engram::bench {
namespace {

TEST(BenchReportTest, JsonHasTheDocumentedShape) {
  Report report("envs");
  report.AddConfig("seconds", "1");
  report.AddConfig("note", "a \"quoted\" \\ value");
  report.Add("minatar/breakout/steps_per_s", 1.5e7, "steps/s");
  report.Add("broken", std::nan(""), "x");
  EXPECT_EQ(report.ToJson(),
            "{\"bench\": \"envs\", \"config\": {\"seconds\": \"1\", \"note\": \"a \\\"quoted\\\" "
            "\\\\ value\"}, \"results\": [\n"
            "  {\"name\": \"minatar/breakout/steps_per_s\", \"value\": 1.5e+07, \"unit\": "
            "\"steps/s\"},\n"
            "  {\"name\": \"broken\", \"value\": null, \"unit\": \"x\"}\n]}\n");
}

TEST(BenchReportTest, WritesTheFileOrFailsWithStatus) {
  Report report("x");
  report.Add("a", 1, "u");
  const std::string path = ::testing::TempDir() + "/bench_report_test.json";
  ASSERT_EQ(report.WriteJson(path), "");
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  EXPECT_EQ(contents.str(), report.ToJson());
  EXPECT_NE(report.WriteJson("/nonexistent-dir/out.json"), "");
  EXPECT_EQ(report.Finish(""), 0);
  EXPECT_EQ(report.Finish("/nonexistent-dir/out.json"), 1);
}

TEST(BenchReportTest, PolicyRngCoversTheActionsEvenly) {
  PolicyRng policy(3);
  int counts[6] = {};
  for (int i = 0; i < 60000; ++i) ++counts[policy.Action(6)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
}

}  // namespace
}  // namespace engram::bench
