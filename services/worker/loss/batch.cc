#include "services/worker/loss/batch.h"

#include <torch/torch.h>

#include <sstream>
#include <string>
#include <vector>

#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "batch: " + what);
}

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// The label tensor as a CPU int64 vector of `expected` elements.
std::vector<int64_t> Labels(const torch::Tensor& tensor, const char* name, int64_t expected,
                            const char* what) {
  if (!tensor.defined()) Fail(Cat(name, " is missing"));
  if (tensor.scalar_type() != torch::kLong && tensor.scalar_type() != torch::kInt &&
      tensor.scalar_type() != torch::kBool) {
    Fail(Cat(name, " must be an integer tensor, got ", tensor.scalar_type()));
  }
  if (tensor.dim() != 1 || tensor.size(0) != expected) {
    Fail(Cat(name, " must have shape (", expected, ") (one per ", what, "), got ", tensor.sizes()));
  }
  const torch::Tensor cpu = tensor.to(torch::kCPU, torch::kLong).contiguous();
  return std::vector<int64_t>(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + expected);
}

torch::Tensor ToTensor(const std::vector<int64_t>& values) {
  return torch::tensor(values, torch::kLong);
}

}  // namespace

Relation SwappedRelation(Relation relation) {
  switch (relation) {
    case Relation::kBefore: return Relation::kAfter;
    case Relation::kAfter: return Relation::kBefore;
    case Relation::kOverlap: return Relation::kOverlap;
  }
  return relation;
}

int64_t OrderClass(Relation relation) { return static_cast<int64_t>(relation) - 1; }

BatchIndex BatchIndex::To(const c10::Device& device) const {
  BatchIndex out = *this;
  for (torch::Tensor* t : {&out.clip_a, &out.clip_b, &out.speed_label, &out.direction_label,
                           &out.video, &out.transformation_label, &out.order_label,
                           &out.instance_anchor, &out.instance_positive}) {
    if (t->defined()) *t = t->to(device);
  }
  return out;
}

