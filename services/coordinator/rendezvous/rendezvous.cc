#include "services/coordinator/rendezvous/rendezvous.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/status_macros.h"

namespace tecl::coordinator {
namespace {

std::string Describe(const RendezvousScopeId& scope) {
  return absl::StrCat("job ", scope.job_id, " attempt ", scope.attempt);
}

}  // namespace

Rendezvous::Rendezvous(const Clock* clock, RendezvousOptions options)
    : clock_(clock), options_(std::move(options)) {
  if (options_.run_timer_thread) timer_ = std::thread(&Rendezvous::TimerLoop, this);
}

Rendezvous::~Rendezvous() { Shutdown(); }

void Rendezvous::BeginAttempt(const std::string& job_id, int attempt) {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    Scope& scope = scopes_[job_id];
    if (scope.attempt != attempt || !scope.open) {
      AbortWaiters(job_id,
                   absl::StrCat("attempt ", scope.attempt, " of job ", job_id,
                                " was replaced by attempt ", attempt),
                   &done);
      scope.values.clear();
      scope.bytes = 0;
    }
    scope.attempt = attempt;
    scope.open = true;
  }
  for (auto& completion : done) completion();
}

void Rendezvous::EndAttempt(const std::string& job_id, int attempt) {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    Scope& scope = scopes_[job_id];
    if (scope.attempt > attempt) return;  // A newer attempt is open; this one is gone already.
    AbortWaiters(job_id, absl::StrCat("attempt ", attempt, " of job ", job_id, " has ended"),
                 &done);
    scope.attempt = attempt;
    scope.open = false;
    scope.values.clear();
    scope.bytes = 0;
  }
  for (auto& completion : done) completion();
}

absl::StatusOr<Rendezvous::Scope*> Rendezvous::FindScope(const RendezvousScopeId& id) {
  if (shut_down_) return absl::UnavailableError("the coordinator is shutting down");
  auto it = scopes_.find(id.job_id);
  if (it == scopes_.end()) {
    return absl::NotFoundError(absl::StrCat("rendezvous: no job ", id.job_id));
  }
  Scope& scope = it->second;
  if (!scope.open || scope.attempt != id.attempt) {
    return absl::AbortedError(absl::StrCat(
        "rendezvous: attempt ", id.attempt, " of job ", id.job_id, " is not current (",
        scope.open ? absl::StrCat("attempt ", scope.attempt, " is") : std::string("no attempt is"),
        " running); stop and wait for a new assignment"));
  }
  return &scope;
}

absl::Status Rendezvous::CheckKey(const std::string& key) const {
  if (key.empty()) return absl::InvalidArgumentError("rendezvous: empty key");
  if (key.size() > options_.max_key_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous: key of ", key.size(), " bytes exceeds ", options_.max_key_bytes));
  }
  return absl::OkStatus();
}

absl::Status Rendezvous::Store(Scope& scope, const RendezvousScopeId& id, const std::string& key,
                               std::string value, std::vector<Completion>* done) {
  if (value.size() > options_.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous: value of \"", key, "\" has ",
                                                   value.size(), " bytes, more than the limit of ",
                                                   options_.max_value_bytes));
  }
  auto it = scope.values.find(key);
  const size_t old_bytes = it == scope.values.end() ? 0 : key.size() + it->second.size();
  const size_t new_bytes = scope.bytes - old_bytes + key.size() + value.size();
  if (it == scope.values.end() && scope.values.size() >= options_.max_keys) {
    return absl::ResourceExhaustedError(absl::StrCat("rendezvous: ", Describe(id), " holds ",
                                                     scope.values.size(), " keys, the limit"));
  }
  if (new_bytes > options_.max_scope_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("rendezvous: ", Describe(id), " would hold ",
                                                     new_bytes, " bytes, more than ",
                                                     options_.max_scope_bytes));
  }
  scope.bytes = new_bytes;
  scope.values[key] = std::move(value);
  WakeReady(id.job_id, scope, done);
  return absl::OkStatus();
}

absl::Status Rendezvous::Set(const RendezvousScopeId& id, const std::string& key,
                             std::string value) {
  std::vector<Completion> done;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = CheckKey(key);
    if (status.ok()) {
      absl::StatusOr<Scope*> scope = FindScope(id);
      status = scope.ok() ? Store(**scope, id, key, std::move(value), &done) : scope.status();
    }
  }
  for (auto& completion : done) completion();
  return status;
}

