// BatchStream over fake LoaderClients: steps interleaved across loaders, a broken loader dropped
// and the rest restarted from the first missing step, a stalled loader dropped after the stall
// timeout (a cold one after the start timeout), new addresses, errors no loader can fix, the
// prefetch bound, cancel.
#include "services/worker/runner/batch_stream.h"

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// How a fake loader serves one stream.
struct Behaviour {
  int fail_after = -1;  // Batches before the stream breaks with `error` (-1: never).
  absl::Status error = absl::UnavailableError("loader went away");
  bool block = false;  // Read blocks until Cancel (a loader that never answers).
  int block_after = -1;  // Batches before Read blocks until Cancel (a stopped process; -1: never).
  // Batches of all this loader's streams together before every Read of any of them blocks until
  // Cancel (a stopped process that every new stream finds stopped too; -1: never).
  int stop_after_total = -1;
};

// Every stream the fake loaders opened, and how many batches they produced.
struct Log {
  absl::Mutex mu;
  std::vector<std::pair<std::string, tecl::v1::StreamBatchesRequest>> requests ABSL_GUARDED_BY(mu);
  int64_t produced ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, int64_t> produced_by ABSL_GUARDED_BY(mu);  // By loader address.
};

class FakeReader final : public BatchReader {
 public:
  FakeReader(std::string address, tecl::v1::StreamBatchesRequest request, Behaviour behaviour,
             Log* log)
      : address_(std::move(address)),
        request_(std::move(request)),
        behaviour_(behaviour),
        log_(log) {}

  bool Read(tecl::v1::ClipBatch* batch) override {
    absl::MutexLock lock(&mu_);
    if (behaviour_.block || (behaviour_.block_after >= 0 && sent_ >= behaviour_.block_after) ||
        StoppedLocked()) {
      mu_.Await(absl::Condition(&cancelled_));
    }
    if (cancelled_) return false;
    if (behaviour_.fail_after >= 0 && sent_ >= behaviour_.fail_after) {
      status_ = behaviour_.error;
      return false;
    }
    batch->Clear();
    batch->set_step(request_.start_step() + sent_ * request_.step_stride());
    ++sent_;
    absl::MutexLock log_lock(&log_->mu);
    ++log_->produced;
    ++log_->produced_by[address_];
    return true;
  }
  absl::Status Finish() override {
    absl::MutexLock lock(&mu_);
    return cancelled_ ? absl::CancelledError("cancelled") : status_;
  }
  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

 private:
  bool StoppedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (behaviour_.stop_after_total < 0) return false;
    absl::MutexLock log_lock(&log_->mu);
    return log_->produced_by[address_] >= behaviour_.stop_after_total;
  }

  const std::string address_;
  const tecl::v1::StreamBatchesRequest request_;
  const Behaviour behaviour_;
  Log* const log_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class FakeLoader final : public LoaderClient {
 public:
  FakeLoader(std::string address, Behaviour behaviour, Log* log)
      : address_(std::move(address)), behaviour_(behaviour), log_(log) {}
  std::unique_ptr<BatchReader> StreamBatches(
      const tecl::v1::StreamBatchesRequest& request) override {
    {
      absl::MutexLock lock(&log_->mu);
      log_->requests.emplace_back(address_, request);
    }
    return std::make_unique<FakeReader>(address_, request, behaviour_, log_);
  }
  absl::StatusOr<tecl::v1::DatasetInfo> DescribeDataset(
      const tecl::v1::DescribeDatasetRequest&) override {
    return absl::UnimplementedError("not used");
  }

 private:
  const std::string address_;
  const Behaviour behaviour_;
  Log* const log_;
};

class BatchStreamTest : public ::testing::Test {
 protected:
  LoaderClientFactory Loaders(std::map<std::string, Behaviour> behaviours) {
    return [this, behaviours](const std::string& address) -> std::shared_ptr<LoaderClient> {
      auto it = behaviours.find(address);
      if (it == behaviours.end()) return nullptr;
      return std::make_shared<FakeLoader>(address, it->second, &log_);
    };
  }
  BatchStreamOptions Options(int64_t end_step, int prefetch = 2) {
    BatchStreamOptions options;
    options.job_id = "job-1";
    options.end_step = end_step;
    options.prefetch = prefetch;
    options.reconnect_backoff = absl::Milliseconds(5);
    options.on_failover = [this](const std::string& address, const std::string& reason) {
      failovers_.push_back(address + " " + reason);  // Under the stream's lock.
    };
    return options;
  }
  std::vector<std::string> Failovers(BatchStream& stream) {
    stream.next_step();  // Takes the stream's lock: failovers_ is written under it.
    return failovers_;
  }
  // Steps of every batch until the stream ends; its final status in `end`.
  static std::vector<int64_t> Drain(BatchStream& stream, absl::Status* end) {
    std::vector<int64_t> steps;
    while (true) {
      absl::StatusOr<tecl::v1::ClipBatch> batch = stream.Next();
      if (!batch.ok()) {
        *end = batch.status();
        return steps;
      }
      steps.push_back(batch->step());
    }
  }
  static std::vector<int64_t> Range(int64_t n) {
    std::vector<int64_t> steps;
    for (int64_t i = 0; i < n; ++i) steps.push_back(i);
    return steps;
  }

