#include "services/dataloader/video/stored_index.h"

#include <openssl/sha.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/common/file_util.h"

namespace tecl::video {
namespace {

constexpr char kMagic[8] = {'T', 'E', 'C', 'L', 'I', 'D', 'X', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 8 + 4 + 8 + SHA256_DIGEST_LENGTH;
constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 30;
constexpr size_t kMaxCodecName = 64;
constexpr int kMaxReorderDepth = 16;  // As BuildVideoIndex caps it.
constexpr size_t kPacketBytes = 8 + 8 + 8 + 1;
constexpr size_t kFrameBytes = 8 + 4 + 4;
constexpr size_t kX264Bytes = 4 + 4;

class Writer {
 public:
  void U8(uint8_t v) { bytes_.push_back(v); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void F64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    U64(bits);
  }
  void Str(const std::string& s) {
    U32(static_cast<uint32_t>(s.size()));
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Reads the payload; every read is bounds-checked (ok() false after any overrun).
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return ok_ ? size_ - at_ : 0; }
  uint8_t U8() { return Take(1) ? data_[at_ - 1] : 0; }
  uint32_t U32() {
    if (!Take(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{data_[at_ - 4 + i]} << (8 * i);
    return v;
  }
  uint64_t U64() {
    if (!Take(8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{data_[at_ - 8 + i]} << (8 * i);
    return v;
  }
  int32_t I32() { return static_cast<int32_t>(U32()); }
  int64_t I64() { return static_cast<int64_t>(U64()); }
  double F64() {
    const uint64_t bits = U64();
    double v;
    std::memcpy(&v, &bits, sizeof(v));
    return v;
  }
  std::string Str(size_t max) {
    const uint32_t n = U32();
    if (n > max || !Take(n)) {
      ok_ = false;
      return {};
    }
    return std::string(reinterpret_cast<const char*>(data_ + at_ - n), n);
  }

 private:
  bool Take(size_t n) {
    if (!ok_ || n > size_ - at_) {
      ok_ = false;
      return false;
    }
    at_ += n;
    return true;
  }
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
  bool ok_ = true;
};

absl::Status Corrupt(const std::string& path, const std::string& what) {
  return absl::DataLossError(
      absl::StrCat(path, ": stored index rejected: ", what, "; the index is built from the video"));
}

}  // namespace

absl::Status WriteStoredIndex(const VideoIndex& index, const std::string& video_path) {
  Writer w;
  w.I64(index.identity.size);
  w.I64(index.identity.mtime_ns);
  w.I32(index.stream_index);
  w.I32(index.time_base.num);
  w.I32(index.time_base.den);
  w.I32(static_cast<int32_t>(index.codec_id));
  w.Str(index.codec_name.substr(0, kMaxCodecName));
  w.I32(index.coded_width);
  w.I32(index.coded_height);
  w.I32(index.rotation_degrees);
  w.U8(index.timestamps ? 1 : 0);
  w.U8(index.intra_only ? 1 : 0);
  w.I32(index.reorder_depth);
  w.I32(index.ts_base.num);
  w.I32(index.ts_base.den);
  w.I64(index.duration_ts);
  w.F64(index.duration_s);
  w.F64(index.fps);
  w.U64(index.packets.size());
  for (const VideoIndex::Packet& p : index.packets) {
    w.I64(p.pts);
    w.I64(p.dts);
    w.I64(p.pos);
    w.U8(static_cast<uint8_t>((p.key ? 1 : 0) | (p.discard ? 2 : 0)));
  }
  w.U64(index.frame_ts.size());
  for (size_t k = 0; k < index.frame_ts.size(); ++k) {
    w.I64(index.frame_ts[k]);
    w.I32(index.frame_packet[k]);
    w.I32(index.frame_start[k]);
  }
  w.U64(index.carried.x264_versions.size());
  for (const CarriedState::X264Version& v : index.carried.x264_versions) {
    w.I32(v.packet);
    w.I32(v.build);
  }
  const std::vector<uint8_t>& payload = w.bytes();
  Writer header;
  for (char c : kMagic) header.U8(static_cast<uint8_t>(c));
  header.U32(kVersion);
  header.U64(payload.size());
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(payload.data(), payload.size(), digest);
  header.bytes().insert(header.bytes().end(), digest, digest + sizeof(digest));

  std::vector<uint8_t>& file = header.bytes();
  file.insert(file.end(), payload.begin(), payload.end());
  return WriteFileAtomically(
      StoredIndexPath(video_path),
      absl::string_view(reinterpret_cast<const char*>(file.data()), file.size()));
}

absl::StatusOr<std::shared_ptr<VideoIndex>> ReadStoredIndex(const std::string& video_path,
                                                            const FileIdentity& identity,
                                                            const InputLimits& limits,
                                                            StoredIndexRejection* rejection) {
  StoredIndexRejection ignored;
  StoredIndexRejection& why = rejection != nullptr ? *rejection : ignored;
  why = StoredIndexRejection::kCorrupt;
  const std::string path = StoredIndexPath(video_path);
  std::error_code error;
  const uintmax_t file_size = std::filesystem::file_size(path, error);
  if (error) {
    why = StoredIndexRejection::kMissing;
    return absl::NotFoundError(absl::StrCat(path, ": no stored index"));
  }
  if (file_size < kHeaderBytes || file_size - kHeaderBytes > kMaxPayloadBytes) {
    return Corrupt(path, absl::StrCat("its size ", file_size, " is not that of an index"));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(file_size));
  {
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!in) return Corrupt(path, "cannot read it");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) return Corrupt(path, "bad magic");
  Reader header(bytes.data() + 8, 12);
  const uint32_t version = header.U32();
  const uint64_t length = header.U64();
  if (version != kVersion) return Corrupt(path, absl::StrCat("format version ", version));
  if (length != file_size - kHeaderBytes) {
    return Corrupt(path, absl::StrCat("payload length ", length, " but ",
                                      file_size - kHeaderBytes, " bytes follow (truncated?)"));
  }
  const uint8_t* payload = bytes.data() + kHeaderBytes;
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(payload, static_cast<size_t>(length), digest);
  if (std::memcmp(digest, bytes.data() + 20, sizeof(digest)) != 0) {
    return Corrupt(path, "checksum mismatch");
  }

  Reader r(payload, static_cast<size_t>(length));
  auto index = std::make_shared<VideoIndex>();
  index->path = video_path;
  index->identity.size = r.I64();
  index->identity.mtime_ns = r.I64();
  if (!(index->identity == identity)) {
    why = StoredIndexRejection::kStale;
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": stored index of another version of the video (size ", index->identity.size,
        ", mtime ", index->identity.mtime_ns, " ns; now ", identity.size, ", ",
        identity.mtime_ns, "); the index is built from the video"));
  }
  index->stream_index = r.I32();
  index->time_base = {r.I32(), r.I32()};
  index->codec_id = static_cast<AVCodecID>(r.I32());
  index->codec_name = r.Str(kMaxCodecName);
  index->coded_width = r.I32();
  index->coded_height = r.I32();
  index->rotation_degrees = r.I32();
  index->timestamps = r.U8() != 0;
  index->intra_only = r.U8() != 0;
  index->reorder_depth = r.I32();
  index->ts_base = {r.I32(), r.I32()};
  index->duration_ts = r.I64();
  index->duration_s = r.F64();
  index->fps = r.F64();
  if (!r.ok()) return Corrupt(path, "truncated stream fields");
  if (index->stream_index < 0 || index->time_base.num <= 0 || index->time_base.den <= 0 ||
      index->ts_base.num <= 0 || index->ts_base.den <= 0) {
    return Corrupt(path, "a stream index or time base out of range");
  }
  if (index->coded_width < 0 || index->coded_width > limits.max_width ||
      index->coded_height < 0 || index->coded_height > limits.max_height) {
    return Corrupt(path, absl::StrCat("coded size ", index->coded_width, "x", index->coded_height,
                                      " outside the limits"));
  }
  if (index->rotation_degrees % 90 != 0 || index->rotation_degrees < 0 ||
      index->rotation_degrees > 270 || index->reorder_depth < 0 ||
      index->reorder_depth > kMaxReorderDepth) {
    return Corrupt(path, "rotation or reorder depth out of range");
  }
  if (!(index->duration_s >= 0) || !(index->fps >= 0) || index->duration_ts < 0) {
    return Corrupt(path, "negative or NaN duration");
  }

  // Counts are checked against the limits and the bytes present before anything is sized.
  const uint64_t packets = r.U64();
  if (packets == 0 || packets > static_cast<uint64_t>(limits.max_frames) ||
      packets > r.remaining() / kPacketBytes) {
    return Corrupt(path, absl::StrCat(packets, " packets"));
  }
  index->packets.resize(static_cast<size_t>(packets));
  for (VideoIndex::Packet& p : index->packets) {
    p.pts = r.I64();
    p.dts = r.I64();
    p.pos = r.I64();
    const uint8_t flags = r.U8();
    p.key = (flags & 1) != 0;
    p.discard = (flags & 2) != 0;
    if (p.pos < -1 || p.pos >= identity.size) {
      return Corrupt(path, absl::StrCat("packet byte position ", p.pos, " outside the video"));
    }
  }
  const uint64_t frames = r.U64();
  if (frames == 0 || frames > packets || frames > r.remaining() / kFrameBytes) {
    return Corrupt(path, absl::StrCat(frames, " frames for ", packets, " packets"));
  }
  index->frame_ts.resize(static_cast<size_t>(frames));
  index->frame_packet.resize(static_cast<size_t>(frames));
  index->frame_start.resize(static_cast<size_t>(frames));
  for (size_t k = 0; k < frames; ++k) {
    index->frame_ts[k] = r.I64();
    index->frame_packet[k] = r.I32();
    index->frame_start[k] = r.I32();
    const int64_t n = static_cast<int64_t>(packets);
    if (index->frame_packet[k] < 0 || index->frame_packet[k] >= n ||
        index->frame_start[k] < 0 || index->frame_start[k] > index->frame_packet[k]) {
      return Corrupt(path, absl::StrCat("frame ", k, " refers to packet ", index->frame_packet[k],
                                        " from ", index->frame_start[k], " of ", packets));
    }
    if (k > 0 && index->frame_ts[k] <= index->frame_ts[k - 1]) {
      return Corrupt(path, absl::StrCat("frame ", k, ": timestamps not increasing"));
    }
  }
  const uint64_t versions = r.U64();
  if (versions > packets || versions > r.remaining() / kX264Bytes) {
    return Corrupt(path, absl::StrCat(versions, " x264 versions"));
  }
  index->carried.x264_versions.resize(static_cast<size_t>(versions));
  for (CarriedState::X264Version& v : index->carried.x264_versions) {
    v.packet = r.I32();
    v.build = r.I32();
    if (v.packet < 0 || static_cast<uint64_t>(v.packet) >= packets) {
      return Corrupt(path, "an x264 version refers to a packet out of range");
    }
  }
  if (!r.ok() || r.remaining() != 0) return Corrupt(path, "trailing or missing bytes");
  why = StoredIndexRejection::kNone;
  return index;
}

}  // namespace tecl::video
