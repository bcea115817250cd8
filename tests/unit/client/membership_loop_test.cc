// MembershipLoop against the coordinator's real logic run in process (FakeCoordinatorClient):
// it registers, heartbeats with the worker's report, registers again under a new id when the
// coordinator declared it lost, and rides out an unreachable coordinator.
#include "services/client/membership_loop.h"

#include <atomic>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/coordinator/manager/coordinator.h"
#include "services/coordinator/store/fake_job_store.h"
#include "tests/testing/fake_coordinator_client.h"

namespace tecl {
namespace {

class MembershipLoopTest : public ::testing::Test {
 protected:
  MembershipLoopTest() {
    coordinator::CoordinatorOptions options;
    options.checkpoints.checkpoint_root = "/ckpt";
    options.membership.heartbeat_interval = absl::Milliseconds(5);
    options.membership.heartbeat_timeout = absl::Seconds(30);
    coordinator_ = std::make_unique<coordinator::Coordinator>(options, &store_, &clock_, nullptr,
                                                              nullptr);
    EXPECT_TRUE(coordinator_->Restore().ok());
    client_ = std::make_shared<FakeCoordinatorClient>(coordinator_.get());
    registered_ = &metrics::BuildGauge().Name("registered").Help("h").Register(registry_).Add({});
    registrations_ =
        &metrics::BuildCounter().Name("registrations").Help("h").Register(registry_).Add({});
    failures_ = &metrics::BuildCounter().Name("failures").Help("h").Register(registry_).Add({});
  }

  std::unique_ptr<MembershipLoop> Loop(MembershipLoop::Hooks hooks = {}) {
    MembershipLoopOptions options;
    options.worker.set_kind(tecl::v1::WORKER_KIND_DATALOADER);
    options.worker.set_address("127.0.0.1:7777");
    options.backoff = {absl::Milliseconds(2), absl::Milliseconds(10), 2.0, 0.2};
    return std::make_unique<MembershipLoop>(options, client_, std::move(hooks),
                                            MembershipMetrics{registered_, registrations_, failures_});
  }

  template <typename Predicate>
  static bool Eventually(Predicate done) {
    const absl::Time end = absl::Now() + absl::Seconds(30);
    while (!done()) {
      if (absl::Now() > end) return false;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return true;
  }

  tecl::v1::WorkerInfo Worker(const std::string& id) {
    for (const auto& w : coordinator_->membership().List(tecl::v1::WORKER_KIND_UNSPECIFIED)) {
      if (w.id() == id) return w;
    }
    return {};
  }

  FakeClock clock_;
  coordinator::FakeJobStore store_;
  std::unique_ptr<coordinator::Coordinator> coordinator_;
  std::shared_ptr<FakeCoordinatorClient> client_;
  metrics::Registry registry_;
  metrics::Gauge* registered_;
  metrics::Counter* registrations_;
  metrics::Counter* failures_;
};

TEST_F(MembershipLoopTest, RegistersAndHeartbeatsWithTheWorkersReport) {
  std::atomic<int> filled{0};
  MembershipLoop::Hooks hooks;
  hooks.before_heartbeat = [&](const MembershipLoop::Registration& registration,
                               tecl::v1::HeartbeatRequest* request) {
    EXPECT_FALSE(registration.worker_id.empty());
    EXPECT_EQ(registration.session.size(), 64u);
    ++filled;
  };
  std::atomic<int> answers{0};
  hooks.on_response = [&](const tecl::v1::HeartbeatResponse& response) {
    EXPECT_EQ(response.heartbeat_interval_ms(), 5);
    ++answers;
  };
  auto loop = Loop(hooks);
  loop->Start();
  ASSERT_TRUE(loop->WaitUntilRegistered(absl::Seconds(30)));
  const std::string id = loop->worker_id();
  EXPECT_EQ(Worker(id).address(), "127.0.0.1:7777");
  EXPECT_EQ(Worker(id).kind(), tecl::v1::WORKER_KIND_DATALOADER);
  // At the coordinator's interval (5 ms), not the default (1 s).
  ASSERT_TRUE(Eventually([&] { return answers >= 5; }));
  EXPECT_GE(filled, 5);
  EXPECT_EQ(registered_->Value(), 1);
  EXPECT_EQ(registrations_->Value(), 1);
  loop->Stop();
}

TEST_F(MembershipLoopTest, ALostWorkerRegistersAgainUnderANewId) {
  std::atomic<int> lost{0};
  MembershipLoop::Hooks hooks;
  hooks.on_lost = [&] { ++lost; };
  auto loop = Loop(hooks);
  loop->Start();
  ASSERT_TRUE(loop->WaitUntilRegistered(absl::Seconds(30)));
  const std::string first = loop->worker_id();
  client_->SetUnreachable(true);  // Silent while the coordinator's clock passes its timeout.
  // (A heartbeat already past the fake's door may still land: advance until the timeout shows.)
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(absl::Seconds(31));
    coordinator_->Tick();
    return Worker(first).state() == tecl::v1::WORKER_STATE_LOST;
  }));
  client_->SetUnreachable(false);
  ASSERT_TRUE(Eventually([&] {
    const std::string id = loop->worker_id();
    return !id.empty() && id != first;
  }));
  EXPECT_EQ(lost, 1);
  EXPECT_EQ(registrations_->Value(), 2);
  EXPECT_EQ(Worker(loop->worker_id()).state(), tecl::v1::WORKER_STATE_IDLE);
  loop->Stop();
}

TEST_F(MembershipLoopTest, AnUnreachableCoordinatorIsRetriedAndCounted) {
  client_->SetUnreachable(true);
  auto loop = Loop();
  loop->Start();
  ASSERT_TRUE(Eventually([&] { return client_->calls("RegisterWorker") >= 3; }));
  EXPECT_TRUE(loop->worker_id().empty());
  EXPECT_EQ(registered_->Value(), 0);
  EXPECT_GE(failures_->Value(), 3);
  client_->SetUnreachable(false);
  EXPECT_TRUE(loop->WaitUntilRegistered(absl::Seconds(30)));
  loop->Stop();
  // Stopped: no more calls.
  const int calls = client_->calls("Heartbeat");
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(client_->calls("Heartbeat"), calls);
}

}  // namespace
}  // namespace tecl
