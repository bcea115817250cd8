// The collectives of a data-parallel training step over one communicator (docs/global-batch.md):
// the gather of the global contrastive terms and the synchronised BatchNorm, as the trainer takes
// them (core::StepCollectives). The runner and the exactness tests build them here, so both run
// the same wiring.
//
// Thread-safety: the closures call the communicator (one training step at a time); they share
// ownership of it, so it lives as long as the trainer keeps them.
#ifndef TECL_SERVICES_WORKER_DIST_STEP_COLLECTIVES_H_
#define TECL_SERVICES_WORKER_DIST_STEP_COLLECTIVES_H_

#include <memory>

#include "services/worker/dist/communicator.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker::dist {

// `global_loss`: L_equi and L_inst over every rank's rows (AllGatherRows); `sync_batchnorm`:
// every BatchNorm layer over every rank's batch (SyncBatchNormTrain). Both false: {}.
// Throws std::invalid_argument for a null communicator.
core::StepCollectives MakeStepCollectives(const std::shared_ptr<Communicator>& communicator,
                                          bool global_loss, bool sync_batchnorm);

}  // namespace tecl::worker::dist

#endif  // TECL_SERVICES_WORKER_DIST_STEP_COLLECTIVES_H_
