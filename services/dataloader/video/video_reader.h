// Frame-accurate video decoding with FFmpeg for clip sampling.
//
// A video is addressed by frame index in presentation order at its native rate (or at a fixed
// rate when DecodeOptions::fps > 0: frame k is the source frame shown at time k / fps). A
// VideoIndex (every frame's timestamp and the keyframes) is built once per file and cached, so
// random access seeks straight to the nearest keyframe at or before the first frame needed. A
// decode started at any keyframe yields the frames of a decode from the start of the file: decoder
// state learnt from earlier packets (the x264 version of old H.264 streams) is found at index time
// and given to every decoder (carried_state.h).
//
// DecodeClips() plans the union of the frames that all requested clips need as sorted spans
// (merging spans closer than about one keyframe interval), decodes each needed frame exactly
// once, discards non-reference frames it does not need, and scales each needed frame straight
// from the clip's crop rectangle (a swscale source rectangle) to the clip's output size. Reversal
// and striding happen in memory by frame order; there is no backward seeking.
//
// Inputs (the files of data sets come from users and the internet): only regular files are
// opened, and they are checked before FFmpeg opens them, so a FIFO, a device or a socket never
// blocks a decode thread; FFmpeg may use only its file protocol (protocol_whitelist=file) and
// only the container formats of video data sets (kAllowedFormats), so a playlist or list inside
// a data root (HLS, DASH, concat, image sequences) can make it fetch no URL and read no other
// file; a video larger than InputLimits (width, height, frames) is refused. Such a refusal is
// INVALID_ARGUMENT carrying its reason as the payload kRefusalPayload (RefusalOf).
//
// Errors: every FFmpeg AVERROR is turned into an absl::Status in one helper; every message starts
// with the path. A missing file is NOT_FOUND; a file that is not a video (text, audio only, no
// recognisable container) is INVALID_ARGUMENT; an empty (0-byte), truncated or corrupt file is
// DATA_LOSS with FFmpeg's reason; a call that exceeds DecodeOptions::budget (a slow or endless
// stream) is DEADLINE_EXCEEDED; a frame index past the end is OUT_OF_RANGE; a malformed request
// (crop outside the frame, output size < 1) is INVALID_ARGUMENT. A truncated file whose start is
// readable is indexed up to the damage and decodes; a single frame the decoder cannot produce is
// replaced by its clip's nearest decoded frame (DecodeStats::frames_substituted) rather than
// failing the call. A frame the decoder reports damaged (decode_error_flags or
// AV_FRAME_FLAG_CORRUPT: errors it concealed) is never returned: its stretch is decoded again from
// the keyframe before (DecodeStats::damage_retries), and when that does not repair it the call is
// DATA_LOSS with kDamagedFramesPayload (IsDamagedFramesError).
//
// Output geometry: frames are in the displayed orientation (rotation metadata applied); the crop
// is in displayed, normalised coordinates; pixels are storage pixels (sample aspect ratio is not
// applied). See frame_writer.h for the exact pixel rectangle and scaler.
//
// Thread-safety: the free functions are thread-safe (each call owns its FFmpeg contexts);
// VideoIndexCache is thread-safe.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_VIDEO_READER_H_
#define TECL_SERVICES_DATALOADER_VIDEO_VIDEO_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace tecl::video {

// The largest video a call accepts (refused beyond: kRefusalTooLarge). The frame count bounds
// the index (about 48 bytes a frame) and the time spent reading it; at DecodeOptions::fps it
// bounds the addressable frames too.
struct InputLimits {
  int max_width = 8192;
  int max_height = 8192;
  int64_t max_frames = 1'000'000;  // More than 9 hours at 30 fps.
};

struct DecodeOptions {
  double fps = 0;  // Resample to this frame rate; 0 keeps the native rate.
  absl::Duration budget = absl::Seconds(20);  // Wall-clock limit for one call on one video.
  InputLimits limits;
};

// The container formats (FFmpeg demuxer names) opened: those of the video files data sets hold.
// Anything else (hls, dash, concat, image2, tty...) is refused (kRefusalFormatNotAllowed).
inline constexpr const char* kAllowedFormats[] = {
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2",  // One demuxer: mov,mp4,m4a,3gp,3g2,mj2.
    "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "asf", "ogg", "yuv4mpegpipe", "gif",
    "h264", "hevc", "m4v", "mpegvideo", "ivf"};