  Log log_;
  std::vector<std::string> failovers_;
};

TEST_F(BatchStreamTest, LoadersServeInterleavedStepsInOrder) {
  BatchStream stream(Options(10), {"a:1", "b:1"}, Loaders({{"a:1", {}}, {"b:1", {}}}));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), Range(10));
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(stream.reconnects(), 0);
  absl::MutexLock lock(&log_.mu);
  ASSERT_EQ(log_.requests.size(), 2u);
  EXPECT_EQ(log_.requests[0].first, "a:1");
  EXPECT_EQ(log_.requests[0].second.start_step(), 0);
  EXPECT_EQ(log_.requests[0].second.step_stride(), 2);
  EXPECT_EQ(log_.requests[1].second.start_step(), 1);
  EXPECT_EQ(log_.requests[1].second.step_stride(), 2);
  EXPECT_EQ(log_.requests[1].second.job_id(), "job-1");
}

TEST_F(BatchStreamTest, ABrokenLoaderIsDroppedAndTheRestResumeFromTheFirstMissingStep) {
  Behaviour breaks;
  breaks.fail_after = 2;  // Steps 0 and 2, then it breaks.
  BatchStream stream(Options(12), {"a:1", "b:1"}, Loaders({{"a:1", breaks}, {"b:1", {}}}));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), Range(12));  // Nothing lost, nothing repeated.
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_GE(stream.reconnects(), 1);
  absl::MutexLock lock(&log_.mu);
  // The first restart starts at the step the consumer was missing: after step 0 at the earliest
  // (a gave 0), step 4 at the latest (a never gives 4), whenever the consumer noticed.
  ASSERT_GE(log_.requests.size(), 3u);
  const tecl::v1::StreamBatchesRequest& restart = log_.requests[2].second;
  EXPECT_GE(restart.start_step(), 1);
  EXPECT_LE(restart.start_step(), 4);
}

TEST_F(BatchStreamTest, ABrokenLoaderIsAFailoverForError) {
  Behaviour breaks;
  breaks.fail_after = 1;
  BatchStream stream(Options(6), {"a:1", "b:1"}, Loaders({{"a:1", breaks}, {"b:1", {}}}));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), Range(6));
  EXPECT_THAT(Failovers(stream), ::testing::Contains("a:1 error"));
}

// A loader that keeps its connection but stops sending (a stopped process): once the consumer has
// waited the stall timeout for a step it owes, its steps move to the other loader.
TEST_F(BatchStreamTest, AStalledLoaderIsDroppedAndTheRestServeItsSteps) {
  Behaviour stops;
  stops.block_after = 2;  // Steps 0 and 2, then silence.
  BatchStreamOptions options = Options(12);
  options.stall_timeout = absl::Milliseconds(300);
  // Long enough that the dropped loader is not tried again before the stream ends, however slowly
  // this test's threads are scheduled (with the 5 ms default a busy machine let it back in).
  options.reconnect_backoff = absl::Seconds(60);
  BatchStream stream(options, {"a:1", "b:1"}, Loaders({{"a:1", stops}, {"b:1", {}}}));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), Range(12));  // Nothing lost, nothing repeated.
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(Failovers(stream), ElementsAre("a:1 stalled"));
  absl::MutexLock lock(&log_.mu);
  // b alone, from step 4: the first step a owed and never sent.
  ASSERT_EQ(log_.requests.size(), 3u);
  EXPECT_EQ(log_.requests[2].first, "b:1");
  EXPECT_EQ(log_.requests[2].second.start_step(), 4);
  EXPECT_EQ(log_.requests[2].second.step_stride(), 1);
}

