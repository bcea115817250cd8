#include "services/common/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/logging.h"

namespace tecl::metrics {
namespace {

void AtomicAdd(std::atomic<double>& target, double value) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + value, std::memory_order_relaxed)) {
  }
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// HELP text escaping: backslash and newline.
std::string EscapeHelp(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Label value escaping: backslash, double quote and newline.
std::string EscapeLabelValue(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

bool IsValidMetricName(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

bool IsValidLabelName(const std::string& name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", value);
  // Prefer the shortest representation that round-trips.
  for (int precision = 6; precision < 17; ++precision) {
    char shorter[32];
    std::snprintf(shorter, sizeof(shorter), "%.*g", precision, value);
    if (std::strtod(shorter, nullptr) == value) return shorter;
  }
  return buf;
}

void Counter::Increment(double value) {
  if (value < 0 || std::isnan(value)) return;
  AtomicAdd(value_, value);
}

void Gauge::Increment(double value) { AtomicAdd(value_, value); }

void Gauge::SetToCurrentTime() { Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch())); }

Histogram::Histogram(BucketBoundaries boundaries)
    : boundaries_(std::move(boundaries)),
      counts_(new std::atomic<uint64_t>[boundaries_.size() + 1]) {
  for (size_t i = 1; i < boundaries_.size(); ++i) {
    TECL_CHECK(boundaries_[i - 1] < boundaries_[i]) << "histogram boundaries must increase";
  }
  for (size_t i = 0; i <= boundaries_.size(); ++i) counts_[i] = 0;
}

void Histogram::Observe(double value) {
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(boundaries_.begin(), boundaries_.end(), value) - boundaries_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Collect() const {
  Snapshot snapshot;
  snapshot.boundaries = boundaries_;
  uint64_t running = 0;
  for (size_t i = 0; i <= boundaries_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(running);
  }
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  // The +Inf bucket and _count must agree even while observations race with the scrape.
  snapshot.count = running;
  return snapshot;
}

Histogram::BucketBoundaries Histogram::ExponentialBuckets(double start, double factor, int count) {
  BucketBoundaries out;
  double value = start;
  for (int i = 0; i < count; ++i, value *= factor) out.push_back(value);
  return out;
}

Histogram::BucketBoundaries Histogram::LinearBuckets(double start, double width, int count) {
  BucketBoundaries out;
  for (int i = 0; i < count; ++i) out.push_back(start + i * width);
  return out;
}

FamilyBase::FamilyBase(std::string name, std::string help, Labels constant_labels, MetricType type)
    : name_(std::move(name)),
      help_(std::move(help)),
      constant_labels_(std::move(constant_labels)),
      type_(type) {
  TECL_CHECK(IsValidMetricName(name_)) << "invalid metric name '" << name_ << "'";
  for (const auto& [label, value] : constant_labels_) {
    TECL_CHECK(IsValidLabelName(label)) << "invalid label name '" << label << "'";
  }
}

void FamilyBase::SerializeHeader(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ", EscapeHelp(help_), "\n");
  absl::StrAppend(out, "# TYPE ", name_, " ", TypeName(type_), "\n");
}

void FamilyBase::SerializeSample(std::string* out, const std::string& suffix, const Labels& labels,
                                 const std::string& extra_label, double value) const {
  absl::StrAppend(out, name_, suffix);
  Labels all = constant_labels_;
  for (const auto& [k, v] : labels) all[k] = v;
  if (!all.empty() || !extra_label.empty()) {
    out->push_back('{');
    bool first = true;
    for (const auto& [k, v] : all) {
      if (!first) out->push_back(',');
      first = false;
      absl::StrAppend(out, k, "=\"", EscapeLabelValue(v), "\"");
    }
    if (!extra_label.empty()) {
      if (!first) out->push_back(',');
      out->append(extra_label);
    }
    out->push_back('}');
  }
  absl::StrAppend(out, " ", FormatValue(value), "\n");
}

template <typename T>
void Family<T>::ValidateLabels(const Labels& labels) {
  for (const auto& [label, value] : labels) {
    TECL_CHECK(IsValidLabelName(label) && label != "le") << "invalid label name '" << label << "'";
  }
}

template <typename T>
void Family<T>::Serialize(std::string* out) const {
  absl::MutexLock lock(&mu_);
  if (metrics_.empty()) return;
  SerializeHeader(out);
  for (const auto& [labels, metric] : metrics_) {
    if constexpr (std::is_same_v<T, Histogram>) {
      const Histogram::Snapshot snapshot = metric->Collect();
      for (size_t i = 0; i < snapshot.boundaries.size(); ++i) {
        SerializeSample(out, "_bucket", labels,
                        absl::StrCat("le=\"", FormatValue(snapshot.boundaries[i]), "\""),
                        static_cast<double>(snapshot.cumulative_counts[i]));
      }
      SerializeSample(out, "_bucket", labels, "le=\"+Inf\"",
                      static_cast<double>(snapshot.cumulative_counts.back()));
      SerializeSample(out, "_sum", labels, "", snapshot.sum);
      SerializeSample(out, "_count", labels, "", static_cast<double>(snapshot.count));
    } else {
      SerializeSample(out, "", labels, "", metric->Value());
    }
  }
}

template <typename T>
Family<T>& Registry::Register(const std::string& name, const std::string& help,
                              const Labels& constant_labels) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    TECL_CHECK(it->second->type() == T::kType)
        << "metric " << name << " registered twice with different types";
    return static_cast<Family<T>&>(*it->second);
  }
  auto family = std::make_unique<Family<T>>(name, help, constant_labels);
  Family<T>& ref = *family;
  families_.emplace(name, std::move(family));
  return ref;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;
template Family<Counter>& Registry::Register<Counter>(const std::string&, const std::string&,
                                                      const Labels&);
template Family<Gauge>& Registry::Register<Gauge>(const std::string&, const std::string&,
                                                  const Labels&);
template Family<Histogram>& Registry::Register<Histogram>(const std::string&, const std::string&,
                                                          const Labels&);

void Registry::AddCollectCallback(std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  callbacks_.push_back(std::move(callback));
}

std::string Registry::Serialize() const {
  std::vector<std::function<void()>> callbacks;
  {
    absl::MutexLock lock(&mu_);
    callbacks = callbacks_;
  }
  for (const auto& callback : callbacks) callback();
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, family] : families_) family->Serialize(&out);
  return out;
}