BatchIndex IndexBatch(const Batch& batch, const BatchLayoutOptions& options) {
  const bool same_frames = options.instance_positive == InstancePositive::kSameFrames;
  const int64_t per_video = same_frames ? 3 : 2;
  if (!batch.clips.defined()) Fail("clips are missing");
  if (batch.clips.scalar_type() != torch::kByte || batch.clips.dim() != 5 ||
      batch.clips.size(4) != 3) {
    Fail(Cat("clips must be uint8 (N, T, H, W, 3), got ", batch.clips.scalar_type(), " ",
             batch.clips.sizes()));
  }
  if (!batch.relation.defined() || batch.relation.dim() != 1 || batch.relation.size(0) < 1) {
    Fail("relation must have shape (G) with G >= 1 groups");
  }
  const int64_t groups = batch.relation.size(0);
  const int64_t videos = 2 * groups;
  const int64_t n = batch.clips.size(0);
  if (n != videos * per_video) {
    Fail(Cat(n, " clips for ", groups, " groups; expected ", videos * per_video, " (", per_video,
             " clips per video, 2 videos per group",
             same_frames ? ", instance_positive same_frames" : ", instance_positive other_clip",
             ")"));
  }
  const auto video = Labels(batch.video, "video", n, "clip");
  const auto group = Labels(batch.group, "group", n, "clip");
  const auto role = Labels(batch.role, "role", n, "clip");
  const auto speed = Labels(batch.speed_index, "speed_index", n, "clip");
  const auto reversed = Labels(batch.reversed, "reversed", n, "clip");
  const auto relation = Labels(batch.relation, "relation", groups, "group");

  std::vector<int64_t> clip_a(videos, -1), clip_b(videos, -1), clip_same(videos, -1);
  for (int64_t i = 0; i < n; ++i) {
    if (video[i] < 0 || video[i] >= videos) {
      Fail(Cat("clip ", i, ": video ", video[i], " is outside 0..", videos - 1));
    }
    if (group[i] != video[i] / 2) {
      Fail(Cat("clip ", i, ": video ", video[i], " is in group ", group[i],
               "; group g holds videos 2g and 2g+1"));
    }
    if (speed[i] < 0 || speed[i] >= options.num_speeds) {
      Fail(Cat("clip ", i, ": speed_index ", speed[i], " is outside 0..", options.num_speeds - 1,
               " (", options.num_speeds, " speeds)"));
    }
    if (reversed[i] != 0 && reversed[i] != 1) {
      Fail(Cat("clip ", i, ": reversed ", reversed[i], " must be 0 or 1"));
    }
    std::vector<int64_t>* slot = nullptr;
    const char* role_name = "";
    switch (role[i]) {
      case static_cast<int64_t>(ClipRole::kA): slot = &clip_a; role_name = "A"; break;
      case static_cast<int64_t>(ClipRole::kB): slot = &clip_b; role_name = "B"; break;
      case static_cast<int64_t>(ClipRole::kSameFrames):
        if (!same_frames) {
          Fail(Cat("clip ", i, " has role SAME_FRAMES but instance_positive is other_clip"));
        }
        slot = &clip_same;
        role_name = "SAME_FRAMES";
        break;
      default:
        Fail(Cat("clip ", i, ": role ", role[i], " is not A (1), B (2) or SAME_FRAMES (3)"));
    }
    if ((*slot)[video[i]] != -1) {
      Fail(Cat("video ", video[i], " has 2 clips with role ", role_name, " (clips ",
               (*slot)[video[i]], " and ", i, "); every video needs exactly one clip A and one clip B",
               same_frames ? " and one SAME_FRAMES clip" : ""));
    }
    (*slot)[video[i]] = i;
  }
  // Clip counts match and no role repeats, so every video has each of its roles exactly once.

  for (int64_t g = 0; g < groups; ++g) {
    if (relation[g] < 1 || relation[g] > 3) {
      Fail(Cat("group ", g, ": relation ", relation[g], " is not BEFORE (1), AFTER (2) or OVERLAP (3)"));
    }
    const int64_t v0 = 2 * g, v1 = 2 * g + 1;
    if (speed[clip_a[v0]] != speed[clip_a[v1]] || speed[clip_b[v0]] != speed[clip_b[v1]] ||
        reversed[clip_a[v0]] != reversed[clip_a[v1]] || reversed[clip_b[v0]] != reversed[clip_b[v1]]) {
      Fail(Cat("group ", g, ": videos ", v0, " and ", v1,
               " have different temporal transformations (speed/direction of clip A or B); both "
               "videos of a group must share the pair"));
    }
  }
  if (same_frames) {
    for (int64_t v = 0; v < videos; ++v) {
      if (speed[clip_same[v]] != speed[clip_a[v]] || reversed[clip_same[v]] != reversed[clip_a[v]]) {
        Fail(Cat("video ", v, ": the SAME_FRAMES clip must have clip A's speed and direction"));
      }
    }
  }

  BatchIndex index;
  index.num_groups = groups;
  index.num_videos = videos;
  index.num_clips = n;
  index.clip_a = ToTensor(clip_a);
  index.clip_b = ToTensor(clip_b);
  index.speed_label = ToTensor(speed);
  index.direction_label = ToTensor(reversed);
  index.video = ToTensor(video);

  std::vector<int64_t> transformation(2 * videos), order(2 * videos);
  const int64_t num_speeds = options.num_speeds;
  const auto key = [num_speeds](int64_t s_first, int64_t s_second, int64_t d_first,
                                int64_t d_second, Relation r) {
    return (((s_first * num_speeds + s_second) * 2 + d_first) * 2 + d_second) * 3 + OrderClass(r);
  };
  for (int64_t v = 0; v < videos; ++v) {
    const int64_t a = clip_a[v], b = clip_b[v];
    const auto r = static_cast<Relation>(relation[v / 2]);
    transformation[v] = key(speed[a], speed[b], reversed[a], reversed[b], r);
    transformation[videos + v] = key(speed[b], speed[a], reversed[b], reversed[a], SwappedRelation(r));
    order[v] = OrderClass(r);
    order[videos + v] = OrderClass(SwappedRelation(r));
  }
  index.transformation_label = ToTensor(transformation);
  index.order_label = ToTensor(order);

  std::vector<int64_t> positive(n, -1);
  for (int64_t v = 0; v < videos; ++v) {
    const int64_t partner = same_frames ? clip_same[v] : clip_b[v];
    positive[clip_a[v]] = partner;
    positive[partner] = clip_a[v];
  }
  std::vector<int64_t> anchors, positives;
  for (int64_t i = 0; i < n; ++i) {
    if (positive[i] < 0) continue;
    anchors.push_back(i);
    positives.push_back(positive[i]);
  }
  index.instance_anchor = ToTensor(anchors);
  index.instance_positive = ToTensor(positives);
  return index;
}

}  // namespace tecl::worker::core
