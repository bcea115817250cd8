// FaultInjectingEnv: an Env for tests that passes every operation to a base Env (the real file
// system by default) until told to fail (in the spirit of LevelDB's FaultInjectionTestEnv):
//
//   FaultInjectingEnv env;
//   env.FailWritesAfter(100);                          // short write: 100 bytes land, then ENOSPC
//   env.FailNext(FaultInjectingEnv::Op::kSync, std::errc::io_error);   // one failed fsync
//   env.CrashBefore(FaultInjectingEnv::Op::kRename);   // the "process" dies before the rename
//   WriteSealedFile(path, kind, payload, &env);
//
// A crash makes the chosen operation and every later one fail with EIO without touching the disk,
// so whatever the writer would have cleaned up stays behind, as after a real crash; Reset() (a
// restarted process) clears every fault. Every operation that reached the base Env is logged
// ("create <path>", "append <path> <n>", "sync <path>", "close <path>", "mkdir <dir>",
// "rename <from> <to>", "syncdir <dir>", "remove <path>", "list <dir>") for ordering assertions.
//
// Thread-safe. Ownership: the base Env must outlive this one; files it opens hold a reference to
// it and must not outlive it either.
#ifndef TECL_SERVICES_WORKER_TRAIN_FAULT_INJECTING_ENV_H_
#define TECL_SERVICES_WORKER_TRAIN_FAULT_INJECTING_ENV_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "services/worker/train/env.h"

namespace tecl::worker::core {

class FaultInjectingEnv final : public Env {
 public:
  enum class Op { kCreate, kAppend, kSync, kClose, kCreateDirs, kRename, kSyncDir, kRemove, kList };

  explicit FaultInjectingEnv(Env* base = Env::Default());

  // From now on, appends (over all files) write `bytes` more bytes, then fail with `error`: the
  // append that crosses the limit writes its prefix up to it and fails (a short write).
  void FailWritesAfter(int64_t bytes, std::errc error = std::errc::no_space_on_device);
  // The next `op` fails with `error` and changes nothing.
  void FailNext(Op op, std::errc error);
  // The next `op` and everything after it fail with EIO and change nothing (a crash).
  void CrashBefore(Op op);
  // Clears every fault and the crash.
  void Reset();

  bool crashed() const;
  std::vector<std::string> Log() const;

  std::error_code NewWritableFile(const std::string& path,
                                  std::unique_ptr<WritableFile>* file) override;
  std::error_code CreateDirs(const std::string& dir) override;
  std::error_code RenameFile(const std::string& from, const std::string& to) override;
  std::error_code SyncDir(const std::string& dir) override;
  std::error_code RemoveFile(const std::string& path) override;
  std::error_code GetChildren(const std::string& dir, std::vector<std::string>* names) override;

 private:
  class File;

  // Whether `op` may proceed; otherwise the error to return. Logs `what` when it may.
  std::optional<std::error_code> Check(Op op, const std::string& what);
  // How many of `size` bytes an append may write, and the error after them (if any).
  size_t AllowedBytes(size_t size, std::error_code* error);

  Env* const base_;
  mutable std::mutex mu_;
  std::map<Op, std::errc> fail_next_;                      // guarded by mu_
  std::optional<Op> crash_before_;                         // guarded by mu_
  bool crashed_ = false;                                   // guarded by mu_
  std::optional<int64_t> write_budget_;                    // guarded by mu_
  std::errc write_error_ = std::errc::no_space_on_device;  // guarded by mu_
  std::vector<std::string> log_;                           // guarded by mu_
};

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_FAULT_INJECTING_ENV_H_
