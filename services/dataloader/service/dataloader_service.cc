#include "services/dataloader/service/dataloader_service.h"

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/common/grpc_status.h"

namespace tecl::dataloader {
namespace {

using tecl::v1::ClipBatch;

// A stream call refused before it started.
class FinishedStream final : public grpc::ServerWriteReactor<ClipBatch> {
 public:
  explicit FinishedStream(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

// Writes the batches of one BatchStream: one write in flight at a time, the next batch requested
// when the previous write is done.
class StreamReactor final : public grpc::ServerWriteReactor<ClipBatch> {
 public:
  explicit StreamReactor(std::shared_ptr<BatchStream> stream) : stream_(std::move(stream)) {
    RequestNext();
  }

  void OnWriteDone(bool ok) override {
    ClipBatch().Swap(&batch_);  // Frees the sent batch now.
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped the stream"));
      return;
    }
    RequestNext();
  }

  void OnCancel() override { stream_->Cancel(); }

  void OnDone() override {
    stream_->Cancel();
    delete this;
  }

 private:
  void RequestNext() {
    stream_->Next([this](BatchStream::Result result) {
      if (result.ok()) {
        batch_ = std::move(*result);
        StartWrite(&batch_);
        return;
      }
      if (result.status().code() == absl::StatusCode::kOutOfRange) {
        FinishOnce(grpc::Status::OK);
      } else {
        FinishOnce(ToGrpcStatus(result.status()));
      }
    });
  }

  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  const std::shared_ptr<BatchStream> stream_;
  ClipBatch batch_;  // The batch being written.
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

DataLoaderService::DataLoaderService(LoaderManager* manager, Authenticator auth)
    : manager_(manager), auth_(std::move(auth)) {}

grpc::ServerWriteReactor<ClipBatch>* DataLoaderService::StreamBatches(
    grpc::CallbackServerContext* context, const tecl::v1::StreamBatchesRequest* request) {
  if (auto* refused = RefuseStream<ClipBatch>(context, auth_, {Role::kTrainer})) return refused;
  absl::StatusOr<std::shared_ptr<BatchStream>> stream = manager_->OpenStream(*request);
  if (!stream.ok()) return new FinishedStream(stream.status());
  return new StreamReactor(*std::move(stream));
}

grpc::ServerUnaryReactor* DataLoaderService::DescribeDataset(
    grpc::CallbackServerContext* context, const tecl::v1::DescribeDatasetRequest* request,
    tecl::v1::DatasetInfo* response) {
  if (auto* refused = Refuse(context, auth_, {Role::kTrainer})) return refused;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  manager_->DescribeDataset(request->dataset(),
                            [reactor, response](absl::StatusOr<tecl::v1::DatasetInfo> info) {
                              if (!info.ok()) {
                                reactor->Finish(ToGrpcStatus(info.status()));
                                return;
                              }
                              *response = *std::move(info);
                              reactor->Finish(grpc::Status::OK);
                            });
  return reactor;
}

}  // namespace tecl::dataloader
