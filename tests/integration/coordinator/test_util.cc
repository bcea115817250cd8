#include "tests/integration/coordinator/test_util.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/common/auth.h"
#include "services/coordinator/spec/job_spec.h"

namespace tecl::testing {

std::string MakeTempDir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "_XXXXXX";
  return mkdtemp(pattern.data());
}

std::string MakeDataset(const std::string& dir) {
  const std::string root = dir + "/data/synth";
  for (const char* cls : {"left", "right"}) {
    std::filesystem::create_directories(root + "/" + cls);
  }
  std::ofstream(root + "/trainlist.txt") << "left/0.mp4\nright/0.mp4\n";
  std::ofstream(root + "/testlist.txt") << "left/1.mp4\nright/1.mp4\n";
  return root;
}

tecl::v1::JobSpec SmallSpec(const std::string& root, int trainers, int dataloaders) {
  tecl::v1::JobSpec spec = coordinator::DefaultJobSpec(tecl::v1::JOB_KIND_PRETRAIN, "tiny3d");
  spec.set_name("small");
  spec.mutable_dataset()->set_root(root);
  spec.mutable_dataset()->set_train_list("trainlist.txt");
  spec.mutable_dataset()->set_test_list("testlist.txt");
  spec.mutable_resources()->set_trainers(trainers);
  spec.mutable_resources()->set_dataloaders_per_trainer(dataloaders);
  spec.mutable_schedule()->set_total_steps(100);
  spec.mutable_schedule()->set_warmup_steps(5);
  spec.mutable_checkpoint()->set_interval_steps(50);
  return spec;
}

std::shared_ptr<CoordinatorClient> MakeClient(const std::string& address,
                                              const std::string& token,
                                              ClientOptions options) {
  ChannelOptions channel_options;
  channel_options.token = token;
  auto channel = MakeChannel(address, channel_options);
  return channel.ok() ? NewCoordinatorClient(*channel, std::move(options)) : nullptr;
}

absl::StatusOr<tecl::v1::Job> WaitForJob(CoordinatorClient* client, const std::string& id,
                                         const std::function<bool(const tecl::v1::Job&)>& done,
                                         absl::Duration timeout) {
  tecl::v1::Job last;
  bool reached = false;
  const absl::Status status =
      client->WatchJob(id, 0, timeout, [&](const tecl::v1::WatchJobResponse& update) {
        last = update.job();
        reached = done(last);
        return !reached;
      });
  if (reached) return last;
  if (status.ok() || status.code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::DeadlineExceededError(
        absl::StrCat("job ", id, " did not get there; last seen: ", last.ShortDebugString()));
  }
  return status;
}

absl::StatusOr<tecl::v1::Job> WaitForState(CoordinatorClient* client, const std::string& id,
                                           tecl::v1::JobState state, absl::Duration timeout) {
  return WaitForJob(
      client, id, [state](const tecl::v1::Job& job) { return job.state() == state; }, timeout);
}

int LiveWorkers(CoordinatorClient* client, tecl::v1::WorkerKind kind) {
  absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> workers = client->ListWorkers(kind);
  if (!workers.ok()) return -1;
  int live = 0;
  for (const auto& w : *workers) live += w.state() != tecl::v1::WORKER_STATE_LOST;
  return live;
}

}  // namespace tecl::testing
