#include "services/dataloader/prepare/transcode.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/status_macros.h"
#include "services/dataloader/synth/video_encoder.h"
#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/ffmpeg_util.h"
#include "services/dataloader/video/stored_index.h"
#include "services/dataloader/video/video_index.h"

namespace tecl::prepare {
namespace {

namespace fs = std::filesystem;

absl::Status Invalid(const char* field, int64_t value, const char* range) {
  return absl::InvalidArgumentError(
      absl::StrCat("prepare.", field, ": ", value, " is outside ", range));
}

// Removes the temporary file unless released (the rename took it).
class TemporaryFile {
 public:
  explicit TemporaryFile(std::string path) : path_(std::move(path)) {}
  ~TemporaryFile() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  const std::string& path() const { return path_; }
  void Release() { path_.clear(); }

 private:
  std::string path_;
};

absl::Status SyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot sync the written copy: ", std::generic_category().message(error)));
  }
  ::close(fd);
  return absl::OkStatus();
}

// The written copy against the plan: frames, size, keyframe intervals, no reordering. Returns its
// index and the longest keyframe interval.
absl::StatusOr<std::pair<std::shared_ptr<video::VideoIndex>, int>> Verify(
    const std::string& path, int64_t frames, int width, int height, int keyframe_interval) {
  video::Deadline deadline(absl::Seconds(60));
  TECL_ASSIGN_OR_RETURN(const video::FileIdentity identity, video::StatVideoFile(path));
  TECL_ASSIGN_OR_RETURN(std::unique_ptr<video::Demuxer> demuxer,
                        video::Demuxer::Open(path, &deadline));
  TECL_ASSIGN_OR_RETURN(std::shared_ptr<video::VideoIndex> index,
                        video::BuildVideoIndex(*demuxer, identity));
  const auto fail = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": the transcoded copy fails verification: ", what));
  };
  if (index->num_frames() != frames) {
    return fail(absl::StrCat(index->num_frames(), " frames, the source has ", frames));
  }
  if (index->coded_width != width || index->coded_height != height) {
    return fail(absl::StrCat(index->coded_width, "x", index->coded_height, ", planned ", width,
                             "x", height));
  }
  if (index->reorder_depth != 0) {
    return fail(absl::StrCat("reorder depth ", index->reorder_depth, " (B-frames)"));
  }
  int longest = 0;
  int since_key = 0;
  for (const video::VideoIndex::Packet& packet : index->packets) {
    since_key = packet.key ? 1 : since_key + 1;
    longest = std::max(longest, since_key);
  }
  if (longest > keyframe_interval) {
    return fail(absl::StrCat("a keyframe interval of ", longest, " frames, more than ",
                             keyframe_interval));
  }
  return std::make_pair(std::move(index), longest);
}

}  // namespace

absl::Status ValidateTranscodeOptions(const TranscodeOptions& options) {
  if (options.short_side != 0 &&
      (options.short_side < 16 || options.short_side > 4096 || options.short_side % 2 != 0)) {
    return Invalid("short_side", options.short_side, "0 (keep) or an even number in [16, 4096]");
  }
  if (options.keyframe_interval < 1 || options.keyframe_interval > 1000) {
    return Invalid("keyframe_interval", options.keyframe_interval, "[1, 1000]");
  }
  if (options.crf < 0 || options.crf > 51) return Invalid("crf", options.crf, "[0, 51]");
  if (options.chunk_frames < 0 || options.chunk_frames > 4096) {
    return Invalid("chunk_frames", options.chunk_frames, "0 (auto) or [1, 4096]");
  }
  if (options.decode.fps != 0) {
    return absl::InvalidArgumentError(
        "prepare: the source is read at its own rate (decode.fps must be 0), so that frame k of "
        "the copy is frame k of the source");
  }
  return absl::OkStatus();
}

void PreparedSize(int width, int height, int short_side, int* out_width, int* out_height) {
  if (short_side == 0 || width <= 0 || height <= 0) {
    *out_width = std::max(2, width / 2 * 2);
    *out_height = std::max(2, height / 2 * 2);
    return;
  }
  const auto scaled = [&](int side, int short_of_source) {
    // side * short_side / short_of_source rounded to the nearest even number, in 64-bit.
    const int64_t value = (static_cast<int64_t>(side) * short_side + short_of_source) /
                          (2 * static_cast<int64_t>(short_of_source)) * 2;
    return static_cast<int>(std::max<int64_t>(2, value));
  };
  if (width <= height) {
    *out_width = short_side;
    *out_height = scaled(height, width);
  } else {
    *out_height = short_side;
    *out_width = scaled(width, height);
  }
}

