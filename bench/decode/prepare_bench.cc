// tecl_prepare_bench: what preparing a data set buys the loader, on one core (docs/benchmarks.md
// "Prepared data sets"; the design is docs/prepare.md).
//
// Writes a Kinetics-like set with the ffmpeg CLI (--videos files of 340x256, 30 fps, --seconds
// long, GOP 250, 3 B-frames, content cycling through testsrc2, mandelbrot and life), prepares each
// video with TranscodeVideo (short side --short_side, a keyframe every --keyframe_interval frames,
// 32 by default as TranscodeOptions), then pins itself to one CPU and times the
// same random requests against both copies, interleaved per request (the order alternating), best
// of --rounds. A request is one DecodeClips call for two clips of one video, as the batch pipeline
// makes them: L frames at a speed in {1, 2, 4, 8}, random direction, a random resized crop (area
// 0.2-1) scaled to S x S, random flip. Presets: gpu (L=16, S=112) and cpu (L=8, S=64).
//
// Prints clips/s per core raw and prepared and their ratio, frames decoded per clip, the bytes of
// both copies and the transcode rate, and for a trainer consuming --consumer_rate clips/s the
// loader cores it needs and its data-wait share with 1..16 cores, derived from the measured
// per-core rate (c cores make c x r clips/s; the consumer waits 1 - c r / R of its time when that
// is positive).
//
//   tecl_prepare_bench [--videos=6] [--seconds=10] [--requests=32] [--rounds=3]
//                      [--short_side=128] [--keyframe_interval=32] [--consumer_rate=400]
//                      [--data_dir=DIR] [--cpu=-1] [--seed=1]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/decode/bench_util.h"
#include "services/dataloader/prepare/transcode.h"
#include "services/dataloader/video/stored_index.h"
#include "services/dataloader/video/video_reader.h"

ABSL_FLAG(int, videos, 6, "Videos in the Kinetics-like set");
ABSL_FLAG(double, seconds, 10.0, "Length of each video (340x256, 30 fps, GOP 250)");
ABSL_FLAG(int, requests, 32, "DecodeClips calls (two clips each) per preset, copy and round");
ABSL_FLAG(int, rounds, 3, "Rounds; each figure is the best round");
ABSL_FLAG(int, short_side, 128, "Prepared copy: short side in pixels");
ABSL_FLAG(int, keyframe_interval, 32, "Prepared copy: frames between keyframes");
ABSL_FLAG(double, consumer_rate, 400, "Clips per second a GPU trainer consumes");
ABSL_FLAG(std::string, data_dir, "", "Reuse/create both copies here (default: a temp folder)");
ABSL_FLAG(int, cpu, -1, "CPU to pin to (-1 = the last one this process may use)");
ABSL_FLAG(uint64_t, seed, 1, "Request seed");

