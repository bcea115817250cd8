#include "services/worker/dist/parameter_sync.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/tensor.h>

#include <cstring>
#include <map>
#include <sstream>
#include <tuple>

namespace tecl::worker::dist {
namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

void Mix(uint64_t& hash, const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= kFnvPrime;
  }
}

}  // namespace

std::vector<at::Tensor> ModuleState(const torch::nn::Module& module) {
  std::vector<at::Tensor> state = module.parameters(/*recurse=*/true);
  for (const at::Tensor& buffer : module.buffers(/*recurse=*/true)) state.push_back(buffer);
  return state;
}

void BroadcastFromRoot(const std::vector<at::Tensor>& tensors, Communicator& communicator,
                       int root) {
  CheckRoot(root, communicator.world_size());
  // Group by (dtype, device), keeping order inside each group.
  using Kind = std::tuple<int, int, int>;
  std::map<Kind, std::vector<size_t>> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    if (!t.defined()) {
      throw std::invalid_argument("broadcast of model state: tensor " + std::to_string(i) +
                                  " is undefined");
    }
    groups[{static_cast<int>(t.scalar_type()), static_cast<int>(t.device().type()),
            static_cast<int>(t.device().index())}]
        .push_back(i);
  }
  at::NoGradGuard no_grad;
  for (const auto& [kind, members] : groups) {
    std::vector<at::Tensor> flat_parts;
    flat_parts.reserve(members.size());
    for (size_t i : members) flat_parts.push_back(tensors[i].detach().reshape({-1}));
    at::Tensor flat = at::cat(flat_parts).contiguous();
    communicator.Broadcast(flat, root)->Wait(communicator.timeout());
    int64_t offset = 0;
    for (size_t i : members) {
      at::Tensor t = tensors[i];
      t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

uint64_t StateChecksum(const std::vector<at::Tensor>& tensors) {
  uint64_t hash = kFnvOffset;
  for (const at::Tensor& tensor : tensors) {
    const int8_t type = static_cast<int8_t>(tensor.scalar_type());
    Mix(hash, &type, sizeof(type));
    for (int64_t size : tensor.sizes()) Mix(hash, &size, sizeof(size));
    at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
    Mix(hash, cpu.data_ptr(), cpu.numel() * cpu.element_size());
  }
  return hash;
}

void VerifyStateAgrees(const std::vector<at::Tensor>& tensors, Communicator& communicator,
                       int root) {
  CheckRoot(root, communicator.world_size());
  const uint64_t mine = StateChecksum(tensors);
  const c10::Device device = tensors.empty() ? c10::Device(c10::kCPU) : tensors.front().device();
  int64_t mine_signed = 0;
  std::memcpy(&mine_signed, &mine, sizeof(mine));
  at::Tensor roots = at::tensor({mine_signed}, at::TensorOptions().dtype(at::kLong)).to(device);
  communicator.Broadcast(roots, root)->Wait(communicator.timeout());
  const int64_t root_signed = roots.to(at::kCPU).item<int64_t>();
  const bool differs = root_signed != mine_signed;

  // Every rank learns whether any rank differs: the average of the 0/1 flags is > 0.
  at::Tensor flag =
      at::tensor({differs ? 1.0f : 0.0f}, at::TensorOptions().dtype(at::kFloat)).to(device);
  communicator.AllReduceAverage(flag)->Wait(communicator.timeout());
  const float share = flag.to(at::kCPU).item<float>();
  if (share > 0) {
    std::ostringstream message;
    message << "model state differs between ranks: "
            << static_cast<int>(share * communicator.world_size() + 0.5f) << " of "
            << communicator.world_size() << " ranks disagree with rank " << root
            << "; this rank (" << communicator.rank() << ") "
            << (differs ? "differs" : "agrees")
            << "; broadcast the state from the root before training";
    throw StateMismatchError(message.str());
  }
}

}  // namespace tecl::worker::dist
