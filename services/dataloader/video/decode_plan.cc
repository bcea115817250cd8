#include "services/dataloader/video/decode_plan.h"

#include <algorithm>
#include <utility>

namespace tecl::video {

std::vector<DecodeSpan> PlanSpans(absl::Span<const int64_t> needed,
                                  absl::Span<const int32_t> frame_start,
                                  absl::Span<const int32_t> frame_packet, int32_t min_seek_gain) {
  std::vector<DecodeSpan> spans;
  for (const int64_t frame : needed) {
    const int32_t start = frame_start[frame];
    const int32_t packet = frame_packet[frame];
    if (!spans.empty() && start <= spans.back().end_packet + min_seek_gain) {
      DecodeSpan& span = spans.back();
      span.start_packet = std::min(span.start_packet, start);
      span.end_packet = std::max(span.end_packet, packet);
      span.frames.push_back(frame);
      continue;
    }
    spans.push_back(DecodeSpan{start, packet, {frame}});
  }
  // A span that had to reach back before the previous span's end absorbs it.
  std::vector<DecodeSpan> merged;
  for (DecodeSpan& span : spans) {
    if (!merged.empty() && span.start_packet <= merged.back().end_packet) {
      DecodeSpan& last = merged.back();
      last.start_packet = std::min(last.start_packet, span.start_packet);
      last.end_packet = std::max(last.end_packet, span.end_packet);
      last.frames.insert(last.frames.end(), span.frames.begin(), span.frames.end());
      continue;
    }
    merged.push_back(std::move(span));
  }
  return merged;
}

}  // namespace tecl::video
