// Real trainer processes (tecl_dist_test_trainer) forming a Gloo group over 127.0.0.1 through a
// c10d::TCPStore this test hosts on port 0:
//   * 2 processes x batch B with bucketed gradient averaging end with identical parameters, equal
//     (within float tolerance) to one process trained on the same 2B-sample batches;
//   * a peer killed mid-run (SIGKILL) or hung (SIGSTOP) makes the survivor's step fail with
//     CollectiveError / CollectiveTimeoutError within the collective timeout, and the survivor
//     drops its group and keeps running.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/dist/child_process.h"
#include "tests/integration/dist/dist_test_model.h"

namespace tecl::worker::dist::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

int64_t MonotonicNs() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

std::string TrainerPath() { return BinaryPath("tecl_dist_test_trainer"); }

class Process : public ChildProcess {
 public:
  explicit Process(const std::vector<std::string>& args) : ChildProcess(TrainerPath(), args) {}
};

std::map<std::string, std::string> ReadReport(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

class DistMultiprocessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/tecl_dist_testXXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    store_ = ServeTestStore();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Args(int rank, int steps, int batch, int timeout_ms) {
    return {"--rank=" + std::to_string(rank),
            "--world_size=2",
            "--store_port=" + std::to_string(store_->getPort()),
            "--steps=" + std::to_string(steps),
            "--batch=" + std::to_string(batch),
            "--timeout_ms=" + std::to_string(timeout_ms),
            "--out=" + Path("params" + std::to_string(rank) + ".pt"),
            "--report=" + Path("report" + std::to_string(rank) + ".txt")};
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
};

TEST_F(DistMultiprocessTest, TwoProcessesMatchOneProcessOnTheDoubleBatch) {
  constexpr int kSteps = 6;
  constexpr int kBatch = 8;
  Process rank0(Args(0, kSteps, kBatch, 60000));
  Process rank1(Args(1, kSteps, kBatch, 60000));
  const int status0 = rank0.Wait(120s);
  const int status1 = rank1.Wait(120s);
  ASSERT_TRUE(WIFEXITED(status0) && WEXITSTATUS(status0) == 0) << "status " << status0;
  ASSERT_TRUE(WIFEXITED(status1) && WEXITSTATUS(status1) == 0) << "status " << status1;

  std::vector<torch::Tensor> p0, p1;
  torch::load(p0, Path("params0.pt"));
  torch::load(p1, Path("params1.pt"));

  torch::set_num_threads(1);
  torch::manual_seed(1);  // rank 0's initialisation, which the trainers broadcast
  SmallNet reference;
  std::vector<torch::Tensor> initial;
  for (const auto& p : reference.parameters()) initial.push_back(p.detach().clone());
  Train(reference, kSteps, [](int step) { return GlobalBatch(step, 2, kBatch); }, nullptr);
  auto expected = reference.parameters();

  ASSERT_EQ(p0.size(), expected.size());
  ASSERT_EQ(p1.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(torch::equal(p0[i], p1[i])) << "ranks disagree on parameter " << i;
    EXPECT_TRUE(torch::allclose(p0[i], expected[i], 1e-4, 1e-5))
        << "parameter " << i << " max diff " << (p0[i] - expected[i]).abs().max().item<float>();
    EXPECT_FALSE(torch::allclose(p0[i], initial[i], 1e-4, 1e-5)) << "parameter " << i
                                                                  << " did not train";
  }
}

TEST_F(DistMultiprocessTest, AKilledPeerFailsTheSurvivorsStepWithCollectiveError) {
  constexpr int kTimeoutMs = 5000;
  Process survivor(Args(0, 20, 4, kTimeoutMs));
  auto victim_args = Args(1, 20, 4, kTimeoutMs);
  victim_args.push_back("--hang_at_step=3");
  Process victim(victim_args);

  store_->wait({"hung/1"}, 60s);  // the victim is inside step 3
  ASSERT_EQ(kill(victim.pid(), SIGKILL), 0);
  const int64_t killed_ns = MonotonicNs();
  const int victim_status = victim.Wait(30s);
  EXPECT_TRUE(WIFSIGNALED(victim_status) && WTERMSIG(victim_status) == SIGKILL);

  const int status = survivor.Wait(60s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  auto report = ReadReport(Path("report0.txt"));
  EXPECT_THAT(report["error"], StartsWith("Collective"));
  EXPECT_THAT(report["message"], HasSubstr("failed on rank 0 of 2 (gloo)"));
  EXPECT_EQ(report["alive"], "1");
  const double caught_after_kill_s = (std::stoll(report["caught_ns"]) - killed_ns) / 1e9;
  EXPECT_LT(caught_after_kill_s, kTimeoutMs / 1000.0 + 1.0);
  RecordProperty("caught_after_kill_ms", std::to_string(caught_after_kill_s * 1000));
  const double drop_s = (std::stoll(report["dropped_ns"]) - std::stoll(report["caught_ns"])) / 1e9;
  RecordProperty("drop_group_ms", std::to_string(drop_s * 1000));
  EXPECT_LT(drop_s, kTimeoutMs / 1000.0 + 2.0);
}

TEST_F(DistMultiprocessTest, AHungPeerTimesOutTheSurvivorsStep) {
  constexpr int kTimeoutMs = 3000;
  auto hung_args = Args(0, 20, 4, kTimeoutMs);
  hung_args.push_back("--hang_at_step=2");
  Process hung(hung_args);
  Process survivor(Args(1, 20, 4, kTimeoutMs));

  store_->wait({"hung/0"}, 60s);
  ASSERT_EQ(kill(hung.pid(), SIGSTOP), 0);
  const int64_t stopped_ns = MonotonicNs();

  const int status = survivor.Wait(60s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  auto report = ReadReport(Path("report1.txt"));
  EXPECT_EQ(report["error"], "CollectiveTimeoutError");
  EXPECT_THAT(report["message"], HasSubstr("failed on rank 1 of 2 (gloo)"));
  EXPECT_THAT(report["message"], HasSubstr("drop this process group"));
  EXPECT_EQ(report["alive"], "1");
  const double caught_after_stop_s = (std::stoll(report["caught_ns"]) - stopped_ns) / 1e9;
  EXPECT_LT(caught_after_stop_s, kTimeoutMs / 1000.0 + 3.0);
  const double drop_s = (std::stoll(report["dropped_ns"]) - std::stoll(report["caught_ns"])) / 1e9;
  RecordProperty("drop_group_ms", std::to_string(drop_s * 1000));
  EXPECT_LT(drop_s, kTimeoutMs / 1000.0 + 2.0);
  kill(hung.pid(), SIGKILL);
  hung.Wait(30s);
}

}  // namespace
}  // namespace tecl::worker::dist::testing
