#include "services/client/grpc_loader_client.h"

#include <utility>

#include "services/common/grpc_status.h"

namespace tecl {
namespace {

// Starts the call on the first Read (in the reading thread: opening a stream may wait for the
// connection), so that creating a reader never blocks; Cancel before that cancels the call as
// soon as it starts (ClientContext keeps the request).
class GrpcBatchReader final : public BatchReader {
 public:
  GrpcBatchReader(std::shared_ptr<tecl::v1::DataLoader::StubInterface> stub,
                  tecl::v1::StreamBatchesRequest request)
      : stub_(std::move(stub)), request_(std::move(request)) {}

  bool Read(tecl::v1::ClipBatch* batch) override { return Started()->Read(batch); }
  absl::Status Finish() override { return FromGrpcStatus(Started()->Finish()); }
  void Cancel() override { context_.TryCancel(); }

 private:
  grpc::ClientReaderInterface<tecl::v1::ClipBatch>* Started() {
    if (reader_ == nullptr) reader_ = stub_->StreamBatches(&context_, request_);
    return reader_.get();
  }

  const std::shared_ptr<tecl::v1::DataLoader::StubInterface> stub_;
  const tecl::v1::StreamBatchesRequest request_;
  grpc::ClientContext context_;  // Declared before the reader, which refers to it.
  std::unique_ptr<grpc::ClientReaderInterface<tecl::v1::ClipBatch>> reader_;
};

class GrpcLoaderClient final : public LoaderClient {
 public:
  GrpcLoaderClient(std::shared_ptr<tecl::v1::DataLoader::StubInterface> stub, ClientOptions options)
      : stub_(std::move(stub)), options_(std::move(options)) {}

  std::unique_ptr<BatchReader> StreamBatches(
      const tecl::v1::StreamBatchesRequest& request) override {
    return std::make_unique<GrpcBatchReader>(stub_, request);
  }

  absl::StatusOr<tecl::v1::DatasetInfo> DescribeDataset(
      const tecl::v1::DescribeDatasetRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMicroseconds(options_.rpc_timeout));
    tecl::v1::DatasetInfo info;
    const grpc::Status status = stub_->DescribeDataset(&context, request, &info);
    if (!status.ok()) return FromGrpcStatus(status);
    return info;
  }

 private:
  const std::shared_ptr<tecl::v1::DataLoader::StubInterface> stub_;
  const ClientOptions options_;
};

}  // namespace

std::shared_ptr<LoaderClient> NewLoaderClient(const std::shared_ptr<grpc::ChannelInterface>& channel,
                                              ClientOptions options) {
  return NewLoaderClient(tecl::v1::DataLoader::NewStub(channel), std::move(options));
}

std::shared_ptr<LoaderClient> NewLoaderClient(
    std::shared_ptr<tecl::v1::DataLoader::StubInterface> stub, ClientOptions options) {
  return std::make_shared<GrpcLoaderClient>(std::move(stub), std::move(options));
}

}  // namespace tecl