absl::StatusOr<TranscodeResult> TranscodeVideo(const std::string& source,
                                               const std::string& output,
                                               const TranscodeOptions& options) {
  TECL_RETURN_IF_ERROR(ValidateTranscodeOptions(options));
  const absl::Time start = absl::Now();
  video::VideoIndexCache cache(/*capacity=*/1);
  TECL_ASSIGN_OR_RETURN(const video::VideoInfo info,
                        video::ProbeVideo(source, options.decode, &cache));
  TranscodeResult result;
  result.frames = info.num_frames;
  result.fps = info.fps;
  PreparedSize(info.width, info.height, options.short_side, &result.width, &result.height);
  std::error_code error;
  result.bytes_in = static_cast<int64_t>(fs::file_size(source, error));

  synth::EncoderOptions encoder_options;
  encoder_options.width = result.width;
  encoder_options.height = result.height;
  encoder_options.fps = info.fps > 0 ? info.fps : 30;
  encoder_options.codec = "libx264";
  encoder_options.gop = options.codec == PreparedCodec::kIntra ? 1 : options.keyframe_interval;
  encoder_options.quality = options.crf;
  encoder_options.fast_decode = true;
  encoder_options.container = "mp4";
  const int keyframe_interval = encoder_options.gop;

  // Beside the output, so the rename stays within one file system.
  TemporaryFile temporary(absl::StrCat(output, ".tmp.", ::getpid(), ".mp4"));
  {
    TECL_ASSIGN_OR_RETURN(std::unique_ptr<synth::VideoEncoder> encoder,
                          synth::VideoEncoder::Open(temporary.path(), encoder_options));
    video::DecodeOptions decode = options.decode;
    std::vector<video::ClipFrames> out;
    const int64_t frame_bytes = int64_t{3} * result.width * result.height;
    const int64_t chunk = options.chunk_frames > 0
                              ? options.chunk_frames
                              : std::clamp<int64_t>((int64_t{64} << 20) / frame_bytes, 1, 4096);
    for (int64_t first = 0; first < info.num_frames; first += chunk) {
      if (options.cancelled && options.cancelled()) {
        return absl::CancelledError(absl::StrCat(source, ": transcode cancelled at frame ", first,
                                                 " of ", info.num_frames));
      }
      video::ClipRequest request;
      request.out_width = result.width;
      request.out_height = result.height;
      const int64_t last = std::min<int64_t>(info.num_frames, first + chunk);
      for (int64_t k = first; k < last; ++k) request.frames.push_back(k);
      TECL_RETURN_IF_ERROR(
          video::DecodeClips(source, {request}, decode, &cache, &out, /*stats=*/nullptr));
      const video::ClipFrames& frames = out[0];
      const size_t frame_bytes = static_cast<size_t>(frames.height) * frames.width * 3;
      for (int i = 0; i < frames.frames; ++i) {
        TECL_RETURN_IF_ERROR(encoder->AddFrame(frames.data.data() + i * frame_bytes));
      }
    }
    TECL_RETURN_IF_ERROR(encoder->Finish());
  }
  TECL_RETURN_IF_ERROR(SyncFile(temporary.path()));
  TECL_ASSIGN_OR_RETURN(auto verified, Verify(temporary.path(), result.frames, result.width,
                                               result.height, keyframe_interval));
  result.max_keyframe_interval = verified.second;
  fs::rename(temporary.path(), output, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat(output, ": cannot rename the verified copy into place: ",
                                               error.message()));
  }
  temporary.Release();
  // The index beside it (the rename kept the size and mtime it records). Without it a loader
  // builds the index itself, so a failure here costs time, not the video.
  verified.first->path = output;
  result.index_stored = video::WriteStoredIndex(*verified.first, output).ok();
  result.bytes_out = static_cast<int64_t>(fs::file_size(output, error));
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

}  // namespace tecl::prepare
