// Decode planning: turns the frames a call needs into the stretches of packets to decode, each
// started at a keyframe, so every needed frame is decoded once and no stretch is decoded twice.
//
// Pure functions of the index; thread-safe.
#ifndef TECL_SERVICES_DATALOADER_VIDEO_DECODE_PLAN_H_
#define TECL_SERVICES_DATALOADER_VIDEO_DECODE_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace tecl::video {

// One stretch of decoding: from packet `start_packet` (decode order; a keyframe, or the first
// packet) through `end_packet`, the last packet that carries one of `frames`.
struct DecodeSpan {
  int32_t start_packet = 0;
  int32_t end_packet = 0;
  std::vector<int64_t> frames;  // Needed frames, presentation order.
};

// Packets a seek must save before a needed frame starts its own span instead of continuing the
// previous one (below that, decoding on is cheaper than seeking and flushing).
inline constexpr int32_t kMinSeekGainPackets = 8;
// For intra-only video unneeded packets are read but never decoded, so only long gaps pay.
inline constexpr int32_t kMinSeekGainPacketsIntra = 64;

// `needed`: sorted, distinct frame indices. `frame_start[k]`: the packet decoding of frame k must
// start at; `frame_packet[k]`: the packet carrying frame k. A frame joins the current span when
// its start packet lies within `min_seek_gain` packets after the span's end, otherwise it opens
// a new span (one seek). Spans come out in decode order and never overlap.
std::vector<DecodeSpan> PlanSpans(absl::Span<const int64_t> needed,
                                  absl::Span<const int32_t> frame_start,
                                  absl::Span<const int32_t> frame_packet, int32_t min_seek_gain);

}  // namespace tecl::video

#endif  // TECL_SERVICES_DATALOADER_VIDEO_DECODE_PLAN_H_
