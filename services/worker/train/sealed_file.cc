#include "services/worker/train/sealed_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <system_error>

#include "services/worker/model/error.h"
#include "services/worker/train/sha256.h"

namespace tecl::worker::core {
namespace {

constexpr char kMagic[8] = {'T', 'E', 'C', 'L', 'C', 'K', 'P', 'T'};
constexpr char kPrefix[] = "ckpt-";
constexpr char kEncoderPrefix[] = "encoder-";
constexpr char kSuffix[] = ".tecl";
constexpr char kTempSuffix[] = ".tmp";
constexpr int kStepDigits = 12;

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

[[noreturn]] void Fail(ErrorCode code, const std::string& path, const std::string& what) {
  throw Error(code, Cat("checkpoint ", path, ": ", what));
}

void PutLe(char* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

uint64_t GetLe(const char* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}

[[noreturn]] void FailIo(const std::string& path, const std::string& what,
                         const std::error_code& error) {
  Fail(ErrorCode::kUnavailable, path,
       Cat(what, ": ", error.message(), "; check the folder's free space and permissions"));
}

// Step of "ckpt-<digits>.tecl" (or, with temp, ".ckpt-<digits>.tecl.tmp"); -1 otherwise.
int64_t StepOfName(const std::string& name, bool temp) {
  std::string core = name;
  if (temp) {
    const std::string suffix = std::string(kSuffix) + kTempSuffix;
    if (core.size() < 1 + suffix.size() || core[0] != '.' ||
        core.compare(core.size() - suffix.size(), suffix.size(), suffix) != 0) {
      return -1;
    }
    core = core.substr(1, core.size() - 1 - std::strlen(kTempSuffix));
  }
  const size_t prefix = std::strlen(kPrefix), suffix = std::strlen(kSuffix);
  if (core.size() != prefix + kStepDigits + suffix || core.compare(0, prefix, kPrefix) != 0 ||
      core.compare(core.size() - suffix, suffix, kSuffix) != 0) {
    return -1;
  }
  int64_t step = 0;
  for (size_t i = prefix; i < prefix + kStepDigits; ++i) {
    if (core[i] < '0' || core[i] > '9') return -1;
    step = step * 10 + (core[i] - '0');
  }
  return step;
}

std::vector<std::string> FolderEntries(const std::string& dir, Env* env) {
  std::vector<std::string> names;
  const std::error_code error = env->GetChildren(dir, &names);
  if (error == std::errc::no_such_file_or_directory) return {};
  if (error) {
    throw Error(ErrorCode::kUnavailable,
                Cat("checkpoint folder ", dir, ": cannot list it: ", error.message()));
  }
  return names;
}

// The step as kStepDigits zero-padded digits (negative steps as 0).
std::string StepDigits(int64_t step) {
  std::string digits = std::to_string(step < 0 ? 0 : step);
  if (digits.size() < kStepDigits) digits.insert(0, kStepDigits - digits.size(), '0');
  return digits;
}

}  // namespace

void WriteFileAtomically(const std::string& path, const std::vector<ByteRange>& parts,
                         Env* env) {
  const std::filesystem::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  if (const std::error_code error = env->CreateDirs(dir)) {
    Fail(ErrorCode::kUnavailable, path,
         Cat("cannot create the folder ", dir, ": ", error.message(),
             "; check the path and its permissions"));
  }
  const std::string temp =
      (std::filesystem::path(dir) / ("." + target.filename().string() + kTempSuffix)).string();
  std::unique_ptr<WritableFile> file;
  if (const std::error_code error = env->NewWritableFile(temp, &file)) {
    FailIo(path, Cat("cannot create ", temp), error);
  }
  // Any failure before the rename: the temporary file goes, the target is untouched.
  const auto abandon = [&](const std::string& what, const std::error_code& error) {
    file.reset();
    env->RemoveFile(temp);
    FailIo(path, what, error);
  };
  std::error_code error;
  for (const ByteRange& part : parts) {
    if (!error) error = file->Append(part.data, part.size);
  }
  if (error) abandon("write failed", error);
  if ((error = file->Sync())) abandon("fsync failed", error);
  if ((error = file->Close())) abandon("close failed", error);
  file.reset();
  if ((error = env->RenameFile(temp, path))) {
    env->RemoveFile(temp);
    FailIo(path, "rename of the temporary file failed", error);
  }
  if ((error = env->SyncDir(dir))) FailIo(path, "fsync of the folder failed", error);
}

WrittenFile WriteSealedFile(const std::string& path, SealedKind kind,
                            const std::vector<char>& payload, Env* env) {
  const Sha256Digest digest = ComputeSha256(payload.data(), payload.size());
  char header[kSealedHeaderSize];
  std::memcpy(header, kMagic, sizeof(kMagic));
  PutLe(header + 8, kSealedFormatVersion, 4);
  PutLe(header + 12, static_cast<uint32_t>(kind), 4);
  PutLe(header + 16, payload.size(), 8);
  std::memcpy(header + 24, digest.data(), digest.size());
  WriteFileAtomically(path, {{header, sizeof(header)}, {payload.data(), payload.size()}}, env);

  WrittenFile written;
  written.path = path;
  written.sha256 = DigestHex(digest);
  written.size_bytes = static_cast<int64_t>(sizeof(header) + payload.size());
  return written;
}

SealedFile ReadSealedFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    Fail(error == ENOENT ? ErrorCode::kNotFound : ErrorCode::kUnavailable, path,
         Cat("cannot open: ", std::strerror(error)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // Reads up to `size` bytes; returns how many (fewer only at the end of the file).
  const auto read_up_to = [&](char* out, size_t size) {
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::read(fd, out + done, size - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        Fail(ErrorCode::kUnavailable, path, Cat("read failed: ", std::strerror(errno)));
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  };

  char header[kSealedHeaderSize];
  const size_t header_bytes = read_up_to(header, sizeof(header));
  if (header_bytes >= sizeof(kMagic) && std::memcmp(header, kMagic, sizeof(kMagic)) != 0) {
    Fail(ErrorCode::kDataLoss, path,
         "not a TECL checkpoint (bad magic); expected a file written by SaveCheckpoint or "
         "ExportEncoder");
  }
  if (header_bytes < sizeof(header)) {
    Fail(ErrorCode::kDataLoss, path,
         Cat("truncated: ", header_bytes, " bytes, shorter than the ", kSealedHeaderSize,
             "-byte header; the file is incomplete, use an older checkpoint"));
  }
  const uint64_t version = GetLe(header + 8, 4);
  if (version != kSealedFormatVersion) {
    Fail(ErrorCode::kDataLoss, path,
         Cat("unsupported format version ", version, " (this build reads version ",
             kSealedFormatVersion, "); load it with the release that wrote it"));
  }
  const uint64_t kind = GetLe(header + 12, 4);
  if (kind != static_cast<uint32_t>(SealedKind::kCheckpoint) &&
      kind != static_cast<uint32_t>(SealedKind::kEncoder)) {
    Fail(ErrorCode::kDataLoss, path, Cat("unknown kind ", kind, " in the header; the file is corrupt"));
  }
  const uint64_t length = GetLe(header + 16, 8);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    Fail(ErrorCode::kUnavailable, path, Cat("fstat failed: ", std::strerror(errno)));
  }
  const uint64_t available = static_cast<uint64_t>(info.st_size) - kSealedHeaderSize;
  if (available < length) {
    Fail(ErrorCode::kDataLoss, path,
         Cat("truncated: the header declares ", length, " payload bytes but the file holds ",
             available, "; the file is incomplete, use an older checkpoint"));
  }
  if (available > length) {
    Fail(ErrorCode::kDataLoss, path,
         Cat("corrupt: ", available - length, " bytes after the declared ", length,
             "-byte payload; use an older checkpoint"));
  }
  SealedFile file;
  file.kind = static_cast<SealedKind>(kind);
  file.payload.resize(length);
  if (read_up_to(file.payload.data(), length) != length) {
    Fail(ErrorCode::kDataLoss, path, "truncated while reading (the file shrank); use an older checkpoint");
  }
  Sha256Digest expected;
  std::memcpy(expected.data(), header + 24, expected.size());
  const Sha256Digest actual = ComputeSha256(file.payload.data(), file.payload.size());
  if (actual != expected) {
    Fail(ErrorCode::kDataLoss, path,
         Cat("checksum mismatch (payload SHA-256 ", DigestHex(actual), ", header says ",
             DigestHex(expected), "); the file is corrupt, use an older checkpoint"));
  }
  file.sha256 = DigestHex(actual);
  return file;
}

std::string CheckpointFileName(int64_t step) { return Cat(kPrefix, StepDigits(step), kSuffix); }

std::string EncoderFileName(int64_t step) { return Cat(kEncoderPrefix, StepDigits(step), kSuffix); }

std::vector<CheckpointEntry> ListCheckpoints(const std::string& dir, Env* env) {
  std::vector<CheckpointEntry> entries;
  for (const std::string& name : FolderEntries(dir, env)) {
    const int64_t step = StepOfName(name, /*temp=*/false);
    if (step >= 0) entries.push_back({(std::filesystem::path(dir) / name).string(), step});
  }
  std::sort(entries.begin(), entries.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step < b.step; });
  return entries;
}

std::vector<std::string> PruneCheckpoints(const std::string& dir, int keep, Env* env) {
  if (keep < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                Cat("checkpoint.keep: ", keep, " must be >= 1 (the newest checkpoint is always kept)"));
  }
  const std::vector<CheckpointEntry> entries = ListCheckpoints(dir, env);
  std::vector<std::string> doomed;
  for (size_t i = 0; i + static_cast<size_t>(keep) < entries.size(); ++i) {
    doomed.push_back(entries[i].path);
  }
  if (!entries.empty()) {
    const int64_t newest = entries.back().step;
    for (const std::string& name : FolderEntries(dir, env)) {
      const int64_t step = StepOfName(name, /*temp=*/true);
      if (step >= 0 && step < newest) doomed.push_back((std::filesystem::path(dir) / name).string());
    }
  }
  for (const std::string& path : doomed) {
    const std::error_code error = env->RemoveFile(path);
    if (error && error != std::errc::no_such_file_or_directory) {
      FailIo(path, "cannot delete it while pruning", error);
    }
  }
  if (!doomed.empty()) {
    if (const std::error_code error = env->SyncDir(dir)) {
      FailIo(dir, "fsync of the folder failed after pruning", error);
    }
  }
  return doomed;
}

}  // namespace tecl::worker::core
