// CarriedState: decoder state that FFmpeg learns from a video's bitstream and keeps for the rest of
// the stream, found once at index time and handed to every decoder opened later, so a decode that
// starts at any keyframe behaves as a decode from the start of the file.
//
// What there is (FFmpeg 5.1):
//   - H.264, the x264 version. The decoder reads it from x264's user-data-unregistered SEI
//     ("x264 - core NNN"), which x264 writes once, in the first access unit, and works around old
//     x264 bugs by it: build < 151 changes the CABAC coded-block-flag contexts of 4:4:4 macroblocks
//     with an 8x8 transform and the lossless 8x8 intra prediction of High 4:4:4 Predictive; older
//     builds change B-frame direct prediction (< 34) and the frame rate (< 44). A decoder opened at a
//     later keyframe never sees the SEI, assumes a current x264 and turns such a stream into garbage.
//     Carried through the decoder's `x264_build` option.
//   - Nothing else needs carrying. Parameter sets (H.264/HEVC SPS/PPS/VPS, the MPEG-4 Part 2 VOL with
//     the encoder's user data that selects the Xvid/DivX/libavcodec workarounds and the Xvid IDCT,
//     MPEG-1/2 sequence headers) reach every decoder through the stream's extradata: the container's,
//     or the one libavformat extracts from the first packet when the container has none (extradata
//     extraction in avformat_find_stream_info, which keeps everything before the first MPEG-4 VOP,
//     user data included, but only SPS/PPS of H.264). HEVC keeps no encoder-specific workaround;
//     VP8, VP9 and AV1 keyframes reset all decoder state; MJPEG, FFV1 and the other intra-only codecs
//     decode each frame alone.
//
// Plain data, immutable once built; thread-compatible.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_CARRIED_STATE_H_
#define TECL_SERVICES_DATALOADER_VIDEO_CARRIED_STATE_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "services/dataloader/video/ffmpeg_util.h"

namespace tecl::video {

struct CarriedState {
  struct X264Version {
    int32_t packet = 0;  // Decode index of the packet whose SEI names the version.
    int build = -1;
  };
  std::vector<X264Version> x264_versions;  // Decode order; usually one, in packet 0.

  // The x264 build that a decoder sent every packet before `packet` holds when `packet` comes:
  // that of the last SEI at or before it, or -1 (none: FFmpeg assumes a current x264).
  int X264BuildAt(int32_t packet) const;
  // The build named by the last SEI among packets [first, last], or -1 when none names one.
  int LastX264BuildIn(int32_t first, int32_t last) const;
};

// Builds a CarriedState from the packets of one stream, in decode order (BuildVideoIndex).
class CarriedStateScanner {
 public:
  explicit CarriedStateScanner(const AVCodecParameters& par);
  void Scan(int32_t packet_index, const AVPacket& packet);
  CarriedState Take() { return std::move(state_); }

 private:
  bool h264_ = false;
  int nal_length_size_ = 0;  // Of length-prefixed (avcC) packets; 0 for Annex B start codes.
  CarriedState state_;
};

// The x264 build named by the user-data SEI of one H.264 access unit, read as FFmpeg's decoder
// reads it (sscanf "x264 - core %d" after the 16-byte UUID, a positive number), or -1 when none
// does. `nal_length_size` is 1-4 for length-prefixed NAL units, 0 for Annex B. Only the NAL
// units before the first slice are read (an SEI precedes the slices of its access unit); damaged
// data ends the scan.
int ParseX264Build(const uint8_t* data, size_t size, int nal_length_size);

// Gives `decoder` (opened or not) the state a decode from the start of the file has when
// `packet` comes. Decoders other than H.264 are left alone.
void ApplyCarriedState(const CarriedState& state, int32_t packet, AVCodecContext* decoder);

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_CARRIED_STATE_H_
