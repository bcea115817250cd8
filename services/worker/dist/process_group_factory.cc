#include "services/worker/dist/process_group_factory.h"

#include <signal.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>
#include <stdexcept>

#include "services/worker/dist/process_group_communicator.h"

#if TECL_DIST_TORCH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#if TECL_HAVE_NCCL
#include "services/worker/dist/nccl_communicator.h"
#endif

namespace tecl::worker::dist {
namespace {

std::string ErrorText(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

std::string Where(const GroupOptions& options) {
  return "forming the " + BackendName(options.backend) + " group as rank " +
         std::to_string(options.rank) + " of " + std::to_string(options.world_size);
}

std::shared_ptr<Communicator> CreateGloo(const c10::intrusive_ptr<c10d::Store>& store,
                                         const GroupOptions& options) {
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
  std::string interface = options.gloo_interface;
  if (interface.empty()) {
    const char* env = std::getenv("GLOO_SOCKET_IFNAME");
    if (env != nullptr) interface = env;
  }
  try {
    if (!interface.empty()) {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (!options.gloo_hostname.empty()) {
      gloo_options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(options.gloo_hostname));
    } else {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
  } catch (const std::exception& e) {
    throw CollectiveError(Where(options) + ": cannot open a Gloo device (interface \"" +
                          interface + "\", hostname \"" + options.gloo_hostname +
                          "\"): " + ErrorText(e) +
                          "; set gloo_interface / GLOO_SOCKET_IFNAME or gloo_hostname");
  }
  // One worker thread: the buckets of a step run one after another in launch order, and the
  // transport does not take a second core away from backward.
  gloo_options->threads = 1;
  try {
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank,
                                                             options.world_size, gloo_options);
    return std::make_shared<ProcessGroupCommunicator>(std::move(group), "gloo", options.timeout);
  } catch (const std::exception& e) {
    throw CollectiveError(Where(options) + ": " + ErrorText(e) +
                          "; check that every rank joined with the same store and world size");
  }
}

#if TECL_DIST_TORCH_NCCL
std::shared_ptr<Communicator> CreateTorchNccl(const c10::intrusive_ptr<c10d::Store>& store,
                                              const GroupOptions& options) {
  // A failed collective must surface as an exception from wait(), not end the process: make the
  // watchdog abort the communicators and leave the process alone unless the user chose otherwise.
  setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2", /*overwrite=*/0);
  setenv("NCCL_ASYNC_ERROR_HANDLING", "2", /*overwrite=*/0);
  try {
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = options.timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, options.rank,
                                                             options.world_size, nccl_options);
    return std::make_shared<ProcessGroupCommunicator>(std::move(group), "nccl (c10d)",
                                                      options.timeout);
  } catch (const std::exception& e) {
    throw CollectiveError(Where(options) + ": " + ErrorText(e));
  }
}
#endif

}  // namespace

Backend BackendForDevice(const c10::Device& device) {
  return device.is_cuda() ? Backend::kNccl : Backend::kGloo;
}

std::string BackendName(Backend backend) {
  return backend == Backend::kNccl ? "nccl" : "gloo";
}

Backend ParseBackend(const std::string& name) {
  if (name == "gloo") return Backend::kGloo;
  if (name == "nccl") return Backend::kNccl;
  throw std::invalid_argument("process group backend \"" + name +
                              "\" is not one of gloo, nccl");
}

std::string NcclImplementationCompiledIn() {
#if TECL_DIST_TORCH_NCCL
  return "nccl (c10d)";
#elif TECL_HAVE_NCCL
  return "nccl";
#else
  return "";
#endif
}

void IgnoreBrokenPipes() {
  struct sigaction action {};
  action.sa_handler = SIG_IGN;
  sigemptyset(&action.sa_mask);
  sigaction(SIGPIPE, &action, nullptr);
}

void ValidateGroupOptions(const GroupOptions& options) {
  if (options.world_size < 1) {
    throw std::invalid_argument("process group: world_size " + std::to_string(options.world_size) +
                                " must be at least 1");
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    throw std::invalid_argument("process group: rank " + std::to_string(options.rank) +
                                " is outside [0, " + std::to_string(options.world_size) + ")");
  }
  if (options.timeout.count() <= 0) {
    throw std::invalid_argument("process group: timeout must be positive (got " +
                                std::to_string(options.timeout.count()) + " ms)");
  }
  if (options.backend == Backend::kNccl) {
    bool torch_nccl = false;
    bool direct_nccl = false;
#if TECL_DIST_TORCH_NCCL
    torch_nccl = true;
#endif
#if TECL_HAVE_NCCL
    direct_nccl = true;
#endif
    const bool ok = (options.nccl == NcclImplementation::kAuto && (torch_nccl || direct_nccl)) ||
                    (options.nccl == NcclImplementation::kTorch && torch_nccl) ||
                    (options.nccl == NcclImplementation::kDirect && direct_nccl);
    if (!ok) {
      throw std::invalid_argument(
          "process group: backend nccl is not built into this binary (LibTorch without "
          "ProcessGroupNCCL and no nccl.h/libnccl found at configure time); use backend gloo or "
          "rebuild with CUDA and NCCL (TECL_WITH_CUDA=ON)");
    }
  }
}

std::shared_ptr<Communicator> CreateCommunicator(const c10::intrusive_ptr<c10d::Store>& store,
                                                 const GroupOptions& options) {
  ValidateGroupOptions(options);
  if (!store) throw std::invalid_argument("process group: store is null");
  IgnoreBrokenPipes();
  if (options.backend == Backend::kGloo) return CreateGloo(store, options);
#if TECL_DIST_TORCH_NCCL
  if (options.nccl != NcclImplementation::kDirect) return CreateTorchNccl(store, options);
#endif
#if TECL_HAVE_NCCL
  NcclCommunicatorOptions nccl;
  nccl.rank = options.rank;
  nccl.world_size = options.world_size;
  nccl.cuda_device = options.cuda_device;
  nccl.timeout = options.timeout;
  return NcclCommunicator::Create(store, nccl);
#else
  throw std::logic_error("unreachable: ValidateGroupOptions accepted nccl without NCCL");
#endif
}

c10::intrusive_ptr<c10d::Store> AttemptStore(const c10::intrusive_ptr<c10d::Store>& store,
                                             const std::string& job_id, int attempt) {
  if (job_id.empty()) throw std::invalid_argument("attempt store: job_id is empty");
  if (attempt < 0) {
    throw std::invalid_argument("attempt store: attempt " + std::to_string(attempt) +
                                " is negative");
  }
  return c10::make_intrusive<c10d::PrefixStore>("tecl/" + job_id + "/" + std::to_string(attempt),
                                                store);
}

}  // namespace tecl::worker::dist
