// Temporal pairs (relations from spans, speeds that fit, balance), clip frame indices, epoch
// permutation and sharding, and the counter-based RNG.
#include "services/dataloader/sampling/sampler.h"

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/dataloader/sampling/rng.h"

namespace tecl::dataloader {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using tecl::v1::Relation;

TemporalConfig Config(int length = 16) {
  TemporalConfig config;
  config.clip_length = length;
  config.speeds = {1, 2, 4, 8};
  return config;
}

TEST(SpanTest, LengthsAndRelations) {
  EXPECT_EQ(SpanLength(16, 1), 16);
  EXPECT_EQ(SpanLength(16, 8), 121);
  EXPECT_EQ(MinFramesForPair(Config()), 16);
  // A = [0, 9], B = [10, 19]: A ends before B starts.
  EXPECT_EQ(RelationOfSpans(0, 10, 10, 10), tecl::v1::RELATION_BEFORE);
  EXPECT_EQ(RelationOfSpans(10, 10, 0, 10), tecl::v1::RELATION_AFTER);
  EXPECT_EQ(RelationOfSpans(0, 10, 9, 10), tecl::v1::RELATION_OVERLAP);
  EXPECT_EQ(RelationOfSpans(9, 10, 0, 10), tecl::v1::RELATION_OVERLAP);
  EXPECT_EQ(RelationOfSpans(0, 30, 10, 5), tecl::v1::RELATION_OVERLAP);  // B inside A.
}

TEST(ClipFrameIndicesTest, SpeedTakesEverySthFrameAndReversalIsExact) {
  EXPECT_THAT(ClipFrameIndices(5, 1, 4, false), ElementsAre(5, 6, 7, 8));
  EXPECT_THAT(ClipFrameIndices(3, 4, 4, false), ElementsAre(3, 7, 11, 15));
  std::vector<int64_t> forward = ClipFrameIndices(10, 8, 16, false);
  std::vector<int64_t> backward = ClipFrameIndices(10, 8, 16, true);
  for (size_t i = 1; i < forward.size(); ++i) EXPECT_EQ(forward[i] - forward[i - 1], 8);
  std::reverse(forward.begin(), forward.end());
  EXPECT_EQ(backward, forward);
}

// Every draw, for many video lengths: the relation matches the spans at every valid t_A of both
// videos, and both clips fit in both videos.
TEST(TemporalPairTest, RelationMatchesSpansAndClipsFitBothVideos) {
  const TemporalConfig config = Config();
  Rng lengths(HashKey({1}));
  int checked = 0;
  for (int i = 0; i < 5000; ++i) {
    const int64_t n1 = lengths.Between(16, 400);
    const int64_t n2 = lengths.Between(16, 400);
    Rng rng(HashKey({2, static_cast<uint64_t>(i)}));
    absl::StatusOr<TemporalPair> pair = DrawTemporalPair(config, std::min(n1, n2), rng);
    ASSERT_TRUE(pair.ok()) << pair.status();
    const int64_t len_a = SpanLength(16, config.speeds[pair->speed_index_a]);
    const int64_t len_b = SpanLength(16, config.speeds[pair->speed_index_b]);
    for (int64_t n : {n1, n2}) {
      const StartRange starts = StartRangeForA(config, *pair, n);
      ASSERT_FALSE(starts.empty()) << "n=" << n << " delta=" << pair->delta;
      for (int64_t t_a : {starts.lo, (starts.lo + starts.hi) / 2, starts.hi}) {
        const int64_t t_b = t_a + pair->delta;
        EXPECT_GE(t_a, 0);
        EXPECT_GE(t_b, 0);
        EXPECT_LE(t_a + len_a, n);
        EXPECT_LE(t_b + len_b, n);
        EXPECT_EQ(RelationOfSpans(t_a, len_a, t_b, len_b), pair->relation);
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 5000 * 2 * 3);
}

TEST(TemporalPairTest, RelationsAreBalancedAndSpeedsUniformWhenEverythingFits) {
  const TemporalConfig config = Config();
  std::map<Relation, int> relations;
  std::map<std::pair<int, int>, int> speeds;
  int reversed = 0;
  constexpr int kDraws = 48000;
  for (int i = 0; i < kDraws; ++i) {
    Rng rng(HashKey({3, static_cast<uint64_t>(i)}));
    absl::StatusOr<TemporalPair> pair = DrawTemporalPair(config, 1000, rng);
    ASSERT_TRUE(pair.ok());
    ++relations[pair->relation];
    ++speeds[{pair->speed_index_a, pair->speed_index_b}];
    reversed += pair->reversed_a + pair->reversed_b;
  }
  ASSERT_EQ(relations.size(), 3u);
  for (const auto& [relation, count] : relations) {
    EXPECT_NEAR(count / static_cast<double>(kDraws), 1.0 / 3, 0.015) << relation;
  }
  ASSERT_EQ(speeds.size(), 16u);
  for (const auto& [pair, count] : speeds) {
    EXPECT_NEAR(count / static_cast<double>(kDraws), 1.0 / 16, 0.006)
        << pair.first << "," << pair.second;
  }
  EXPECT_NEAR(reversed / (2.0 * kDraws), 0.5, 0.01);
}

// When only some speeds fit, the pair is drawn among those (uniformly), and relations that need
// more room than the video has are never drawn.
TEST(TemporalPairTest, ShortVideosRestrictSpeedsAndRelations) {
  const TemporalConfig config = Config();
  std::map<std::pair<int, int>, int> speeds;
  std::set<Relation> relations;
  for (int i = 0; i < 4000; ++i) {
    Rng rng(HashKey({4, static_cast<uint64_t>(i)}));
    // 40 frames: spans 16 (s=1), 31 (s=2); s=4 spans 61. BEFORE/AFTER need 16+16 <= 40 only.
    absl::StatusOr<TemporalPair> pair = DrawTemporalPair(config, 40, rng);
    ASSERT_TRUE(pair.ok());
    ++speeds[{pair->speed_index_a, pair->speed_index_b}];
    relations.insert(pair->relation);
    if (pair->relation != tecl::v1::RELATION_OVERLAP) {
      EXPECT_EQ(pair->speed_index_a, 0);
      EXPECT_EQ(pair->speed_index_b, 0);
    } else {
      EXPECT_LE(pair->speed_index_a, 1);
      EXPECT_LE(pair->speed_index_b, 1);
    }
  }
  EXPECT_EQ(relations.size(), 3u);
  EXPECT_EQ(speeds.size(), 4u);  // (0,0), (0,1), (1,0), (1,1).

  // Exactly one clip length: only OVERLAP (the same span) at speed 1 fits.
  Rng rng(HashKey({5}));
  absl::StatusOr<TemporalPair> tight = DrawTemporalPair(config, 16, rng);
  ASSERT_TRUE(tight.ok());
  EXPECT_EQ(tight->relation, tecl::v1::RELATION_OVERLAP);
  EXPECT_EQ(tight->delta, 0);
  EXPECT_EQ(tight->speed_index_a, 0);

  absl::StatusOr<TemporalPair> too_short = DrawTemporalPair(config, 15, rng);
  EXPECT_EQ(too_short.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(too_short.status().message()), HasSubstr("a video of 15 frames"));
}

TEST(TemporalPairTest, SameKeySameDraw) {
  Rng a(HashKey({9, 1, 2})), b(HashKey({9, 1, 2}));
  absl::StatusOr<TemporalPair> pa = DrawTemporalPair(Config(), 500, a);
  absl::StatusOr<TemporalPair> pb = DrawTemporalPair(Config(), 500, b);
  ASSERT_TRUE(pa.ok() && pb.ok());
  EXPECT_EQ(pa->delta, pb->delta);
  EXPECT_EQ(pa->speed_index_a, pb->speed_index_a);
  EXPECT_EQ(pa->relation, pb->relation);
  EXPECT_NE(HashKey({9, 1, 2}), HashKey({9, 2, 1}));
}

TEST(EpochTest, PermutationIsDeterministicPerSeedAndEpoch) {
  std::vector<int64_t> p = EpochPermutation(7, 0, 100);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
  EXPECT_EQ(EpochPermutation(7, 0, 100), p);
  EXPECT_NE(EpochPermutation(7, 1, 100), p);
  EXPECT_NE(EpochPermutation(8, 0, 100), p);
}

TEST(EpochTest, ScheduleShardsDisjointlyAndMapsGlobalSteps) {
  // 103 videos, 4 ranks -> shard 25; 2G = 8 -> 3 steps per epoch (one video per shard unused).
  absl::StatusOr<EpochSchedule> schedule = EpochSchedule::Create(103, 4, 8);
  ASSERT_TRUE(schedule.ok());
  EXPECT_EQ(schedule->shard_size(), 25);
  EXPECT_EQ(schedule->steps_per_epoch(), 3);
  EXPECT_EQ(schedule->Locate(0).epoch, 0);
  EXPECT_EQ(schedule->Locate(2).step_in_epoch, 2);
  EXPECT_EQ(schedule->Locate(3).epoch, 1);
  EXPECT_EQ(schedule->Locate(3).step_in_epoch, 0);
  EXPECT_EQ(schedule->Locate(10).epoch, 3);
  EXPECT_EQ(schedule->Locate(10).step_in_epoch, 1);
  std::set<int64_t> positions;
  for (int rank = 0; rank < 4; ++rank) {
    for (int64_t step = 0; step < 3; ++step) {
      for (int slot = 0; slot < 8; ++slot) {
        const int64_t position = schedule->PermutationPosition(rank, step, slot);
        EXPECT_LT(position, 103);
        EXPECT_TRUE(positions.insert(position).second) << "position used twice: " << position;
        EXPECT_GE(position, rank * 25);
        EXPECT_LT(position, (rank + 1) * 25);
      }
    }
  }
  EXPECT_EQ(positions.size(), 4u * 3 * 8);

  absl::StatusOr<EpochSchedule> small = EpochSchedule::Create(20, 4, 8);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(small.status().message()),
              HasSubstr("the split has 20 videos, so each of the 4 ranks gets 5, fewer than the 8"));
}

TEST(RngTest, BoundedDrawsStayInRangeAndCoverIt) {
  Rng rng(HashKey({11}));
  std::array<int, 7> counts{};
  for (int i = 0; i < 70000; ++i) {
    const int64_t v = rng.Between(3, 9);
    ASSERT_GE(v, 3);
    ASSERT_LE(v, 9);
    ++counts[static_cast<size_t>(v - 3)];
    const double u = rng.Unit();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  for (int count : counts) EXPECT_NEAR(count, 10000, 400);
  EXPECT_FALSE(rng.Bernoulli(0.0));
  EXPECT_TRUE(rng.Bernoulli(1.0));
}

}  // namespace
}  // namespace tecl::dataloader
