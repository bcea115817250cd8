#include "services/worker/dist/communicator.h"

#include <sstream>

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

void CheckRoot(int root, int world_size) {
  if (root < 0 || root >= world_size) {
    throw std::invalid_argument("broadcast: root " + std::to_string(root) +
                                " is not a rank of this group (world size " +
                                std::to_string(world_size) + ")");
  }
}

}  // namespace tecl::worker::dist