// Why an input was refused: the payload of its Status under kRefusalPayload.
inline constexpr char kRefusalPayload[] = "type.tecl.dev/tecl.video.Refusal";
inline constexpr char kRefusalNotRegularFile[] = "not_regular_file";  // FIFO, device, socket, folder.
inline constexpr char kRefusalFormatNotAllowed[] = "format_not_allowed";
inline constexpr char kRefusalTooLarge[] = "too_large";  // Beyond InputLimits.

// The refusal reason of `status` (one of the kRefusal* values), or "" when it carries none.
inline std::string RefusalOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kRefusalPayload);  // absl::optional<absl::Cord>.
  return payload.has_value() ? std::string(*payload) : std::string();
}

struct VideoInfo {
  int width = 0;   // Display size (after rotation metadata is applied).
  int height = 0;
  int64_t num_frames = 0;  // Addressable frames (at DecodeOptions::fps when resampling).
  double fps = 0;          // Native average rate, or the resampling rate.
  double duration_s = 0;
  int rotation_degrees = 0;  // 0, 90, 180 or 270 (display matrix).
  std::string codec;
};

// Region of the displayed frame, in normalised coordinates (0..1, origin top-left).
struct CropRect {
  double x = 0;
  double y = 0;
  double width = 1;
  double height = 1;
};

struct ClipRequest {
  std::vector<int64_t> frames;  // Frame indices in output order (strided, reversed, repeated ok).
  CropRect crop;
  int out_width = 0;
  int out_height = 0;
  bool flip = false;  // Horizontal flip, applied while writing the output.
};

// uint8 RGB, (frames, height, width, 3) row-major.
struct ClipFrames {
  int frames = 0;
  int height = 0;
  int width = 0;
  std::vector<uint8_t> data;
};

struct DecodeStats {
  int64_t frames_decoded = 0;   // Frames that came out of the decoder.
  int64_t frames_used = 0;      // Distinct frames written into at least one clip.
  int64_t seeks = 0;
  int64_t packets_skipped = 0;  // Non-reference packets discarded without decoding.
  double seconds = 0;
  int64_t frames_substituted = 0;  // Needed frames that could not be decoded (see above).
  int64_t damage_retries = 0;  // Stretches decoded again from an earlier keyframe (see above).
};

// The payload type of the DATA_LOSS that DecodeClips returns for a file whose frames come out of
// the decoder damaged (see above).
inline constexpr char kDamagedFramesPayload[] = "tecl.video/damaged_frames";
inline bool IsDamagedFramesError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kDataLoss &&
         status.GetPayload(kDamagedFramesPayload).has_value();
}

// Per-video timestamps and keyframes.
class VideoIndex;

// Thread-safe LRU of VideoIndex by (path, size, mtime), at most `capacity` videos and `max_bytes`
// bytes of indexes (an index larger than `max_bytes` is used but not kept).
class VideoIndexCache {
 public:
  explicit VideoIndexCache(size_t capacity = 4096, size_t max_bytes = size_t{512} << 20);
  ~VideoIndexCache();
  VideoIndexCache(const VideoIndexCache&) = delete;
  VideoIndexCache& operator=(const VideoIndexCache&) = delete;

  // Returns the cached index or builds it (reading the container's packets, no decoding).
  absl::StatusOr<std::shared_ptr<const VideoIndex>> Get(const std::string& path,
                                                        const DecodeOptions& options);
  size_t size() const;
  // Bytes of the cached indexes.
  size_t bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Where this process's indexes came from so far (every index a VideoIndexCache miss or an uncached
// call needed): loaded from a matching stored index (stored_index.h), or built from the video,
// of which `stale` and `corrupt` had a stored index that was rejected. Monotonic counters.
struct IndexLoadCounts {
  int64_t stored = 0;
  int64_t built = 0;
  int64_t stale = 0;
  int64_t corrupt = 0;
};
IndexLoadCounts GetIndexLoadCounts();

// Size, frame count and rate of a video (from the cached index). Fails as described above.
absl::StatusOr<VideoInfo> ProbeVideo(const std::string& path, const DecodeOptions& options,
                                     VideoIndexCache* cache);

// Decodes `clips` of one video into `out` (resized to clips.size(), out[i] for clips[i]).
// `stats` may be null. On error `out` is unspecified.
absl::Status DecodeClips(const std::string& path, absl::Span<const ClipRequest> clips,
                         const DecodeOptions& options, VideoIndexCache* cache,
                         std::vector<ClipFrames>* out, DecodeStats* stats);

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_VIDEO_READER_H_
