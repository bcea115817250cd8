// tecl_decode_bench: random clip requests through tecl::video::DecodeClips on one core, side by
// side with the decode floor, for the two clip presets. Prints the tables of docs/benchmarks.md
// "Decoding".
//
// Input: --videos H.264 files (320x240, 30 fps, --seconds long, B-frames, GOP cycling through 30,
// 60, 120 and 250 frames, content cycling through three lavfi sources: testsrc2, mandelbrot and
// life, the last one noise-like and several times as costly to decode) written by the ffmpeg CLI.
// A request is one DecodeClips call for two clips of one video, as the batch pipeline makes them:
// L frames at speed s in {1, 2, 4, 8} (drawn among those that fit), random direction, a random
// resized crop (area 0.2-1, aspect 3/4-4/3) scaled to S x S, random flip. Presets: tiny (L=8, S=64)
// and standard (L=16, S=112). Every method does the same requests, interleaved per request:
//
//   tecl      DecodeClips with a warm VideoIndexCache (steady state): open, seek, decode (skipping
//             unneeded non-reference frames), crop+scale+flip of the needed frames.
//   floor     the same frames decoded by the plainest loop in this file with the same decoder
//             settings (one thread): open, seek to the keyframe each decode span starts at, send
//             every packet through the span's last needed one, drain; no skipping, no scaling.
//   ffmpeg    `ffmpeg -threads 1 -ss <first needed frame> -i <file> -frames:v <span> -f null -`
//             per span (the CLI seeks to the keyframe before and decodes forward), timed from
//             outside (process start included) and by its own -benchmark (rtime: the decode
//             loop, after the process start, opening the file and seeking).
//
// The input set is written first (on every CPU); then the process and its ffmpeg children are
// pinned to one CPU. Each figure is the best of --rounds rounds (the machine is shared). Also
// printed: the plain decode rate of whole files per source (to check the floor against), the rule
// of thumb "a random clip costs its span plus half a keyframe interval" against the floor's frames
// decoded per clip, and tecl against the floor per GOP and per source.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
}

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/decode/bench_util.h"
#include "services/dataloader/video/decode_plan.h"
#include "services/dataloader/video/video_index.h"
#include "services/dataloader/video/video_reader.h"

ABSL_FLAG(int, videos, 12, "Videos in the generated input set (12: every source with every GOP)");
ABSL_FLAG(double, seconds, 20.0,
          "Length of each video (320x240, 30 fps; longer than the longest GOP, 250 frames)");
ABSL_FLAG(int, requests, 32, "DecodeClips calls (two clips each) per preset and round");
ABSL_FLAG(int, rounds, 3, "Rounds; each figure is the best round");
ABSL_FLAG(int, cpu, -1, "CPU to pin to (-1 = the last one this process may use)");
ABSL_FLAG(bool, ffmpeg_cli, true, "Also time the ffmpeg CLI (one process per span)");
ABSL_FLAG(std::string, data_dir, "", "Reuse/create the input set here (default: a temp folder)");
ABSL_FLAG(uint64_t, seed, 1, "Request seed");