namespace {

using tecl::video::ClipFrames;
using tecl::video::ClipRequest;
using tecl::video::DecodeStats;
using tecl::video::VideoIndexCache;

struct Copy {
  std::vector<std::string> paths;
  int64_t bytes = 0;
  VideoIndexCache cache;
};

struct Totals {
  double seconds = 0;
  int64_t frames_decoded = 0;
  int64_t clips = 0;
};

void WriteRaw(const std::string& dir, Copy* raw, std::vector<int64_t>* frames) {
  for (int i = 0; i < absl::GetFlag(FLAGS_videos); ++i) {
    const std::string path = absl::StrFormat("%s/raw_%02d.mp4", dir, i);
    if (!tecl::bench::WriteKineticsLike(path, i, absl::GetFlag(FLAGS_seconds))) std::exit(1);
    raw->paths.push_back(path);
    raw->bytes += static_cast<int64_t>(std::filesystem::file_size(path));
    absl::StatusOr<tecl::video::VideoInfo> info = tecl::video::ProbeVideo(path, {}, &raw->cache);
    if (!info.ok()) {
      std::fprintf(stderr, "%s\n", info.status().ToString().c_str());
      std::exit(1);
    }
    frames->push_back(info->num_frames);
  }
}

// Prepares every raw video (reusing a prepared file of the same frame count); prints the rate.
void Prepare(const std::string& dir, const Copy& raw, const std::vector<int64_t>& frames,
             Copy* prepared) {
  tecl::prepare::TranscodeOptions options;
  options.short_side = absl::GetFlag(FLAGS_short_side);
  options.keyframe_interval = absl::GetFlag(FLAGS_keyframe_interval);
  double seconds = 0;
  int64_t transcoded = 0;
  for (size_t i = 0; i < raw.paths.size(); ++i) {
    const std::string path = absl::StrFormat("%s/prepared_%02d_s%d_k%d.mp4", dir, i,
                                             options.short_side, options.keyframe_interval);
    if (!std::filesystem::exists(tecl::video::StoredIndexPath(path))) {
      std::filesystem::remove(path);  // Prepared before indexes were stored: redo.
    }
    if (!std::filesystem::exists(path)) {
      absl::StatusOr<tecl::prepare::TranscodeResult> result =
          tecl::prepare::TranscodeVideo(raw.paths[i], path, options);
      if (!result.ok()) {
        std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
        std::exit(1);
      }
      seconds += result->seconds;
      transcoded += result->frames;
    }
    prepared->paths.push_back(path);
    prepared->bytes += static_cast<int64_t>(std::filesystem::file_size(path));
    absl::StatusOr<tecl::video::VideoInfo> info =
        tecl::video::ProbeVideo(path, {}, &prepared->cache);
    if (!info.ok() || info->num_frames != frames[i]) {
      std::fprintf(stderr, "%s: not a prepared copy of %s\n", path.c_str(), raw.paths[i].c_str());
      std::exit(1);
    }
  }
  if (transcoded > 0) {
    std::printf("prepared %lld frames in %.1f s (%.0f frames/s on one core, short side %d, "
                "keyframe every %d frames)\n",
                static_cast<long long>(transcoded), seconds, transcoded / seconds,
                options.short_side, options.keyframe_interval);
  }
}

void Decode(Copy& copy, int video, const std::vector<ClipRequest>& clips, Totals* totals) {
  std::vector<ClipFrames> out;
  DecodeStats stats;
  const absl::Time start = absl::Now();
  const absl::Status status =
      tecl::video::DecodeClips(copy.paths[video], clips, {}, &copy.cache, &out, &stats);
  totals->seconds += absl::ToDoubleSeconds(absl::Now() - start);
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    std::exit(1);
  }
  totals->frames_decoded += stats.frames_decoded;
  totals->clips += static_cast<int64_t>(clips.size());
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) dir = (std::filesystem::temp_directory_path() / "tecl_prepare_bench").string();
  std::filesystem::create_directories(dir);
  Copy raw, prepared;
  std::vector<int64_t> frames;
  WriteRaw(dir, &raw, &frames);
  Prepare(dir, raw, frames, &prepared);
  const int cpu = tecl::bench::PinToOneCpu(absl::GetFlag(FLAGS_cpu));
  if (cpu < 0) std::perror("sched_setaffinity");
  std::printf("pinned to CPU %d\n", cpu);

  struct Preset {
    const char* name;
    int length;
    int side;
  };
  const Preset presets[] = {{"gpu", 16, 112}, {"cpu", 8, 64}};
  std::printf(
      "\n%d videos 340x256 30 fps %.0f s GOP 250 B-frames (%.1f MiB) vs prepared (short side %d, "
      "keyframe every %d, no B-frames, fastdecode; %.1f MiB); %d requests x 2 clips, best of %d "
      "rounds, one core:\n\n"
      "| preset | raw clips/s | prepared clips/s | **prepared / raw** | raw frames decoded per "
      "clip | prepared frames decoded per clip | cores for %.0f clips/s raw | prepared |\n"
      "|---|---|---|---|---|---|---|---|\n",
      absl::GetFlag(FLAGS_videos), absl::GetFlag(FLAGS_seconds), raw.bytes / 1048576.0,
      absl::GetFlag(FLAGS_short_side), absl::GetFlag(FLAGS_keyframe_interval),
      prepared.bytes / 1048576.0, absl::GetFlag(FLAGS_requests), absl::GetFlag(FLAGS_rounds),
      absl::GetFlag(FLAGS_consumer_rate));
  const double rate = absl::GetFlag(FLAGS_consumer_rate);
  std::vector<std::pair<double, double>> per_core;  // (raw, prepared) clips/s, per preset.
  for (const Preset& preset : presets) {
    Totals best_raw, best_prepared;
    for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
      std::mt19937_64 rng(absl::GetFlag(FLAGS_seed) * 1000 + round);
      Totals r, p;
      for (int i = 0; i < absl::GetFlag(FLAGS_requests); ++i) {
        const int video = static_cast<int>(rng() % raw.paths.size());
        std::vector<ClipRequest> clips;
        for (int c = 0; c < 2; ++c) {
          clips.push_back(tecl::bench::RandomClip(rng, frames[video], preset.length, preset.side));
        }
        if (i % 2 == 0) {
          Decode(raw, video, clips, &r);
          Decode(prepared, video, clips, &p);
        } else {
          Decode(prepared, video, clips, &p);
          Decode(raw, video, clips, &r);
        }
      }
      if (best_raw.clips == 0 || r.seconds < best_raw.seconds) best_raw = r;
      if (best_prepared.clips == 0 || p.seconds < best_prepared.seconds) best_prepared = p;
    }
    const double raw_rate = best_raw.clips / best_raw.seconds;
    const double prepared_rate = best_prepared.clips / best_prepared.seconds;
    per_core.emplace_back(raw_rate, prepared_rate);
    std::printf("| %s (%d x %dx%d) | %.1f | %.1f | **%.2f** | %.0f | %.0f | %.1f | %.1f |\n",
                preset.name, preset.length, preset.side, preset.side, raw_rate, prepared_rate,
                prepared_rate / raw_rate,
                static_cast<double>(best_raw.frames_decoded) / best_raw.clips,
                static_cast<double>(best_prepared.frames_decoded) / best_prepared.clips,
                rate / raw_rate, rate / prepared_rate);
  }
  // Cold: no index cache (a loader meeting each video for the first time, or a data set far
  // larger than its cache): every request opens and indexes its video. The prepared copy with and
  // without its stored index (the .tecli files set aside).
  std::printf("\nCold (no index cache: every request indexes its video), gpu preset, one core:\n\n"
              "| copy | clips/s | index loads stored / built |\n|---|---|---|\n");
  const auto cold = [&](Copy& copy, const char* name) {
    const tecl::video::IndexLoadCounts before = tecl::video::GetIndexLoadCounts();
    Totals best;
    for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
      std::mt19937_64 rng(absl::GetFlag(FLAGS_seed) * 7777 + round);
      Totals t;
      for (int i = 0; i < absl::GetFlag(FLAGS_requests); ++i) {
        const int video = static_cast<int>(rng() % copy.paths.size());
        std::vector<ClipRequest> clips;
        for (int c = 0; c < 2; ++c) clips.push_back(tecl::bench::RandomClip(rng, frames[video], 16, 112));
        std::vector<ClipFrames> out;
        DecodeStats stats;
        const absl::Time start = absl::Now();
        if (!tecl::video::DecodeClips(copy.paths[video], clips, {}, nullptr, &out, &stats).ok()) {
          std::exit(1);
        }
        t.seconds += absl::ToDoubleSeconds(absl::Now() - start);
        t.clips += 2;
      }
      if (best.clips == 0 || t.seconds < best.seconds) best = t;
    }
    const tecl::video::IndexLoadCounts after = tecl::video::GetIndexLoadCounts();
    std::printf("| %s | %.1f | %lld / %lld |\n", name, best.clips / best.seconds,
                static_cast<long long>(after.stored - before.stored),
                static_cast<long long>(after.built - before.built));
  };
  cold(raw, "raw");
  for (const std::string& path : prepared.paths) {
    std::filesystem::rename(tecl::video::StoredIndexPath(path),
                            tecl::video::StoredIndexPath(path) + ".aside");
  }
  cold(prepared, "prepared, index built");
  for (const std::string& path : prepared.paths) {
    std::filesystem::rename(tecl::video::StoredIndexPath(path) + ".aside",
                            tecl::video::StoredIndexPath(path));
  }
  cold(prepared, "prepared, stored index");

  std::printf("\nData-wait share of a trainer consuming %.0f clips/s of the gpu preset, by loader "
              "cores (derived from the per-core rates above):\n\n| loader cores |",
              rate);
  const int cores[] = {1, 2, 4, 8, 16, 32, 64};
  for (int c : cores) std::printf(" %d |", c);
  std::printf("\n|---|");
  for (size_t i = 0; i < std::size(cores); ++i) std::printf("---|");
  for (int which = 0; which < 2; ++which) {
    std::printf("\n| %s |", which == 0 ? "raw" : "prepared");
    for (int c : cores) {
      const double r = which == 0 ? per_core[0].first : per_core[0].second;
      std::printf(" %.0f %% |", 100.0 * std::max(0.0, 1.0 - c * r / rate));
    }
  }
  std::printf("\n");
  return 0;
}
