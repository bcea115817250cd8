#include "services/dataloader/video/video_reader.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <list>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/dataloader/video/decode_plan.h"
#include "services/dataloader/video/demuxer.h"
#include "services/dataloader/video/ffmpeg_util.h"
#include "services/dataloader/video/frame_writer.h"
#include "services/dataloader/video/input_policy.h"
#include "services/dataloader/video/stored_index.h"
#include "services/dataloader/video/video_index.h"

extern "C" {
#include <libavutil/mathematics.h>
}

namespace tecl::video {
namespace {

// Packets read (not decoded) to reach a start packet ahead instead of seeking.
constexpr int32_t kReadForwardPackets = 32;
// Packets a decode reads past its span's last one while frames are still missing (Decode).
constexpr int32_t kEndSlackPackets = 2;
constexpr int kMaxOutputSide = 8192;
constexpr uint64_t kMaxOutputBytes = uint64_t{4} << 30;

std::atomic<int64_t> g_index_loads[4];  // Stored, built, stale, corrupt (IndexLoadCounts).

// The stored index when one matches the file (stored_index.h), else the index built from it.
absl::StatusOr<std::shared_ptr<const VideoIndex>> BuildIndex(const std::string& path,
                                                             Deadline* deadline,
                                                             const InputLimits& limits) {
  TECL_ASSIGN_OR_RETURN(FileIdentity identity, StatVideoFile(path));
  StoredIndexRejection rejection = StoredIndexRejection::kMissing;
  absl::StatusOr<std::shared_ptr<VideoIndex>> stored =
      ReadStoredIndex(path, identity, limits, &rejection);
  if (stored.ok()) {
    g_index_loads[0].fetch_add(1, std::memory_order_relaxed);
    return std::shared_ptr<const VideoIndex>(std::move(*stored));
  }
  if (rejection == StoredIndexRejection::kStale) {
    g_index_loads[2].fetch_add(1, std::memory_order_relaxed);
  } else if (rejection == StoredIndexRejection::kCorrupt) {
    g_index_loads[3].fetch_add(1, std::memory_order_relaxed);
    TECL_LOG(WARNING) << stored.status().message();
  }
  TECL_ASSIGN_OR_RETURN(std::unique_ptr<Demuxer> demuxer, Demuxer::Open(path, deadline, limits));
  TECL_ASSIGN_OR_RETURN(std::shared_ptr<VideoIndex> index, BuildVideoIndex(*demuxer, identity));
  g_index_loads[1].fetch_add(1, std::memory_order_relaxed);
  return std::shared_ptr<const VideoIndex>(std::move(index));
}

// TOO_LARGE refusal when `index` (possibly cached under other limits) exceeds `limits`.
absl::Status CheckIndexLimits(const VideoIndex& index, const InputLimits& limits) {
  if (index.coded_width > limits.max_width || index.coded_height > limits.max_height ||
      static_cast<int64_t>(index.packets.size()) > limits.max_frames) {
    return WithRefusal(absl::InvalidArgumentError(absl::StrCat(
                           index.path, ": the video (", index.coded_width, "x", index.coded_height,
                           ", ", index.packets.size(), " frames) exceeds the limits of ",
                           limits.max_width, "x", limits.max_height, " and ", limits.max_frames,
                           " frames (--max_video_width, --max_video_height, --max_video_frames)")),
                       kRefusalTooLarge);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const VideoIndex>> GetIndex(const std::string& path,
                                                           const DecodeOptions& options,
                                                           Deadline* deadline,
                                                           VideoIndexCache* cache) {
  absl::StatusOr<std::shared_ptr<const VideoIndex>> index;
  if (cache == nullptr) {
    index = BuildIndex(path, deadline, options.limits);
  } else {
    DecodeOptions remaining = options;
    remaining.budget = deadline->Remaining();
    index = cache->Get(path, remaining);
    if (!index.ok() && index.status().code() == absl::StatusCode::kDeadlineExceeded) {
      return deadline->ExceededStatus(path, "indexing the packets");
    }
  }
  if (index.ok()) TECL_RETURN_IF_ERROR(CheckIndexLimits(**index, options.limits));
  return index;
}

absl::Status ValidateOptions(const std::string& path, const DecodeOptions& options) {
  if (!std::isfinite(options.fps) || options.fps < 0 || options.fps > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": DecodeOptions::fps is ", options.fps, "; use 0 (native rate) or a rate in (0, 1000]"));
  }
  if (options.budget <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": DecodeOptions::budget must be positive"));
  }
  const InputLimits& limits = options.limits;
  if (limits.max_width < 1 || limits.max_height < 1 || limits.max_frames < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": DecodeOptions::limits (", limits.max_width, "x", limits.max_height, ", ",
        limits.max_frames, " frames) must be positive"));
  }
  return absl::OkStatus();
}