namespace {

using tecl::video::ClipFrames;
using tecl::video::ClipRequest;
using tecl::video::DecodeOptions;
using tecl::video::DecodeStats;
using tecl::video::VideoIndex;
using tecl::video::VideoIndexCache;

struct Video {
  std::string path;
  int gop = 0;
  std::string source;  // lavfi source name.
  std::shared_ptr<const VideoIndex> index;
};

struct Preset {
  const char* name;
  int length;
  int side;
};

struct Request {
  int video = 0;
  std::vector<ClipRequest> clips;
};

struct Totals {
  double seconds = 0;
  int64_t frames_decoded = 0;
  int64_t frames_used = 0;
  int64_t spans = 0;
  int64_t requests = 0;
};

// Keeps the round with the least time.
void KeepBest(const Totals& round, Totals* best) {
  if (best->requests == 0 || round.seconds < best->seconds) *best = round;
}

std::vector<Video> MakeInputs(const std::string& dir) {
  const int gops[] = {30, 60, 120, 250};
  const char* sources[] = {"testsrc2=size=320x240:rate=30", "mandelbrot=size=320x240:rate=30",
                           "life=size=320x240:rate=30:ratio=0.2:mold=10:seed=%d"};
  const char* names[] = {"testsrc2", "mandelbrot", "life"};
  std::vector<Video> videos;
  for (int i = 0; i < absl::GetFlag(FLAGS_videos); ++i) {
    Video v;
    v.gop = gops[i % 4];
    v.source = names[(i / 4) % 3];
    v.path = absl::StrFormat("%s/v%02d_gop%d.mp4", dir, i, v.gop);
    if (!std::filesystem::exists(v.path)) {
      const std::string source = absl::StrFormat(sources[(i / 4) % 3], i);
      // Each video starts at a different point of its source.
      const std::string command = absl::StrFormat(
          "ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i '%s' -ss %d -t %.2f "
          "-c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -bf 3 "
          "-x264-params keyint=%d:min-keyint=%d:scenecut=0 %s",
          source, i % 5, absl::GetFlag(FLAGS_seconds), v.gop, v.gop, v.path);
      if (tecl::bench::Shell(command) != 0) {
        std::fprintf(stderr, "failed: %s\n", command.c_str());
        std::exit(1);
      }
    }
    videos.push_back(v);
  }
  return videos;
}

// The spans DecodeClips plans for a request (the floor and the CLI decode the same ones).
std::vector<tecl::video::DecodeSpan> Spans(const VideoIndex& index, const Request& request) {
  std::vector<int64_t> needed;
  for (const ClipRequest& clip : request.clips) {
    needed.insert(needed.end(), clip.frames.begin(), clip.frames.end());
  }
  std::sort(needed.begin(), needed.end());
  needed.erase(std::unique(needed.begin(), needed.end()), needed.end());
  return tecl::video::PlanSpans(needed, index.frame_start, index.frame_packet,
                                tecl::video::kMinSeekGainPackets);
}

// The plainest decoder: libavformat + libavcodec, one thread, every packet decoded. Aborts on
// failure (the inputs are generated by this program).
class PlainDecoder {
 public:
  PlainDecoder(const std::string& path, int stream) : stream_(stream) {
    if (avformat_open_input(&format_, path.c_str(), nullptr, nullptr) < 0) std::abort();
    avformat_find_stream_info(format_, nullptr);
    const AVCodecParameters* par = format_->streams[stream]->codecpar;
    const AVCodec* codec = avcodec_find_decoder(par->codec_id);
    ctx_ = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(ctx_, par);
    ctx_->thread_count = 1;
    ctx_->pkt_timebase = format_->streams[stream]->time_base;
    if (avcodec_open2(ctx_, codec, nullptr) < 0) std::abort();
  }
  ~PlainDecoder() {
    av_frame_free(&frame_);
    av_packet_free(&packet_);
    avcodec_free_context(&ctx_);
    avformat_close_input(&format_);
  }
  PlainDecoder(const PlainDecoder&) = delete;
  PlainDecoder& operator=(const PlainDecoder&) = delete;

  // The next packet of the stream, or null at the end; valid until the next call.
  const AVPacket* Read() {
    av_packet_unref(packet_);
    while (av_read_frame(format_, packet_) >= 0) {
      if (packet_->stream_index == stream_) return packet_;
      av_packet_unref(packet_);
    }
    return nullptr;
  }
  // Sends `packet` (null drains); returns the frames that came out.
  int64_t Decode(const AVPacket* packet) {
    avcodec_send_packet(ctx_, packet);
    int64_t frames = 0;
    while (avcodec_receive_frame(ctx_, frame_) == 0) {
      ++frames;
      av_frame_unref(frame_);
    }
    return frames;
  }
  void Seek(int64_t ts) {
    avcodec_flush_buffers(ctx_);
    av_seek_frame(format_, stream_, ts, AVSEEK_FLAG_BACKWARD);
  }