// A hung loader that the coordinator still counts as alive, next to one whose stream keeps
// breaking (every break restarts the stream): the hung one sits out restarts for at least as long
// as it made the consumer wait, doubling, instead of costing a stall at every restart.
TEST_F(BatchStreamTest, AStalledLoaderSitsOutRestartsForLongerThanItsStall) {
  Behaviour hung;
  hung.stop_after_total = 1;  // Step 0, then nothing on any stream (a stopped process).
  Behaviour flaky;
  flaky.fail_after = 2;  // Every stream breaks after two batches.
  BatchStreamOptions options = Options(40);
  options.stall_timeout = absl::Milliseconds(100);
  // When b's first break restarts the stream before a's step 0 was taken, a stops without ever
  // having delivered to this stream: it is cold, and must not get the 300 s default.
  options.start_timeout = options.stall_timeout;
  BatchStream stream(options, {"a:1", "b:1"}, Loaders({{"a:1", hung}, {"b:1", flaky}}));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), Range(40));  // Nothing lost, nothing repeated.
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  int stalls = 0;
  int breaks = 0;
  for (const std::string& failover : Failovers(stream)) {
    stalls += failover == "a:1 stalled";
    breaks += failover == "b:1 error";
  }
  EXPECT_GE(breaks, 15);
  // Out for 100, 200, 400, 800 ms after its stalls: the run of b's 40 steps ends long before a
  // fifth stall (with a restart's 5 ms backoff it stalled at nearly every one of b's breaks).
  EXPECT_GE(stalls, 1);
  EXPECT_LE(stalls, 4) << "breaks " << breaks;
}

// A loader that has not delivered anything yet is cold (manifest, first decodes): it gets the
// start timeout, not the stall timeout.
TEST_F(BatchStreamTest, AColdLoaderGetsTheStartTimeout) {
  Behaviour silent;
  silent.block = true;
  BatchStreamOptions options = Options(4);
  options.stall_timeout = absl::Milliseconds(150);
  options.start_timeout = absl::Milliseconds(600);
  options.reconnect_backoff = absl::Seconds(60);  // Dropped for the rest of the test.
  BatchStream stream(options, {"a:1", "b:1"}, Loaders({{"a:1", silent}, {"b:1", {}}}));
  const absl::Time start = absl::Now();
  absl::StatusOr<tecl::v1::ClipBatch> first = stream.Next();  // Step 0 is a's.
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->step(), 0);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));
  EXPECT_THAT(Failovers(stream), ElementsAre("a:1 stalled"));
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), std::vector<int64_t>({1, 2, 3}));
}

TEST_F(BatchStreamTest, NewAddressesTakeOverFromTheNextStep) {
  Behaviour stops;
  stops.block_after = 3;
  BatchStream stream(Options(10), {"a:1"},
                     Loaders({{"a:1", stops}, {"b:1", {}}, {"c:1", {}}}));
  for (int64_t step = 0; step < 3; ++step) ASSERT_EQ(stream.Next()->step(), step);
  stream.SetAddresses({"b:1", "c:1"});
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), std::vector<int64_t>({3, 4, 5, 6, 7, 8, 9}));
  EXPECT_THAT(Failovers(stream), IsEmpty());  // a was let go, not failed.
  absl::MutexLock lock(&log_.mu);
  ASSERT_EQ(log_.requests.size(), 3u);
  EXPECT_EQ(log_.requests[1].first, "b:1");
  EXPECT_EQ(log_.requests[1].second.start_step(), 3);
  EXPECT_EQ(log_.requests[1].second.step_stride(), 2);
  EXPECT_EQ(log_.requests[2].first, "c:1");
  EXPECT_EQ(log_.requests[2].second.start_step(), 4);
}

