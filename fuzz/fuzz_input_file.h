// FuzzInputFile: the fuzzer's bytes as a file, for the readers that take a path (FFmpeg's
// demuxer, sealed files). One file per process under $TMPDIR (or /tmp), rewritten for every
// input and removed at exit. Not thread-safe (libFuzzer runs one input at a time per process).
#ifndef TECL_FUZZ_FUZZ_INPUT_FILE_H_
#define TECL_FUZZ_FUZZ_INPUT_FILE_H_

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tecl::fuzz {

class FuzzInputFile {
 public:
  // `name` ends the file's name (an extension changes nothing for the readers here: they probe
  // the content).
  explicit FuzzInputFile(const std::string& name) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/tecl-fuzz-" +
            std::to_string(getpid()) + "-" + name;
  }
  ~FuzzInputFile() { std::remove(path_.c_str()); }
  FuzzInputFile(const FuzzInputFile&) = delete;
  FuzzInputFile& operator=(const FuzzInputFile&) = delete;

  // Replaces the file's content with `data`; aborts when the file cannot be written (a full
  // temporary folder would otherwise read as an empty input).
  const std::string& Write(const uint8_t* data, size_t size) {
    FILE* file = std::fopen(path_.c_str(), "wb");
    if (file == nullptr || (size > 0 && std::fwrite(data, 1, size, file) != size) ||
        std::fclose(file) != 0) {
      std::perror(path_.c_str());
      std::abort();
    }
    return path_;
  }

 private:
  std::string path_;
};

}  // namespace tecl::fuzz

#endif  // TECL_FUZZ_FUZZ_INPUT_FILE_H_
