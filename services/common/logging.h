// Minimal structured logging to stderr (the Abseil release packaged here has no absl/log).
//
//   TECL_LOG(INFO) << "scheduled job " << id;
//   TECL_LOG(WARNING) << ...;   TECL_LOG(ERROR) << ...;
//   TECL_CHECK(invariant) << "message";   // programmer errors only: never on input from the
//                                         // network or a data file.
//
// A line is `I1124 15:20:41.123456 12345 file.cc:42] message`, written with one write(2) so lines
// from threads and processes do not interleave, then handed to every LogSink (a trainer's sink
// forwards its job's lines to the coordinator for `teclctl logs`). Thread-safe. The threshold
// comes from SetMinLogLevel() or the TECL_LOG_LEVEL environment variable (INFO, WARNING, ERROR).
#ifndef TECL_SERVICES_COMMON_LOGGING_H_
#define TECL_SERVICES_COMMON_LOGGING_H_

#include <sstream>
#include <string>

#include "absl/strings/string_view.h"

namespace tecl {

enum class LogSeverity { kInfo = 0, kWarning = 1, kError = 2, kFatal = 3 };

void SetMinLogLevel(LogSeverity severity);
LogSeverity MinLogLevel();
// Prefixes every line with `[tag]` (e.g. the process role); empty = none.
void SetLogTag(const std::string& tag);

// `text` with every control character (newline and escape included) written as \n, \r, \t or
// \xNN, so that text from a request cannot start a forged log line or hide one. Every log line
// goes through it.
std::string EscapeControlCharacters(absl::string_view text);

// Receives every line logged from AddLogSink until RemoveLogSink, escaped and without the
// newline, on the thread that logged it (under the logger's sink lock: a sink must be quick and
// must not log).
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Send(LogSeverity severity, absl::string_view line) = 0;
};
void AddLogSink(LogSink* sink);
// Once it returns, `sink` gets no more lines and may be destroyed.
void RemoveLogSink(LogSink* sink);

namespace internal {

class LogMessage {
 public:
  LogMessage(const char* file, int line, LogSeverity severity);
  ~LogMessage();  // Writes the line; aborts after a kFatal message.
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Swallows the stream when the message is below the threshold.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace internal
}  // namespace tecl

#define TECL_LOG_SEVERITY_INFO ::tecl::LogSeverity::kInfo
#define TECL_LOG_SEVERITY_WARNING ::tecl::LogSeverity::kWarning
#define TECL_LOG_SEVERITY_ERROR ::tecl::LogSeverity::kError
#define TECL_LOG_SEVERITY_FATAL ::tecl::LogSeverity::kFatal

#define TECL_LOG(severity)                                                        \
  (TECL_LOG_SEVERITY_##severity < ::tecl::MinLogLevel())                          \
      ? (void)0                                                                   \
      : ::tecl::internal::LogVoidify() &                                          \
            ::tecl::internal::LogMessage(__FILE__, __LINE__, TECL_LOG_SEVERITY_##severity).stream()

#define TECL_CHECK(condition)                                                                \
  (condition) ? (void)0                                                                      \
              : ::tecl::internal::LogVoidify() &                                             \
                    ::tecl::internal::LogMessage(__FILE__, __LINE__, ::tecl::LogSeverity::kFatal) \
                            .stream()                                                        \
                        << "Check failed: " #condition " "

#endif  // TECL_SERVICES_COMMON_LOGGING_H_
