// Sealed files: the on-disk container of checkpoints and encoder exports. A fixed 56-byte header,
// then the payload:
//
//   offset  size  field
//        0     8  magic "TECLCKPT"
//        8     4  format version, little-endian (1)
//       12     4  kind, little-endian (1 = training checkpoint, 2 = encoder export)
//       16     8  payload length in bytes, little-endian
//       24    32  SHA-256 of the payload
//       56     n  payload
//
// Writes are atomic: the bytes go to a temporary file in the same folder (".<name>.tmp"), which
// is fsync'ed, renamed over the target, and the folder is fsync'ed; a crash leaves either the old
// file or the new one, never a mix (at worst a stale temporary file, hidden by its leading dot,
// which PruneCheckpoints removes). A failed write removes its temporary file and leaves the
// target as it was. Writes, listing and pruning go through an Env (env.h; the POSIX one by
// default), so tests can make any step fail or crash. Reads check the header, the length and the checksum before handing out a single payload
// byte, so a corrupt or truncated file is refused and never loaded.
//
// Also: the file names of a checkpoint folder ("ckpt-<step, 12 digits>.tecl" and the encoder
// export "encoder-<step, 12 digits>.tecl"), listing and pruning.
//
// Errors: Error(kNotFound) for a missing file; Error(kDataLoss) for a corrupt, truncated or foreign
// file (the message names the file and what is wrong); Error(kUnavailable) for a failed write or
// folder operation (with the system's reason). Functions block on disk I/O. Thread-safe as long
// as no two callers write the same path at once.
#ifndef TECL_SERVICES_WORKER_TRAIN_SEALED_FILE_H_
#define TECL_SERVICES_WORKER_TRAIN_SEALED_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "services/worker/train/env.h"

namespace tecl::worker::core {

enum class SealedKind : uint32_t { kCheckpoint = 1, kEncoder = 2 };

inline constexpr uint32_t kSealedFormatVersion = 1;
inline constexpr size_t kSealedHeaderSize = 56;

// What was written, as tecl.v1.Checkpoint reports it.
struct WrittenFile {
  std::string path;
  std::string sha256;      // Hex SHA-256 of the payload.
  int64_t size_bytes = 0;  // Whole file, header included.
};

// Writes header + payload to `path` atomically through `env`, creating the folder if needed.
// Throws Error(kUnavailable) "checkpoint <path>: <step> failed: <reason>; ..." when a step fails
// (creating the folder or the temporary file, a write, fsync, close, the rename, the folder's
// fsync); the target then still holds what it held before (except after a failed fsync of the
// folder, which comes after the rename).
WrittenFile WriteSealedFile(const std::string& path, SealedKind kind,
                            const std::vector<char>& payload, Env* env = Env::Default());

// The atomic write under WriteSealedFile, for any bytes (the model exports): `parts` one after
// the other to a hidden temporary file beside `path`, fsync, close, rename over `path`, fsync of
// the folder (created if needed). Same errors as WriteSealedFile.
struct ByteRange {
  const char* data;
  size_t size;
};
void WriteFileAtomically(const std::string& path, const std::vector<ByteRange>& parts,
                         Env* env = Env::Default());

struct SealedFile {
  SealedKind kind = SealedKind::kCheckpoint;
  std::vector<char> payload;
  std::string sha256;
};

// Reads and verifies a sealed file; messages name it as "checkpoint <path>".
SealedFile ReadSealedFile(const std::string& path);

// "ckpt-000000001000.tecl" for step 1000.
std::string CheckpointFileName(int64_t step);
// "encoder-000000001000.tecl" for step 1000 (ExportEncoder's file in a checkpoint folder).
std::string EncoderFileName(int64_t step);

struct CheckpointEntry {
  std::string path;
  int64_t step = 0;
};

// The checkpoint files of `dir` (names as CheckpointFileName), ascending by step. A missing folder
// has none. Other files are ignored. Throws Error(kUnavailable) when the folder cannot be listed.
std::vector<CheckpointEntry> ListCheckpoints(const std::string& dir, Env* env = Env::Default());

// Deletes all but the newest `keep` (>= 1) checkpoints of `dir`, and stale temporary files of
// steps older than the newest checkpoint. Returns the deleted paths. Throws Error(kInvalidArgument)
// for keep < 1, Error(kUnavailable) when a file cannot be deleted.
std::vector<std::string> PruneCheckpoints(const std::string& dir, int keep,
                                          Env* env = Env::Default());

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_SEALED_FILE_H_