Rendezvous::WaitId Rendezvous::Get(const RendezvousScopeId& id, const std::string& key,
                                   absl::Duration wait, GetCallback done) {
  absl::StatusOr<std::string> result;
  {
    absl::MutexLock lock(&mu_);
    absl::Status status = CheckKey(key);
    absl::StatusOr<Scope*> scope = FindScope(id);
    if (!status.ok()) {
      result = status;
    } else if (!scope.ok()) {
      result = scope.status();
    } else if (auto it = (*scope)->values.find(key); it != (*scope)->values.end()) {
      result = it->second;
    } else if (wait <= absl::ZeroDuration()) {
      result =
          absl::NotFoundError(absl::StrCat("rendezvous: no key \"", key, "\" in ", Describe(id)));
    } else {
      Waiter waiter;
      waiter.job_id = id.job_id;
      waiter.attempt = id.attempt;
      waiter.keys = {key};
      waiter.deadline = clock_->Now() + std::min(wait, options_.max_wait);
      waiter.on_value = std::move(done);
      return AddWaiter(std::move(waiter));
    }
  }
  done(std::move(result));
  return 0;
}

absl::StatusOr<int64_t> Rendezvous::Add(const RendezvousScopeId& id, const std::string& key,
                                        int64_t delta) {
  std::vector<Completion> done;
  absl::StatusOr<int64_t> result;
  {
    absl::MutexLock lock(&mu_);
    absl::Status status = CheckKey(key);
    absl::StatusOr<Scope*> scope = FindScope(id);
    if (!status.ok()) {
      result = status;
    } else if (!scope.ok()) {
      result = scope.status();
    } else {
      int64_t value = 0;
      auto it = (*scope)->values.find(key);
      if (it != (*scope)->values.end() && !absl::SimpleAtoi(it->second, &value)) {
        result = absl::InvalidArgumentError(
            absl::StrCat("rendezvous: the value of \"", key, "\" is not an integer"));
      } else {
        value += delta;
        status = Store(**scope, id, key, absl::StrCat(value), &done);
        result = status.ok() ? absl::StatusOr<int64_t>(value) : status;
      }
    }
  }
  for (auto& completion : done) completion();
  return result;
}

absl::StatusOr<std::string> Rendezvous::CompareSet(const RendezvousScopeId& id,
                                                   const std::string& key,
                                                   const std::string& expected, std::string desired,
                                                   bool expect_absent) {
  std::vector<Completion> done;
  absl::StatusOr<std::string> result;
  {
    absl::MutexLock lock(&mu_);
    absl::Status status = CheckKey(key);
    absl::StatusOr<Scope*> scope = FindScope(id);
    if (!status.ok()) {
      result = status;
    } else if (!scope.ok()) {
      result = scope.status();
    } else {
      auto it = (*scope)->values.find(key);
      const bool matches = it == (*scope)->values.end()
                               ? (expect_absent && expected.empty())
                               : (!expect_absent && it->second == expected);
      if (matches) {
        std::string stored = desired;
        status = Store(**scope, id, key, std::move(desired), &done);
        result = status.ok() ? absl::StatusOr<std::string>(std::move(stored)) : status;
      } else {
        result = it == (*scope)->values.end() ? std::string() : it->second;
      }
    }
  }
  for (auto& completion : done) completion();
  return result;
}

Rendezvous::WaitId Rendezvous::Wait(const RendezvousScopeId& id,
                                    const std::vector<std::string>& keys, absl::Duration wait,
                                    WaitCallback done) {
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : keys) {
      result = CheckKey(key);
      if (!result.ok()) break;
    }
    absl::StatusOr<Scope*> scope = FindScope(id);
    if (result.ok() && !scope.ok()) result = scope.status();
    if (result.ok()) {
      bool all = true;
      for (const std::string& key : keys) all = all && (*scope)->values.count(key) > 0;
      if (!all && wait <= absl::ZeroDuration()) {
        result =
            absl::DeadlineExceededError(absl::StrCat("rendezvous: keys missing in ", Describe(id)));
      } else if (!all) {
        Waiter waiter;
        waiter.job_id = id.job_id;
        waiter.attempt = id.attempt;
        waiter.keys = keys;
        waiter.deadline = clock_->Now() + std::min(wait, options_.max_wait);
        waiter.on_ready = std::move(done);
        return AddWaiter(std::move(waiter));
      }
    }
  }
  done(result);
  return 0;
}

