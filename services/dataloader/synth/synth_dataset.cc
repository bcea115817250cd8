#include "services/dataloader/synth/synth_dataset.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/common/status_macros.h"
#include "services/dataloader/synth/motion_render.h"
#include "services/dataloader/synth/video_encoder.h"

namespace tecl::synth {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxSide = 4096;

absl::Status WriteVideo(const std::string& path, const SynthOptions& options, int label,
                        int index) {
  const uint64_t seed = MixSeed(options.seed, static_cast<uint64_t>(label) + 1,
                                static_cast<uint64_t>(index) + 1);
  const std::vector<std::vector<uint8_t>> frames =
      RenderMotionVideo(label, seed, options.width, options.height, options.frames);
  EncoderOptions encoder_options;
  encoder_options.width = options.width;
  encoder_options.height = options.height;
  encoder_options.fps = options.fps;
  encoder_options.codec = options.codec;
  encoder_options.gop = options.gop;
  encoder_options.quality = options.quality;
  const std::string partial = path + ".partial";
  {
    TECL_ASSIGN_OR_RETURN(std::unique_ptr<VideoEncoder> encoder,
                          VideoEncoder::Open(partial, encoder_options));
    for (const std::vector<uint8_t>& frame : frames) {
      TECL_RETURN_IF_ERROR(encoder->AddFrame(frame.data()));
    }
    TECL_RETURN_IF_ERROR(encoder->Finish());
  }
  std::error_code error;
  fs::rename(partial, path, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot move the finished video into place: ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  const std::string partial = path + ".partial";
  {
    std::ofstream out(partial, std::ios::trunc);
    for (const std::string& line : lines) out << line << '\n';
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat(path, ": cannot write"));
  }
  std::error_code error;
  fs::rename(partial, path, error);
  if (error) return absl::UnavailableError(absl::StrCat(path, ": cannot write: ", error.message()));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSynthOptions(const SynthOptions& o) {
  const int available = static_cast<int>(MotionClassNames().size());
  auto bad = [](const std::string& message) { return absl::InvalidArgumentError(message); };
  if (o.out.empty()) return bad("synth: out: set the folder to write the data set into");
  if (o.classes < 1 || o.classes > available) {
    return bad(absl::StrCat("synth: classes: ", o.classes, " is not in 1..", available));
  }
  if (o.videos_per_class < 1 || o.videos_per_class > 100000) {
    return bad(absl::StrCat("synth: videos_per_class: ", o.videos_per_class,
                            " is not in 1..100000"));
  }
  if (o.frames < 1 || o.frames > 100000) {
    return bad(absl::StrCat("synth: frames: ", o.frames, " is not in 1..100000"));
  }
  if (o.width < 16 || o.height < 16 || o.width > kMaxSide || o.height > kMaxSide ||
      o.width % 2 != 0 || o.height % 2 != 0) {
    return bad(absl::StrCat("synth: size: ", o.width, "x", o.height,
                            " must be even and between 16 and ", kMaxSide, " on each side"));
  }
  if (!(o.fps > 0 && o.fps <= 1000)) {
    return bad(absl::StrCat("synth: fps: ", o.fps, " is not in (0, 1000]"));
  }
  if (!(o.test_fraction >= 0 && o.test_fraction < 1)) {
    return bad(absl::StrCat("synth: test_fraction: ", o.test_fraction, " is not in [0, 1)"));
  }
  if (o.gop < 1 || o.gop > 10000) {
    return bad(absl::StrCat("synth: gop: ", o.gop, " is not in 1..10000"));
  }
  if (o.jobs < 0) return bad(absl::StrCat("synth: jobs: ", o.jobs, " is negative"));
  return absl::OkStatus();
}

std::string SynthVideoPath(const SynthOptions& options, int label, int index) {
  const std::string& name = MotionClassNames()[label];
  return absl::StrFormat("%s/%s_%04d%s", name, name, index,
                         ContainerExtension(DefaultContainer(options.codec)));
}

absl::StatusOr<SynthSummary> WriteSynthDataset(const SynthOptions& options) {
  TECL_RETURN_IF_ERROR(ValidateSynthOptions(options));
  const absl::Time start = absl::Now();
  SynthSummary summary;
  summary.classes.assign(MotionClassNames().begin(), MotionClassNames().begin() + options.classes);
  std::error_code error;
  for (const std::string& name : summary.classes) {
    fs::create_directories(fs::path(options.out) / name, error);
    if (error) {
      return absl::UnavailableError(absl::StrCat(
          (fs::path(options.out) / name).string(), ": cannot create the folder: ", error.message()));
    }
  }

  // Every video, then the writers pull from a shared counter.
  std::vector<std::pair<int, int>> work;
  for (int label = 0; label < options.classes; ++label) {
    for (int i = 0; i < options.videos_per_class; ++i) work.emplace_back(label, i);
  }
  int jobs = options.jobs > 0 ? options.jobs : static_cast<int>(std::thread::hardware_concurrency());
  jobs = std::clamp(jobs, 1, static_cast<int>(work.size()));
  std::atomic<size_t> next{0};
  std::mutex mu;
  absl::Status first_error;
  auto writer = [&] {
    while (true) {
      const size_t k = next.fetch_add(1);
      if (k >= work.size()) return;
      const auto [label, index] = work[k];
      const std::string path =
          (fs::path(options.out) / SynthVideoPath(options, label, index)).string();
      absl::Status status = WriteVideo(path, options, label, index);
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.ok()) first_error = status;
        next.store(work.size());  // Stop the others.
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < jobs; ++t) threads.emplace_back(writer);
  writer();
  for (std::thread& t : threads) t.join();
  TECL_RETURN_IF_ERROR(first_error);

  // Splits: per class, a seeded shuffle puts round(n * test_fraction) videos in the test list.
  std::vector<std::string> train, test;
  for (int label = 0; label < options.classes; ++label) {
    std::vector<int> order(options.videos_per_class);
    for (int i = 0; i < options.videos_per_class; ++i) order[i] = i;
    SynthRng rng(MixSeed(options.seed, 0x5b117, static_cast<uint64_t>(label)));
    for (int i = options.videos_per_class - 1; i > 0; --i) {
      std::swap(order[i], order[rng.UniformInt(0, i)]);
    }
    const int n_test = static_cast<int>(std::lround(options.videos_per_class * options.test_fraction));
    std::vector<int> test_ids(order.begin(), order.begin() + n_test);
    std::sort(test_ids.begin(), test_ids.end());
    for (int i = 0; i < options.videos_per_class; ++i) {
      const bool is_test = std::binary_search(test_ids.begin(), test_ids.end(), i);
      (is_test ? test : train).push_back(SynthVideoPath(options, label, i));
    }
  }
  std::vector<std::string> class_index;
  for (size_t i = 0; i < summary.classes.size(); ++i) {
    class_index.push_back(absl::StrCat(i + 1, " ", summary.classes[i]));
  }
  const fs::path root(options.out);
  TECL_RETURN_IF_ERROR(WriteLines((root / "classes.txt").string(), summary.classes));
  TECL_RETURN_IF_ERROR(WriteLines((root / "classInd.txt").string(), class_index));
  TECL_RETURN_IF_ERROR(WriteLines((root / "trainlist.txt").string(), train));
  TECL_RETURN_IF_ERROR(WriteLines((root / "testlist.txt").string(), test));
  summary.videos = static_cast<int64_t>(work.size());
  summary.train = static_cast<int64_t>(train.size());
  summary.test = static_cast<int64_t>(test.size());
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return summary;
}

}  // namespace tecl::synth
