#include "services/coordinator/state/stragglers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tecl::coordinator {
namespace {

using ::testing::ElementsAre;

TEST(StragglersTest, ARankPastFactorTimesTheOthersMedianIsFlagged) {
  EXPECT_THAT(FindStragglers({0.20, 0.21, 0.19, 0.45}, 1.5),
              ElementsAre(false, false, false, true));
  // Just below and just above 1.5 x the others' median (0.2).
  EXPECT_THAT(FindStragglers({0.2, 0.2, 0.2, 0.299}, 1.5), ElementsAre(false, false, false, false));
  EXPECT_THAT(FindStragglers({0.2, 0.2, 0.2, 0.301}, 1.5), ElementsAre(false, false, false, true));
}

TEST(StragglersTest, TwoRanksCompareWithEachOther) {
  EXPECT_THAT(FindStragglers({0.1, 0.4}, 1.5), ElementsAre(false, true));
  EXPECT_THAT(FindStragglers({0.1, 0.12}, 1.5), ElementsAre(false, false));
}

TEST(StragglersTest, RanksWithoutAReportAreNeitherFlaggedNorCounted) {
  EXPECT_THAT(FindStragglers({0.0, 0.5}, 1.5), ElementsAre(false, false));
  EXPECT_THAT(FindStragglers({0.0, 0.1, 0.5}, 1.5), ElementsAre(false, false, true));
  EXPECT_THAT(FindStragglers({0.3}, 1.5), ElementsAre(false));
  EXPECT_TRUE(FindStragglers({}, 1.5).empty());
}

TEST(StragglersTest, EachSlowRankIsJudgedAgainstTheOthers) {
  // Two of four at twice the step time: each slow rank's others' median is the fast ranks' 0.1.
  EXPECT_THAT(FindStragglers({0.1, 0.1, 0.2, 0.2}, 1.5), ElementsAre(false, false, true, true));
  // Three of four slow: the fast one is not a straggler, and none of the slow ones either.
  EXPECT_THAT(FindStragglers({0.1, 0.2, 0.2, 0.2}, 1.5), ElementsAre(false, false, false, false));
}

TEST(StragglersTest, OwnTimeIsTheStepWithoutTheAllReduce) {
  EXPECT_DOUBLE_EQ(OwnStepSeconds(0.5, 0.3), 0.2);
  EXPECT_DOUBLE_EQ(OwnStepSeconds(0.5, 0.7), 0.0);  // Clock skew between the two timers.
}

}  // namespace
}  // namespace tecl::coordinator