absl::Status ValidateClip(const std::string& path, size_t c, const ClipRequest& clip) {
  if (clip.out_width < 1 || clip.out_height < 1 || clip.out_width > kMaxOutputSide ||
      clip.out_height > kMaxOutputSide) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": clip ", c, ": output size ", clip.out_width, "x", clip.out_height,
        " must be between 1 and ", kMaxOutputSide, " on each side"));
  }
  const CropRect& r = clip.crop;
  constexpr double kSlack = 1e-6;
  const bool finite = std::isfinite(r.x) && std::isfinite(r.y) && std::isfinite(r.width) &&
                      std::isfinite(r.height);
  if (!finite || r.width <= 0 || r.height <= 0 || r.x < -kSlack || r.y < -kSlack ||
      r.x + r.width > 1 + kSlack || r.y + r.height > 1 + kSlack) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": clip ", c, ": crop (x=", r.x, ", y=", r.y, ", width=", r.width, ", height=",
        r.height, ") must lie inside the unit square with a positive size"));
  }
  return absl::OkStatus();
}

VideoInfo InfoOf(const VideoIndex& index, const DecodeOptions& options) {
  VideoInfo info;
  const bool transposed = index.rotation_degrees == 90 || index.rotation_degrees == 270;
  info.width = transposed ? index.coded_height : index.coded_width;
  info.height = transposed ? index.coded_width : index.coded_height;
  info.rotation_degrees = index.rotation_degrees;
  info.duration_s = index.duration_s;
  info.codec = index.codec_name;
  if (options.fps > 0) {
    info.num_frames = index.NumFramesAt(av_d2q(options.fps, 1000000));
    info.fps = options.fps;
  } else {
    info.num_frames = index.num_frames();
    info.fps = index.fps;
  }
  return info;
}

// Where one needed frame goes: clip `clip`, output position `position`.
struct Use {
  int32_t clip;
  int32_t position;
};

// Decodes the needed frames of one call. Owns the demuxer and decoder of the call.
class ClipDecoder {
 public:
  ClipDecoder(std::shared_ptr<const VideoIndex> index, Deadline* deadline,
              const InputLimits& limits, absl::Span<const ClipRequest> clips,
              std::vector<ClipFrames>* out, DecodeStats* stats)
      : index_(std::move(index)),
        path_(index_->path),
        deadline_(deadline),
        limits_(limits),
        clips_(clips),
        out_(out),
        stats_(stats),
        writers_(clips.size()) {}

  // `sources[c][p]`: native frame for position p of clip c.
  absl::Status Run(const std::vector<std::vector<int64_t>>& sources);

 private:
  absl::Status Open();
  absl::Status OpenDecoder();
  absl::Status Reopen();
  // Gives the decoder the state a decode from the start of the file has at `start`
  // (CarriedState); a fresh decoder when one it was sent would contradict it.
  absl::Status CarryState(int32_t start);
  absl::Status DecodeWithRetries(const DecodeSpan& span);
  absl::Status Decode(const DecodeSpan& span, bool skip_nonref);
  absl::Status PositionAt(int32_t packet);
  bool LandOn(int32_t packet);
  // 0 on success; AVERROR_EOF at the end; another AVERROR on failure.
  int NextPacket(AVPacket* packet);
  absl::Status Send(const AVPacket* packet, const DecodeSpan& span);
  absl::Status ReceiveAll(const DecodeSpan& span);
  absl::Status OnFrame(const AVFrame& frame, const DecodeSpan& span);
  absl::Status WriteUses(int64_t slot, const AVFrame& picture);
  std::vector<int64_t> Missing(absl::Span<const int64_t> frames) const;
  // Forgets the frames written by the last Decode() so a retry writes them again.
  void UndoSpanWrites();
  int32_t KeyframeBefore(int32_t packet) const;
  // DATA_LOSS with kDamagedFramesPayload, for damage that decoding from `start` did not repair.
  absl::Status DamagedStatus(int32_t start) const;
  absl::Status SubstituteMissing();
  void NoteDecodeError(int averror);

  int64_t SlotOf(int64_t frame) const {
    auto it = std::lower_bound(needed_.begin(), needed_.end(), frame);
    return (it != needed_.end() && *it == frame) ? it - needed_.begin() : -1;
  }

  std::shared_ptr<const VideoIndex> index_;
  std::string path_;
  Deadline* deadline_;
  InputLimits limits_;
  absl::Span<const ClipRequest> clips_;
  std::vector<ClipFrames>* out_;
  DecodeStats* stats_;

  std::vector<int64_t> needed_;     // Distinct needed frames, sorted.
  std::vector<size_t> use_begin_;   // uses_[use_begin_[s] .. use_begin_[s+1]) for needed_[s].
  std::vector<Use> uses_;
  std::vector<bool> done_;          // Per needed_ slot.
  std::vector<std::vector<bool>> written_;  // Per clip position.