namespace {

struct ProcStat {
  double cpu_seconds = 0;
  double start_seconds_after_boot = 0;
  double rss_bytes = 0;
};

ProcStat ReadProcStat() {
  ProcStat stat;
  std::ifstream file("/proc/self/stat");
  std::string content((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may contain spaces.
  const size_t close = content.rfind(')');
  if (close == std::string::npos) return stat;
  std::istringstream fields(content.substr(close + 2));
  std::vector<std::string> values;
  std::string value;
  while (fields >> value) values.push_back(value);
  // values[0] is field 3 (state): utime=14, stime=15, starttime=22, rss=24 (1-based fields).
  if (values.size() < 22) return stat;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  stat.cpu_seconds = (std::stod(values[11]) + std::stod(values[12])) / ticks;
  stat.start_seconds_after_boot = std::stod(values[19]) / ticks;
  stat.rss_bytes = std::stod(values[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
  return stat;
}

double BootTimeSeconds() {
  std::ifstream file("/proc/stat");
  std::string key;
  while (file >> key) {
    if (key == "btime") {
      double value = 0;
      file >> value;
      return value;
    }
  }
  return 0;
}

double OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double count = 0;
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count - 2;  // "." and ".."
}

}  // namespace

void RegisterProcessMetrics(Registry& registry) {
  auto& cpu = BuildCounter()
                  .Name("process_cpu_seconds_total")
                  .Help("Total user and system CPU time spent in seconds.")
                  .Register(registry)
                  .Add({});
  auto& rss = BuildGauge()
                  .Name("process_resident_memory_bytes")
                  .Help("Resident memory size in bytes.")
                  .Register(registry)
                  .Add({});
  auto& start = BuildGauge()
                    .Name("process_start_time_seconds")
                    .Help("Start time of the process since unix epoch in seconds.")
                    .Register(registry)
                    .Add({});
  auto& fds = BuildGauge()
                  .Name("process_open_fds")
                  .Help("Number of open file descriptors.")
                  .Register(registry)
                  .Add({});
  BuildGauge()
      .Name("tecl_build_info")
      .Help("TECL build information; the value is always 1.")
      .Register(registry)
      .Add({{"version", TECL_VERSION}})
      .Set(1);
  const double boot = BootTimeSeconds();
  registry.AddCollectCallback([&cpu, &rss, &start, &fds, boot] {
    const ProcStat stat = ReadProcStat();
    cpu.Increment(stat.cpu_seconds - cpu.Value());
    rss.Set(stat.rss_bytes);
    start.Set(boot + stat.start_seconds_after_boot);
    fds.Set(OpenFds());
  });
}

}  // namespace tecl::metrics
