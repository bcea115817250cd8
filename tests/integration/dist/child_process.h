// What the multi-process tests share: a helper binary started by fork + execv of
// $TECL_BIN_DIR/<name> (or ./<name>), killed with SIGKILL and reaped when the object goes away
// before Wait(); and the test's own c10d::TCPStore on 127.0.0.1 and a free port, which the
// helpers join to form their group.
#ifndef TECL_TESTS_INTEGRATION_DIST_CHILD_PROCESS_H_
#define TECL_TESTS_INTEGRATION_DIST_CHILD_PROCESS_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace tecl::worker::dist::testing {

inline std::string BinaryPath(const std::string& name) {
  const char* bin = std::getenv("TECL_BIN_DIR");
  return std::string(bin != nullptr ? bin : ".") + "/" + name;
}

// The store server the helper processes connect to (port: store->getPort()).
inline c10::intrusive_ptr<c10d::TCPStore> ServeTestStore() {
  c10d::TCPStoreOptions options;
  options.port = 0;
  options.isServer = true;
  options.waitWorkers = false;
  options.timeout = std::chrono::seconds(60);
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
}

class ChildProcess {
 public:
  ChildProcess(const std::string& path, const std::vector<std::string>& args) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      execv(path.c_str(), argv.data());
      _exit(127);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // The wait status once the process ended; fails the test (and kills it) after `limit`.
  int Wait(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "process " << pid_ << " still running after " << limit.count() << " s";
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

}  // namespace tecl::worker::dist::testing

#endif  // TECL_TESTS_INTEGRATION_DIST_CHILD_PROCESS_H_