  std::unique_ptr<Demuxer> demuxer_;
  AvCodecContextPtr decoder_;
  AvPacketPtr packet_{av_packet_alloc()};
  AvPacketPtr pending_{av_packet_alloc()};  // Packet found by a seek, returned next.
  bool has_pending_ = false;
  AvFramePtr frame_{av_frame_alloc()};
  int32_t next_packet_ = 0;       // Decode index of the packet NextPacket() returns next.
  int64_t output_ordinal_ = 0;    // Frames output since the file start (ordinal mode).
  bool decoder_fresh_ = true;     // Nothing sent since the last flush.
  bool drained_ = false;
  AVDiscard skip_ = AVDISCARD_DEFAULT;
  std::vector<int64_t> nonref_sent_;  // pts of packets sent while skipping, this span.
  int64_t max_output_ts_ = INT64_MIN;
  size_t span_remaining_ = 0;  // Frames of the current span not yet written.
  std::vector<int64_t> span_written_;  // needed_ slots written by the current Decode().
  int64_t start_key_ts_ = INT64_MIN;  // pts of the keyframe the current Decode() started at.
  // Damage: a frame the decoder flags (decode_error_flags, AV_FRAME_FLAG_CORRUPT) at or after
  // start_key_ts_. Leading pictures of that keyframe (earlier timestamps) are not its business:
  // the planner never takes a needed frame from them.
  bool span_damaged_ = false;
  int damage_flags_ = 0;          // decode_error_flags of the damaged frames, OR-ed.
  bool damage_corrupt_ = false;   // Some had AV_FRAME_FLAG_CORRUPT.
  int64_t damaged_frame_ = -1;    // The first damaged frame (index), -1 if unknown.
  int decoder_x264_sei_ = -1;     // x264 build of the last x264 SEI the decoder was sent.
  std::string last_decode_error_;
  std::vector<FrameWriter> writers_;  // One per clip: each keeps its crop's swscale context.
};

absl::Status ClipDecoder::Run(const std::vector<std::vector<int64_t>>& sources) {
  std::vector<std::pair<int64_t, Use>> all;
  for (size_t c = 0; c < sources.size(); ++c) {
    for (size_t p = 0; p < sources[c].size(); ++p) {
      all.push_back({sources[c][p], Use{static_cast<int32_t>(c), static_cast<int32_t>(p)}});
    }
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    if (a.second.clip != b.second.clip) return a.second.clip < b.second.clip;
    return a.second.position < b.second.position;
  });
  for (const auto& [frame, use] : all) {
    if (needed_.empty() || needed_.back() != frame) {
      needed_.push_back(frame);
      use_begin_.push_back(uses_.size());
    }
    uses_.push_back(use);
  }
  use_begin_.push_back(uses_.size());
  done_.assign(needed_.size(), false);
  written_.resize(clips_.size());
  for (size_t c = 0; c < clips_.size(); ++c) written_[c].assign(clips_[c].frames.size(), false);
  if (needed_.empty()) return absl::OkStatus();

  TECL_RETURN_IF_ERROR(Open());
  std::vector<DecodeSpan> spans;
  if (index_->timestamps) {
    spans = PlanSpans(needed_, index_->frame_start, index_->frame_packet,
                      index_->intra_only ? kMinSeekGainPacketsIntra : kMinSeekGainPackets);
  } else {
    spans.push_back(DecodeSpan{0, static_cast<int32_t>(index_->packets.size()) - 1, needed_});
  }
  for (const DecodeSpan& span : spans) TECL_RETURN_IF_ERROR(DecodeWithRetries(span));
  return SubstituteMissing();
}

absl::Status ClipDecoder::Open() {
  TECL_ASSIGN_OR_RETURN(demuxer_, Demuxer::Open(path_, deadline_, limits_));
  if (demuxer_->stream_index() != index_->stream_index) {
    return absl::AbortedError(absl::StrCat(path_, ": the file changed while being read; retry"));
  }
  next_packet_ = 0;
  output_ordinal_ = 0;
  if (decoder_ != nullptr) return absl::OkStatus();
  return OpenDecoder();
}

absl::Status ClipDecoder::OpenDecoder() {
  const AVCodecParameters* par = demuxer_->stream()->codecpar;
  const AVCodec* codec = avcodec_find_decoder(par->codec_id);
  if (codec == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": no decoder for codec ", avcodec_get_name(par->codec_id),
        " in this FFmpeg build; transcode the file (e.g. to H.264)"));
  }
  decoder_.reset(avcodec_alloc_context3(codec));
  if (decoder_ == nullptr) return absl::ResourceExhaustedError("avcodec_alloc_context3 failed");
  int ret = avcodec_parameters_to_context(decoder_.get(), par);
  if (ret < 0) {
    return AvStatus(ret, path_, "decoder parameters", absl::StatusCode::kDataLoss, deadline_);
  }
  // One thread: the decode order is then exactly the send order, and skip_frame changes take
  // effect on the very next packet.
  decoder_->thread_count = 1;
  // A stream whose pictures grow past the limits mid-file is refused by the decoder.
  decoder_->max_pixels = int64_t{limits_.max_width} * limits_.max_height;
  decoder_->pkt_timebase = demuxer_->stream()->time_base;
  decoder_->has_b_frames = std::max(decoder_->has_b_frames, index_->reorder_depth);
  ret = avcodec_open2(decoder_.get(), codec, nullptr);
  if (ret < 0) {
    return AvStatus(ret, path_, absl::StrCat("the ", codec->name, " decoder cannot be opened"),
                    absl::StatusCode::kDataLoss, deadline_);
  }
  decoder_fresh_ = true;
  drained_ = false;
  skip_ = AVDISCARD_DEFAULT;
  decoder_x264_sei_ = -1;
  return absl::OkStatus();
}

