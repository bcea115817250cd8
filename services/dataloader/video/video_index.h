// VideoIndex: what one pass over a video's packets (no decoding) tells about its frames: every
// frame's presentation timestamp in presentation order, the packet (decode order) that carries
// it, the keyframes, and where decoding must start to reach each frame.
//
// Two addressing modes:
//   - timestamps (every video packet has a pts): frame k is the k-th distinct pts in increasing
//     order; decoding starts at the last keyframe whose pts is <= the frame's pts, and decoded
//     frames are identified by their pts against this index. Works for B-frames, open GOPs,
//     variable frame rate and any start time.
//   - ordinal (some packet lacks a pts: raw elementary streams, AVI with B-frames): frame k is the
//     k-th frame the decoder outputs from the start of the file; such files are decoded from the
//     start (there is no timestamp to check where a seek landed).
//
// Immutable after BuildVideoIndex() except for the `skip_unsafe` hint; shared between threads
// through std::shared_ptr<const VideoIndex>.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_VIDEO_INDEX_H_
#define TECL_SERVICES_DATALOADER_VIDEO_VIDEO_INDEX_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/dataloader/video/carried_state.h"
#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/ffmpeg_util.h"

namespace tecl::video {

class VideoIndex {
 public:
  struct Packet {
    int64_t pts = 0;  // AV_NOPTS_VALUE when absent.
    int64_t dts = 0;  // AV_NOPTS_VALUE when absent.
    int64_t pos = -1;  // Byte position, -1 when the demuxer does not say.
    bool key = false;
    bool discard = false;  // Decoded for reference only (e.g. before an MP4 edit list start).
  };

  std::string path;
  FileIdentity identity;
  int stream_index = -1;
  AVRational time_base{1, 1};  // Of the stream; frame_ts below are in ts_base.
  AVCodecID codec_id = AV_CODEC_ID_NONE;
  std::string codec_name;
  int coded_width = 0;
  int coded_height = 0;
  int rotation_degrees = 0;  // Clockwise rotation that displays a decoded frame upright.
  bool timestamps = true;    // false: ordinal mode (see above).
  bool intra_only = false;   // Every frame decodes on its own (MJPEG, FFV1 intra...).
  int reorder_depth = 0;     // Frames a decoder holds back before output (B-frames).

  std::vector<Packet> packets;         // Decode order.
  std::vector<int64_t> frame_ts;       // Presentation order: pts, or k in ordinal mode.
  std::vector<int32_t> frame_packet;   // Packet carrying frame k.
  std::vector<int32_t> frame_start;    // Packet where decoding starts to reach frame k.
  AVRational ts_base{1, 1};            // Unit of frame_ts.
  int64_t duration_ts = 0;             // Shown duration of all frames, in ts_base.
  double duration_s = 0;
  double fps = 0;                      // num_frames / duration_s.
  CarriedState carried;  // Decoder state a decode from the start would have learnt by each packet.

  // Set when discarding non-reference packets dropped a needed frame (packed bitstreams):
  // later calls decode every packet of this file.
  mutable std::atomic<bool> skip_unsafe{false};

  int64_t num_frames() const { return static_cast<int64_t>(frame_ts.size()); }
  // Presentation index of the frame with timestamp `ts`, or -1.
  int64_t FrameOfTimestamp(int64_t ts) const;
  // Number of addressable frames at `fps` (> 0), frame k shown at k / fps.
  int64_t NumFramesAt(AVRational fps) const;
  // The native frame shown at time k / fps (k < NumFramesAt(fps)).
  int64_t SourceFrameAt(int64_t k, AVRational fps) const;
};

// Reads every packet of `demuxer`'s video stream (no decoding). DATA_LOSS when it holds no video
// packet; DEADLINE_EXCEEDED when the deadline passes.
absl::StatusOr<std::shared_ptr<VideoIndex>> BuildVideoIndex(Demuxer& demuxer,
                                                            const FileIdentity& identity);

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_VIDEO_INDEX_H_
