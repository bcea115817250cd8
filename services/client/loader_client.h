// LoaderClient: the calls a trainer makes to a dataloader (DataLoader of dataloader_service.proto)
// as blocking methods returning absl::Status / StatusOr. DescribeDataset has the client's
// rpc_timeout; a batch stream has no deadline (it lasts as long as its job) and is ended by
// BatchReader::Cancel. NewLoaderClient (grpc_loader_client.h) builds the gRPC implementation over
// the generated StubInterface; tests of the callers may use fakes of this interface. This header
// has no gRPC types.
//
// Thread-safety: LoaderClient implementations are thread-safe. A BatchReader is read by one thread;
// its Cancel may be called from any thread.
#ifndef TECL_SERVICES_CLIENT_LOADER_CLIENT_H_
#define TECL_SERVICES_CLIENT_LOADER_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tecl/v1/dataloader.pb.h"

namespace tecl {

// One StreamBatches call.
class BatchReader {
 public:
  virtual ~BatchReader() = default;
  // Blocks for the next batch; false once the stream ended (then call Finish).
  virtual bool Read(tecl::v1::ClipBatch* batch) = 0;
  // How the stream ended (OK when the loader finished it), once Read returned false.
  virtual absl::Status Finish() = 0;
  // Ends the stream: a Read in progress or the next one returns false. Any thread.
  virtual void Cancel() = 0;
};

class LoaderClient {
 public:
  virtual ~LoaderClient() = default;
  // A stream of batches (never null; never blocks: the call starts with the first Read, and a
  // failure to connect shows in Read/Finish).
  virtual std::unique_ptr<BatchReader> StreamBatches(
      const tecl::v1::StreamBatchesRequest& request) = 0;
  virtual absl::StatusOr<tecl::v1::DatasetInfo> DescribeDataset(
      const tecl::v1::DescribeDatasetRequest& request) = 0;
};

// The client of the dataloader at `address` (host:port), with this process's credentials; null
// when no channel can be made to it.
using LoaderClientFactory = std::function<std::shared_ptr<LoaderClient>(const std::string& address)>;

}  // namespace tecl

#endif  // TECL_SERVICES_CLIENT_LOADER_CLIENT_H_