absl::Status ClipDecoder::CarryState(int32_t start) {
  const CarriedState& carried = index_->carried;
  // The decoder keeps what an x264 SEI said across flushes and prefers it to its option.
  if (decoder_x264_sei_ > 0 && decoder_x264_sei_ != carried.X264BuildAt(start)) {
    decoder_.reset();
    TECL_RETURN_IF_ERROR(OpenDecoder());
  }
  ApplyCarriedState(carried, start, decoder_.get());
  return absl::OkStatus();
}

absl::Status ClipDecoder::Reopen() {
  has_pending_ = false;
  av_packet_unref(pending_.get());
  demuxer_.reset();
  return Open();
}

std::vector<int64_t> ClipDecoder::Missing(absl::Span<const int64_t> frames) const {
  std::vector<int64_t> missing;
  for (int64_t f : frames) {
    if (!done_[SlotOf(f)]) missing.push_back(f);
  }
  return missing;
}

void ClipDecoder::UndoSpanWrites() {
  for (int64_t slot : span_written_) {
    done_[slot] = false;
    for (size_t u = use_begin_[slot]; u < use_begin_[slot + 1]; ++u) {
      written_[uses_[u].clip][uses_[u].position] = false;
    }
  }
  stats_->frames_used -= static_cast<int64_t>(span_written_.size());
  span_written_.clear();
}

int32_t ClipDecoder::KeyframeBefore(int32_t packet) const {
  if (packet <= 0) return -1;
  for (int32_t p = packet - 1; p > 0; --p) {
    if (index_->packets[p].key) return p;
  }
  return 0;  // The first packet starts a decode whatever its flag.
}

absl::Status ClipDecoder::DecodeWithRetries(const DecodeSpan& span) {
  const bool timestamps = index_->timestamps;
  const bool skip = timestamps && !index_->intra_only && !index_->skip_unsafe.load();
  TECL_RETURN_IF_ERROR(Decode(span, skip));
  int32_t start = span.start_packet;
  if (span_damaged_) {
    // Damage that comes from starting at this keyframe (references or state from before it) is
    // repaired by starting at the one before; damage in the file is not.
    const int32_t earlier = timestamps ? KeyframeBefore(start) : -1;
    if (earlier < 0) return DamagedStatus(start);
    ++stats_->damage_retries;
    TECL_RETURN_IF_ERROR(Decode(DecodeSpan{earlier, span.end_packet, span.frames}, false));
    if (span_damaged_) return DamagedStatus(earlier);
    TECL_LOG(WARNING) << path_ << ": frames decoded from packet " << start
                      << " came out damaged; decoded from keyframe packet " << earlier
                      << " instead they are whole";
    start = earlier;
  }
  std::vector<int64_t> missing = Missing(span.frames);
  if (missing.empty() || !timestamps) return absl::OkStatus();

  auto retry_span = [&](int32_t start) {
    DecodeSpan retry{start, 0, missing};
    for (int64_t f : missing) retry.end_packet = std::max(retry.end_packet, index_->frame_packet[f]);
    return retry;
  };
  if (skip) {  // Discarding non-reference packets may have dropped a needed frame.
    TECL_RETURN_IF_ERROR(Decode(retry_span(start), false));
    if (span_damaged_) return DamagedStatus(start);
    std::vector<int64_t> still = Missing(missing);
    if (still.size() < missing.size()) {
      index_->skip_unsafe.store(true);
      TECL_LOG(WARNING) << path_ << ": discarding non-reference packets dropped needed frames;"
                        << " decoding every packet of this file from now on";
    }
    missing = std::move(still);
  }
  if (!missing.empty() && start > 0) {  // The keyframe did not lead to the frame.
    TECL_RETURN_IF_ERROR(Decode(retry_span(0), false));
    if (span_damaged_) return DamagedStatus(0);
  }
  return absl::OkStatus();
}

absl::Status ClipDecoder::DamagedStatus(int32_t start) const {
  struct FlagName {
    int flag;
    const char* name;
  };
  static constexpr FlagName kFlagNames[] = {
      {FF_DECODE_ERROR_INVALID_BITSTREAM, "invalid bitstream"},
      {FF_DECODE_ERROR_MISSING_REFERENCE, "missing reference"},
      {FF_DECODE_ERROR_CONCEALMENT_ACTIVE, "concealed errors"},
      {FF_DECODE_ERROR_DECODE_SLICES, "slice errors"}};
  std::string what;
  for (const FlagName& f : kFlagNames) {
    if (damage_flags_ & f.flag) absl::StrAppend(&what, what.empty() ? "" : ", ", f.name);
  }
  if (damage_corrupt_) absl::StrAppend(&what, what.empty() ? "" : ", ", "corrupt");
  absl::Status status = absl::DataLossError(absl::StrCat(
      path_, ": ", damaged_frame_ >= 0 ? absl::StrCat("frame ", damaged_frame_) : "a frame",
      " comes out of the ", index_->codec_name, " decoder damaged (", what,
      ") also when decoded from packet ", start,
      last_decode_error_.empty() ? "" : "; last decoder error: ", last_decode_error_,
      "; the file is damaged"));
  status.SetPayload(kDamagedFramesPayload, absl::Cord());
  return status;
}

