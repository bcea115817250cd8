#include "bench/decode/bench_util.h"

#include <sched.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

namespace tecl::bench {

video::ClipRequest RandomClip(std::mt19937_64& rng, int64_t frames, int length, int side) {
  std::vector<int> speeds;
  for (int s : {1, 2, 4, 8}) {
    if (int64_t{length - 1} * s + 1 <= frames) speeds.push_back(s);
  }
  const int speed = speeds[std::uniform_int_distribution<size_t>(0, speeds.size() - 1)(rng)];
  const int64_t span = int64_t{length - 1} * speed + 1;
  const int64_t start = std::uniform_int_distribution<int64_t>(0, frames - span)(rng);
  video::ClipRequest clip;
  for (int i = 0; i < length; ++i) clip.frames.push_back(start + int64_t{i} * speed);
  if (rng() % 2) std::reverse(clip.frames.begin(), clip.frames.end());
  std::uniform_real_distribution<double> unit(0, 1);
  const double area = 0.2 + 0.8 * unit(rng);
  const double aspect = std::exp(std::log(0.75) + (std::log(4.0 / 3) - std::log(0.75)) * unit(rng));
  clip.crop.width = std::min(1.0, std::sqrt(area * aspect));
  clip.crop.height = std::min(1.0, std::sqrt(area / aspect));
  clip.crop.x = (1 - clip.crop.width) * unit(rng);
  clip.crop.y = (1 - clip.crop.height) * unit(rng);
  clip.out_width = side;
  clip.out_height = side;
  clip.flip = rng() % 2;
  return clip;
}

int PinToOneCpu(int cpu) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  sched_getaffinity(0, sizeof(allowed), &allowed);
  if (cpu < 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &allowed)) cpu = c;
    }
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof(one), &one) == 0 ? cpu : -1;
}

int Shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool WriteKineticsLike(const std::string& path, int index, double seconds) {
  if (std::filesystem::exists(path)) return true;
  char source[128];
  const char* sources[] = {"testsrc2=size=340x256:rate=30", "mandelbrot=size=340x256:rate=30",
                           "life=size=340x256:rate=30:ratio=0.2:mold=10:seed=%d"};
  std::snprintf(source, sizeof(source), sources[index % 3], index);
  char command[1024];
  std::snprintf(command, sizeof(command),
                "ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i '%s' -ss %d -t %.2f "
                "-c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -bf 3 "
                "-x264-params keyint=250:min-keyint=250:scenecut=0 '%s'",
                source, index % 5, seconds, path.c_str());
  if (Shell(command) == 0) return true;
  std::fprintf(stderr, "failed: %s\n", command);
  return false;
}

}  // namespace tecl::bench
