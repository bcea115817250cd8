#include "services/worker/dist/fake_communicator.h"

#include <ATen/core/grad_mode.h>

#include <sstream>

namespace tecl::worker::dist {

struct FakeWorld::Op {
  int64_t sequence = 0;
  std::string signature;  // of the first rank that joined
  int first_rank = -1;
  std::string kind;
  int root = 0;
  std::vector<at::Tensor> tensors;  // per rank
  std::vector<at::Tensor> outputs;  // per rank (all-gather)
  std::vector<bool> joined;
  int joined_count = 0;
  bool done = false;
  std::string error;
  std::chrono::steady_clock::time_point completed_at;
};

namespace {

std::string Signature(const std::string& kind, const at::Tensor& tensor, int root) {
  std::ostringstream out;
  out << kind;
  if (tensor.defined()) {
    out << " " << c10::toString(tensor.scalar_type()) << tensor.sizes();
  }
  if (kind == "broadcast") out << " root " << root;
  return out.str();
}

class FakeHandle final : public CollectiveHandle {
 public:
  FakeHandle(std::shared_ptr<FakeWorld> world, int rank, std::shared_ptr<FakeWorld::Op> op)
      : world_(std::move(world)), rank_(rank), op_(std::move(op)) {}

  void Wait(std::chrono::milliseconds timeout) override {
    if (waited_) return;
    world_->WaitFor(rank_, op_, timeout);
    waited_ = true;
  }
  std::optional<std::chrono::steady_clock::time_point> CompletedAt() const override;

 private:
  std::shared_ptr<FakeWorld> world_;
  int rank_;
  std::shared_ptr<FakeWorld::Op> op_;
  bool waited_ = false;
};

std::optional<std::chrono::steady_clock::time_point> FakeHandle::CompletedAt() const {
  if (!waited_) return std::nullopt;
  return op_->completed_at;
}

class FakeCommunicator final : public Communicator {
 public:
  FakeCommunicator(std::shared_ptr<FakeWorld> world, int rank)
      : world_(std::move(world)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_->world_size(); }
  std::string backend_name() const override { return "fake"; }
  std::chrono::milliseconds timeout() const override { return world_->timeout(); }

  std::unique_ptr<CollectiveHandle> AllReduceAverage(at::Tensor tensor) override {
    CheckCollectiveTensor(tensor, /*floating_only=*/true, "all-reduce");
    return std::make_unique<FakeHandle>(world_, rank_,
                                        world_->Join(rank_, "all-reduce", tensor, 0));
  }
  std::unique_ptr<CollectiveHandle> AllGather(at::Tensor input, at::Tensor output) override {
    CheckAllGather(input, output, world_size());
    return std::make_unique<FakeHandle>(world_, rank_,
                                        world_->Join(rank_, "all-gather", input, 0, output));
  }
  std::unique_ptr<CollectiveHandle> Broadcast(at::Tensor tensor, int root) override {
    CheckCollectiveTensor(tensor, /*floating_only=*/false, "broadcast");
    CheckRoot(root, world_size());
    return std::make_unique<FakeHandle>(world_, rank_,
                                        world_->Join(rank_, "broadcast", tensor, root));
  }
  void Barrier() override {
    FakeHandle(world_, rank_, world_->Join(rank_, "barrier", at::Tensor(), 0)).Wait(timeout());
  }

 private:
  std::shared_ptr<FakeWorld> world_;
  int rank_;
};

}  // namespace

std::shared_ptr<FakeWorld> FakeWorld::Create(int world_size, std::chrono::milliseconds timeout) {
  if (world_size < 1) throw std::invalid_argument("fake world: world_size must be >= 1");
  return std::shared_ptr<FakeWorld>(new FakeWorld(world_size, timeout));
}

FakeWorld::FakeWorld(int world_size, std::chrono::milliseconds timeout)
    : world_size_(world_size),
      timeout_(timeout),
      next_sequence_(world_size, 0),
      dead_(world_size, false),
      broken_(world_size),
      log_(world_size) {}

std::shared_ptr<Communicator> FakeWorld::ForRank(int rank) {
  if (rank < 0 || rank >= world_size_) {
    throw std::invalid_argument("fake world: rank " + std::to_string(rank) + " is outside [0, " +
                                std::to_string(world_size_) + ")");
  }
  return std::make_shared<FakeCommunicator>(shared_from_this(), rank);
}

void FakeWorld::Kill(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  dead_[rank] = true;
  for (auto& [sequence, op] : ops_) {
    if (!op->done && !op->joined[rank]) {
      op->error = "rank " + std::to_string(rank) + " is gone (connection closed)";
      op->done = true;
    }
  }
  cv_.notify_all();
}

std::vector<std::string> FakeWorld::Log(int rank) const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_.at(rank);
}

