#include "services/worker/loss/global_batch.h"

#include <torch/torch.h>

#include <sstream>

#include "services/worker/loss/losses.h"
#include "services/worker/model/error.h"

namespace tecl::worker::core {
namespace {

void CheckGlobal(const GlobalBatch& global) {
  if (global.world_size < 1 || global.rank < 0 || global.rank >= global.world_size ||
      !global.gather) {
    std::ostringstream message;
    message << "global batch: rank " << global.rank << " of " << global.world_size
            << (global.gather ? "" : " without a gather") << " is not usable";
    throw Error(ErrorCode::kInvalidArgument, message.str());
  }
}

// The gathered labels (no history), checked for their shape.
torch::Tensor GatherConstant(const torch::Tensor& rows, const GlobalBatch& global) {
  torch::Tensor all = global.gather(rows.detach().contiguous());
  if (all.size(0) != rows.size(0) * global.world_size) {
    std::ostringstream message;
    message << "global batch: the gather returned " << all.size(0) << " rows, not "
            << global.world_size << " x " << rows.size(0);
    throw Error(ErrorCode::kFailedPrecondition, message.str());
  }
  return all;
}

}  // namespace

torch::Tensor GatherLive(const torch::Tensor& rows, const GlobalBatch& global) {
  CheckGlobal(global);
  const torch::Tensor all = GatherConstant(rows, global);
  const int64_t n = rows.size(0);
  const int64_t before = global.rank * n;
  const int64_t after = (global.world_size - global.rank - 1) * n;
  return torch::cat({all.narrow(0, 0, before), rows, all.narrow(0, before + n, after)}, 0);
}

torch::Tensor GlobalEquivarianceLoss(const torch::Tensor& z, const torch::Tensor& labels,
                                     double temperature, const GlobalBatch& global) {
  const torch::Tensor all_z = GatherLive(z, global);
  const torch::Tensor all_labels = GatherConstant(labels, global);
  return EquivarianceLoss(all_z, all_labels, temperature);
}

torch::Tensor GlobalInstanceLoss(const torch::Tensor& g, const torch::Tensor& anchor,
                                 const torch::Tensor& positive, const torch::Tensor& video,
                                 int64_t num_videos, double temperature,
                                 const GlobalBatch& global) {
  const torch::Tensor all_g = GatherLive(g, global);
  const int64_t row_offset = global.rank * g.size(0);
  const int64_t video_offset = global.rank * num_videos;
  const torch::Tensor all_anchor = GatherConstant(anchor + row_offset, global);
  const torch::Tensor all_positive = GatherConstant(positive + row_offset, global);
  const torch::Tensor all_video = GatherConstant(video + video_offset, global);
  return InstanceLoss(all_g, all_anchor, all_positive, all_video, temperature);
}

torch::Tensor ScaleForAverage(const torch::Tensor& term, const GlobalBatch& global) {
  CheckGlobal(global);
  return term * static_cast<double>(global.world_size);
}

}  // namespace tecl::worker::core
