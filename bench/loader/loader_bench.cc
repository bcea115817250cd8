// tecl_loader_bench: clips/s of the TECL batch pipeline on one core, against the decode floor,
// the ffmpeg CLI and a Python loader with PyAV (bench/loader/pyav_loader.py), for the CPU preset
// (8 frames of 64x64) and the GPU preset (16 frames of 112x112). Prints the tables of
// docs/benchmarks.md "Dataloader".
//
// The whole process (and the ffmpeg and Python children) is pinned to one CPU. Per preset and
// round, every loader does the same work:
//   tecl        BatchBuilder with FfmpegClipSource and one decode thread: sampling, probing,
//               decoding, crop+scale, flip, colour jitter, batch assembly (steady state: the
//               video index cache is warm, as after the first epoch).
//   floor       the frames the tecl run decoded, read with plain libavformat/libavcodec (one
//               thread, seek to the keyframe before each video's first needed frame, decode to the
//               last, scale each needed frame's crop to S x S with swscale). Two variants: every
//               frame decoded, and non-reference frames that are not needed skipped (the same
//               decoder setting tecl uses).
//   ffmpeg      `ffmpeg -threads 1` decoding the same frame range of every video (-ss, -frames:v,
//               -f null, no scaling): one process per video; as many runs on a 1-frame
//               generated source are timed too, so the process start can be taken out.
//   pyav        the same decode calls (frames, crops, flips) replayed by a typical Python loader:
//               PyAV decode, to_ndarray, crop, torch bilinear resize, flip, torchvision-style
//               colour jitter and grayscale in torch, batch stacking.
// Each figure is the best of --rounds interleaved rounds (the machine is shared).
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/decode/bench_util.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/dataloader/pipeline/batch_builder.h"
#include "services/dataloader/pipeline/ffmpeg_clip_source.h"

ABSL_FLAG(int, videos, 32, "Videos in the generated data set");
ABSL_FLAG(double, seconds, 6.0, "Length of each video (25 fps, 320x240 H.264, GOP 50)");
ABSL_FLAG(int, rounds, 3, "Interleaved rounds; each figure is the best round");
ABSL_FLAG(int, clips, 64, "Clips per loader, preset and round");
ABSL_FLAG(int, cpu, -1, "CPU to pin to (-1 = the last one this process may use)");
ABSL_FLAG(std::string, data_dir, "", "Reuse/create the data set here (default: a temp folder)");
ABSL_FLAG(std::string, python, "/usr/bin/python3", "Python with PyAV, numpy and torch");
ABSL_FLAG(std::string, pyav_script, "", "bench/loader/pyav_loader.py (default: from the source tree)");
ABSL_FLAG(bool, peers, true, "Run the peers (false: tecl alone, e.g. under a profiler)");
ABSL_FLAG(std::string, presets, "tiny,standard", "Presets to run: tiny (8x64), standard (16x112)");