std::shared_ptr<FakeWorld::Op> FakeWorld::Join(int rank, const std::string& kind,
                                               at::Tensor tensor, int root,
                                               at::Tensor output) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string op_name = kind + " #" + std::to_string(next_sequence_[rank]);
  if (!broken_[rank].empty()) {
    throw CollectiveError(op_name + " refused: this fake group already failed (" +
                          broken_[rank] + "); drop it and form a new one");
  }
  const int64_t sequence = next_sequence_[rank]++;
  const std::string signature = Signature(kind, tensor, root);
  log_[rank].push_back(signature);
  auto& slot = ops_[sequence];
  if (!slot) {
    slot = std::make_shared<Op>();
    slot->sequence = sequence;
    slot->signature = signature;
    slot->first_rank = rank;
    slot->kind = kind;
    slot->root = root;
    slot->tensors.resize(world_size_);
    slot->outputs.resize(world_size_);
    slot->joined.assign(world_size_, false);
    for (int r = 0; r < world_size_; ++r) {
      if (dead_[r]) {
        slot->error = "rank " + std::to_string(r) + " is gone (connection closed)";
        slot->done = true;
      }
    }
  }
  std::shared_ptr<Op> op = slot;
  if (op->done) return op;
  if (signature != op->signature) {
    op->error = "mismatched collectives: #" + std::to_string(sequence) + " is \"" +
                op->signature + "\" on rank " + std::to_string(op->first_rank) + " but \"" +
                signature + "\" on rank " + std::to_string(rank);
    op->done = true;
    cv_.notify_all();
    return op;
  }
  op->tensors[rank] = tensor;
  op->outputs[rank] = output;
  op->joined[rank] = true;
  if (++op->joined_count == world_size_) {
    Complete(*op);
    ops_.erase(sequence);
    cv_.notify_all();
  }
  return op;
}

void FakeWorld::Complete(Op& op) {
  at::NoGradGuard no_grad;
  if (op.kind == "all-reduce") {
    at::Tensor sum = op.tensors[0].clone();
    for (int r = 1; r < world_size_; ++r) sum.add_(op.tensors[r]);
    sum.div_(world_size_);
    for (at::Tensor& t : op.tensors) t.copy_(sum);
  } else if (op.kind == "all-gather") {
    for (int r = 0; r < world_size_; ++r) {
      const int64_t rows = op.tensors[r].size(0);
      for (int source = 0; source < world_size_; ++source) {
        op.outputs[r].narrow(0, source * rows, rows).copy_(op.tensors[source]);
      }
    }
  } else if (op.kind == "broadcast") {
    for (int r = 0; r < world_size_; ++r) {
      if (r != op.root) op.tensors[r].copy_(op.tensors[op.root]);
    }
  }
  op.tensors.clear();
  op.outputs.clear();
  op.done = true;
  op.completed_at = std::chrono::steady_clock::now();
}

void FakeWorld::WaitFor(int rank, const std::shared_ptr<Op>& op,
                        std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::string name = op->kind + " #" + std::to_string(op->sequence);
  if (!cv_.wait_for(lock, timeout, [&] { return op->done; })) {
    std::string message = DescribeCollective(name, rank, world_size_, "fake") +
                          ": timed out after " + std::to_string(timeout.count()) +
                          " ms; a peer is hung or gone";
    if (broken_[rank].empty()) broken_[rank] = message;
    throw CollectiveTimeoutError(message);
  }
  if (!op->error.empty()) {
    std::string message = DescribeCollective(name, rank, world_size_, "fake") + ": " + op->error;
    if (broken_[rank].empty()) broken_[rank] = message;
    throw CollectiveError(message);
  }
}

}  // namespace tecl::worker::dist
