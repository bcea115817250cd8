#include "tests/integration/coordinator/test_util.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
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

std::shared_ptr<tecl::v1::Coordinator::Stub> MakeStub(const std::string& address,
                                                      const std::string& token) {
  ChannelOptions options;
  options.token = token;
  auto channel = MakeChannel(address, options);
  return channel.ok() ? std::shared_ptr<tecl::v1::Coordinator::Stub>(
                            tecl::v1::Coordinator::NewStub(*channel))
                      : nullptr;
}

absl::StatusOr<tecl::v1::Job> WaitForJob(tecl::v1::Coordinator::Stub* stub, const std::string& id,
                                         const std::function<bool(const tecl::v1::Job&)>& done,
                                         absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  tecl::v1::WatchJobRequest request;
  request.set_job_id(id);
  auto reader = stub->WatchJob(&context, request);
  tecl::v1::WatchJobResponse update;
  tecl::v1::Job last;
  while (reader->Read(&update)) {
    last = update.job();
    if (done(last)) {
      context.TryCancel();
      reader->Finish();
      return last;
    }
  }
  grpc::Status status = reader->Finish();
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED || status.ok()) {
    return absl::DeadlineExceededError(
        absl::StrCat("job ", id, " did not get there; last seen: ", last.ShortDebugString()));
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<tecl::v1::Job> WaitForState(tecl::v1::Coordinator::Stub* stub, const std::string& id,
                                           tecl::v1::JobState state, absl::Duration timeout) {
  return WaitForJob(
      stub, id, [state](const tecl::v1::Job& job) { return job.state() == state; }, timeout);
}

int LiveWorkers(tecl::v1::Coordinator::Stub* stub, tecl::v1::WorkerKind kind) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  tecl::v1::ListWorkersRequest request;
  request.set_kind(kind);
  tecl::v1::ListWorkersResponse response;
  if (!stub->ListWorkers(&context, request, &response).ok()) return -1;
  int live = 0;
  for (const auto& w : response.workers()) live += w.state() != tecl::v1::WORKER_STATE_LOST;
  return live;
}

}  // namespace tecl::testing