 private:
  int stream_;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* ctx_ = nullptr;
  AVPacket* packet_ = av_packet_alloc();
  AVFrame* frame_ = av_frame_alloc();
};

// Every frame of a file; returns the frames decoded.
int64_t DecodeWholeFile(const Video& video) {
  PlainDecoder decoder(video.path, video.index->stream_index);
  int64_t frames = 0;
  while (const AVPacket* packet = decoder.Read()) frames += decoder.Decode(packet);
  return frames + decoder.Decode(nullptr);
}

// The floor: the spans of a request, each from its keyframe through its last needed packet.
void FloorDecode(const Video& video, const Request& request, Totals* totals) {
  const VideoIndex& index = *video.index;
  PlainDecoder decoder(video.path, index.stream_index);
  bool first = true;
  for (const tecl::video::DecodeSpan& span : Spans(index, request)) {
    ++totals->spans;
    const VideoIndex::Packet& key = index.packets[span.start_packet];
    if (!first || span.start_packet != 0) decoder.Seek(key.pts);
    first = false;
    // Skip to the span's keyframe (the same position DecodeClips starts at), then decode.
    bool started = false;
    int32_t at = span.start_packet;
    while (at <= span.end_packet) {
      const AVPacket* packet = decoder.Read();
      if (packet == nullptr) break;
      if (!started) started = packet->pos == key.pos || key.pos < 0;
      if (!started) continue;
      ++at;
      totals->frames_decoded += decoder.Decode(packet);
    }
    totals->frames_decoded += decoder.Decode(nullptr);
    totals->frames_used += static_cast<int64_t>(span.frames.size());
  }
}

// One ffmpeg process per span: accurate -ss to the span's first frame, then its frames. Adds the
// processes' wall time to `outside` and their own -benchmark rtime (the decode loop) to `inside`.
void CliDecode(const Video& video, const Request& request, Totals* outside, Totals* inside) {
  const VideoIndex& index = *video.index;
  for (const tecl::video::DecodeSpan& span : Spans(index, request)) {
    const int64_t first = span.frames.front();
    const int64_t last = span.frames.back();
    const double t = static_cast<double>(index.frame_ts[first] - index.frame_ts[0]) *
                     av_q2d(index.ts_base);
    const std::string command = absl::StrFormat(
        "ffmpeg -nostdin -hide_banner -nostats -loglevel info -benchmark -threads 1 "
        "-filter_threads 1 -ss %.6f -i %s -frames:v %d -f null - 2>&1",
        t, video.path, last - first + 1);
    const absl::Time t0 = absl::Now();
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) std::abort();
    char line[512];
    double rtime = -1;
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      const char* at = std::strstr(line, "rtime=");
      if (std::strncmp(line, "bench: utime=", 13) == 0 && at != nullptr) rtime = std::atof(at + 6);
    }
    const int status = pclose(pipe);
    outside->seconds += absl::ToDoubleSeconds(absl::Now() - t0);
    if (status != 0 || rtime < 0) {
      std::fprintf(stderr, "failed (or no bench: line): %s\n", command.c_str());
      std::exit(1);
    }
    inside->seconds += rtime;
    ++outside->spans;
    ++inside->spans;
  }
}

// Figures of one group of requests (a GOP, a source) for one method.
using GroupTotals = std::map<std::string, std::map<std::string, Totals>>;  // group -> method.

void Add(const Totals& request, Totals* sum) {
  sum->seconds += request.seconds;
  sum->frames_decoded += request.frames_decoded;
  sum->frames_used += request.frames_used;
  sum->spans += request.spans;
  sum->requests += 1;
}

