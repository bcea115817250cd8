#include "services/dataloader/video/decode_plan.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::video {
namespace {

using ::testing::ElementsAre;

// A closed-GOP stream without reordering: frame k is packet k, GOPs of `gop` frames.
struct FakeIndex {
  FakeIndex(int frames, int gop) {
    for (int k = 0; k < frames; ++k) {
      start.push_back(k / gop * gop);
      packet.push_back(k);
    }
  }
  std::vector<int32_t> start;
  std::vector<int32_t> packet;
};

TEST(DecodePlanTest, OneClipInsideAGopStartsAtItsKeyframe) {
  FakeIndex index(100, 10);
  const auto spans = PlanSpans({12, 13, 14}, index.start, index.packet, kMinSeekGainPackets);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].start_packet, 10);
  EXPECT_EQ(spans[0].end_packet, 14);
  EXPECT_THAT(spans[0].frames, ElementsAre(12, 13, 14));
}

TEST(DecodePlanTest, FarApartFramesGetOwnSpansAndNearOnesMerge) {
  FakeIndex index(100, 10);
  // 55's keyframe (50) is far past 12: seek. 22's keyframe (20) is within 8 packets of 14: go on.
  const auto spans = PlanSpans({12, 14, 22, 55}, index.start, index.packet, kMinSeekGainPackets);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].start_packet, 10);
  EXPECT_EQ(spans[0].end_packet, 22);
  EXPECT_THAT(spans[0].frames, ElementsAre(12, 14, 22));
  EXPECT_EQ(spans[1].start_packet, 50);
  EXPECT_EQ(spans[1].end_packet, 55);
}

TEST(DecodePlanTest, FramesOfTheSameGopNeverSeekAgain) {
  FakeIndex index(300, 250);
  const auto spans = PlanSpans({5, 100, 200}, index.start, index.packet, kMinSeekGainPackets);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].start_packet, 0);
  EXPECT_EQ(spans[0].end_packet, 200);
}

TEST(DecodePlanTest, IntraOnlyVideoSeeksOnlyForLongGaps) {
  FakeIndex index(400, 1);  // Every frame a keyframe.
  const auto spans = PlanSpans({10, 20, 200}, index.start, index.packet, kMinSeekGainPacketsIntra);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].start_packet, 10);
  EXPECT_EQ(spans[0].end_packet, 20);
  EXPECT_EQ(spans[1].start_packet, 200);
}

TEST(DecodePlanTest, ReorderedFramesEndAtTheLastPacketNeeded) {
  // Presentation I B B P (packets I P B B): frame 1 and 2 are packets 2, 3; frame 3 is packet 1.
  const std::vector<int32_t> start = {0, 0, 0, 0, 4, 4, 4, 4};
  const std::vector<int32_t> packet = {0, 2, 3, 1, 4, 6, 7, 5};
  const auto spans = PlanSpans({2, 3}, start, packet, kMinSeekGainPackets);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].start_packet, 0);
  EXPECT_EQ(spans[0].end_packet, 3);
}

TEST(DecodePlanTest, AFrameThatMustStartEarlierWidensTheSpan) {
  // Open GOP: frame 9 (a leading picture of the keyframe at packet 10) decodes from packet 0.
  std::vector<int32_t> start(20, 10);
  std::vector<int32_t> packet(20);
  for (int k = 0; k < 20; ++k) packet[k] = k;
  for (int k = 0; k < 10; ++k) start[k] = 0;
  const auto spans = PlanSpans({9, 12}, start, packet, kMinSeekGainPackets);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].start_packet, 0);
  EXPECT_EQ(spans[0].end_packet, 12);
}

TEST(DecodePlanTest, NothingNeededPlansNothing) {
  FakeIndex index(10, 5);
  EXPECT_TRUE(PlanSpans({}, index.start, index.packet, kMinSeekGainPackets).empty());
}

}  // namespace
}  // namespace tecl::video
