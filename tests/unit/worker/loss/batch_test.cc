// Batch layout validation and the derived index/label tensors.
#include "services/worker/loss/batch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

using ::testing::HasSubstr;

std::vector<int64_t> Vec(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Two groups in the dataloader's order (video v: rows 2v = A, 2v+1 = B).
// Group 0: s_A=0, s_B=2, forward A, backward B, BEFORE. Group 1: s_A=s_B=3, both backward, OVERLAP.
Batch TwoGroups() {
  Batch b;
  b.clips = torch::zeros({8, 2, 4, 4, 3}, torch::kByte);
  b.video = torch::tensor({0, 0, 1, 1, 2, 2, 3, 3}, torch::kLong);
  b.group = torch::tensor({0, 0, 0, 0, 1, 1, 1, 1}, torch::kLong);
  b.role = torch::tensor({1, 2, 1, 2, 1, 2, 1, 2}, torch::kLong);
  b.speed_index = torch::tensor({0, 2, 0, 2, 3, 3, 3, 3}, torch::kLong);
  b.reversed = torch::tensor({0, 1, 0, 1, 1, 1, 1, 1}, torch::kLong);
  b.relation = torch::tensor({1, 3}, torch::kLong);
  return b;
}

Batch Permuted(const Batch& b, const std::vector<int64_t>& order) {
  const torch::Tensor index = torch::tensor(order, torch::kLong);
  Batch out = b;
  out.clips = b.clips.index_select(0, index);
  for (torch::Tensor* t : {&out.video, &out.group, &out.role, &out.speed_index, &out.reversed}) {
    *t = t->index_select(0, index);
  }
  return out;
}

TEST(IndexBatchTest, DataloaderOrder) {
  const BatchIndex index = IndexBatch(TwoGroups(), {4, InstancePositive::kOtherClip});
  EXPECT_EQ(index.num_groups, 2);
  EXPECT_EQ(index.num_videos, 4);
  EXPECT_EQ(index.num_clips, 8);
  EXPECT_EQ(Vec(index.clip_a), (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(Vec(index.clip_b), (std::vector<int64_t>{1, 3, 5, 7}));
  EXPECT_EQ(Vec(index.speed_label), (std::vector<int64_t>{0, 2, 0, 2, 3, 3, 3, 3}));
  EXPECT_EQ(Vec(index.direction_label), (std::vector<int64_t>{0, 1, 0, 1, 1, 1, 1, 1}));
  // Pair rows: [h_A,h_B] of videos 0..3, then [h_B,h_A]. BEFORE -> 0, swapped AFTER -> 1.
  EXPECT_EQ(Vec(index.order_label), (std::vector<int64_t>{0, 0, 2, 2, 1, 1, 2, 2}));
  const auto label = Vec(index.transformation_label);
  EXPECT_EQ(label[0], label[1]);  // Both videos of a group share the pair.
  EXPECT_EQ(label[2], label[3]);
  EXPECT_EQ(label[4], label[5]);
  EXPECT_NE(label[0], label[4]);  // (0,2,fwd,bwd,BEFORE) != (2,0,bwd,fwd,AFTER).
  EXPECT_NE(label[0], label[2]);
  // (3,3,bwd,bwd,OVERLAP) reversed is itself.
  EXPECT_EQ(label[2], label[6]);
  EXPECT_EQ(Vec(index.instance_anchor), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(Vec(index.instance_positive), (std::vector<int64_t>{1, 0, 3, 2, 5, 4, 7, 6}));
}

TEST(IndexBatchTest, TransformationLabelSeparatesEachField) {
  // Changing any one of s_A, s_B, d_A, d_B, r of group 1 changes its label.
  const auto base = Vec(IndexBatch(TwoGroups(), {4, InstancePositive::kOtherClip}).transformation_label);
  const std::vector<std::function<void(Batch&)>> edits = {
      [](Batch& b) { b.speed_index.index_put_({torch::tensor({4, 6})}, 1); },  // s_A
      [](Batch& b) { b.speed_index.index_put_({torch::tensor({5, 7})}, 1); },  // s_B
      [](Batch& b) { b.reversed.index_put_({torch::tensor({4, 6})}, 0); },     // d_A
      [](Batch& b) { b.reversed.index_put_({torch::tensor({5, 7})}, 0); },     // d_B
      [](Batch& b) { b.relation[1] = 2; },                                       // r
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    Batch b = TwoGroups();
    edits[i](b);
    const auto label = Vec(IndexBatch(b, {4, InstancePositive::kOtherClip}).transformation_label);
    EXPECT_NE(label[2], base[2]) << "edit " << i;
    EXPECT_EQ(label[2], label[3]) << "edit " << i;
    EXPECT_EQ(label[0], base[0]) << "edit " << i;
  }
}

TEST(IndexBatchTest, AnyClipOrder) {
  const std::vector<int64_t> order = {5, 2, 7, 0, 3, 6, 1, 4};  // Row i holds original clip order[i].
  const BatchIndex index = IndexBatch(Permuted(TwoGroups(), order), {4, InstancePositive::kOtherClip});
  // Original clip A of video v is row 2v; find where it went.
  std::vector<int64_t> where(8);
  for (int64_t i = 0; i < 8; ++i) where[order[i]] = i;
  EXPECT_EQ(Vec(index.clip_a), (std::vector<int64_t>{where[0], where[2], where[4], where[6]}));
  EXPECT_EQ(Vec(index.clip_b), (std::vector<int64_t>{where[1], where[3], where[5], where[7]}));
  const auto anchors = Vec(index.instance_anchor), positives = Vec(index.instance_positive);
  ASSERT_EQ(anchors.size(), 8u);
  for (size_t k = 0; k < anchors.size(); ++k) {
    EXPECT_EQ(order[positives[k]], order[anchors[k]] ^ 1) << "anchor row " << anchors[k];
  }
  EXPECT_EQ(Vec(index.order_label), (std::vector<int64_t>{0, 0, 2, 2, 1, 1, 2, 2}));
}

Batch WithSameFrames() {
  // One group, video v: rows 3v = A, 3v+1 = B, 3v+2 = SAME_FRAMES.
  Batch b;
  b.clips = torch::zeros({6, 2, 4, 4, 3}, torch::kByte);
  b.video = torch::tensor({0, 0, 0, 1, 1, 1}, torch::kLong);
  b.group = torch::tensor({0, 0, 0, 0, 0, 0}, torch::kLong);
  b.role = torch::tensor({1, 2, 3, 1, 2, 3}, torch::kLong);
  b.speed_index = torch::tensor({1, 0, 1, 1, 0, 1}, torch::kLong);
  b.reversed = torch::tensor({1, 0, 1, 1, 0, 1}, torch::kLong);
  b.relation = torch::tensor({2}, torch::kLong);
  return b;
}

TEST(IndexBatchTest, SameFramesPositives) {
  const BatchIndex index = IndexBatch(WithSameFrames(), {2, InstancePositive::kSameFrames});
  EXPECT_EQ(Vec(index.clip_a), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(Vec(index.clip_b), (std::vector<int64_t>{1, 4}));
  // Anchors: A and SAME_FRAMES clips; B is no anchor.
  EXPECT_EQ(Vec(index.instance_anchor), (std::vector<int64_t>{0, 2, 3, 5}));
  EXPECT_EQ(Vec(index.instance_positive), (std::vector<int64_t>{2, 0, 5, 3}));
  EXPECT_EQ(Vec(index.order_label), (std::vector<int64_t>{1, 1, 0, 0}));
}

void ExpectInvalid(const Batch& batch, const BatchLayoutOptions& options, const std::string& text) {
  try {
    IndexBatch(batch, options);
    FAIL() << "accepted; expected: " << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr(text));
  }
}

TEST(IndexBatchTest, RejectsInconsistentLayouts) {
  const BatchLayoutOptions other{4, InstancePositive::kOtherClip};
  {
    Batch b = TwoGroups();
    b.clips = b.clips.narrow(0, 0, 6);
    ExpectInvalid(b, other, "batch: 6 clips for 2 groups; expected 8 (2 clips per video");
  }
  {
    Batch b = TwoGroups();
    b.clips = torch::zeros({8, 2, 4, 4, 3});
    ExpectInvalid(b, other, "batch: clips must be uint8 (N, T, H, W, 3), got Float");
  }
  {
    Batch b = TwoGroups();
    b.role[1] = 1;
    ExpectInvalid(b, other, "batch: video 0 has 2 clips with role A (clips 0 and 1)");
  }
  {
    Batch b = TwoGroups();
    b.role[1] = 7;
    ExpectInvalid(b, other, "batch: clip 1: role 7 is not A (1), B (2) or SAME_FRAMES (3)");
  }
  {
    Batch b = TwoGroups();
    b.group[2] = 1;
    ExpectInvalid(b, other, "batch: clip 2: video 1 is in group 1; group g holds videos 2g and 2g+1");
  }
  {
    Batch b = TwoGroups();
    b.video[7] = 4;
    ExpectInvalid(b, other, "batch: clip 7: video 4 is outside 0..3");
  }
  {
    Batch b = TwoGroups();
    b.speed_index[3] = 4;
    ExpectInvalid(b, other, "batch: clip 3: speed_index 4 is outside 0..3 (4 speeds)");
  }
  {
    Batch b = TwoGroups();
    b.reversed[0] = 2;
    ExpectInvalid(b, other, "batch: clip 0: reversed 2 must be 0 or 1");
  }
  {
    Batch b = TwoGroups();
    b.relation[0] = 0;
    ExpectInvalid(b, other, "batch: group 0: relation 0 is not BEFORE (1), AFTER (2) or OVERLAP (3)");
  }
  {
    Batch b = TwoGroups();
    b.speed_index[6] = 1;  // Video 3's clip A differs from video 2's.
    ExpectInvalid(b, other, "batch: group 1: videos 2 and 3 have different temporal transformations");
  }
  {
    Batch b = TwoGroups();
    b.video = torch::tensor({0, 0, 1, 1, 2, 2, 3});
    ExpectInvalid(b, other, "batch: video must have shape (8) (one per clip)");
  }
  {
    Batch b = TwoGroups();
    b.relation = torch::Tensor();
    ExpectInvalid(b, other, "batch: relation must have shape (G) with G >= 1 groups");
  }
  ExpectInvalid(WithSameFrames(), {2, InstancePositive::kOtherClip},
                "batch: 6 clips for 1 groups; expected 4 (2 clips per video");
  ExpectInvalid(TwoGroups(), {4, InstancePositive::kSameFrames},
                "batch: 8 clips for 2 groups; expected 12 (3 clips per video");
  {
    Batch b = WithSameFrames();
    b.reversed[2] = 0;
    ExpectInvalid(b, {2, InstancePositive::kSameFrames},
                  "batch: video 0: the SAME_FRAMES clip must have clip A's speed and direction");
  }
  {
    Batch b = TwoGroups();
    b.clips = torch::zeros({4, 2, 4, 4, 3}, torch::kByte);
    b.video = torch::tensor({0, 0, 1, 1});
    b.group = torch::tensor({0, 0, 0, 0});
    b.role = torch::tensor({1, 3, 1, 2});
    b.speed_index = torch::tensor({0, 0, 0, 0});
    b.reversed = torch::tensor({0, 0, 0, 0});
    b.relation = torch::tensor({1});
    ExpectInvalid(b, other, "batch: clip 1 has role SAME_FRAMES but instance_positive is other_clip");
  }
}

TEST(RelationTest, Swapped) {
  EXPECT_EQ(SwappedRelation(Relation::kBefore), Relation::kAfter);
  EXPECT_EQ(SwappedRelation(Relation::kAfter), Relation::kBefore);
  EXPECT_EQ(SwappedRelation(Relation::kOverlap), Relation::kOverlap);
  EXPECT_EQ(OrderClass(Relation::kBefore), 0);
  EXPECT_EQ(OrderClass(Relation::kAfter), 1);
  EXPECT_EQ(OrderClass(Relation::kOverlap), 2);
}

}  // namespace
}  // namespace tecl::worker::core