// Prints the plain decode rate of whole files per source, best of --rounds, over the first 12
// videos (every source with every GOP).
void PrintDecodeRates(const std::vector<Video>& videos) {
  std::map<std::string, Totals> best;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    std::map<std::string, Totals> totals;
    for (size_t i = 0; i < videos.size() && i < 12; ++i) {
      const Video& video = videos[i];
      Totals t;
      const absl::Time t0 = absl::Now();
      t.frames_decoded = DecodeWholeFile(video);
      t.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
      Add(t, &totals[video.source]);
      Add(t, &totals["all"]);
    }
    for (const auto& [source, t] : totals) KeepBest(t, &best[source]);
  }
  std::printf("plain decode of whole files, one thread (frames/s):");
  for (const char* source : {"testsrc2", "mandelbrot", "life", "all"}) {
    const Totals& t = best[source];
    if (t.requests > 0) std::printf(" %s %.0f", source, t.frames_decoded / t.seconds);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  av_log_set_level(AV_LOG_ERROR);
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  bool temporary = false;
  if (dir.empty()) {
    char pattern[] = "/tmp/tecl_decode_bench_XXXXXX";
    dir = mkdtemp(pattern);
    temporary = true;
  }
  std::filesystem::create_directories(dir);
  std::vector<Video> videos = MakeInputs(dir);
  const int cpu = tecl::bench::PinToOneCpu(absl::GetFlag(FLAGS_cpu));
  if (cpu < 0) std::perror("sched_setaffinity");
  std::printf("pinned to CPU %d\n", cpu);
  VideoIndexCache cache;
  int64_t total_frames = 0;
  for (Video& v : videos) {
    auto index = cache.Get(v.path, DecodeOptions{});
    if (!index.ok()) {
      std::fprintf(stderr, "%s\n", index.status().ToString().c_str());
      return 1;
    }
    v.index = *index;
    total_frames += v.index->num_frames();
  }
  std::printf("%zu videos, %lld frames, 320x240 H.264, GOP 30/60/120/250, B-frames 3\n",
              videos.size(), static_cast<long long>(total_frames));
  PrintDecodeRates(videos);

  const bool cli_on = absl::GetFlag(FLAGS_ffmpeg_cli);
  const Preset presets[] = {{"tiny", 8, 64}, {"standard", 16, 112}};
  std::string rules;
  std::string groups_table =
      "\n| preset | requests of | requests | tecl ms/request | floor ms/request | "
      "tecl time vs floor | frames decoded per frame used, tecl / floor |\n"
      "|---|---|---|---|---|---|---|\n";
  std::printf("\n| preset | method | clips/s | frames decoded/s | frames decoded per frame used | "
              "time vs floor | time vs ffmpeg -benchmark |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const Preset& preset : presets) {
    std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
    std::vector<Request> requests;
    double rule_frames = 0;  // Span plus half a keyframe interval, summed over clips.
    double span_frames = 0;
    double alone_packets = 0;  // Packets from keyframe to last needed one, each clip planned alone.
    for (int r = 0; r < absl::GetFlag(FLAGS_requests); ++r) {
      Request request;
      request.video = static_cast<int>(rng() % videos.size());
      const Video& video = videos[request.video];
      for (int c = 0; c < 2; ++c) {
        request.clips.push_back(
            tecl::bench::RandomClip(rng, video.index->num_frames(), preset.length, preset.side));
        const std::vector<int64_t>& frames = request.clips.back().frames;
        const auto [lo, hi] = std::minmax_element(frames.begin(), frames.end());
        span_frames += static_cast<double>(*hi - *lo + 1);
        rule_frames += static_cast<double>(*hi - *lo + 1) +
                       std::min<int64_t>(video.gop, video.index->num_frames()) / 2.0;
        Request alone;
        alone.clips = {request.clips.back()};
        for (const tecl::video::DecodeSpan& span : Spans(*video.index, alone)) {
          alone_packets += span.end_packet - span.start_packet + 1;
        }
      }
      requests.push_back(std::move(request));
    }
    std::map<std::string, Totals> best;
    GroupTotals best_groups;
    for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
      std::map<std::string, Totals> totals;
      GroupTotals groups;
      for (const Request& request : requests) {
        const Video& video = videos[request.video];
        const std::string by_gop = absl::StrCat("GOP ", video.gop);
        std::vector<ClipFrames> out;
        DecodeStats stats;
        absl::Time t0 = absl::Now();
        const absl::Status status = tecl::video::DecodeClips(video.path, request.clips,
                                                             DecodeOptions{}, &cache, &out, &stats);
        Totals tecl;
        tecl.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
        if (!status.ok()) {
          std::fprintf(stderr, "%s\n", status.ToString().c_str());
          return 1;
        }
        tecl.frames_decoded = stats.frames_decoded;
        tecl.frames_used = stats.frames_used;

        Totals floor;
        t0 = absl::Now();
        FloorDecode(video, request, &floor);
        floor.seconds = absl::ToDoubleSeconds(absl::Now() - t0);

        for (const std::string& group : {by_gop, video.source}) {
          Add(tecl, &groups[group]["tecl"]);
          Add(floor, &groups[group]["floor"]);
        }
        Add(tecl, &totals["tecl"]);
        Add(floor, &totals["floor"]);

        if (cli_on) {
          Totals outside, inside;
          CliDecode(video, request, &outside, &inside);
          Add(outside, &totals["cli"]);
          Add(inside, &totals["cli_inside"]);
        }
      }
      for (const auto& [method, t] : totals) KeepBest(t, &best[method]);
      for (const auto& [group, methods] : groups) {
        for (const auto& [method, t] : methods) KeepBest(t, &best_groups[group][method]);
      }
    }

    const double n = static_cast<double>(requests.size());
    const double clips = 2 * n;
    const double floor_s = best["floor"].seconds;
    const double cli_inside_s = cli_on ? best["cli_inside"].seconds : 0;
    auto row = [&](const char* method, const Totals& t, double seconds, bool decoded) {
      std::string rate, per_used, vs_cli;
      if (decoded) {
        rate = absl::StrFormat("%.0f", t.frames_decoded / seconds);
        per_used = absl::StrFormat("%.2f", static_cast<double>(t.frames_decoded) / t.frames_used);
      }
      if (cli_on) vs_cli = absl::StrFormat("%.2fx", seconds / cli_inside_s);
      std::printf("| %s (L=%d, S=%d) | %s | %.1f | %s | %s | %.2fx | %s |\n", preset.name,
                  preset.length, preset.side, method, clips / seconds, rate.c_str(),
                  per_used.c_str(), seconds / floor_s, vs_cli.c_str());
    };
    row("tecl DecodeClips", best["tecl"], best["tecl"].seconds, true);
    row("floor: plain decode of the same spans", best["floor"], floor_s, true);
    if (cli_on) {
      row("ffmpeg -threads 1, one process per span", best["cli"], best["cli"].seconds, false);
      row("ffmpeg -benchmark rtime (its decode loop)", best["cli_inside"], cli_inside_s, false);
    }
    absl::StrAppendFormat(
        &rules,
        "%s: span + half a keyframe interval = %.1f + %.1f = %.1f frames per clip; each clip "
        "planned alone: %.1f packets from its keyframe through its last needed one; the floor "
        "decoded %.1f per clip (two clips of a request share a span when close), %.1f ms per "
        "request at %.0f frames/s\n",
        preset.name, span_frames / clips, (rule_frames - span_frames) / clips, rule_frames / clips,
        alone_packets / clips, best["floor"].frames_decoded / clips, 1000 * floor_s / n,
        best["floor"].frames_decoded / floor_s);
    for (const char* group :
         {"GOP 30", "GOP 60", "GOP 120", "GOP 250", "testsrc2", "mandelbrot", "life"}) {
      const Totals& tecl = best_groups[group]["tecl"];
      const Totals& floor = best_groups[group]["floor"];
      if (tecl.requests == 0) continue;
      absl::StrAppendFormat(&groups_table, "| %s | %s | %d | %.2f | %.2f | %.2fx | %.2f / %.2f |\n",
                            preset.name, group, tecl.requests, 1000 * tecl.seconds / tecl.requests,
                            1000 * floor.seconds / floor.requests, tecl.seconds / floor.seconds,
                            static_cast<double>(tecl.frames_decoded) / tecl.frames_used,
                            static_cast<double>(floor.frames_decoded) / floor.frames_used);
    }
  }
  std::printf("\n%s%s", rules.c_str(), groups_table.c_str());
  if (temporary) std::filesystem::remove_all(dir);
  return 0;
}
