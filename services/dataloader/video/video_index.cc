#include "services/dataloader/video/video_index.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

extern "C" {
#include <libavcodec/codec_desc.h>
#include <libavutil/display.h>
#include <libavutil/mathematics.h>
}

namespace tecl::video {
namespace {

constexpr int kMaxReorderDepth = 16;

int RotationOf(const AVStream* stream) {
  const uint8_t* matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, nullptr);
  if (matrix == nullptr) return 0;
  const double ccw = av_display_rotation_get(reinterpret_cast<const int32_t*>(matrix));
  if (std::isnan(ccw)) return 0;
  int cw = static_cast<int>(std::lround(-ccw / 90.0)) * 90;
  cw %= 360;
  if (cw < 0) cw += 360;
  return cw;
}

AVRational NominalRate(const AVStream* stream) {
  for (AVRational rate : {stream->avg_frame_rate, stream->r_frame_rate}) {
    if (rate.num > 0 && rate.den > 0 && av_q2d(rate) < 1000) return rate;
  }
  return AVRational{25, 1};
}

}  // namespace

int64_t VideoIndex::FrameOfTimestamp(int64_t ts) const {
  auto it = std::lower_bound(frame_ts.begin(), frame_ts.end(), ts);
  if (it == frame_ts.end() || *it != ts) return -1;
  return it - frame_ts.begin();
}

int64_t VideoIndex::NumFramesAt(AVRational rate) const {
  const int64_t count =
      av_rescale_rnd(duration_ts, int64_t{ts_base.num} * rate.num,
                     int64_t{ts_base.den} * rate.den, AV_ROUND_UP);
  return std::max<int64_t>(count, frame_ts.empty() ? 0 : 1);
}

int64_t VideoIndex::SourceFrameAt(int64_t k, AVRational rate) const {
  const int64_t offset = av_rescale_rnd(k, int64_t{rate.den} * ts_base.den,
                                        int64_t{rate.num} * ts_base.num, AV_ROUND_DOWN);
  const int64_t target = frame_ts.front() + offset;
  auto it = std::upper_bound(frame_ts.begin(), frame_ts.end(), target);
  return std::max<int64_t>(0, (it - frame_ts.begin()) - 1);
}

