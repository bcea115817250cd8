#include "services/worker/dist/bucket_assignment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

namespace tecl::worker::dist {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ParameterSpec Float(int64_t numel) { return {numel, at::kFloat, c10::Device(c10::kCPU)}; }
ParameterSpec Double(int64_t numel) { return {numel, at::kDouble, c10::Device(c10::kCPU)}; }

TEST(AssignBucketsTest, VisitsParametersInReverseOrderAndClosesAtTheCap) {
  // 100-byte cap = 25 floats.
  auto buckets = AssignBuckets({Float(10), Float(20), Float(30), Float(40)}, 100);
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_THAT(buckets[0].parameters, ElementsAre(3));
  EXPECT_THAT(buckets[1].parameters, ElementsAre(2));
  EXPECT_THAT(buckets[2].parameters, ElementsAre(1, 0));
  EXPECT_THAT(buckets[2].offsets, ElementsAre(0, 20));
  EXPECT_EQ(buckets[0].numel, 40);
  EXPECT_EQ(buckets[2].numel, 30);
}

TEST(AssignBucketsTest, LastBucketMayBeSmallAndAHugeParameterGetsItsOwn) {
  auto buckets = AssignBuckets({Float(1), Float(1000), Float(2), Float(3)}, 16);  // cap: 4 floats
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_THAT(buckets[0].parameters, ElementsAre(3, 2));  // 5 floats >= 4
  EXPECT_THAT(buckets[1].parameters, ElementsAre(1));     // alone, far over the cap
  EXPECT_THAT(buckets[2].parameters, ElementsAre(0));     // the remainder
}

TEST(AssignBucketsTest, BucketsNeverMixDtypesAndKeepFirstReadyOrder) {
  auto buckets = AssignBuckets({Float(4), Double(4), Float(4), Double(4)}, 1 << 20);
  ASSERT_EQ(buckets.size(), 2u);
  // The double parameter 3 is visited first, so the double bucket is launched first.
  EXPECT_EQ(buckets[0].dtype, at::kDouble);
  EXPECT_THAT(buckets[0].parameters, ElementsAre(3, 1));
  EXPECT_EQ(buckets[1].dtype, at::kFloat);
  EXPECT_THAT(buckets[1].parameters, ElementsAre(2, 0));
  EXPECT_THAT(buckets[1].offsets, ElementsAre(0, 4));
}

TEST(AssignBucketsTest, CapCountsBytesNotElements) {
  // 32 bytes: four floats or two doubles close a bucket.
  auto doubles = AssignBuckets({Double(2), Double(2), Double(2)}, 32);
  EXPECT_EQ(doubles.size(), 2u);
  auto floats = AssignBuckets({Float(2), Float(2), Float(2)}, 32);
  EXPECT_EQ(floats.size(), 1u);
}

TEST(AssignBucketsTest, BucketsNeverMixDevices) {
  ParameterSpec cuda{8, at::kFloat, c10::Device(c10::kCUDA, 0)};
  auto buckets = AssignBuckets({Float(8), cuda, Float(8)}, 1 << 20);
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_TRUE(buckets[0].device.is_cpu());
  EXPECT_THAT(buckets[0].parameters, ElementsAre(2, 0));
  EXPECT_TRUE(buckets[1].device.is_cuda());
}

TEST(AssignBucketsTest, EveryParameterLandsInExactlyOneBucket) {
  std::vector<ParameterSpec> specs;
  for (int i = 0; i < 50; ++i) specs.push_back(i % 3 == 0 ? Double(i + 1) : Float(i + 1));
  auto buckets = AssignBuckets(specs, 200);
  std::vector<int> seen(specs.size(), 0);
  for (const BucketSpec& b : buckets) {
    int64_t expected_offset = 0;
    for (size_t k = 0; k < b.parameters.size(); ++k) {
      ++seen[b.parameters[k]];
      EXPECT_EQ(specs[b.parameters[k]].dtype, b.dtype);
      EXPECT_EQ(b.offsets[k], expected_offset);
      expected_offset += specs[b.parameters[k]].numel;
    }
    EXPECT_EQ(b.numel, expected_offset);
  }
  for (int count : seen) EXPECT_EQ(count, 1);
}

TEST(AssignBucketsTest, RejectsNonPositiveSizes) {
  try {
    AssignBuckets({Float(1)}, 0);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("bucket size must be positive"));
  }
  try {
    BucketBytes(-1);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("bucket_size_mb must be positive"));
  }
  EXPECT_EQ(BucketBytes(25), 25 * 1024 * 1024);
}

}  // namespace
}  // namespace tecl::worker::dist
