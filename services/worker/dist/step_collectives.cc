#include "services/worker/dist/step_collectives.h"

#include <stdexcept>
#include <utility>

#include "services/worker/dist/sync_batch_norm.h"

namespace tecl::worker::dist {

core::StepCollectives MakeStepCollectives(const std::shared_ptr<Communicator>& communicator,
                                          bool global_loss, bool sync_batchnorm) {
  if (communicator == nullptr) {
    throw std::invalid_argument("MakeStepCollectives: no communicator");
  }
  core::StepCollectives collectives;
  if (global_loss) {
    core::GlobalBatch global;
    global.rank = communicator->rank();
    global.world_size = communicator->world_size();
    global.gather = [communicator](const torch::Tensor& rows) {
      return AllGatherRows(*communicator, rows);
    };
    collectives.global_loss = std::move(global);
  }
  if (sync_batchnorm) {
    collectives.batch_norm = std::make_shared<const core::BatchNormSync>(
        [communicator](const torch::Tensor& x, const torch::Tensor& weight,
                       const torch::Tensor& bias, torch::Tensor running_mean,
                       torch::Tensor running_var, double momentum, double eps) {
          return SyncBatchNormTrain(x, weight, bias, std::move(running_mean),
                                    std::move(running_var), momentum, eps, *communicator);
        });
  }
  return collectives;
}

}  // namespace tecl::worker::dist