namespace tecl::dataloader {
namespace {

namespace fs = std::filesystem;

struct Preset {
  const char* name;
  int clip_length;
  int crop_size;
  int groups;
};

struct Call {
  std::string path;
  std::vector<video::ClipRequest> clips;
};

// FfmpegClipSource that records the decode calls while `recording`.
class RecordingSource final : public ClipSource {
 public:
  absl::StatusOr<video::VideoInfo> Probe(const std::string& path,
                                         const video::DecodeOptions& options) override {
    return inner_.Probe(path, options);
  }
  absl::Status Decode(const std::string& path, absl::Span<const video::ClipRequest> clips,
                      const video::DecodeOptions& options, std::vector<video::ClipFrames>* out,
                      video::DecodeStats* stats) override {
    absl::Status status = inner_.Decode(path, clips, options, out, stats);
    absl::MutexLock lock(&mu_);
    if (recording_ && status.ok()) calls_.push_back({path, {clips.begin(), clips.end()}});
    return status;
  }
  void Record(bool on) {
    absl::MutexLock lock(&mu_);
    recording_ = on;
    if (on) calls_.clear();
  }
  std::vector<Call> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  FfmpegClipSource inner_;
  absl::Mutex mu_;
  bool recording_ = false;
  std::vector<Call> calls_;
};

int Run(const std::string& command) { return std::system(command.c_str()); }

std::string MakeDataSet(const std::string& dir, int videos, double seconds) {
  fs::create_directories(dir + "/videos");
  const std::string csv = dir + "/manifest.csv";
  std::ofstream out(csv);
  out << "path,label,split\n";
  const char* sources[] = {"testsrc2", "mandelbrot", "smptehdbars", "rgbtestsrc"};
  for (int v = 0; v < videos; ++v) {
    const std::string path = absl::StrCat(dir, "/videos/v", v, ".mp4");
    if (!fs::exists(path)) {
      const std::string command = absl::StrCat(
          "ffmpeg -nostdin -v error -y -f lavfi -i ", sources[v % 4], "=size=320x240:rate=25 -t ",
          seconds, " -c:v libx264 -g 50 -pix_fmt yuv420p ", path);
      TECL_CHECK(Run(command) == 0) << "cannot encode the data set: " << command;
    }
    out << "videos/v" << v << ".mp4,c" << v % 4 << ",train\n";
  }
  return csv;
}

// ---- Floor: plain libav decode of the recorded frames -----------------------------------------

struct FloorResult {
  double seconds = 0;
  int64_t decoded = 0;
  int64_t used = 0;
};

FloorResult Floor(const std::vector<Call>& calls, bool skip_nonref) {
  FloorResult result;
  std::vector<uint8_t> out;
  const absl::Time start = absl::Now();
  for (const Call& call : calls) {
    AVFormatContext* format = nullptr;
    TECL_CHECK(avformat_open_input(&format, call.path.c_str(), nullptr, nullptr) == 0);
    TECL_CHECK(avformat_find_stream_info(format, nullptr) >= 0);
    const AVCodec* codec = nullptr;
    const int index = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    AVStream* stream = format->streams[index];
    AVCodecContext* decoder = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(decoder, stream->codecpar);
    decoder->thread_count = 1;
    TECL_CHECK(avcodec_open2(decoder, codec, nullptr) == 0);
    const int64_t duration = av_rescale_q(1, av_inv_q(stream->avg_frame_rate), stream->time_base);
    const int64_t start_pts = stream->start_time == AV_NOPTS_VALUE ? 0 : stream->start_time;
    std::map<int64_t, std::vector<size_t>> needed;  // frame -> clips
    for (size_t c = 0; c < call.clips.size(); ++c) {
      for (int64_t f : call.clips[c].frames) needed[f].push_back(c);
    }
    result.used += static_cast<int64_t>(needed.size());
    const int64_t first = needed.begin()->first, last = needed.rbegin()->first;
    av_seek_frame(format, index, start_pts + first * duration, AVSEEK_FLAG_BACKWARD);
    AVPacket* packet = av_packet_alloc();
    AVFrame* frame = av_frame_alloc();
    std::vector<SwsContext*> scalers(call.clips.size(), nullptr);
    bool done = false;
    auto receive = [&] {
      while (avcodec_receive_frame(decoder, frame) == 0) {
        ++result.decoded;
        const int64_t f = (frame->best_effort_timestamp - start_pts + duration / 2) / duration;
        auto it = needed.find(f);
        if (it != needed.end()) {
          for (size_t c : it->second) {
            const video::ClipRequest& clip = call.clips[c];
            const int x = static_cast<int>(clip.crop.x * frame->width) & ~1;
            const int y = static_cast<int>(clip.crop.y * frame->height) & ~1;
            const int w = std::max(2, static_cast<int>(clip.crop.width * frame->width));
            const int h = std::max(2, static_cast<int>(clip.crop.height * frame->height));
            scalers[c] = sws_getCachedContext(scalers[c], std::min(w, frame->width - x),
                                              std::min(h, frame->height - y),
                                              static_cast<AVPixelFormat>(frame->format),
                                              clip.out_width, clip.out_height, AV_PIX_FMT_RGB24,
                                              SWS_BILINEAR, nullptr, nullptr, nullptr);
            const uint8_t* planes[3] = {frame->data[0] + y * frame->linesize[0] + x,
                                        frame->data[1] + (y / 2) * frame->linesize[1] + x / 2,
                                        frame->data[2] + (y / 2) * frame->linesize[2] + x / 2};
            out.resize(static_cast<size_t>(clip.out_width) * clip.out_height * 3);
            uint8_t* dst[1] = {out.data()};
            const int dst_stride[1] = {clip.out_width * 3};
            sws_scale(scalers[c], planes, frame->linesize, 0, std::min(h, frame->height - y), dst,
                      dst_stride);
          }
        }
        if (f >= last) done = true;
      }
    };
    while (!done && av_read_frame(format, packet) >= 0) {
      if (packet->stream_index == index) {
        const int64_t f = (packet->pts - start_pts + duration / 2) / duration;
        decoder->skip_frame =
            skip_nonref && needed.count(f) == 0 ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
        avcodec_send_packet(decoder, packet);
        receive();
      }
      av_packet_unref(packet);
    }
    if (!done) {
      avcodec_send_packet(decoder, nullptr);
      receive();
    }
    for (SwsContext* scaler : scalers) sws_freeContext(scaler);
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&decoder);
    avformat_close_input(&format);
  }
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

// ---- ffmpeg CLI ------------------------------------------------------------------------------

double FfmpegCli(const std::vector<Call>& calls, bool start_only) {
  const absl::Time start = absl::Now();
  for (const Call& call : calls) {
    int64_t first = INT64_MAX, last = 0;
    for (const auto& clip : call.clips) {
      for (int64_t f : clip.frames) {
        first = std::min(first, f);
        last = std::max(last, f);
      }
    }
    // `start_only`: the same process on a 1-frame generated source, to measure process start.
    const std::string command =
        start_only ? std::string("ffmpeg -nostdin -v error -threads 1 -filter_threads 1 -f lavfi "
                                 "-i nullsrc=size=16x16 -frames:v 1 -f null -")
                   : absl::StrFormat(
                         "ffmpeg -nostdin -v error -threads 1 -filter_threads 1 -ss %.4f -i %s "
                         "-frames:v %d -f null -",
                         first / 25.0, call.path, static_cast<int>(last - first + 1));
    TECL_CHECK(Run(command) == 0) << command;
  }
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// ---- PyAV ------------------------------------------------------------------------------------

void WritePlan(const std::vector<Call>& calls, const std::string& path) {
  std::ofstream out(path);
  out << "[";
  for (size_t i = 0; i < calls.size(); ++i) {
    out << (i ? ",\n" : "") << "{\"path\": \"" << calls[i].path << "\", \"clips\": [";
    for (size_t c = 0; c < calls[i].clips.size(); ++c) {
      const video::ClipRequest& clip = calls[i].clips[c];
      out << (c ? ", " : "") << "{\"frames\": [";
      for (size_t f = 0; f < clip.frames.size(); ++f) out << (f ? "," : "") << clip.frames[f];
      out << absl::StrFormat("], \"crop\": [%.9f, %.9f, %.9f, %.9f], \"flip\": %s}", clip.crop.x,
                             clip.crop.y, clip.crop.width, clip.crop.height,
                             clip.flip ? "true" : "false");
    }
    out << "]}";
  }
  out << "]\n";
}

double PyAv(const std::string& plan, const Preset& preset, int* clips) {
  const std::string output = plan + ".out";
  const std::string command = absl::StrCat(absl::GetFlag(FLAGS_python), " ",
                                           absl::GetFlag(FLAGS_pyav_script), " --plan ", plan,
                                           " --size ", preset.crop_size, " --out ", output);
  TECL_CHECK(Run(command) == 0) << command;
  std::ifstream in(output);
  double seconds = 0;
  in >> seconds >> *clips;
  return seconds;
}

// ---- TECL ------------------------------------------------------------------------------------

struct TeclResult {
  double seconds = 0;
  int clips = 0;
  double decoded = 0;
  double used = 0;
};

TeclResult Tecl(RecordingSource& source, const std::string& csv, const Preset& preset, int clips,
                uint64_t seed, bool record) {
  metrics::Registry registry;
  LoaderMetrics metrics(registry);
  BadVideos bad;
  ThreadPool pool(1);
  BatchBuilder builder(BuilderEnv{&source, &pool, &bad, &metrics});
  tecl::v1::DatasetSpec dataset;
  dataset.set_format(tecl::v1::DatasetSpec::FORMAT_CSV);
  dataset.set_root(fs::path(csv).parent_path().string());
  dataset.set_manifest("manifest.csv");
  absl::StatusOr<Manifest> manifest = LoadManifest(dataset, DataRoots());
  TECL_CHECK(manifest.ok()) << manifest.status();
  TrainSettings settings;
  settings.seed = seed;
  settings.temporal.clip_length = preset.clip_length;
  settings.temporal.speeds = {1, 2, 4, 8};
  settings.crop_size = preset.crop_size;
  settings.groups_per_batch = preset.groups;
  auto sampler = TrainSampler::Create(std::make_shared<const Manifest>(*std::move(manifest)),
                                      "train", settings);
  TECL_CHECK(sampler.ok()) << sampler.status();
  const int batches = std::max(1, clips / settings.clips_per_batch());
  source.Record(record);
  TeclResult result;
  const absl::Time start = absl::Now();
  for (int step = 0; step < batches; ++step) {
    absl::StatusOr<tecl::v1::ClipBatch> batch = builder.BuildTrain(*sampler, {}, step);
    TECL_CHECK(batch.ok()) << batch.status();
    result.clips += batch->clip_info_size();
  }
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  source.Record(false);
  result.decoded = metrics.frames_decoded.Value();
  result.used = metrics.frames_used.Value();
  return result;
}

int Main() {
  const int cpu = tecl::bench::PinToOneCpu(absl::GetFlag(FLAGS_cpu));
  TECL_CHECK(cpu >= 0) << "cannot pin to CPU " << absl::GetFlag(FLAGS_cpu);
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) dir = (fs::temp_directory_path() / "tecl_loader_bench").string();
  std::string script = absl::GetFlag(FLAGS_pyav_script);
  if (script.empty()) absl::SetFlag(&FLAGS_pyav_script, std::string(TECL_SOURCE_DIR) + "/bench/loader/pyav_loader.py");
  const std::string csv = MakeDataSet(dir, absl::GetFlag(FLAGS_videos), absl::GetFlag(FLAGS_seconds));
  std::printf("pinned to CPU %d; data set: %d videos of %.1f s, 320x240 H.264 GOP 50, in %s\n\n", cpu,
              absl::GetFlag(FLAGS_videos), absl::GetFlag(FLAGS_seconds), dir.c_str());

  const Preset presets[] = {{"tiny (8x64)", 8, 64, 4}, {"standard (16x112)", 16, 112, 8}};  // "tiny", "stan..."
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const int clips = absl::GetFlag(FLAGS_clips);
  for (const Preset& preset : presets) {
    if (!absl::StrContains(absl::GetFlag(FLAGS_presets), absl::string_view(preset.name).substr(0, 4))) continue;
    RecordingSource source;
    Tecl(source, csv, preset, clips, 100, false);  // Warm the index and page caches.
    double tecl = 1e9, floor_all = 1e9, floor_skip = 1e9, cli = 1e9, cli_start = 1e9, pyav = 1e9;
    TeclResult best;
    FloorResult floor_all_best, floor_skip_best;
    int pyav_clips = 0;
    for (int round = 0; round < rounds; ++round) {
      // The same batches every round, so every loader does the same work in every round.
      TeclResult t = Tecl(source, csv, preset, clips, /*seed=*/100, /*record=*/true);
      const std::vector<Call> calls = source.calls();
      if (t.seconds / t.clips < tecl / std::max(1, best.clips)) {
        tecl = t.seconds;
        best = t;
      }
      if (!absl::GetFlag(FLAGS_peers)) {
        std::printf("%s round %d: tecl %.3f s for %d clips (%.1f clips/s)\n", preset.name, round,
                    t.seconds, t.clips, t.clips / t.seconds);
        continue;
      }
      FloorResult fa = Floor(calls, false);
      FloorResult fs_ = Floor(calls, true);
      if (fa.seconds < floor_all) floor_all = fa.seconds, floor_all_best = fa;
      if (fs_.seconds < floor_skip) floor_skip = fs_.seconds, floor_skip_best = fs_;
      cli = std::min(cli, FfmpegCli(calls, false));
      cli_start = std::min(cli_start, FfmpegCli(calls, true));
      const std::string plan = absl::StrCat(dir, "/plan.json");
      WritePlan(calls, plan);
      pyav = std::min(pyav, PyAv(plan, preset, &pyav_clips));
      TECL_CHECK(pyav_clips == t.clips) << "the PyAV loader built " << pyav_clips << " clips of " << t.clips;
    }
    if (!absl::GetFlag(FLAGS_peers)) continue;
    const double n = best.clips;
    std::printf("### %s: %d clips (%d batches of %d groups), best of %d rounds, 1 core\n\n", preset.name,
                best.clips, best.clips / (4 * preset.groups), preset.groups, rounds);
    std::printf("| loader | s | clips/s | time vs tecl | frames decoded per frame used |\n");
    std::printf("|---|---|---|---|---|\n");
    auto row = [&](const char* name, double seconds, const std::string& ratio) {
      std::printf("| %s | %.3f | %.1f | %.2f | %s |\n", name, seconds, n / seconds, seconds / tecl,
                  ratio.c_str());
    };
    row("tecl (BatchBuilder, 1 decode thread)", tecl, absl::StrFormat("%.2f", best.decoded / best.used));
    row("floor: libav sequential decode + swscale, every frame", floor_all,
        absl::StrFormat("%.2f", double(floor_all_best.decoded) / floor_all_best.used));
    row("floor: the same, unneeded non-reference frames skipped", floor_skip,
        absl::StrFormat("%.2f", double(floor_skip_best.decoded) / floor_skip_best.used));
    row("ffmpeg -threads 1 (decode only, 1 process per video)", cli, "");
    row("ffmpeg -threads 1, less process start (as many 1-frame null-source runs)",
        std::max(1e-9, cli - cli_start), "");
    row("Python: PyAV + torch (bench/loader/pyav_loader.py)", pyav, "");
    std::printf("\ntecl vs PyAV: %.2fx faster; tecl time / floor time: %.2f (every frame), %.2f (non-ref skipped)\n\n",
                pyav / tecl, tecl / floor_all, tecl / floor_skip);
  }
  return 0;
}

}  // namespace
}  // namespace tecl::dataloader

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return tecl::dataloader::Main();
}