absl::StatusOr<bool> Rendezvous::Delete(const RendezvousScopeId& id, const std::string& key) {
  absl::MutexLock lock(&mu_);
  TECL_RETURN_IF_ERROR(CheckKey(key));
  absl::StatusOr<Scope*> scope = FindScope(id);
  if (!scope.ok()) return scope.status();
  auto it = (*scope)->values.find(key);
  if (it == (*scope)->values.end()) return false;
  (*scope)->bytes -= key.size() + it->second.size();
  (*scope)->values.erase(it);
  return true;
}

absl::StatusOr<Rendezvous::CheckResult> Rendezvous::Check(const RendezvousScopeId& id,
                                                          const std::vector<std::string>& keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) TECL_RETURN_IF_ERROR(CheckKey(key));
  absl::StatusOr<Scope*> scope = FindScope(id);
  if (!scope.ok()) return scope.status();
  CheckResult result;
  result.all_present = true;
  for (const std::string& key : keys) {
    result.all_present = result.all_present && (*scope)->values.count(key) > 0;
  }
  result.num_keys = static_cast<int64_t>((*scope)->values.size());
  return result;
}

Rendezvous::Completion Rendezvous::Complete(Waiter waiter, absl::Status status,
                                            const std::string& value) {
  if (waiter.on_value) {
    return [callback = std::move(waiter.on_value), status = std::move(status), value]() {
      if (status.ok()) {
        callback(value);
      } else {
        callback(status);
      }
    };
  }
  return
      [callback = std::move(waiter.on_ready), status = std::move(status)]() { callback(status); };
}

Rendezvous::WaitId Rendezvous::AddWaiter(Waiter waiter) {
  const WaitId id = next_wait_id_++;
  waiters_.emplace(id, std::move(waiter));
  ++wake_generation_;
  return id;
}

void Rendezvous::WakeReady(const std::string& job_id, const Scope& scope,
                           std::vector<Completion>* done) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    const Waiter& w = it->second;
    bool ready = w.job_id == job_id && w.attempt == scope.attempt;
    for (const std::string& key : w.keys) ready = ready && scope.values.count(key) > 0;
    if (!ready) {
      ++it;
      continue;
    }
    const std::string value = w.on_value ? scope.values.at(w.keys[0]) : std::string();
    done->push_back(Complete(std::move(it->second), absl::OkStatus(), value));
    it = waiters_.erase(it);
  }
}

void Rendezvous::AbortWaiters(const std::string& job_id, const std::string& why,
                              std::vector<Completion>* done) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->second.job_id != job_id) {
      ++it;
      continue;
    }
    done->push_back(Complete(std::move(it->second),
                             absl::AbortedError(absl::StrCat(
                                 "rendezvous: ", why, "; stop and wait for a new assignment")),
                             ""));
    it = waiters_.erase(it);
  }
}

void Rendezvous::Cancel(WaitId id) {
  Completion completion;
  {
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    completion = Complete(std::move(it->second),
                          absl::CancelledError("rendezvous: the caller cancelled the wait"), "");
    waiters_.erase(it);
  }
  completion();
}

void Rendezvous::ExpireDue() {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      const std::string what = it->second.keys.size() == 1
                                   ? absl::StrCat("key \"", it->second.keys[0], "\"")
                                   : absl::StrCat(it->second.keys.size(), " keys");
      done.push_back(Complete(std::move(it->second),
                              absl::DeadlineExceededError(absl::StrCat(
                                  "rendezvous: timed out waiting for ", what, " of job ",
                                  it->second.job_id, " attempt ", it->second.attempt)),
                              ""));
      it = waiters_.erase(it);
    }
  }
  for (auto& completion : done) completion();
}

void Rendezvous::Shutdown() {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    if (!shut_down_) {
      shut_down_ = true;
      for (auto& [id, waiter] : waiters_) {
        done.push_back(Complete(std::move(waiter),
                                absl::UnavailableError("the coordinator is shutting down"), ""));
      }
      waiters_.clear();
    }
  }
  for (auto& completion : done) completion();
  if (timer_.joinable()) timer_.join();
}

size_t Rendezvous::pending_waiters() const {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

void Rendezvous::TimerLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_) return;
      absl::Time next = absl::InfiniteFuture();
      for (const auto& [id, waiter] : waiters_) next = std::min(next, waiter.deadline);
      const int64_t generation = wake_generation_;
      auto changed = [this, generation]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return shut_down_ || wake_generation_ != generation;
      };
      mu_.AwaitWithDeadline(absl::Condition(&changed), next);
      if (shut_down_) return;
    }
    ExpireDue();
  }
}

}  // namespace tecl::coordinator
