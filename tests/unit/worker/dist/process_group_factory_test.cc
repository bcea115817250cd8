#include "services/worker/dist/process_group_factory.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#if TECL_HAVE_NCCL
#include <cuda_runtime_api.h>

#include "services/worker/dist/nccl_communicator.h"
#endif

namespace tecl::worker::dist {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

template <typename Fn>
std::string InvalidArgument(Fn fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument)";
}

TEST(ProcessGroupFactoryTest, ValidatesOptionsNamingTheField) {
  GroupOptions options;
  options.world_size = 2;
  options.rank = 2;
  EXPECT_THAT(InvalidArgument([&] { ValidateGroupOptions(options); }),
              HasSubstr("rank 2 is outside [0, 2)"));
  options.rank = 0;
  options.world_size = 0;
  EXPECT_THAT(InvalidArgument([&] { ValidateGroupOptions(options); }),
              HasSubstr("world_size 0 must be at least 1"));
  options.world_size = 1;
  options.timeout = 0ms;
  EXPECT_THAT(InvalidArgument([&] { ValidateGroupOptions(options); }),
              HasSubstr("timeout must be positive"));
  EXPECT_THAT(InvalidArgument([] { ParseBackend("mpi"); }),
              HasSubstr("\"mpi\" is not one of gloo, nccl"));
  EXPECT_THAT(InvalidArgument([] { AttemptStore(c10::make_intrusive<c10d::HashStore>(), "", 0); }),
              HasSubstr("job_id is empty"));
}

TEST(ProcessGroupFactoryTest, ChoosesTheBackendByDevice) {
  EXPECT_EQ(BackendForDevice(c10::Device(c10::kCPU)), Backend::kGloo);
  EXPECT_EQ(BackendForDevice(c10::Device(c10::kCUDA, 1)), Backend::kNccl);
  EXPECT_EQ(ParseBackend("nccl"), Backend::kNccl);
  EXPECT_EQ(BackendName(Backend::kGloo), "gloo");
}

TEST(ProcessGroupFactoryTest, AttemptStoresIsolateJobsAndAttempts) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  auto a = AttemptStore(store, "job-1", 0);
  auto b = AttemptStore(store, "job-1", 1);
  a->set("k", {1});
  b->set("k", {2});
  EXPECT_EQ(a->get("k"), std::vector<uint8_t>{1});
  EXPECT_EQ(b->get("k"), std::vector<uint8_t>{2});
  EXPECT_TRUE(store->check({"tecl/job-1/0/k", "tecl/job-1/1/k"}));
}

TEST(ProcessGroupFactoryTest, GlooGroupOfOneWorks) {
  GroupOptions options;
  options.gloo_hostname = "127.0.0.1";
  options.timeout = 5s;
  auto comm = CreateCommunicator(c10::make_intrusive<c10d::HashStore>(), options);
  EXPECT_EQ(comm->backend_name(), "gloo");
  torch::Tensor t = torch::tensor({4.0f});
  comm->AllReduceAverage(t)->Wait(comm->timeout());
  EXPECT_EQ(t.item<float>(), 4.0f);
  comm->Barrier();
}

// Writes one byte into a pipe whose reader is gone; exits 0 when the write failed with EPIPE.
[[noreturn]] void WriteToABrokenPipeAndExit() {
  int fds[2];
  if (pipe(fds) != 0) _exit(2);
  close(fds[0]);
  const ssize_t n = write(fds[1], "x", 1);
  _exit(n == -1 && errno == EPIPE ? 0 : 1);
}

