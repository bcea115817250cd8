// The worker state machine alone: every (phase, event) edge is allowed or refused as documented in
// worker_state.h, and every (kind, phase, report) heartbeat gets the documented decision.
#include "services/coordinator/state/worker_state.h"

#include <map>
#include <tuple>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl::coordinator {
namespace {

using ::testing::HasSubstr;
using P = WorkerPhase;
using E = WorkerEvent;
using R = HeartbeatReport;
using A = HeartbeatDecision::Action;
using X = HeartbeatDecision::Effect;

constexpr P kPhases[] = {P::kIdle, P::kAssigned, P::kRunning, P::kStopping, P::kLost};
constexpr E kEvents[] = {E::kAssign, E::kAcknowledge, E::kOrderStop, E::kFree, E::kTimeout};

TEST(WorkerStateTest, EveryEdgeIsAllowedExactlyWhenTheDiagramSaysSo) {
  const std::map<std::pair<P, E>, P> edges = {
      {{P::kIdle, E::kAssign}, P::kAssigned},        {{P::kIdle, E::kTimeout}, P::kLost},
      {{P::kAssigned, E::kAcknowledge}, P::kRunning}, {{P::kAssigned, E::kOrderStop}, P::kStopping},
      {{P::kAssigned, E::kFree}, P::kIdle},          {{P::kAssigned, E::kTimeout}, P::kLost},
      {{P::kRunning, E::kOrderStop}, P::kStopping},  {{P::kRunning, E::kFree}, P::kIdle},
      {{P::kRunning, E::kTimeout}, P::kLost},        {{P::kStopping, E::kFree}, P::kIdle},
      {{P::kStopping, E::kTimeout}, P::kLost},
  };
  for (P from : kPhases) {
    for (E event : kEvents) {
      absl::StatusOr<P> to = NextWorkerPhase("trainer-1", from, event);
      auto edge = edges.find({from, event});
      if (edge != edges.end()) {
        ASSERT_TRUE(to.ok()) << PhaseName(from) << " + " << EventName(event) << ": "
                             << to.status();
        EXPECT_EQ(*to, edge->second) << PhaseName(from) << " + " << EventName(event);
      } else {
        EXPECT_EQ(to.status().code(), absl::StatusCode::kFailedPrecondition)
            << PhaseName(from) << " + " << EventName(event);
      }
    }
  }
}

TEST(WorkerStateTest, ARefusedEdgeNamesTheWorkerThePhaseAndTheEvent) {
  absl::StatusOr<P> to = NextWorkerPhase("trainer-1a2b", P::kLost, E::kAssign);
  EXPECT_THAT(std::string(to.status().message()),
              HasSubstr("worker trainer-1a2b is lost: it cannot take an assignment"));
}

TEST(WorkerStateTest, TheWireStateIsDerivedFromThePhase) {
  EXPECT_EQ(WireState(P::kIdle), tecl::v1::WORKER_STATE_IDLE);
  EXPECT_EQ(WireState(P::kAssigned), tecl::v1::WORKER_STATE_BUSY);
  EXPECT_EQ(WireState(P::kRunning), tecl::v1::WORKER_STATE_BUSY);
  EXPECT_EQ(WireState(P::kStopping), tecl::v1::WORKER_STATE_BUSY);
  EXPECT_EQ(WireState(P::kLost), tecl::v1::WORKER_STATE_LOST);
  EXPECT_FALSE(IsBusy(P::kIdle));
  EXPECT_TRUE(IsBusy(P::kStopping));
}

TEST(WorkerStateTest, TrainerHeartbeatsGetTheDocumentedDecision) {
  struct Expected {
    A action;
    X effect;
    std::optional<E> event;
  };
  const std::map<std::pair<P, R>, Expected> table = {
      {{P::kIdle, R::kNoWork}, {A::kNone, X::kNone, std::nullopt}},
      {{P::kIdle, R::kOtherWork}, {A::kStopStale, X::kNone, std::nullopt}},
      {{P::kAssigned, R::kNoWork}, {A::kSendAssignment, X::kNone, std::nullopt}},
      {{P::kAssigned, R::kAssignment}, {A::kNone, X::kAcknowledged, E::kAcknowledge}},
      {{P::kAssigned, R::kOtherWork}, {A::kStopStale, X::kNone, std::nullopt}},
      {{P::kRunning, R::kNoWork}, {A::kNone, X::kDroppedAssignment, E::kFree}},
      {{P::kRunning, R::kAssignment}, {A::kNone, X::kAcknowledged, std::nullopt}},
      {{P::kRunning, R::kOtherWork}, {A::kStopStale, X::kNone, std::nullopt}},
      {{P::kStopping, R::kNoWork}, {A::kNone, X::kNone, E::kFree}},
      {{P::kStopping, R::kAssignment}, {A::kStopOwn, X::kNone, std::nullopt}},
      {{P::kStopping, R::kOtherWork}, {A::kStopStale, X::kNone, E::kFree}},
  };
  for (const auto& [key, expected] : table) {
    const HeartbeatDecision d = DecideHeartbeat(tecl::v1::WORKER_KIND_TRAINER, key.first, key.second);
    const std::string where = PhaseName(key.first) + " report " + std::to_string(int(key.second));
    EXPECT_EQ(d.action, expected.action) << where;
    EXPECT_EQ(d.effect, expected.effect) << where;
    EXPECT_EQ(d.event, expected.event) << where;
    // Every event a decision applies is an edge of the machine.
    if (d.event.has_value()) {
      EXPECT_TRUE(NextWorkerPhase("t", key.first, *d.event).ok()) << where;
    }
  }
}

TEST(WorkerStateTest, DataloaderHeartbeatsAreLivenessOnly) {
  for (P phase : {P::kIdle, P::kAssigned, P::kRunning, P::kStopping}) {
    for (R report : {R::kNoWork, R::kAssignment, R::kOtherWork}) {
      const HeartbeatDecision d = DecideHeartbeat(tecl::v1::WORKER_KIND_DATALOADER, phase, report);
      EXPECT_EQ(d.action, A::kNone);
      EXPECT_EQ(d.effect, X::kNone);
      EXPECT_FALSE(d.event.has_value());
    }
  }
}

// A prepare job's dataloader runs its assignment: decided exactly like a trainer.
TEST(WorkerStateTest, ADataloaderRunningItsAssignmentIsDecidedLikeATrainer) {
  for (P phase : {P::kIdle, P::kAssigned, P::kRunning, P::kStopping}) {
    for (R report : {R::kNoWork, R::kAssignment, R::kOtherWork}) {
      const HeartbeatDecision loader =
          DecideHeartbeat(tecl::v1::WORKER_KIND_DATALOADER, phase, report, true);
      const HeartbeatDecision trainer = DecideHeartbeat(tecl::v1::WORKER_KIND_TRAINER, phase, report);
      const std::string where = PhaseName(phase) + " report " + std::to_string(int(report));
      EXPECT_EQ(loader.action, trainer.action) << where;
      EXPECT_EQ(loader.effect, trainer.effect) << where;
      EXPECT_EQ(loader.event, trainer.event) << where;
    }
  }
}

}  // namespace
}  // namespace tecl::coordinator
