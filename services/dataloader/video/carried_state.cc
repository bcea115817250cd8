#include "services/dataloader/video/carried_state.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <string>
#include <utility>

extern "C" {
#include <libavutil/opt.h>
}

namespace tecl::video {
namespace {

constexpr int kNalSei = 6;
constexpr int kSeiUserDataUnregistered = 5;
constexpr size_t kUuidBytes = 16;
// Enough of the user data for "x264 - core NNNNNN" (the rest lists the encoder options).
constexpr size_t kVersionTextBytes = 64;

bool IsSlice(int nal_type) { return nal_type >= 1 && nal_type <= 5; }

// The RBSP of a NAL unit's payload (after its header byte): emulation prevention bytes removed.
std::vector<uint8_t> Unescape(const uint8_t* data, size_t size) {
  std::vector<uint8_t> rbsp;
  rbsp.reserve(size);
  int zeros = 0;
  for (size_t i = 0; i < size; ++i) {
    if (zeros >= 2 && data[i] == 3) {
      zeros = 0;
      continue;
    }
    zeros = data[i] == 0 ? zeros + 1 : 0;
    rbsp.push_back(data[i]);
  }
  return rbsp;
}

// The build named by one SEI NAL unit's messages (as h264_sei.c reads them), or -1.
int X264BuildOfSei(const uint8_t* payload, size_t size) {
  const std::vector<uint8_t> rbsp = Unescape(payload, size);
  int build = -1;
  size_t at = 0;
  while (at + 2 < rbsp.size() && (rbsp[at] != 0 || rbsp[at + 1] != 0)) {
    int type = 0;
    do {
      if (at >= rbsp.size()) return build;
      type += rbsp[at];
    } while (rbsp[at++] == 255);
    size_t length = 0;
    do {
      if (at >= rbsp.size()) return build;
      length += rbsp[at];
    } while (rbsp[at++] == 255);
    if (length > rbsp.size() - at) return build;  // Truncated: FFmpeg stops here too.
    if (type == kSeiUserDataUnregistered && length >= kUuidBytes) {
      const size_t text_bytes = std::min(length - kUuidBytes, kVersionTextBytes);
      const std::string text(reinterpret_cast<const char*>(rbsp.data() + at + kUuidBytes),
                             text_bytes);
      int core = 0;
      if (std::sscanf(text.c_str(), "x264 - core %d", &core) == 1 && core > 0) build = core;
    }
    at += length;
  }
  return build;
}

// Calls `on_nal(type, payload, size)` for each NAL unit of an Annex B buffer until it returns false.
template <typename OnNal>
void ForEachAnnexBNal(const uint8_t* data, size_t size, OnNal on_nal) {
  auto next_start = [&](size_t from) {  // Index of the byte after the next 00 00 01, or size.
    for (size_t i = from; i + 2 < size; ++i) {
      if (data[i + 2] > 1) {
        i += 2;
      } else if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1) {
        return i + 3;
      }
    }
    return size;
  };
  size_t begin = next_start(0);
  while (begin < size) {
    const size_t next = next_start(begin);
    size_t end = next == size ? size : next - 3;
    while (end > begin && data[end - 1] == 0) --end;  // Trailing zeros belong to the start code.
    if (!on_nal(data[begin] & 0x1F, data + begin + 1, end - begin - 1)) return;
    begin = next;
  }
}

template <typename OnNal>
void ForEachLengthPrefixedNal(const uint8_t* data, size_t size, int length_size, OnNal on_nal) {
  size_t at = 0;
  while (at + length_size < size) {
    size_t length = 0;
    for (int i = 0; i < length_size; ++i) length = (length << 8) | data[at + i];
    at += length_size;
    if (length == 0 || length > size - at) return;  // Damaged.
    if (!on_nal(data[at] & 0x1F, data + at + 1, length - 1)) return;
    at += length;
  }
}

}  // namespace

int CarriedState::X264BuildAt(int32_t packet) const {
  auto it = std::upper_bound(x264_versions.begin(), x264_versions.end(), packet,
                             [](int32_t p, const X264Version& v) { return p < v.packet; });
  return it == x264_versions.begin() ? -1 : std::prev(it)->build;
}

int CarriedState::LastX264BuildIn(int32_t first, int32_t last) const {
  auto it = std::upper_bound(x264_versions.begin(), x264_versions.end(), last,
                             [](int32_t p, const X264Version& v) { return p < v.packet; });
  if (it == x264_versions.begin() || std::prev(it)->packet < first) return -1;
  return std::prev(it)->build;
}

int ParseX264Build(const uint8_t* data, size_t size, int nal_length_size) {
  int build = -1;
  auto on_nal = [&](int type, const uint8_t* payload, size_t payload_size) {
    if (IsSlice(type)) return false;
    if (type == kNalSei) {
      const int found = X264BuildOfSei(payload, payload_size);
      if (found > 0) build = found;
    }
    return true;
  };
  if (nal_length_size > 0) {
    ForEachLengthPrefixedNal(data, size, nal_length_size, on_nal);
  } else {
    ForEachAnnexBNal(data, size, on_nal);
  }
  return build;
}

CarriedStateScanner::CarriedStateScanner(const AVCodecParameters& par) {
  h264_ = par.codec_id == AV_CODEC_ID_H264;
  // An avcC record (first byte 1) means length-prefixed packets; its byte 4 gives the length size.
  if (h264_ && par.extradata != nullptr && par.extradata_size >= 7 && par.extradata[0] == 1) {
    nal_length_size_ = (par.extradata[4] & 3) + 1;
  }
}

void CarriedStateScanner::Scan(int32_t packet_index, const AVPacket& packet) {
  if (!h264_ || packet.data == nullptr || packet.size <= 0) return;
  const int build =
      ParseX264Build(packet.data, static_cast<size_t>(packet.size), nal_length_size_);
  if (build > 0) state_.x264_versions.push_back({packet_index, build});
}

void ApplyCarriedState(const CarriedState& state, int32_t packet, AVCodecContext* decoder) {
  if (decoder->codec_id != AV_CODEC_ID_H264) return;
  // -1 (the option's default) lets the decoder assume a current x264 until an SEI says otherwise.
  av_opt_set_int(decoder, "x264_build", state.X264BuildAt(packet), AV_OPT_SEARCH_CHILDREN);
}

}  // namespace tecl::video
