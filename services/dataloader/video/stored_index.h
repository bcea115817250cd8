// The stored index: a video's VideoIndex kept beside it in X.<ext>.tecli, so a loader that meets
// the video loads its packet index instead of reading every packet of the file (docs/prepare.md
// "The stored index"). PrepareDataset writes one for every prepared video; VideoIndexCache uses
// it on a miss when it matches the video.
//
// File: magic "TECLIDX1", format version (u32), payload length (u64), SHA-256 of the payload, then
// the payload: the video file's size and mtime (ns) it was built from, the stream's fields, every
// packet (pts, dts, byte position, key and discard flags), every frame (timestamp, packet, start
// packet) and the carried x264 versions; integers little-endian. Written to a temporary file and
// renamed into place.
//
// Reading trusts nothing: the checksum, the identity (the video's size and mtime now), and every
// number is range-checked before it sizes anything (counts against InputLimits::max_frames and the
// bytes present, packet references within the packets, byte positions within the video, frame
// timestamps strictly increasing, sizes within the limits). Any failure is a Status and the caller
// builds the index from the video as if there were none.
//
// Thread-compatible; blocks on file I/O.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_STORED_INDEX_H_
#define TECL_SERVICES_DATALOADER_VIDEO_STORED_INDEX_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/dataloader/video/video_index.h"
#include "services/dataloader/video/video_reader.h"

namespace tecl::video {

inline constexpr char kStoredIndexSuffix[] = ".tecli";

// X.mp4 -> X.mp4.tecli.
inline std::string StoredIndexPath(const std::string& video_path) {
  return video_path + kStoredIndexSuffix;
}

// Writes `index` (of the video now at `video_path`, whose identity it records) to
// StoredIndexPath(video_path). UNAVAILABLE when the file cannot be written.
absl::Status WriteStoredIndex(const VideoIndex& index, const std::string& video_path);

// Why a stored index was not used.
enum class StoredIndexRejection { kNone, kMissing, kStale, kCorrupt };

// The index stored for `video_path` when it matches `identity` (the video's size and mtime now).
// NOT_FOUND (kMissing) when there is none, FAILED_PRECONDITION (kStale) when it was built from
// another version of the file, DATA_LOSS (kCorrupt) naming what is wrong otherwise. `rejection`
// (may be null) says which.
absl::StatusOr<std::shared_ptr<VideoIndex>> ReadStoredIndex(const std::string& video_path,
                                                            const FileIdentity& identity,
                                                            const InputLimits& limits,
                                                            StoredIndexRejection* rejection);

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_STORED_INDEX_H_