absl::StatusOr<std::shared_ptr<VideoIndex>> BuildVideoIndex(Demuxer& demuxer,
                                                            const FileIdentity& identity) {
  auto index = std::make_shared<VideoIndex>();
  const AVStream* stream = demuxer.stream();
  const AVCodecParameters* par = stream->codecpar;
  index->path = demuxer.path();
  index->identity = identity;
  index->stream_index = demuxer.stream_index();
  index->time_base = stream->time_base;
  index->codec_id = par->codec_id;
  index->codec_name = avcodec_get_name(par->codec_id);
  index->coded_width = par->width;
  index->coded_height = par->height;
  index->rotation_degrees = RotationOf(stream);

  AvPacketPtr packet(av_packet_alloc());
  std::vector<int64_t> durations;
  CarriedStateScanner carried(*par);
  while (true) {
    if (demuxer.deadline()->Expired()) {
      return demuxer.deadline()->ExceededStatus(demuxer.path(), "indexing the packets");
    }
    const int ret = demuxer.ReadVideoPacket(packet.get());
    if (ret == AVERROR_EOF) break;
    if (ret < 0) {
      if (ret == AVERROR_EXIT && demuxer.deadline()->Expired()) {
        return demuxer.deadline()->ExceededStatus(demuxer.path(), "indexing the packets");
      }
      if (index->packets.empty()) {
        return AvStatus(ret, demuxer.path(), "damaged file: no video packet can be read",
                        absl::StatusCode::kDataLoss, demuxer.deadline());
      }
      break;  // Keep the frames read before the damage.
    }
    VideoIndex::Packet p;
    p.pts = packet->pts;
    p.dts = packet->dts;
    p.pos = packet->pos;
    p.key = (packet->flags & AV_PKT_FLAG_KEY) != 0;
    p.discard = (packet->flags & AV_PKT_FLAG_DISCARD) != 0;
    carried.Scan(static_cast<int32_t>(index->packets.size()), *packet);
    index->packets.push_back(p);
    durations.push_back(packet->duration);
    av_packet_unref(packet.get());
  }

  index->carried = carried.Take();
  std::vector<VideoIndex::Packet>& packets = index->packets;
  bool any_shown = false;
  bool all_pts = true;
  bool all_key = true;
  for (const VideoIndex::Packet& p : packets) {
    any_shown |= !p.discard;
    all_pts &= p.pts != AV_NOPTS_VALUE;
    all_key &= p.key;
  }
  if (!any_shown) {  // Every packet marked discardable: show them all rather than nothing.
    for (VideoIndex::Packet& p : packets) p.discard = false;
  }
  if (packets.empty()) {
    if (demuxer.read_errors() > 0) {
      return AvStatus(demuxer.last_read_error(), demuxer.path(),
                      "damaged file: no video packet can be read", absl::StatusCode::kDataLoss);
    }
    return absl::DataLossError(
        absl::StrCat(demuxer.path(), ": damaged or empty video: its ", index->codec_name,
                     " stream holds no packet"));
  }
  const AVCodecDescriptor* descriptor = avcodec_descriptor_get(par->codec_id);
  index->intra_only =
      all_key || (descriptor != nullptr && (descriptor->props & AV_CODEC_PROP_INTRA_ONLY));
  index->timestamps = all_pts;

  // Frames in presentation order: (timestamp, packet).
  std::vector<std::pair<int64_t, int32_t>> frames;
  int64_t ordinal = 0;
  for (size_t i = 0; i < packets.size(); ++i) {
    if (packets[i].discard) continue;
    frames.emplace_back(all_pts ? packets[i].pts : ordinal++, static_cast<int32_t>(i));
  }
  std::sort(frames.begin(), frames.end());
  // One frame per timestamp: a repeated pts cannot be told apart after decoding.
  frames.erase(std::unique(frames.begin(), frames.end(),
                           [](const auto& a, const auto& b) { return a.first == b.first; }),
               frames.end());
  const size_t n = frames.size();
  index->frame_ts.resize(n);
  index->frame_packet.resize(n);
  index->frame_start.assign(n, 0);
  for (size_t k = 0; k < n; ++k) {
    index->frame_ts[k] = frames[k].first;
    index->frame_packet[k] = frames[k].second;
  }

  if (all_pts) {
    std::vector<int32_t> keys;
    for (size_t i = 0; i < packets.size(); ++i) {
      if (packets[i].key) keys.push_back(static_cast<int32_t>(i));
    }
    for (size_t k = 0; k < n; ++k) {
      const int32_t packet_index = index->frame_packet[k];
      const int64_t ts = index->frame_ts[k];
      auto it = std::upper_bound(keys.begin(), keys.end(), packet_index);
      int32_t start = 0;
      while (it != keys.begin()) {
        --it;
        if (packets[*it].pts <= ts) {
          start = *it;
          break;
        }
      }
      index->frame_start[k] = start;
    }
    // Reorder depth: how far a frame's decode position runs ahead of its presentation position.
    std::vector<std::pair<int32_t, int32_t>> by_packet(n);
    for (size_t k = 0; k < n; ++k) by_packet[k] = {index->frame_packet[k], static_cast<int32_t>(k)};
    std::sort(by_packet.begin(), by_packet.end());
    int depth = 0;
    for (size_t r = 0; r < n; ++r) {
      depth = std::max(depth, static_cast<int>(r) - by_packet[r].second);
    }
    index->reorder_depth = std::min(depth, kMaxReorderDepth);

    index->ts_base = stream->time_base;
    int64_t last_duration = durations[index->frame_packet.back()];
    if (last_duration <= 0 && n >= 2) {
      std::vector<int64_t> deltas(n - 1);
      for (size_t k = 1; k < n; ++k) deltas[k - 1] = index->frame_ts[k] - index->frame_ts[k - 1];
      std::nth_element(deltas.begin(), deltas.begin() + deltas.size() / 2, deltas.end());
      last_duration = deltas[deltas.size() / 2];
    }
    if (last_duration <= 0) {
      last_duration =
          std::max<int64_t>(1, av_rescale_q(1, av_inv_q(NominalRate(stream)), stream->time_base));
    }
    index->duration_ts = index->frame_ts.back() - index->frame_ts.front() + last_duration;
  } else {
    const AVRational rate = NominalRate(stream);
    index->ts_base = av_inv_q(rate);
    index->duration_ts = static_cast<int64_t>(n);
    index->reorder_depth = std::min(std::max(par->video_delay, 0), kMaxReorderDepth);
  }
  index->duration_s = static_cast<double>(index->duration_ts) * av_q2d(index->ts_base);
  index->fps = index->duration_s > 0 ? static_cast<double>(n) / index->duration_s : 0;
  return index;
}

}  // namespace tecl::video
