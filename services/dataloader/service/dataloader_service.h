// DataLoaderService: the gRPC adapter of tecl.v1.DataLoader (callback API).
//
// Every handler first refuses calls that are not a trainer's (UNAUTHENTICATED / PERMISSION_DENIED),
// then hands the request to LoaderManager and translates its answer. StreamBatches is a ServerWriteReactor that asks the stream for the next
// batch only after the previous write completed (OnWriteDone): gRPC flow control is the
// back-pressure, so a slow or stopped client stops the stream's builds at its prefetch depth.
// Nothing blocks in a reaction: batches are built and manifests read on the manager's pool, and
// the reactor writes (or finishes) from the thread that delivers the result. A cancelled call
// cancels its stream, which frees its queued batches and stops its builds.
//
// Thread-safe. The manager must outlive the service (and the gRPC server).
#ifndef TECL_SERVICES_DATALOADER_SERVICE_DATALOADER_SERVICE_H_
#define TECL_SERVICES_DATALOADER_SERVICE_DATALOADER_SERVICE_H_

#include "services/common/auth.h"
#include "services/dataloader/pipeline/loader_manager.h"
#include "tecl/v1/dataloader_service.grpc.pb.h"

namespace tecl::dataloader {

class DataLoaderService final : public tecl::v1::DataLoader::CallbackService {
 public:
  DataLoaderService(LoaderManager* manager, Authenticator auth);

  grpc::ServerWriteReactor<tecl::v1::ClipBatch>* StreamBatches(
      grpc::CallbackServerContext* context,
      const tecl::v1::StreamBatchesRequest* request) override;

  grpc::ServerUnaryReactor* DescribeDataset(grpc::CallbackServerContext* context,
                                            const tecl::v1::DescribeDatasetRequest* request,
                                            tecl::v1::DatasetInfo* response) override;

 private:
  LoaderManager* const manager_;
  const Authenticator auth_;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_SERVICE_DATALOADER_SERVICE_H_
