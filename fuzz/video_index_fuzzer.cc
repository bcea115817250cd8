// Video files as a dataloader opens them: the demuxer's checks (Demuxer::Open), one pass over the
// packets (BuildVideoIndex), and the frame arithmetic the reader does on the index (frame counts
// and source frames at resampled rates, timestamps back to frames), and the stored index of it
// written and read back (stored_index.h). Seeds: small files of several
// codecs and containers (scripts/fuzz writes them with ffmpeg).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/time/time.h"
#include "fuzz/fuzz_input_file.h"
#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/stored_index.h"
#include "services/dataloader/video/video_index.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  av_log_set_level(AV_LOG_QUIET);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tecl::video;
  static tecl::fuzz::FuzzInputFile file("video");
  const std::string& path = file.Write(data, size);
  absl::StatusOr<FileIdentity> identity = StatVideoFile(path);
  if (!identity.ok()) return 0;
  Deadline deadline(absl::Seconds(5));
  absl::StatusOr<std::unique_ptr<Demuxer>> demuxer = Demuxer::Open(path, &deadline);
  if (!demuxer.ok()) return 0;
  absl::StatusOr<std::shared_ptr<VideoIndex>> index = BuildVideoIndex(**demuxer, *identity);
  if (!index.ok()) return 0;
  const VideoIndex& v = **index;
  const int64_t frames = v.num_frames();
  if (frames < 1 || v.frame_packet.size() != static_cast<size_t>(frames) ||
      v.frame_start.size() != static_cast<size_t>(frames)) {
    std::fprintf(stderr, "index of %lld frames with %zu packets and %zu starts\n",
                 static_cast<long long>(frames), v.frame_packet.size(), v.frame_start.size());
    std::abort();
  }
  for (const int64_t k : {int64_t{0}, frames / 2, frames - 1}) {
    const int32_t packet = v.frame_packet[k], start = v.frame_start[k];
    if (packet < 0 || static_cast<size_t>(packet) >= v.packets.size() || start < 0 ||
        start > packet) {
      std::fprintf(stderr, "frame %lld: packet %d, decoding starts at %d, of %zu packets\n",
                   static_cast<long long>(k), packet, start, v.packets.size());
      std::abort();
    }
    if (v.timestamps && v.FrameOfTimestamp(v.frame_ts[k]) != k) {
      std::fprintf(stderr, "frame %lld's timestamp maps back to another frame\n",
                   static_cast<long long>(k));
      std::abort();
    }
  }
  for (const AVRational rate : {AVRational{1, 1}, AVRational{25, 1}, AVRational{30000, 1001}}) {
    const int64_t at_rate = v.NumFramesAt(rate);
    for (const int64_t k : {int64_t{0}, at_rate / 2, at_rate - 1}) {
      if (k < 0) continue;
      const int64_t source = v.SourceFrameAt(k, rate);
      if (source < 0 || source >= frames) {
        std::fprintf(stderr, "frame %lld at %d/%d is source frame %lld of %lld\n",
                     static_cast<long long>(k), rate.num, rate.den,
                     static_cast<long long>(source), static_cast<long long>(frames));
        std::abort();
      }
    }
  }
  // The stored index of what was built: written, read back under the same identity, and when the
  // reader accepts it, equal in the fields the decoder uses.
  if (WriteStoredIndex(v, path).ok()) {
    absl::StatusOr<std::shared_ptr<VideoIndex>> stored =
        ReadStoredIndex(path, *identity, InputLimits{}, nullptr);
    if (stored.ok() && ((*stored)->frame_ts != v.frame_ts ||
                        (*stored)->frame_packet != v.frame_packet ||
                        (*stored)->frame_start != v.frame_start ||
                        (*stored)->packets.size() != v.packets.size() ||
                        (*stored)->reorder_depth != v.reorder_depth)) {
      std::fprintf(stderr, "the stored index read back differs from the one written\n");
      std::abort();
    }
    std::remove(StoredIndexPath(path).c_str());
  }
  return 0;
}
