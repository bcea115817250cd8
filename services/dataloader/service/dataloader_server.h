// DataLoaderServer: a running tecl-dataloader (the loader logic, the gRPC server with /metrics,
// the optional coordinator membership with its PrepareAgent for prepare jobs), built from a DataLoaderConfig. tecl-dataloader's main
// and the tests start it the same way.
//
//   auto server = DataLoaderServer::Start(config);
//   ... (*server)->address() ...
//   (*server)->Shutdown(absl::Seconds(10));
//
// Thread-safe; Shutdown is idempotent and the destructor calls it.
#ifndef TECL_SERVICES_DATALOADER_SERVICE_DATALOADER_SERVER_H_
#define TECL_SERVICES_DATALOADER_SERVICE_DATALOADER_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/auth.h"
#include "services/common/metrics.h"
#include "services/common/server.h"
#include "services/dataloader/pipeline/clip_source.h"
#include "services/dataloader/pipeline/loader_manager.h"
#include "services/client/membership_loop.h"
#include "services/dataloader/service/dataloader_service.h"
#include "services/dataloader/service/prepare_agent.h"

namespace tecl::dataloader {

struct DataLoaderConfig {
  // gRPC and /metrics listen addresses, TLS files, accepted tokens, --insecure (a dataloader
  // without credentials does not start unless insecure; its rpcs are for trainers).
  ServerOptions server;
  // Folders every dataset path must lie under (empty = any path).
  std::vector<std::string> data_roots;
  // Folders prepare jobs may write their copies under (empty = none: prepare jobs are refused).
  std::vector<std::string> write_roots;
  // Decode threads, stream limit, decode budget, the largest video decoded (LoaderOptions);
  // default_dataset comes from `manifest`.
  LoaderOptions loader;
  // Videos whose packet index is cached (each a few KB: about 48 bytes a frame), and the bytes
  // all cached indexes may hold.
  size_t index_cache_videos = 16384;
  size_t index_cache_bytes = size_t{512} << 20;
  // Data set for requests that name none: a folder of class sub-folders (with trainlist.txt /
  // testlist.txt when present) or a CSV manifest. Empty = none.
  std::string manifest;
  // Coordinator to register with (host:port); empty = standalone.
  std::string coordinator;
  ChannelOptions coordinator_channel;
  // Address trainers reach this loader at; empty = the dialable listen address.
  std::string advertise_address;
  absl::Duration default_heartbeat_interval = absl::Seconds(1);

  // INVALID_ARGUMENT naming the bad setting.
  absl::Status Validate() const;
};

// The DatasetSpec of a --manifest path: a folder -> class folders (with trainlist.txt and
// testlist.txt when they exist in it), a .csv file -> CSV. INVALID_ARGUMENT otherwise.
absl::StatusOr<tecl::v1::DatasetSpec> DatasetFromManifestPath(const std::string& path);

class DataLoaderServer {
 public:
  // Starts serving. `source` decodes videos; nullptr = FFmpeg (owned by the server). Errors name
  // what failed (a setting, the address, the manifest path).
  static absl::StatusOr<std::unique_ptr<DataLoaderServer>> Start(DataLoaderConfig config,
                                                                 ClipSource* source = nullptr);
  ~DataLoaderServer();

  // Stops registering, ends the streams (cancelled after `grace`), stops the decode threads.
  void Shutdown(absl::Duration grace);

  int port() const { return grpc_->port(); }
  // Dialable host:port.
  std::string address() const { return grpc_->local_address(); }
  int metrics_port() const { return grpc_->metrics_port(); }
  LoaderManager& manager() { return *manager_; }
  metrics::Registry& registry() { return registry_; }
  // Registration and heartbeats with the coordinator; null when standalone.
  MembershipLoop* membership() { return membership_.get(); }
  // Runs the prepare jobs' shards assigned to this loader; null when standalone.
  PrepareAgent* prepare_agent() { return prepare_agent_.get(); }

 private:
  DataLoaderServer() = default;

  metrics::Registry registry_;
  std::unique_ptr<ClipSource> owned_source_;
  std::unique_ptr<LoaderManager> manager_;
  std::unique_ptr<DataLoaderService> service_;
  std::unique_ptr<GrpcServer> grpc_;
  std::shared_ptr<CoordinatorClient> coordinator_;
  std::unique_ptr<PrepareAgent> prepare_agent_;
  std::unique_ptr<MembershipLoop> membership_;
  bool shut_down_ = false;
};

}  // namespace tecl::dataloader

#endif  // TECL_SERVICES_DATALOADER_SERVICE_DATALOADER_SERVER_H_
