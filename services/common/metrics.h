// Prometheus metrics: counters, gauges and histograms with labels, grouped in families and
// registries, serialised in the text exposition format 0.0.4. The API follows prometheus-cpp
// (which this OS does not package):
//
//   tecl::metrics::Registry registry;
//   auto& decoded = tecl::metrics::BuildCounter()
//                       .Name("tecl_dataloader_frames_decoded_total")
//                       .Help("Frames decoded")
//                       .Register(registry);
//   decoded.Add({{"job", job_id}}).Increment(n);
//
// Thread-safety: every method of every class is thread-safe. Metric updates are lock-free
// (atomics); Family::Add and serialisation take the family's mutex.
// Ownership: a Registry owns its families, a Family owns its metrics; references stay valid until
// Family::Remove or the registry is destroyed.
// Names and label names are code constants: an invalid one is a programmer error (TECL_CHECK).
// Label values may be anything (they are escaped).
#ifndef TECL_SERVICES_COMMON_METRICS_H_
#define TECL_SERVICES_COMMON_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tecl::metrics {

using Labels = std::map<std::string, std::string>;

enum class MetricType { kCounter, kGauge, kHistogram };

class Counter {
 public:
  static constexpr MetricType kType = MetricType::kCounter;
  // Adds `value` (must be >= 0; negative values are ignored).
  void Increment(double value = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  static constexpr MetricType kType = MetricType::kGauge;
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Increment(double value = 1.0);
  void Decrement(double value = 1.0) { Increment(-value); }
  void SetToCurrentTime();
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  static constexpr MetricType kType = MetricType::kHistogram;
  using BucketBoundaries = std::vector<double>;

  // `boundaries` are upper bounds, strictly increasing; +Inf is implicit.
  explicit Histogram(BucketBoundaries boundaries);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> boundaries;
    std::vector<uint64_t> cumulative_counts;  // One per boundary, then +Inf.
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Collect() const;

  // Boundaries start, start*factor, ... (count of them).
  static BucketBoundaries ExponentialBuckets(double start, double factor, int count);
  static BucketBoundaries LinearBuckets(double start, double width, int count);

 private:
  const BucketBoundaries boundaries_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // Per bucket (not cumulative), then +Inf.
  std::atomic<double> sum_{0.0};
  std::atomic<uint64_t> count_{0};
};

// Common interface of the families, for serialisation.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Labels constant_labels, MetricType type);
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  MetricType type() const { return type_; }
  // Appends this family in text format 0.0.4 (nothing when it has no metrics).
  virtual void Serialize(std::string* out) const = 0;

 protected:
  void SerializeHeader(std::string* out) const;
  // `name{labels,extra} value\n`.
  void SerializeSample(std::string* out, const std::string& suffix, const Labels& labels,
                       const std::string& extra_label, double value) const;

  const std::string name_;
  const std::string help_;
  const Labels constant_labels_;
  const MetricType type_;
};

template <typename T>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, Labels constant_labels)
      : FamilyBase(std::move(name), std::move(help), std::move(constant_labels), T::kType) {}

  // Returns the metric with exactly these labels, creating it with `args` (histogram boundaries)
  // on first use.
  template <typename... Args>
  T& Add(const Labels& labels, Args&&... args) {
    ValidateLabels(labels);
    absl::MutexLock lock(&mu_);
    auto it = metrics_.find(labels);
    if (it == metrics_.end()) {
      it = metrics_.emplace(labels, std::make_unique<T>(std::forward<Args>(args)...)).first;
    }
    return *it->second;
  }

  // Forgets a metric (e.g. of a finished job); references to it become dangling.
  void Remove(const Labels& labels) {
    absl::MutexLock lock(&mu_);
    metrics_.erase(labels);
  }

  bool Has(const Labels& labels) const {
    absl::MutexLock lock(&mu_);
    return metrics_.count(labels) > 0;
  }

  void Serialize(std::string* out) const override;

 private:
  static void ValidateLabels(const Labels& labels);

  mutable absl::Mutex mu_;
  std::map<Labels, std::unique_ptr<T>> metrics_ ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Returns the family called `name`, creating it. Registering an existing name with the same
  // type returns the existing family; with another type it is a programmer error.
  template <typename T>
  Family<T>& Register(const std::string& name, const std::string& help,
                      const Labels& constant_labels = {});

  // Runs `callback` before every serialisation: for gauges computed at scrape time (ages,
  // queue depths). Callbacks must not call Serialize.
  void AddCollectCallback(std::function<void()> callback);

  // Text exposition format 0.0.4, families sorted by name.
  std::string Serialize() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
};

// prometheus-cpp style builder: BuildGauge().Name(..).Help(..).Labels(..).Register(registry).
template <typename T>
class Builder {
 public:
  Builder& Name(std::string name) {
    name_ = std::move(name);
    return *this;
  }
  Builder& Help(std::string help) {
    help_ = std::move(help);
    return *this;
  }
  Builder& Labels(metrics::Labels labels) {
    labels_ = std::move(labels);
    return *this;
  }
  Family<T>& Register(Registry& registry) {
    return registry.Register<T>(name_, help_, labels_);
  }

 private:
  std::string name_;
  std::string help_;
  metrics::Labels labels_;
};

inline Builder<Counter> BuildCounter() { return {}; }
inline Builder<Gauge> BuildGauge() { return {}; }
inline Builder<Histogram> BuildHistogram() { return {}; }

// Adds process_cpu_seconds_total, process_resident_memory_bytes, process_start_time_seconds,
// process_open_fds (read from /proc at scrape time) and tecl_build_info{version}.
void RegisterProcessMetrics(Registry& registry);

// Whether `name` is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
bool IsValidMetricName(const std::string& name);
// Whether `name` is a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__").
bool IsValidLabelName(const std::string& name);

// Formats a sample value as the exposition format wants it (+Inf, -Inf, NaN, shortest exact).
std::string FormatValue(double value);

}  // namespace tecl::metrics

#endif  // TECL_SERVICES_COMMON_METRICS_H_
