// The gRPC implementation of CoordinatorClient (coordinator_client.h).
//
// Thread-safe.
#ifndef TECL_SERVICES_CLIENT_GRPC_COORDINATOR_CLIENT_H_
#define TECL_SERVICES_CLIENT_GRPC_COORDINATOR_CLIENT_H_

#include <grpcpp/channel.h>

#include <memory>

#include "services/client/coordinator_client.h"
#include "tecl/v1/coordinator_service.grpc.pb.h"

namespace tecl {

// The coordinator's three services on `channel`.
std::shared_ptr<CoordinatorClient> NewCoordinatorClient(
    const std::shared_ptr<grpc::ChannelInterface>& channel, ClientOptions options = {});

// Over given stubs (any may be null when its calls are never made: they get FAILED_PRECONDITION).
std::shared_ptr<CoordinatorClient> NewCoordinatorClient(
    std::shared_ptr<tecl::v1::JobService::StubInterface> jobs,
    std::shared_ptr<tecl::v1::MembershipService::StubInterface> membership,
    std::shared_ptr<tecl::v1::RendezvousService::StubInterface> rendezvous,
    ClientOptions options = {});

}  // namespace tecl

#endif  // TECL_SERVICES_CLIENT_GRPC_COORDINATOR_CLIENT_H_