absl::Status ClipDecoder::Decode(const DecodeSpan& span, bool skip_nonref) {
  TECL_RETURN_IF_ERROR(CarryState(span.start_packet));
  TECL_RETURN_IF_ERROR(PositionAt(span.start_packet));
  nonref_sent_.clear();
  max_output_ts_ = INT64_MIN;
  span_written_.clear();
  span_damaged_ = false;
  start_key_ts_ = index_->timestamps ? index_->packets[span.start_packet].pts : INT64_MIN;
  const bool timestamps = index_->timestamps;
  span_remaining_ = Missing(span.frames).size();
  // After a seek some demuxers (MPEG program streams) split the first packets differently from
  // the indexing read, so the count runs a packet or two behind the index's: read that many more
  // while frames are missing rather than decode the stretch again from the start of the file.
  const int32_t last_packet = span.end_packet + kEndSlackPackets;
  while (span_remaining_ > 0 && (!timestamps || next_packet_ <= last_packet)) {
    if (deadline_->Expired()) return deadline_->ExceededStatus(path_, "decoding");
    const int ret = NextPacket(packet_.get());
    if (ret == AVERROR_EOF) break;
    if (ret < 0) {
      if (ret == AVERROR_EXIT && deadline_->Expired()) {
        return deadline_->ExceededStatus(path_, "decoding");
      }
      NoteDecodeError(ret);  // A read error ends this stretch; the frames before it count.
      break;
    }
    bool needed = !timestamps;
    if (timestamps) {
      const int64_t frame = index_->FrameOfTimestamp(packet_->pts);
      const int64_t slot = frame >= 0 ? SlotOf(frame) : -1;
      needed = slot >= 0 && !done_[slot] &&
               std::binary_search(span.frames.begin(), span.frames.end(), frame);
      if (!needed && index_->intra_only) {  // Nothing depends on it: do not even decode it.
        ++stats_->packets_skipped;
        av_packet_unref(packet_.get());
        continue;
      }
    }
    // The decision is per packet, from the packet's own pts: a packet whose frame is not needed
    // may be dropped if nothing references it (AVDISCARD_NONREF); a needed one never is. With
    // one decoder thread the setting applies to exactly this packet. Should a packet carry
    // another frame than its pts says (packed B-frames), the frame would come out missing and
    // DecodeWithRetries decodes the stretch again without discarding (and remembers the file).
    const AVDiscard want = (skip_nonref && !needed) ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
    if (want != skip_) {
      decoder_->skip_frame = want;
      skip_ = want;
    }
    if (want == AVDISCARD_NONREF) nonref_sent_.push_back(packet_->pts);
    const absl::Status sent = Send(packet_.get(), span);
    av_packet_unref(packet_.get());
    TECL_RETURN_IF_ERROR(sent);
  }
  if (span_remaining_ > 0 && !drained_) {
    // Frames held back for reordering come out without decoding anything more.
    const int ret = avcodec_send_packet(decoder_.get(), nullptr);
    decoder_fresh_ = false;
    if (ret >= 0) {
      drained_ = true;
      TECL_RETURN_IF_ERROR(ReceiveAll(span));
    }
  }
  if (const int seen = index_->carried.LastX264BuildIn(span.start_packet, next_packet_ - 1);
      seen > 0) {
    decoder_x264_sei_ = seen;
  }
  if (span_damaged_) UndoSpanWrites();
  // Packets sent while skipping whose frame never came out although a later one did.
  std::sort(nonref_sent_.begin(), nonref_sent_.end());
  for (int64_t pts : nonref_sent_) {
    if (pts >= max_output_ts_) break;
    const int64_t frame = index_->FrameOfTimestamp(pts);
    if (frame >= 0) ++stats_->packets_skipped;
  }
  return absl::OkStatus();
}

absl::Status ClipDecoder::Send(const AVPacket* packet, const DecodeSpan& span) {
  decoder_fresh_ = false;
  int ret = avcodec_send_packet(decoder_.get(), packet);
  while (ret == AVERROR(EAGAIN)) {
    TECL_RETURN_IF_ERROR(ReceiveAll(span));
    ret = avcodec_send_packet(decoder_.get(), packet);
  }
  if (ret < 0) NoteDecodeError(ret);  // A damaged packet: conceal and go on, as players do.
  return ReceiveAll(span);
}

absl::Status ClipDecoder::ReceiveAll(const DecodeSpan& span) {
  while (true) {
    const int ret = avcodec_receive_frame(decoder_.get(), frame_.get());
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return absl::OkStatus();
    if (ret < 0) {
      NoteDecodeError(ret);
      return absl::OkStatus();
    }
    const absl::Status status = OnFrame(*frame_, span);
    av_frame_unref(frame_.get());
    TECL_RETURN_IF_ERROR(status);
  }
}