// Gloo writes to its peers with plain writev: without this, a rank whose peer died mid-step was
// killed by SIGPIPE instead of failing its collective with CollectiveError.
TEST(ProcessGroupFactoryDeathTest, FormingAGroupMakesABrokenPipeAnErrorNotASignal) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_EXIT(
      {
        signal(SIGPIPE, SIG_DFL);
        WriteToABrokenPipeAndExit();
      },
      ::testing::KilledBySignal(SIGPIPE), "");
  EXPECT_EXIT(
      {
        signal(SIGPIPE, SIG_DFL);
        GroupOptions options;
        options.gloo_hostname = "127.0.0.1";
        options.timeout = 5s;
        CreateCommunicator(c10::make_intrusive<c10d::HashStore>(), options);
        WriteToABrokenPipeAndExit();
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(ProcessGroupFactoryTest, AMissingRankFailsGroupFormationWithCollectiveError) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  store->setTimeout(1s);
  GroupOptions options;
  options.world_size = 2;
  options.gloo_hostname = "127.0.0.1";
  options.timeout = 1s;
  const auto start = std::chrono::steady_clock::now();
  try {
    CreateCommunicator(store, options);
    FAIL() << "expected CollectiveError";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("forming the gloo group as rank 0 of 2"));
    EXPECT_THAT(e.what(), HasSubstr("every rank joined"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(ProcessGroupFactoryTest, BadGlooInterfaceIsNamed) {
  GroupOptions options;
  options.gloo_interface = "no-such-nic0";
  try {
    CreateCommunicator(c10::make_intrusive<c10d::HashStore>(), options);
    FAIL() << "expected CollectiveError";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot open a Gloo device (interface \"no-such-nic0\""));
  }
}

#if TECL_HAVE_NCCL
bool HasCudaDevice() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

TEST(NcclCommunicatorTest, WithoutAGpuCreationFailsWithAClearCollectiveError) {
  if (HasCudaDevice()) GTEST_SKIP() << "a CUDA device is present; see GroupOfOneOnAGpu";
  NcclCommunicatorOptions options;
  options.timeout = 2s;
  try {
    NcclCommunicator::Create(c10::make_intrusive<c10d::HashStore>(), options);
    FAIL() << "expected CollectiveError";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("forming the NCCL communicator as rank 0 of 1"));
    EXPECT_THAT(e.what(), HasSubstr("no CUDA device is usable"));
  }
}

TEST(NcclCommunicatorTest, GroupOfOneOnAGpu) {
  if (!HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
  NcclCommunicatorOptions options;
  options.timeout = 30s;
  auto comm = NcclCommunicator::Create(c10::make_intrusive<c10d::HashStore>(), options);
  comm->Barrier();
  if (torch::cuda::is_available()) {
    torch::Tensor t = torch::full({1000}, 3.0f, torch::Device(torch::kCUDA, 0));
    comm->AllReduceAverage(t)->Wait(comm->timeout());
    EXPECT_TRUE(torch::equal(t.cpu(), torch::full({1000}, 3.0f)));
  }
}

// Rank 0 of 2 whose peer never comes: forming the communicator is aborted at the timeout with an
// error that says so, instead of hanging in NCCL (one GPU suffices).
TEST(NcclCommunicatorTest, AMissingPeerAbortsAtTheTimeout) {
  if (!HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
  NcclCommunicatorOptions options;
  options.rank = 0;
  options.world_size = 2;
  options.timeout = 3s;
  const auto start = std::chrono::steady_clock::now();
  try {
    NcclCommunicator::Create(c10::make_intrusive<c10d::HashStore>(), options);
    FAIL() << "a group of 2 formed with one rank";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("rank 0 of 2"));
    EXPECT_THAT(e.what(), HasSubstr("timed out after 3000"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s) << "the abort did not return";
}
#else
TEST(ProcessGroupFactoryTest, NcclWithoutNcclIsAnInvalidArgument) {
  if (!NcclImplementationCompiledIn().empty()) GTEST_SKIP() << "NCCL compiled in";
  GroupOptions options;
  options.backend = Backend::kNccl;
  EXPECT_THAT(InvalidArgument([&] { ValidateGroupOptions(options); }),
              HasSubstr("backend nccl is not built into this binary"));
}
#endif

}  // namespace
}  // namespace tecl::worker::dist
