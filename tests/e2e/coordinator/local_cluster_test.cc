// `teclctl local up|status|down` with the real tecl-coordinator and fake worker binaries, then a
// job submitted with --wait through the local cluster; and a clear failure when a binary is
// missing.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/coordinator/test_util.h"
#include "tests/testing/http_get.h"

namespace tecl::teclctl {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

// Running, not a zombie waiting for whoever adopted it to reap it.
bool Running(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class LocalClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = getenv("TECL_BIN_DIR");
    ASSERT_NE(bin, nullptr) << "run through ctest";
    dir_ = tecl::testing::MakeTempDir("tecl_local");
    tecl::testing::MakeDataset(dir_);
    // teclctl finds the other binaries next to its own executable: a folder with a copy of
    // teclctl, the real coordinator and the fake workers.
    bin_ = dir_ + "/bin";
    fs::create_directories(bin_);
    fs::copy_file(std::string(bin) + "/teclctl", bin_ + "/teclctl");
    fs::create_symlink(std::string(bin) + "/tecl-coordinator", bin_ + "/tecl-coordinator");
    fs::create_symlink(TECL_FAKE_WORKER, bin_ + "/tecl-worker");
    fs::create_symlink(TECL_FAKE_WORKER, bin_ + "/tecl-dataloader");
    std::ofstream(dir_ + "/spec.yaml") << "dataset: {root: data/synth, train_list: trainlist.txt, "
                                          "test_list: testlist.txt}\n"
                                          "model: {backbone: tiny3d}\n"
                                          "resources: {trainers: 2, dataloaders_per_trainer: 1}\n"
                                          "schedule: {total_steps: 60}\n";
  }
  void TearDown() override {
    Run("local down");  // Whatever a failed test left running.
    fs::remove_all(dir_);
  }

  Result Run(const std::string& args, const std::string& teclctl = "") {
    const std::string out = dir_ + "/out.txt";
    const std::string err = dir_ + "/err.txt";
    const std::string command = absl::StrCat(
        "(cd ", dir_,
        " && env -u TECL_COORDINATOR -u TECL_LOCAL_BIN_DIR PATH=/usr/bin:/bin TECL_HOME=", dir_,
        "/home ", teclctl.empty() ? bin_ + "/teclctl" : teclctl, " ", args, " >", out, " 2>", err,
        ")");
    Result result;
    result.exit_code = tecl::testing::RunCommand(command).exit_code;
    result.out = ReadFile(out);
    result.err = ReadFile(err);
    return result;
  }

  std::vector<pid_t> Pids() {
    std::vector<pid_t> pids;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(dir_ + "/home/pids", error)) {
      pid_t pid = 0;
      std::vector<std::string> parts = absl::StrSplit(ReadFile(entry.path()), ' ');
      if (absl::SimpleAtoi(parts[0], &pid)) pids.push_back(pid);
    }
    return pids;
  }

  std::string dir_;
  std::string bin_;
};

TEST_F(LocalClusterTest, UpSubmitStatusDown) {
  Result up = Run("local up --trainers 2 --dataloaders 2 --threads 1");
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_THAT(up.out, HasSubstr("local cluster up under " + dir_ + "/home"));
  EXPECT_EQ(Pids().size(), 5u);

  // The cluster is secured: its credentials are private files, and a caller without them is
  // refused although it reaches the port.
  const std::string secrets = dir_ + "/home/secrets";
  EXPECT_EQ(fs::status(secrets).permissions() & fs::perms::all, fs::perms::owner_all);
  for (const char* file : {"ca.key", "user.key", "user.token", "auth_file"}) {
    EXPECT_EQ(fs::status(secrets + "/" + file).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write)
        << file;
  }
  const std::string address = ReadFile(dir_ + "/home/coordinator.addr");
  Result anonymous = Run("list --coordinator=" + address.substr(0, address.find('\n')) +
                         " --tls_ca=" + secrets + "/ca.pem");
  EXPECT_NE(anonymous.exit_code, 0) << anonymous.out;
  Result reader = Run("list --token_file=" + secrets + "/reader.token --tls_ca=" + secrets +
                      "/ca.pem --tls_cert=" + secrets + "/reader.pem --tls_key=" + secrets +
                      "/reader.key");
  EXPECT_EQ(reader.exit_code, 0) << reader.err;

  // Later commands find the local coordinator by themselves.
  Result workers = Run("workers");
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  EXPECT_EQ(std::count(workers.out.begin(), workers.out.end(), '\n'), 5)
      << workers.out;  // Header + 4.

  // A spec may not name a checkpoint folder outside --checkpoint_roots.
  Result outside = Run("submit spec.yaml --set checkpoint.dir=/tmp/elsewhere");
  EXPECT_EQ(outside.exit_code, 4) << outside.err;
  EXPECT_THAT(outside.err, HasSubstr("checkpoint.dir"));

  Result job = Run("submit spec.yaml --wait");
  EXPECT_EQ(job.exit_code, 0) << job.err;
  EXPECT_THAT(job.err, HasSubstr("succeeded: rank 0 finished at step 60"));

  Result status = Run("local status");
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("(healthy)"));
  EXPECT_THAT(status.out, HasSubstr("2 trainers idle"));

  Result again = Run("local up");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already running"));

  const std::vector<pid_t> pids = Pids();
  Result down = Run("local down");
  EXPECT_EQ(down.exit_code, 0) << down.err;
  EXPECT_THAT(down.out, HasSubstr("stopped 5 process(es)"));
  for (pid_t pid : pids) EXPECT_FALSE(Running(pid)) << "pid " << pid << " still runs";
  Result gone = Run("local status");
  EXPECT_EQ(gone.exit_code, 5);
  EXPECT_THAT(gone.err, HasSubstr("no local cluster"));

  // The state survives: a new cluster on the same home knows the finished job.
  ASSERT_EQ(Run("local up --trainers 0 --dataloaders 0").exit_code, 0);
  Result list = Run("list");
  EXPECT_THAT(list.out, HasSubstr("succeeded"));
}

TEST_F(LocalClusterTest, AMissingBinaryFailsBeforeAnythingStarts) {
  const std::string lonely = dir_ + "/lonely";
  fs::create_directories(lonely);
  fs::copy_file(bin_ + "/teclctl", lonely + "/teclctl");
  fs::create_symlink(fs::read_symlink(bin_ + "/tecl-coordinator"), lonely + "/tecl-coordinator");
  Result up = Run("local up --trainers 1 --dataloaders 0", lonely + "/teclctl");
  EXPECT_EQ(up.exit_code, 1);
  EXPECT_THAT(up.err, HasSubstr("tecl-worker was not found next to teclctl (" + lonely + ")"));
  EXPECT_THAT(up.err, HasSubstr("--trainers 0"));
  EXPECT_TRUE(Pids().empty());
}

}  // namespace
}  // namespace tecl::teclctl