absl::Status ClipDecoder::OnFrame(const AVFrame& frame, const DecodeSpan& span) {
  ++stats_->frames_decoded;
  int64_t index_frame;
  int64_t ts = INT64_MAX;  // Ordinal mode: every frame counts for damage.
  if (index_->timestamps) {
    ts = frame.pts != AV_NOPTS_VALUE ? frame.pts : frame.best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE && max_output_ts_ == INT64_MIN &&
        frame.pict_type == AV_PICTURE_TYPE_I) {
      // The first picture of a decode started at a keyframe, with no timestamp: a demuxer that
      // split the keyframe's picture over two packets after the seek (MPEG program streams) gave
      // the decoder the second part's, none. It is the keyframe's picture.
      ts = start_key_ts_;
    }
    max_output_ts_ = std::max(max_output_ts_, ts);
    index_frame = index_->FrameOfTimestamp(ts);
  } else {
    index_frame = output_ordinal_++;
  }
  if ((frame.decode_error_flags != 0 || (frame.flags & AV_FRAME_FLAG_CORRUPT) != 0) &&
      ts >= start_key_ts_) {
    if (!span_damaged_) damaged_frame_ = index_frame;
    span_damaged_ = true;
    damage_flags_ |= frame.decode_error_flags;
    damage_corrupt_ |= (frame.flags & AV_FRAME_FLAG_CORRUPT) != 0;
    return absl::OkStatus();  // Not written: the stretch is decoded again or the file is bad.
  }
  if (index_frame < 0 ||
      !std::binary_search(span.frames.begin(), span.frames.end(), index_frame)) {
    return absl::OkStatus();
  }
  const int64_t slot = SlotOf(index_frame);
  if (slot < 0 || done_[slot]) return absl::OkStatus();
  if (frame.width <= 0 || frame.height <= 0 || frame.data[0] == nullptr) return absl::OkStatus();
  TECL_RETURN_IF_ERROR(WriteUses(slot, frame));
  done_[slot] = true;
  span_written_.push_back(slot);
  --span_remaining_;
  ++stats_->frames_used;
  return absl::OkStatus();
}

absl::Status ClipDecoder::WriteUses(int64_t slot, const AVFrame& picture) {
  int32_t previous_clip = -1;
  int32_t previous_position = -1;
  for (size_t u = use_begin_[slot]; u < use_begin_[slot + 1]; ++u) {
    const Use& use = uses_[u];
    const ClipRequest& clip = clips_[use.clip];
    ClipFrames& out = (*out_)[use.clip];
    const size_t frame_bytes = static_cast<size_t>(out.height) * out.width * 3;
    uint8_t* dst = out.data.data() + frame_bytes * use.position;
    if (use.clip == previous_clip) {  // The same frame again in the same clip: copy it.
      std::memcpy(dst, out.data.data() + frame_bytes * previous_position, frame_bytes);
    } else {
      const absl::Status status = writers_[use.clip].Write(picture, clip.crop, index_->rotation_degrees,
                                                clip.flip, clip.out_width, clip.out_height, dst);
      if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path_, ": ", status.message()));
    }
    written_[use.clip][use.position] = true;
    previous_clip = use.clip;
    previous_position = use.position;
  }
  return absl::OkStatus();
}

absl::Status ClipDecoder::SubstituteMissing() {
  for (size_t slot = 0; slot < needed_.size(); ++slot) {
    if (done_[slot]) continue;
    for (size_t u = use_begin_[slot]; u < use_begin_[slot + 1]; ++u) {
      const Use& use = uses_[u];
      const std::vector<bool>& written = written_[use.clip];
      int32_t best = -1;
      for (int32_t d = 1; d < static_cast<int32_t>(written.size()) && best < 0; ++d) {
        if (use.position - d >= 0 && written[use.position - d]) best = use.position - d;
        else if (use.position + d < static_cast<int32_t>(written.size()) &&
                 written[use.position + d]) best = use.position + d;
      }
      if (best < 0) {
        return absl::DataLossError(absl::StrCat(
            path_, ": frame ", needed_[slot], " cannot be decoded and its clip has no decodable ",
            "frame to stand in (", stats_->frames_decoded, " frames decoded",
            last_decode_error_.empty() ? "" : "; last decoder error: ", last_decode_error_,
            "); the file is damaged"));
      }
      ClipFrames& out = (*out_)[use.clip];
      const size_t frame_bytes = static_cast<size_t>(out.height) * out.width * 3;
      std::memcpy(out.data.data() + frame_bytes * use.position,
                  out.data.data() + frame_bytes * best, frame_bytes);
    }
    ++stats_->frames_substituted;
  }
  if (stats_->frames_substituted > 0) {
    TECL_LOG(WARNING) << path_ << ": " << stats_->frames_substituted
                      << " frame(s) could not be decoded and were replaced by their clip's "
                      << "nearest decoded frame"
                      << (last_decode_error_.empty() ? "" : "; last decoder error: ")
                      << last_decode_error_;
  }
  return absl::OkStatus();
}

void ClipDecoder::NoteDecodeError(int averror) {
  last_decode_error_ = AvErrorString(averror);
  const std::string detail = LastFfmpegError();
  if (!detail.empty()) absl::StrAppend(&last_decode_error_, " (", detail, ")");
}

int ClipDecoder::NextPacket(AVPacket* packet) {
  if (has_pending_) {
    av_packet_move_ref(packet, pending_.get());
    has_pending_ = false;
    ++next_packet_;
    return 0;
  }
  const int ret = demuxer_->ReadVideoPacket(packet);
  if (ret >= 0) ++next_packet_;
  return ret;
}

