// The gRPC implementation of LoaderClient (loader_client.h).
//
// Thread-safe.
#ifndef TECL_SERVICES_CLIENT_GRPC_LOADER_CLIENT_H_
#define TECL_SERVICES_CLIENT_GRPC_LOADER_CLIENT_H_

#include <grpcpp/channel.h>

#include <memory>

#include "services/client/coordinator_client.h"
#include "services/client/loader_client.h"
#include "tecl/v1/dataloader_service.grpc.pb.h"

namespace tecl {

// The dataloader's service on `channel`. Of `options`, rpc_timeout applies (DescribeDataset).
std::shared_ptr<LoaderClient> NewLoaderClient(const std::shared_ptr<grpc::ChannelInterface>& channel,
                                              ClientOptions options = {});
std::shared_ptr<LoaderClient> NewLoaderClient(
    std::shared_ptr<tecl::v1::DataLoader::StubInterface> stub, ClientOptions options = {});

}  // namespace tecl

#endif  // TECL_SERVICES_CLIENT_GRPC_LOADER_CLIENT_H_
