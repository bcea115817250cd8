#include "services/worker/dist/process_group_communicator.h"

#include <ATen/core/grad_mode.h>
#include <ATen/core/ivalue_inl.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <utility>

namespace tecl::worker::dist {
namespace {

bool LooksLikeTimeout(std::string message) {
  std::transform(message.begin(), message.end(), message.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return message.find("timed out") != std::string::npos ||
         message.find("timeout") != std::string::npos;
}

// c10::Error::what() carries a C++ backtrace; the first line is the message proper.
std::string ErrorText(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

class WorkHandle final : public CollectiveHandle {
 public:
  WorkHandle(c10::intrusive_ptr<c10d::Work> work, std::string description,
             std::vector<at::Tensor> tensors,
             std::shared_ptr<ProcessGroupCommunicator::FailureState> failure)
      : work_(std::move(work)),
        description_(std::move(description)),
        tensors_(std::move(tensors)),
        failure_(std::move(failure)),
        completed_ns_(std::make_shared<std::atomic<int64_t>>(0)) {
    // Gloo and NCCL works expose a future completed on the backend's thread; its callback stamps
    // the completion time so the reducer can tell how much of the collective overlapped backward.
    try {
      auto future = work_->getFuture();
      if (future) {
        future->addCallback([completed = completed_ns_](c10::ivalue::Future&) {
          completed->store(std::chrono::steady_clock::now().time_since_epoch().count());
        });
      }
    } catch (const std::exception&) {
      // This backend has no futures: CompletedAt() stays unknown until Wait().
    }
  }

  void Wait(std::chrono::milliseconds timeout) override {
    if (done_) return;
    try {
      work_->wait(timeout);
    } catch (const std::exception& e) {
      std::string cause = ErrorText(e);
      std::string message = description_ + ": " + cause +
                            "; the peer is gone or hung: drop this process group and form a new one";
      failure_->Record(message);
      done_ = true;
      if (LooksLikeTimeout(cause)) throw CollectiveTimeoutError(message);
      throw CollectiveError(message);
    }
    done_ = true;
    if (completed_ns_->load() == 0) {
      completed_ns_->store(std::chrono::steady_clock::now().time_since_epoch().count());
    }
  }

  std::optional<std::chrono::steady_clock::time_point> CompletedAt() const override {
    int64_t ns = completed_ns_->load();
    if (ns == 0) return std::nullopt;
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ns));
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  const std::string description_;
  std::vector<at::Tensor> tensors_;  // keeps the buffers alive while the backend uses them
  std::shared_ptr<ProcessGroupCommunicator::FailureState> failure_;
  std::shared_ptr<std::atomic<int64_t>> completed_ns_;
  bool done_ = false;
};

}  // namespace

void ProcessGroupCommunicator::FailureState::Record(const std::string& error) {
  std::lock_guard<std::mutex> lock(mu);
  if (first_error.empty()) first_error = error;
}

void ProcessGroupCommunicator::FailureState::ThrowIfFailed(const std::string& op) {
  std::lock_guard<std::mutex> lock(mu);
  if (!first_error.empty()) {
    throw CollectiveError(op + " refused: this process group already failed (" + first_error +
                          "); drop it and form a new one");
  }
}

ProcessGroupCommunicator::ProcessGroupCommunicator(c10::intrusive_ptr<C10dGroup> group,
                                                   std::string backend_name,
                                                   std::chrono::milliseconds timeout)
    : group_(std::move(group)),
      backend_name_(std::move(backend_name)),
      timeout_(timeout),
      rank_(group_->getRank()),
      world_size_(group_->getSize()),
      failure_(std::make_shared<FailureState>()) {}

ProcessGroupCommunicator::~ProcessGroupCommunicator() = default;

template <typename Launch>
std::unique_ptr<CollectiveHandle> ProcessGroupCommunicator::Start(
    const std::string& op, std::vector<at::Tensor> keep_alive, Launch launch) {
  const std::string description = DescribeCollective(op, rank_, world_size_, backend_name_);
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = launch();
  } catch (const std::exception& e) {
    std::string message = description + ": " + ErrorText(e);
    failure_->Record(message);
    throw CollectiveError(message);
  }
  return std::make_unique<WorkHandle>(std::move(work), description, std::move(keep_alive),
                                      failure_);
}

std::unique_ptr<CollectiveHandle> ProcessGroupCommunicator::AllReduceAverage(at::Tensor tensor) {
  CheckCollectiveTensor(tensor, /*floating_only=*/true, "all-reduce");
  const std::string op = "all-reduce #" + std::to_string(sequence_++);
  failure_->ThrowIfFailed(op);
  {
    at::NoGradGuard no_grad;
    tensor.div_(world_size_);
  }
  std::vector<at::Tensor> tensors{tensor};
  return Start(op, tensors, [&] {
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = timeout_;
    return group_->allreduce(tensors, options);
  });
}

std::unique_ptr<CollectiveHandle> ProcessGroupCommunicator::AllGather(at::Tensor input,
                                                                      at::Tensor output) {
  CheckAllGather(input, output, world_size_);
  const std::string op = "all-gather #" + std::to_string(sequence_++);
  failure_->ThrowIfFailed(op);
  // One output per rank: row blocks of `output` (views; Gloo's _allgather_base is missing here).
  std::vector<std::vector<at::Tensor>> outputs{output.chunk(world_size_, 0)};
  std::vector<at::Tensor> inputs{input};
  return Start(op, {input, output}, [&] {
    c10d::AllgatherOptions options;
    options.timeout = timeout_;
    return group_->allgather(outputs, inputs, options);
  });
}

std::unique_ptr<CollectiveHandle> ProcessGroupCommunicator::Broadcast(at::Tensor tensor,
                                                                      int root) {
  CheckCollectiveTensor(tensor, /*floating_only=*/false, "broadcast");
  CheckRoot(root, world_size_);
  const std::string op = "broadcast #" + std::to_string(sequence_++);
  failure_->ThrowIfFailed(op);
  std::vector<at::Tensor> tensors{tensor};
  return Start(op, tensors, [&] {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = timeout_;
    return group_->broadcast(tensors, options);
  });
}

void ProcessGroupCommunicator::Barrier() {
  const std::string op = "barrier #" + std::to_string(sequence_++);
  failure_->ThrowIfFailed(op);
  Start(op, {}, [&] {
    c10d::BarrierOptions options;
    options.timeout = timeout_;
    return group_->barrier(options);
  })->Wait(timeout_);
}

}  // namespace tecl::worker::dist
