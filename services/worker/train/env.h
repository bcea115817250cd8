// Env: the file-system operations the core's sealed files need (in the style of LevelDB's Env):
// create a file and append to it, fsync it, close it, create folders, rename, fsync a folder,
// remove a file, list a folder. Env::Default() is the POSIX implementation; tests pass a
// FaultInjectingEnv (fault_injecting_env.h) to make any of these fail or to stop the "process" at
// a chosen point, as a crash would.
//
// Errors: every operation returns a std::error_code (empty = success) holding the system's errno
// (std::generic_category), so the caller can name the file and the step that failed; nothing
// throws. ENOENT from RemoveFile and GetChildren means the file or folder does not exist.
//
// Thread-safety: an Env is safe to use from several threads; a WritableFile is used by one.
// Ownership: Env::Default() lives for the whole process and must not be deleted; a WritableFile is
// owned by its caller and closes itself when destroyed (ignoring errors; call Close() to see them).
#ifndef TECL_SERVICES_WORKER_TRAIN_ENV_H_
#define TECL_SERVICES_WORKER_TRAIN_ENV_H_

#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace tecl::worker::core {

// A file open for writing.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Appends all `size` bytes (short writes are continued). On error an unknown prefix of the
  // bytes may have been written. Blocks on disk I/O.
  virtual std::error_code Append(const char* data, size_t size) = 0;
  // Flushes the file's data to stable storage (fsync). Blocks.
  virtual std::error_code Sync() = 0;
  // Closes the file; every later call fails with EBADF.
  virtual std::error_code Close() = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // The POSIX file system of this process.
  static Env* Default();

  // Creates `path` (truncating an existing file) for writing; sets *file on success.
  virtual std::error_code NewWritableFile(const std::string& path,
                                          std::unique_ptr<WritableFile>* file) = 0;
  // Creates `dir` and its missing parents; an existing folder is success.
  virtual std::error_code CreateDirs(const std::string& dir) = 0;
  // Atomically replaces `to` by `from` (rename(2)); both in the same folder.
  virtual std::error_code RenameFile(const std::string& from, const std::string& to) = 0;
  // Makes the folder's entries (created, renamed, removed files) durable (fsync of the folder).
  virtual std::error_code SyncDir(const std::string& dir) = 0;
  virtual std::error_code RemoveFile(const std::string& path) = 0;
  // The names in `dir` (without "." and ".."), in no particular order.
  virtual std::error_code GetChildren(const std::string& dir, std::vector<std::string>* names) = 0;
};

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_ENV_H_
