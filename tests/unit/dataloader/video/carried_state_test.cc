// ParseX264Build on hand-made H.264 access units (both NAL framings, emulation prevention, long
// payloads, several SEI messages, damaged data) and CarriedState's lookups.
#include "services/dataloader/video/carried_state.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tecl::video {
namespace {

using Bytes = std::vector<uint8_t>;

// x264's UUID; any 16 bytes would do (FFmpeg does not check them).
const Bytes kUuid = {0xdc, 0x45, 0xe9, 0xbd, 0xe6, 0xd9, 0x48, 0xb7,
                     0x96, 0x2c, 0xd8, 0x20, 0xd9, 0x23, 0xee, 0xef};
const Bytes kAud = {0x09, 0xf0};
const Bytes kIdrSlice = {0x65, 0x88, 0x84, 0x00, 0x21};

// One SEI message: type and size coded in 255-steps, then the payload.
Bytes SeiMessage(int type, const Bytes& payload) {
  Bytes out;
  for (; type >= 255; type -= 255) out.push_back(255);
  out.push_back(static_cast<uint8_t>(type));
  size_t size = payload.size();
  for (; size >= 255; size -= 255) out.push_back(255);
  out.push_back(static_cast<uint8_t>(size));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Bytes UserData(const std::string& text, const Bytes& uuid = kUuid) {
  Bytes payload = uuid;
  payload.insert(payload.end(), text.begin(), text.end());
  return payload;
}

// An SEI NAL unit (header 0x06) of `messages`, with RBSP trailing bits and emulation prevention.
Bytes SeiNal(const std::vector<Bytes>& messages) {
  Bytes rbsp;
  for (const Bytes& m : messages) rbsp.insert(rbsp.end(), m.begin(), m.end());
  rbsp.push_back(0x80);
  Bytes nal = {0x06};
  int zeros = 0;
  for (uint8_t b : rbsp) {
    if (zeros >= 2 && b <= 3) {
      nal.push_back(3);
      zeros = 0;
    }
    nal.push_back(b);
    zeros = b == 0 ? zeros + 1 : 0;
  }
  return nal;
}

Bytes AnnexB(const std::vector<Bytes>& nals) {
  Bytes out;
  for (const Bytes& nal : nals) {
    out.insert(out.end(), {0, 0, 0, 1});
    out.insert(out.end(), nal.begin(), nal.end());
  }
  return out;
}

Bytes LengthPrefixed(const std::vector<Bytes>& nals, int length_size) {
  Bytes out;
  for (const Bytes& nal : nals) {
    for (int i = length_size - 1; i >= 0; --i) {
      out.push_back(static_cast<uint8_t>(nal.size() >> (8 * i)));
    }
    out.insert(out.end(), nal.begin(), nal.end());
  }
  return out;
}

int Parse(const Bytes& data, int nal_length_size) {
  return ParseX264Build(data.data(), data.size(), nal_length_size);
}

const std::string kX264Text =
    "x264 - core 150 r2833 df79067 - H.264/MPEG-4 AVC codec - Copyleft 2003-2017 - "
    "http://www.videolan.org/x264.html - options: cabac=1 ref=3 deblock=1:0:0 analyse=0x3:0x113 "
    "me=hex subme=7 psy=1 psy_rd=1.00:0.00 mixed_ref=1 me_range=16 chroma_me=1 trellis=1 8x8dct=1";

TEST(ParseX264BuildTest, ReadsTheVersionInBothNalFramings) {
  const std::vector<Bytes> unit = {kAud, SeiNal({SeiMessage(5, UserData(kX264Text))}), kIdrSlice};
  ASSERT_GT(kX264Text.size(), 255u);  // The size takes two bytes.
  EXPECT_EQ(Parse(AnnexB(unit), 0), 150);
  EXPECT_EQ(Parse(LengthPrefixed(unit, 4), 4), 150);
  EXPECT_EQ(Parse(LengthPrefixed(unit, 2), 2), 150);
  const std::vector<Bytes> short_unit = {SeiNal({SeiMessage(5, UserData("x264 - core 148"))}),
                                         kIdrSlice};
  EXPECT_EQ(Parse(LengthPrefixed(short_unit, 1), 1), 148);
}

TEST(ParseX264BuildTest, RemovesEmulationPreventionAndReadsEveryMessage) {
  const Bytes zero_uuid(16, 0);  // Escaped on the wire as 00 00 03 00 00 03 ...
  const Bytes recovery_point = {0x84};
  const std::vector<Bytes> unit = {
      SeiNal({SeiMessage(6, recovery_point), SeiMessage(5, UserData("not x264")),
              SeiMessage(5, UserData("x264 - core 142 r2431", zero_uuid))}),
      kIdrSlice};
  const Bytes wire = AnnexB(unit);
  EXPECT_NE(std::string(wire.begin(), wire.end()).find(std::string("\0\0\3", 3)), std::string::npos);
  EXPECT_EQ(Parse(wire, 0), 142);
}

TEST(ParseX264BuildTest, NamesNoVersionWhenThereIsNone) {
  EXPECT_EQ(Parse(AnnexB({kAud, kIdrSlice}), 0), -1);
  EXPECT_EQ(Parse(AnnexB({SeiNal({SeiMessage(5, UserData("Lavc59.37.100"))}), kIdrSlice}), 0), -1);
  EXPECT_EQ(Parse(AnnexB({SeiNal({SeiMessage(5, UserData("x264 - core 0"))})}), 0), -1);
  EXPECT_EQ(Parse(AnnexB({SeiNal({SeiMessage(5, Bytes(10, 'x'))})}), 0), -1);  // Under 16 bytes.
  // After the first slice: not this access unit's SEI.
  EXPECT_EQ(Parse(AnnexB({kIdrSlice, SeiNal({SeiMessage(5, UserData(kX264Text))})}), 0), -1);
  EXPECT_EQ(Parse({}, 0), -1);
  EXPECT_EQ(Parse({}, 4), -1);
}

TEST(ParseX264BuildTest, DamagedDataEndsTheScanWithoutReadingPastIt) {
  const Bytes sei = SeiNal({SeiMessage(5, UserData(kX264Text))});
  const Bytes truncated_sei(sei.begin(), sei.begin() + 40);  // Its size says more than follows.
  EXPECT_EQ(Parse(AnnexB({truncated_sei}), 0), -1);
  Bytes wire = LengthPrefixed({sei, kIdrSlice}, 4);
  wire[2] = 0xff;  // The first NAL unit claims more bytes than the packet holds.
  EXPECT_EQ(Parse(wire, 4), -1);
  // Every cut of a whole access unit is read within its bytes (sanitizers check) and names the
  // version only when the whole SEI is there.
  const Bytes annexb = AnnexB({sei, kIdrSlice});
  for (size_t cut = 0; cut <= annexb.size(); ++cut) {
    const int build = Parse(Bytes(annexb.begin(), annexb.begin() + cut), 0);
    EXPECT_TRUE(build == -1 || build == 150) << cut;
  }
  const Bytes prefixed = LengthPrefixed({sei, kIdrSlice}, 4);
  for (size_t cut = 0; cut <= prefixed.size(); ++cut) {
    EXPECT_EQ(Parse(Bytes(prefixed.begin(), prefixed.begin() + cut), 4),
              cut >= 4 + sei.size() ? 150 : -1)
        << cut;
  }
}

TEST(CarriedStateTest, BuildInEffectIsThatOfTheLastSeiAtOrBeforeThePacket) {
  CarriedState state;
  EXPECT_EQ(state.X264BuildAt(0), -1);
  state.x264_versions = {{0, 150}, {40, 164}};
  EXPECT_EQ(state.X264BuildAt(0), 150);
  EXPECT_EQ(state.X264BuildAt(39), 150);
  EXPECT_EQ(state.X264BuildAt(40), 164);
  EXPECT_EQ(state.X264BuildAt(1000), 164);
  EXPECT_EQ(state.LastX264BuildIn(0, 10), 150);
  EXPECT_EQ(state.LastX264BuildIn(1, 39), -1);
  EXPECT_EQ(state.LastX264BuildIn(1, 40), 164);
  EXPECT_EQ(state.LastX264BuildIn(0, 100), 164);
  state.x264_versions = {{12, 148}};
  EXPECT_EQ(state.X264BuildAt(11), -1);
  EXPECT_EQ(state.X264BuildAt(12), 148);
}

}  // namespace
}  // namespace tecl::video