// Orders a packet read after a seek against the index entry it should be.
int ComparePacket(const AVPacket& packet, const VideoIndex::Packet& target) {
  if (packet.pos >= 0 && target.pos >= 0) {
    return packet.pos < target.pos ? -1 : (packet.pos > target.pos ? 1 : 0);
  }
  if (packet.dts != AV_NOPTS_VALUE && target.dts != AV_NOPTS_VALUE && packet.dts != target.dts) {
    return packet.dts < target.dts ? -1 : 1;
  }
  if (packet.pts != AV_NOPTS_VALUE && packet.pts == target.pts) return 0;
  return -1;  // Cannot tell: keep reading.
}

bool ClipDecoder::LandOn(int32_t target) {
  const VideoIndex::Packet& want = index_->packets[target];
  while (!deadline_->Expired()) {
    if (demuxer_->ReadVideoPacket(pending_.get()) < 0) return false;
    const int order = ComparePacket(*pending_, want);
    if (order == 0) {
      has_pending_ = true;
      next_packet_ = target;
      return true;
    }
    av_packet_unref(pending_.get());
    if (order > 0) return false;  // The seek landed past the keyframe.
  }
  return false;
}

absl::Status ClipDecoder::PositionAt(int32_t target) {
  if (!decoder_fresh_) {
    avcodec_flush_buffers(decoder_.get());
    decoder_fresh_ = true;
    drained_ = false;
  }
  if (!index_->timestamps) {  // Ordinal mode: frames are counted from the file start.
    if (next_packet_ != 0 || has_pending_) TECL_RETURN_IF_ERROR(Reopen());
    return absl::OkStatus();
  }
  if (next_packet_ <= target && target - next_packet_ <= kReadForwardPackets) {
    while (next_packet_ < target) {
      const int ret = NextPacket(packet_.get());
      av_packet_unref(packet_.get());
      if (ret < 0) break;
    }
    if (next_packet_ == target) return absl::OkStatus();
  }
  has_pending_ = false;
  av_packet_unref(pending_.get());
  const VideoIndex::Packet& key = index_->packets[target];
  for (int64_t ts : {key.pts, key.dts}) {
    if (ts == AV_NOPTS_VALUE) continue;
    if (deadline_->Expired()) return deadline_->ExceededStatus(path_, "seeking");
    ++stats_->seeks;
    const int ret = av_seek_frame(demuxer_->format(), demuxer_->stream_index(), ts,
                                  AVSEEK_FLAG_BACKWARD);
    if (ret < 0) {
      if (ret == AVERROR_EXIT && deadline_->Expired()) {
        return deadline_->ExceededStatus(path_, "seeking");
      }
      continue;
    }
    if (LandOn(target)) return absl::OkStatus();
    if (key.dts == key.pts) break;
  }
  if (deadline_->Expired()) return deadline_->ExceededStatus(path_, "seeking");
  // The container cannot seek there (no index, e.g. MKV without cues): read from the start.
  TECL_RETURN_IF_ERROR(Reopen());
  while (next_packet_ < target) {
    if (deadline_->Expired()) return deadline_->ExceededStatus(path_, "reading to a keyframe");
    const int ret = NextPacket(packet_.get());
    av_packet_unref(packet_.get());
    if (ret < 0) {
      return AvStatus(ret == AVERROR_EOF ? AVERROR_INVALIDDATA : ret, path_,
                      absl::StrCat("packet ", target, " of the index cannot be reached"),
                      absl::StatusCode::kDataLoss, deadline_);
    }
  }
  return absl::OkStatus();
}

}  // namespace

struct VideoIndexCache::Impl {
  Impl(size_t capacity, size_t max_bytes) : capacity(capacity), max_bytes(max_bytes) {}
  const size_t capacity;
  const size_t max_bytes;
  mutable absl::Mutex mu;
  size_t bytes ABSL_GUARDED_BY(mu) = 0;
  // Most recently used first.
  std::list<std::shared_ptr<const VideoIndex>> lru ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::list<std::shared_ptr<const VideoIndex>>::iterator> by_path
      ABSL_GUARDED_BY(mu);
};

VideoIndexCache::VideoIndexCache(size_t capacity, size_t max_bytes)
    : impl_(std::make_unique<Impl>(capacity, max_bytes)) {}
VideoIndexCache::~VideoIndexCache() = default;

size_t VideoIndexCache::size() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->lru.size();
}

size_t VideoIndexCache::bytes() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->bytes;
}

