// Durability under kill -9: tecl-coordinator (the real binary) is killed with SIGKILL while
// clients submit jobs continuously, and restarted on the same state folder. Every submit that
// was acknowledged must be there, complete (spec readable, events consistent), and resubmitting
// the unacknowledged ones with their request ids must never duplicate a job.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/coordinator/store/sqlite_job_store.h"
#include "tests/integration/coordinator/test_util.h"

extern char** environ;

namespace tecl::coordinator {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

constexpr char kUserToken[] = "crash-test-user-token-0123456789";

// A tecl-coordinator process.
class CoordinatorProcess {
 public:
  CoordinatorProcess(std::string state_dir, std::string log) : state_dir_(state_dir), log_(log) {}
  ~CoordinatorProcess() { Kill(SIGKILL); }

  // Starts it and waits until it wrote its address. Returns the address.
  std::string Start() {
    const char* bin = getenv("TECL_BIN_DIR");
    EXPECT_NE(bin, nullptr);
    const std::string binary = std::string(bin) + "/tecl-coordinator";
    const std::string port_file = state_dir_ + "/addr";
    std::filesystem::remove(port_file);
    // The user's token in an auth file next to the state (the real binary, secured).
    const std::string auth_file = state_dir_ + "/auth_file";
    std::ofstream(auth_file) << "user crash-test " << kUserToken << "\n";
    std::filesystem::permissions(auth_file, std::filesystem::perms::owner_read |
                                                std::filesystem::perms::owner_write);
    std::vector<std::string> args = {binary,
                                     "--listen=127.0.0.1:0",
                                     "--metrics_listen=",
                                     "--state_dir=" + state_dir_,
                                     "--port_file=" + port_file,
                                     "--auth_file=" + auth_file,
                                     "--check_dataset_paths=false"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    EXPECT_EQ(posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    // The address file appears once the server listens (written atomically by rename).
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    std::string address;
    while (address.empty() && absl::Now() < deadline) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        ADD_FAILURE() << "tecl-coordinator exited:\n" << ReadFile(log_);
        pid_ = 0;
        return "";
      }
      address = std::string(absl::StripAsciiWhitespace(ReadFile(port_file)));
      if (address.empty()) absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_FALSE(address.empty()) << ReadFile(log_);
    return address;
  }

  void Kill(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

 private:
  const std::string state_dir_;
  const std::string log_;
  pid_t pid_ = 0;
};

struct Submitted {
  std::string request_id;
  std::string name;
  std::string job_id;  // Empty when not acknowledged.
};

tecl::v1::JobSpec SpecNamed(const std::string& name) {
  tecl::v1::JobSpec spec = tecl::testing::SmallSpec("/data/synth");
  spec.set_name(name);
  spec.set_seed(std::hash<std::string>()(name));  // Every spec differs.
  return spec;
}

// A client that tries each call once: the test wants to see a submit fail when the coordinator
// dies under it.
std::shared_ptr<CoordinatorClient> Client(const std::string& address, absl::Duration timeout) {
  ClientOptions options;
  options.rpc_timeout = timeout;
  options.max_attempts = 1;
  return tecl::testing::MakeClient(address, kUserToken, options);
}

absl::StatusOr<tecl::v1::Job> Submit(CoordinatorClient* client, const Submitted& s) {
  return client->SubmitJob(SpecNamed(s.name), s.request_id);
}

// Every job of the coordinator, all pages.
std::vector<tecl::v1::Job> AllJobs(CoordinatorClient* client) {
  std::vector<tecl::v1::Job> jobs;
  tecl::v1::ListJobsRequest request;
  request.set_page_size(1000);
  while (true) {
    absl::StatusOr<tecl::v1::ListJobsResponse> response = client->ListJobs(request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) break;
    jobs.insert(jobs.end(), response->jobs().begin(), response->jobs().end());
    if (response->next_page_token().empty()) break;
    request.set_page_token(response->next_page_token());
  }
  return jobs;
}

TEST(CoordinatorCrashTest, AcknowledgedSubmitsSurviveKillDashNine) {
  const std::string dir = tecl::testing::MakeTempDir("tecl_crash");
  const std::string state = dir + "/state";
  std::filesystem::create_directories(state);
  CoordinatorProcess coordinator(state, dir + "/coordinator.log");

  constexpr int kRounds = 3;
  constexpr int kClients = 4;
  constexpr int kAcksBeforeKill = 40;
  std::vector<Submitted> all;  // Every submit of every round.
  for (int round = 0; round < kRounds; ++round) {
    const std::string address = coordinator.Start();
    ASSERT_FALSE(address.empty());
    auto client = Client(address, absl::Seconds(2));
    absl::Mutex mu;
    int acked = 0;
    std::atomic<bool> stop{false};
    std::vector<std::vector<Submitted>> per_client(kClients);
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        for (int i = 0; !stop.load(); ++i) {
          Submitted s;
          s.request_id = absl::StrCat("r", round, "-c", c, "-", i);
          s.name = absl::StrCat("job-r", round, "-c", c, "-", i);
          absl::StatusOr<tecl::v1::Job> job = Submit(client.get(), s);
          if (job.ok()) {
            s.job_id = job->id();
            absl::MutexLock lock(&mu);
            ++acked;
          }
          per_client[c].push_back(s);
          if (!job.ok()) break;  // The coordinator is gone.
        }
      });
    }
    {
      absl::MutexLock lock(&mu);
      auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) {
        return acked >= kAcksBeforeKill + 10 * round;
      };
      ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(60)));
    }
    coordinator.Kill(SIGKILL);  // In the middle of the stream: clients are submitting.
    stop = true;
    for (auto& t : clients) t.join();
    for (auto& list : per_client) all.insert(all.end(), list.begin(), list.end());
  }

  const std::string address = coordinator.Start();
  ASSERT_FALSE(address.empty());
  auto client = Client(address, absl::Seconds(5));
  int acknowledged = 0;
  for (const Submitted& s : all) {
    if (s.job_id.empty()) continue;
    ++acknowledged;
    absl::StatusOr<tecl::v1::Job> job = client->GetJob(s.job_id);
    ASSERT_TRUE(job.ok()) << "acknowledged " << s.job_id << " is missing: " << job.status();
    EXPECT_EQ(job->spec().name(), s.name);
    EXPECT_EQ(job->spec().seed(), SpecNamed(s.name).seed());
    EXPECT_EQ(job->state(), tecl::v1::JOB_STATE_PENDING);
  }
  EXPECT_GE(acknowledged, kRounds * kAcksBeforeKill);
  // Retrying every submit with its request id finds the stored job or stores it once.
  for (const Submitted& s : all) {
    absl::StatusOr<tecl::v1::Job> job = Submit(client.get(), s);
    ASSERT_TRUE(job.ok()) << job.status();
    if (!s.job_id.empty()) {
      EXPECT_EQ(job->id(), s.job_id);
    }
  }
  std::vector<tecl::v1::Job> jobs = AllJobs(client.get());
  std::map<std::string, int> by_name;
  for (const tecl::v1::Job& job : jobs) {
    ++by_name[job.spec().name()];
    // Events are complete: contiguous from 1, starting with the submission, ending in the
    // job's state.
    absl::StatusOr<std::vector<tecl::v1::JobEvent>> events = client->ListEvents(job.id(), 0, 0);
    ASSERT_TRUE(events.ok()) << events.status();
    ASSERT_GE(events->size(), 1u) << job.id();
    EXPECT_EQ(events->front().to_state(), tecl::v1::JOB_STATE_PENDING);
    EXPECT_EQ(events->front().reason(), "submitted");
    for (size_t i = 0; i < events->size(); ++i) EXPECT_EQ((*events)[i].seq(), int64_t(i) + 1);
    EXPECT_EQ(events->back().to_state(), job.state());
  }
  EXPECT_EQ(jobs.size(), all.size());
  for (const Submitted& s : all) EXPECT_EQ(by_name[s.name], 1) << s.name;

  // The file itself: every record parses.
  coordinator.Kill(SIGTERM);
  auto store = SqliteJobStore::Open(state + "/coordinator.db");
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<StoreSnapshot> snapshot = (*store)->Load();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(snapshot->jobs.size(), all.size());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tecl::coordinator
