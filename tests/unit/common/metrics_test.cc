#include "services/common/metrics.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::metrics {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, CounterGaugeSerialiseWithLabelsAndEscaping) {
  Registry registry;
  auto& counter = BuildCounter().Name("tecl_test_events_total").Help("Events.\nSecond line").Register(registry);
  counter.Add({{"kind", "a\"b\\c\nd"}}).Increment(2);
  counter.Add({{"kind", "a\"b\\c\nd"}}).Increment();
  counter.Add({{"kind", "plain"}}).Increment(-5);  // Ignored.
  auto& gauge = BuildGauge().Name("tecl_test_depth").Help("Depth").Labels({{"service", "x"}}).Register(registry);
  gauge.Add({}).Set(1.5);
  const std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("# HELP tecl_test_events_total Events.\\nSecond line\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE tecl_test_events_total counter\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_events_total{kind=\"a\\\"b\\\\c\\nd\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_events_total{kind=\"plain\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_depth{service=\"x\"} 1.5\n"));
  // Families appear sorted by name.
  EXPECT_LT(text.find("tecl_test_depth"), text.find("tecl_test_events_total"));
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry registry;
  auto& h = BuildHistogram().Name("tecl_test_seconds").Help("Latency").Register(registry).Add(
      {{"m", "x"}}, Histogram::BucketBoundaries{0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) h.Observe(v);
  const std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("tecl_test_seconds_bucket{m=\"x\",le=\"0.1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_seconds_bucket{m=\"x\",le=\"1\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_seconds_bucket{m=\"x\",le=\"10\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_seconds_bucket{m=\"x\",le=\"+Inf\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_seconds_sum{m=\"x\"} 55.65\n"));
  EXPECT_THAT(text, HasSubstr("tecl_test_seconds_count{m=\"x\"} 5\n"));
}

TEST(MetricsTest, SameLabelsSameMetricAndRemove) {
  Registry registry;
  auto& family = BuildGauge().Name("tecl_test_g").Help("g").Register(registry);
  Gauge& a = family.Add({{"job", "1"}});
  Gauge& b = family.Add({{"job", "1"}});
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&BuildGauge().Name("tecl_test_g").Help("g").Register(registry), &family);
  family.Remove({{"job", "1"}});
  EXPECT_FALSE(family.Has({{"job", "1"}}));
  EXPECT_EQ(registry.Serialize(), "");  // Empty families print nothing.
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry registry;
  Counter& c = BuildCounter().Name("tecl_test_c_total").Help("c").Register(registry).Add({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 10000; ++i) c.Increment();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 40000);
}

TEST(MetricsTest, CollectCallbacksRunBeforeSerialisation) {
  Registry registry;
  Gauge& g = BuildGauge().Name("tecl_test_age_seconds").Help("age").Register(registry).Add({});
  int calls = 0;
  registry.AddCollectCallback([&] { g.Set(++calls * 10); });
  EXPECT_THAT(registry.Serialize(), HasSubstr("tecl_test_age_seconds 10\n"));
  EXPECT_THAT(registry.Serialize(), HasSubstr("tecl_test_age_seconds 20\n"));
}

TEST(MetricsTest, NameValidationAndValueFormatting) {
  EXPECT_TRUE(IsValidMetricName("tecl_x:y_total"));
  EXPECT_FALSE(IsValidMetricName("9abc"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_TRUE(IsValidLabelName("job_id"));
  EXPECT_FALSE(IsValidLabelName("__reserved"));
  EXPECT_FALSE(IsValidLabelName("a.b"));
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
}

TEST(MetricsDeathTest, InvalidNameIsAProgrammerError) {
  Registry registry;
  EXPECT_DEATH(BuildCounter().Name("bad name").Help("x").Register(registry), "invalid metric name");
  auto& family = BuildCounter().Name("tecl_ok_total").Help("x").Register(registry);
  EXPECT_DEATH(family.Add({{"le", "1"}}), "invalid label name");
  EXPECT_DEATH(BuildGauge().Name("tecl_ok_total").Help("x").Register(registry), "different types");
}

}  // namespace
}  // namespace tecl::metrics
