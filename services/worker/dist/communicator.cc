#include "services/worker/dist/communicator.h"

#include <ATen/Functions.h>

#include <sstream>
#include <vector>

namespace tecl::worker::dist {

std::string DescribeCollective(const std::string& op, int rank, int world_size,
                               const std::string& backend) {
  std::ostringstream out;
  out << op << " failed on rank " << rank << " of " << world_size << " (" << backend << ")";
  return out.str();
}

void CheckCollectiveTensor(const at::Tensor& tensor, bool floating_only, const char* what) {
  const std::string where = std::string(what) + ": tensor";
  if (!tensor.defined()) {
    throw std::invalid_argument(where + " is undefined");
  }
  if (tensor.is_sparse()) {
    throw std::invalid_argument(where + " is sparse; only dense tensors are supported");
  }
  if (!tensor.is_contiguous()) {
    throw std::invalid_argument(where + " is not contiguous; pass tensor.contiguous()");
  }
  if (floating_only && !tensor.is_floating_point()) {
    throw std::invalid_argument(where + " has dtype " +
                                std::string(c10::toString(tensor.scalar_type())) +
                                "; averaging needs a floating point dtype");
  }
}

void CheckAllGather(const at::Tensor& input, const at::Tensor& output, int world_size) {
  CheckCollectiveTensor(input, /*floating_only=*/false, "all-gather input");
  CheckCollectiveTensor(output, /*floating_only=*/false, "all-gather output");
  if (input.dim() < 1 || input.size(0) < 1) {
    throw std::invalid_argument("all-gather: the input needs at least one row");
  }
  std::vector<int64_t> expected = input.sizes().vec();
  expected[0] *= world_size;
  if (output.sizes().vec() != expected || output.scalar_type() != input.scalar_type() ||
      output.device() != input.device()) {
    std::ostringstream message;
    message << "all-gather: the output must be " << c10::toString(input.scalar_type())
            << c10::IntArrayRef(expected) << " on " << input.device() << " (world size "
            << world_size << " x the input's rows), not " << c10::toString(output.scalar_type())
            << output.sizes() << " on " << output.device();
    throw std::invalid_argument(message.str());
  }
}

at::Tensor AllGatherRows(Communicator& communicator, const at::Tensor& rows) {
  at::Tensor input = rows.detach().contiguous();
  if (input.dim() < 1) {
    throw std::invalid_argument("all-gather: the input needs at least one dimension");
  }
  std::vector<int64_t> shape = input.sizes().vec();
  shape[0] *= communicator.world_size();
  at::Tensor output = at::empty(shape, input.options());
  communicator.AllGather(input, output)->Wait(communicator.timeout());
  return output;
}

void CheckRoot(int root, int world_size) {
  if (root < 0 || root >= world_size) {
    throw std::invalid_argument("broadcast: root " + std::to_string(root) +
                                " is not a rank of this group (world size " +
                                std::to_string(world_size) + ")");
  }
}

}  // namespace tecl::worker::dist