// The rank's last loader stops: the stream does not fail (that is the coordinator's call, once it
// declares the loader lost). It keeps trying the stopped loader, which stalls again, until a new
// list (a replacement) arrives, and goes on from the first missing step.
TEST_F(BatchStreamTest, WithItsLastLoaderStalledTheStreamWaitsForANewList) {
  Behaviour stopped;
  stopped.stop_after_total = 2;  // Steps 0 and 1, then nothing on any stream.
  BatchStreamOptions options = Options(8);
  options.stall_timeout = absl::Milliseconds(20);
  absl::Notification stalled_twice;
  options.on_failover = [this, &stalled_twice](const std::string& address,
                                               const std::string& reason) {
    failovers_.push_back(address + " " + reason);  // Under the stream's lock.
    if (failovers_.size() == 2) stalled_twice.Notify();
  };
  BatchStream stream(options, {"a:1"}, Loaders({{"a:1", stopped}, {"b:1", {}}}));
  ASSERT_EQ(stream.Next()->step(), 0);
  ASSERT_EQ(stream.Next()->step(), 1);
  absl::Status end;
  std::vector<int64_t> rest;
  std::thread consumer([&] { rest = Drain(stream, &end); });
  stalled_twice.WaitForNotification();  // Tried again after its backoff, and stalled again.
  stream.SetAddresses({"b:1"});
  consumer.join();
  EXPECT_EQ(rest, std::vector<int64_t>({2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  for (const std::string& failover : Failovers(stream)) EXPECT_EQ(failover, "a:1 stalled");
  absl::MutexLock lock(&log_.mu);
  ASSERT_GE(log_.requests.size(), 3u);
  EXPECT_EQ(log_.requests[1].first, "a:1");  // The retry of the stopped loader.
  EXPECT_EQ(log_.requests[1].second.start_step(), 2);
  EXPECT_EQ(log_.requests.back().first, "b:1");
  EXPECT_EQ(log_.requests.back().second.start_step(), 2);
  EXPECT_EQ(log_.requests.back().second.step_stride(), 1);
}

// Dropping a loader from the list (the coordinator declared it lost) takes it out at once: it is
// never asked again, and the loaders that stay serve every step exactly once.
TEST_F(BatchStreamTest, ADroppedLoaderIsNeverAskedAgain) {
  Behaviour stopped;
  stopped.stop_after_total = 1;  // Step 0, then nothing.
  BatchStreamOptions options = Options(9);
  options.stall_timeout = absl::Hours(1);  // Only the new list can take it out.
  BatchStream stream(options, {"a:1", "b:1", "c:1"},
                     Loaders({{"a:1", stopped}, {"b:1", {}}, {"c:1", {}}}));
  for (int64_t step = 0; step < 3; ++step) ASSERT_EQ(stream.Next()->step(), step);
  stream.SetAddresses({"b:1", "c:1"});
  absl::Status end;
  EXPECT_EQ(Drain(stream, &end), std::vector<int64_t>({3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(end.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(Failovers(stream), IsEmpty());
  absl::MutexLock lock(&log_.mu);
  ASSERT_EQ(log_.requests.size(), 5u);
  for (size_t i = 3; i < log_.requests.size(); ++i) {
    EXPECT_NE(log_.requests[i].first, "a:1");
    EXPECT_EQ(log_.requests[i].second.step_stride(), 2);
  }
  EXPECT_EQ(log_.requests[3].second.start_step(), 3);
  EXPECT_EQ(log_.requests[4].second.start_step(), 4);
}

TEST_F(BatchStreamTest, AnErrorNoLoaderCanFixEndsTheStreamNamingTheLoader) {
  Behaviour refuses;
  refuses.fail_after = 0;
  refuses.error = absl::InvalidArgumentError("dataset.root: not under --data_root");
  BatchStream stream(Options(10), {"a:1"}, Loaders({{"a:1", refuses}}));
  absl::StatusOr<tecl::v1::ClipBatch> batch = stream.Next();
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(batch.status().message(), HasSubstr("dataloader a:1"));
  EXPECT_THAT(batch.status().message(), HasSubstr("dataset.root"));
}

TEST_F(BatchStreamTest, ALoaderWithoutAChannelFailsThePrecondition) {
  BatchStream stream(Options(10), {"nowhere:1"}, Loaders({}));
  absl::StatusOr<tecl::v1::ClipBatch> batch = stream.Next();
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(batch.status().message(), HasSubstr("nowhere:1"));
}

TEST_F(BatchStreamTest, ReadersStopAtThePrefetchWindow) {
  BatchStream stream(Options(1000, /*prefetch=*/3), {"a:1"}, Loaders({{"a:1", {}}}));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(stream.Next().ok());
  absl::SleepFor(absl::Milliseconds(200));  // Time for a reader that did not stop to run ahead.
  absl::MutexLock lock(&log_.mu);
  // 5 consumed, 3 ready ahead, and the one the reader holds while it waits.
  EXPECT_LE(log_.produced, 5 + 3 + 1);
}

TEST_F(BatchStreamTest, CancelUnblocksAWaitingNext) {
  Behaviour silent;
  silent.block = true;
  BatchStream stream(Options(10), {"a:1"}, Loaders({{"a:1", silent}}));
  absl::Status status;
  std::thread consumer([&] { status = stream.Next().status(); });
  absl::SleepFor(absl::Milliseconds(50));
  stream.Cancel();
  consumer.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace tecl::worker
