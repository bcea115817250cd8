#include "services/worker/train/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tecl::worker::core {
namespace {

std::error_code Errno(int error) { return std::error_code(error, std::generic_category()); }

class PosixWritableFile final : public WritableFile {
 public:
  explicit PosixWritableFile(int fd) : fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  std::error_code Append(const char* data, size_t size) override {
    if (fd_ < 0) return Errno(EBADF);
    while (size > 0) {
      const ssize_t n = ::write(fd_, data, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno(errno);
      }
      data += n;
      size -= static_cast<size_t>(n);
    }
    return {};
  }

  std::error_code Sync() override {
    if (fd_ < 0) return Errno(EBADF);
    return ::fsync(fd_) == 0 ? std::error_code() : Errno(errno);
  }

  std::error_code Close() override {
    if (fd_ < 0) return Errno(EBADF);
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? std::error_code() : Errno(errno);
  }

 private:
  int fd_;
};

class PosixEnv final : public Env {
 public:
  std::error_code NewWritableFile(const std::string& path,
                                  std::unique_ptr<WritableFile>* file) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(errno);
    *file = std::make_unique<PosixWritableFile>(fd);
    return {};
  }

  std::error_code CreateDirs(const std::string& dir) override {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    return error;
  }

  std::error_code RenameFile(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) == 0 ? std::error_code() : Errno(errno);
  }

  std::error_code SyncDir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno(errno);
    const int rc = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    return rc == 0 ? std::error_code() : Errno(error);
  }

  std::error_code RemoveFile(const std::string& path) override {
    return ::unlink(path.c_str()) == 0 ? std::error_code() : Errno(errno);
  }

  std::error_code GetChildren(const std::string& dir, std::vector<std::string>* names) override {
    names->clear();
    DIR* handle = ::opendir(dir.c_str());
    if (handle == nullptr) return Errno(errno);
    int error = 0;
    while (true) {
      errno = 0;
      const dirent* entry = ::readdir(handle);
      if (entry == nullptr) {
        error = errno;  // 0 at the end of the folder.
        break;
      }
      if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
        names->emplace_back(entry->d_name);
      }
    }
    ::closedir(handle);
    return error == 0 ? std::error_code() : Errno(error);
  }
};

}  // namespace

Env* Env::Default() {
  static Env* const env = new PosixEnv();
  return env;
}

}  // namespace tecl::worker::core