absl::StatusOr<std::shared_ptr<const VideoIndex>> VideoIndexCache::Get(
    const std::string& path, const DecodeOptions& options) {
  TECL_ASSIGN_OR_RETURN(FileIdentity identity, StatVideoFile(path));
  {
    absl::MutexLock lock(&impl_->mu);
    auto it = impl_->by_path.find(path);
    if (it != impl_->by_path.end()) {
      if ((*it->second)->identity == identity) {
        impl_->lru.splice(impl_->lru.begin(), impl_->lru, it->second);
        return *it->second;
      }
      impl_->bytes -= (*it->second)->MemoryBytes();  // The file changed: index it again.
      impl_->lru.erase(it->second);
      impl_->by_path.erase(it);
    }
  }
  if (options.budget <= absl::ZeroDuration()) {
    return absl::DeadlineExceededError(
        absl::StrCat(path, ": no time left in the budget to index the video"));
  }
  Deadline deadline(options.budget);
  TECL_ASSIGN_OR_RETURN(std::shared_ptr<const VideoIndex> index,
                        BuildIndex(path, &deadline, options.limits));
  const size_t index_bytes = index->MemoryBytes();
  if (impl_->capacity == 0 || index_bytes > impl_->max_bytes) return index;
  absl::MutexLock lock(&impl_->mu);
  auto it = impl_->by_path.find(path);
  if (it != impl_->by_path.end()) {  // Built concurrently by another caller.
    impl_->bytes -= (*it->second)->MemoryBytes();
    impl_->lru.erase(it->second);
    impl_->by_path.erase(it);
  }
  impl_->lru.push_front(index);
  impl_->by_path[path] = impl_->lru.begin();
  impl_->bytes += index_bytes;
  while (impl_->lru.size() > impl_->capacity || impl_->bytes > impl_->max_bytes) {
    impl_->bytes -= impl_->lru.back()->MemoryBytes();
    impl_->by_path.erase(impl_->lru.back()->path);
    impl_->lru.pop_back();
  }
  return index;
}

IndexLoadCounts GetIndexLoadCounts() {
  IndexLoadCounts counts;
  counts.stored = g_index_loads[0].load(std::memory_order_relaxed);
  counts.built = g_index_loads[1].load(std::memory_order_relaxed);
  counts.stale = g_index_loads[2].load(std::memory_order_relaxed);
  counts.corrupt = g_index_loads[3].load(std::memory_order_relaxed);
  return counts;
}

absl::StatusOr<VideoInfo> ProbeVideo(const std::string& path, const DecodeOptions& options,
                                     VideoIndexCache* cache) {
  TECL_RETURN_IF_ERROR(ValidateOptions(path, options));
  Deadline deadline(options.budget);
  TECL_ASSIGN_OR_RETURN(std::shared_ptr<const VideoIndex> index,
                        GetIndex(path, options, &deadline, cache));
  VideoInfo info = InfoOf(*index, options);
  if (info.num_frames > options.limits.max_frames) {
    return WithRefusal(
        absl::InvalidArgumentError(absl::StrCat(
            path, ": at ", options.fps, " fps the video has ", info.num_frames,
            " frames, more than the limit of ", options.limits.max_frames,
            " (--max_video_frames); cut it into shorter videos")),
        kRefusalTooLarge);
  }
  return info;
}

absl::Status DecodeClips(const std::string& path, absl::Span<const ClipRequest> clips,
                         const DecodeOptions& options, VideoIndexCache* cache,
                         std::vector<ClipFrames>* out, DecodeStats* stats) {
  const absl::Time start = absl::Now();
  DecodeStats local_stats;
  DecodeStats& st = stats != nullptr ? *stats : local_stats;
  st = DecodeStats{};
  TECL_RETURN_IF_ERROR(ValidateOptions(path, options));
  uint64_t total_bytes = 0;
  for (size_t c = 0; c < clips.size(); ++c) {
    TECL_RETURN_IF_ERROR(ValidateClip(path, c, clips[c]));
    total_bytes += uint64_t{3} * clips[c].out_width * clips[c].out_height * clips[c].frames.size();
  }
  if (total_bytes > kMaxOutputBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": the clips ask for ", total_bytes, " bytes of frames in one call; split the call"));
  }
  Deadline deadline(options.budget);
  TECL_ASSIGN_OR_RETURN(std::shared_ptr<const VideoIndex> index,
                        GetIndex(path, options, &deadline, cache));

  const bool resample = options.fps > 0;
  const AVRational rate = resample ? av_d2q(options.fps, 1000000) : AVRational{0, 1};
  const int64_t available = resample ? index->NumFramesAt(rate) : index->num_frames();
  std::vector<std::vector<int64_t>> sources(clips.size());
  for (size_t c = 0; c < clips.size(); ++c) {
    sources[c].reserve(clips[c].frames.size());
    for (int64_t k : clips[c].frames) {
      if (k < 0 || k >= available) {
        return absl::OutOfRangeError(absl::StrCat(
            path, ": clip ", c, " asks for frame ", k, " but the video has ", available,
            " frames", resample ? absl::StrCat(" at ", options.fps, " fps") : std::string()));
      }
      sources[c].push_back(resample ? index->SourceFrameAt(k, rate) : k);
    }
  }
  out->clear();
  out->resize(clips.size());
  for (size_t c = 0; c < clips.size(); ++c) {
    ClipFrames& clip = (*out)[c];
    clip.frames = static_cast<int>(clips[c].frames.size());
    clip.height = clips[c].out_height;
    clip.width = clips[c].out_width;
    clip.data.assign(static_cast<size_t>(clip.frames) * clip.height * clip.width * 3, 0);
  }
  ClipDecoder decoder(index, &deadline, options.limits, clips, out, &st);
  const absl::Status status = decoder.Run(sources);
  st.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return status;
}

}  // namespace tecl::video
