#include "services/worker/train/fault_injecting_env.h"

#include <algorithm>
#include <utility>

namespace tecl::worker::core {

class FaultInjectingEnv::File final : public WritableFile {
 public:
  File(FaultInjectingEnv* env, std::string path, std::unique_ptr<WritableFile> base)
      : env_(env), path_(std::move(path)), base_(std::move(base)) {}

  std::error_code Append(const char* data, size_t size) override {
    if (auto error = env_->Check(Op::kAppend, "append " + path_ + " " + std::to_string(size))) {
      return *error;
    }
    std::error_code budget_error;
    const size_t allowed = env_->AllowedBytes(size, &budget_error);
    if (allowed > 0) {
      if (std::error_code error = base_->Append(data, allowed)) return error;
    }
    return budget_error;
  }
  std::error_code Sync() override {
    if (auto error = env_->Check(Op::kSync, "sync " + path_)) return *error;
    return base_->Sync();
  }
  std::error_code Close() override {
    if (auto error = env_->Check(Op::kClose, "close " + path_)) return *error;
    return base_->Close();
  }

 private:
  FaultInjectingEnv* const env_;
  const std::string path_;
  const std::unique_ptr<WritableFile> base_;
};

FaultInjectingEnv::FaultInjectingEnv(Env* base) : base_(base) {}

void FaultInjectingEnv::FailWritesAfter(int64_t bytes, std::errc error) {
  std::lock_guard<std::mutex> lock(mu_);
  write_budget_ = std::max<int64_t>(0, bytes);
  write_error_ = error;
}

void FaultInjectingEnv::FailNext(Op op, std::errc error) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_next_[op] = error;
}

void FaultInjectingEnv::CrashBefore(Op op) {
  std::lock_guard<std::mutex> lock(mu_);
  crash_before_ = op;
}

void FaultInjectingEnv::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  fail_next_.clear();
  crash_before_.reset();
  crashed_ = false;
  write_budget_.reset();
}

bool FaultInjectingEnv::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crashed_;
}

std::vector<std::string> FaultInjectingEnv::Log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

std::optional<std::error_code> FaultInjectingEnv::Check(Op op, const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crash_before_ == op) {
    crashed_ = true;
    crash_before_.reset();
  }
  if (crashed_) return std::make_error_code(std::errc::io_error);
  if (auto it = fail_next_.find(op); it != fail_next_.end()) {
    const std::errc error = it->second;
    fail_next_.erase(it);
    return std::make_error_code(error);
  }
  log_.push_back(what);
  return std::nullopt;
}

size_t FaultInjectingEnv::AllowedBytes(size_t size, std::error_code* error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_budget_) return size;
  const size_t allowed = std::min<size_t>(size, static_cast<size_t>(*write_budget_));
  *write_budget_ -= static_cast<int64_t>(allowed);
  if (allowed < size) *error = std::make_error_code(write_error_);
  return allowed;
}

std::error_code FaultInjectingEnv::NewWritableFile(const std::string& path,
                                                   std::unique_ptr<WritableFile>* file) {
  if (auto error = Check(Op::kCreate, "create " + path)) return *error;
  std::unique_ptr<WritableFile> base;
  if (std::error_code error = base_->NewWritableFile(path, &base)) return error;
  *file = std::make_unique<File>(this, path, std::move(base));
  return {};
}

std::error_code FaultInjectingEnv::CreateDirs(const std::string& dir) {
  if (auto error = Check(Op::kCreateDirs, "mkdir " + dir)) return *error;
  return base_->CreateDirs(dir);
}

std::error_code FaultInjectingEnv::RenameFile(const std::string& from, const std::string& to) {
  if (auto error = Check(Op::kRename, "rename " + from + " " + to)) return *error;
  return base_->RenameFile(from, to);
}

std::error_code FaultInjectingEnv::SyncDir(const std::string& dir) {
  if (auto error = Check(Op::kSyncDir, "syncdir " + dir)) return *error;
  return base_->SyncDir(dir);
}

std::error_code FaultInjectingEnv::RemoveFile(const std::string& path) {
  if (auto error = Check(Op::kRemove, "remove " + path)) return *error;
  return base_->RemoveFile(path);
}

std::error_code FaultInjectingEnv::GetChildren(const std::string& dir,
                                               std::vector<std::string>* names) {
  if (auto error = Check(Op::kList, "list " + dir)) return *error;
  return base_->GetChildren(dir, names);
}

}  // namespace tecl::worker::core
