#include "services/common/logging.h"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace tecl {
namespace {

LogSeverity InitialLevel() {
  const char* env = std::getenv("TECL_LOG_LEVEL");
  if (env == nullptr) return LogSeverity::kInfo;
  if (std::strcmp(env, "WARNING") == 0) return LogSeverity::kWarning;
  if (std::strcmp(env, "ERROR") == 0) return LogSeverity::kError;
  return LogSeverity::kInfo;
}

std::atomic<int> g_min_level{static_cast<int>(InitialLevel())};
std::mutex g_tag_mu;
std::string* g_tag = new std::string();
std::mutex g_sinks_mu;
std::vector<LogSink*>* g_sinks = new std::vector<LogSink*>();

const char* Basename(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash == nullptr ? path : slash + 1;
}

}  // namespace

std::string EscapeControlCharacters(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      static constexpr char kDigits[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kDigits[u >> 4]);
      out.push_back(kDigits[u & 0xf]);
    }
  }
  return out;
}

void SetMinLogLevel(LogSeverity severity) { g_min_level = static_cast<int>(severity); }
LogSeverity MinLogLevel() { return static_cast<LogSeverity>(g_min_level.load()); }

void SetLogTag(const std::string& tag) {
  std::lock_guard<std::mutex> lock(g_tag_mu);
  *g_tag = tag;
}

void AddLogSink(LogSink* sink) {
  std::lock_guard<std::mutex> lock(g_sinks_mu);
  g_sinks->push_back(sink);
}

void RemoveLogSink(LogSink* sink) {
  std::lock_guard<std::mutex> lock(g_sinks_mu);
  g_sinks->erase(std::remove(g_sinks->begin(), g_sinks->end(), sink), g_sinks->end());
}

namespace internal {

LogMessage::LogMessage(const char* file, int line, LogSeverity severity) : severity_(severity) {
  static const char kLetters[] = {'I', 'W', 'E', 'F'};
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  char prefix[96];
  std::snprintf(prefix, sizeof(prefix), "%c%02d%02d %02d:%02d:%02d.%06ld %d %s:%d] ",
                kLetters[static_cast<int>(severity)], tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<long>(tv.tv_usec), static_cast<int>(getpid()),
                Basename(file), line);
  {
    std::lock_guard<std::mutex> lock(g_tag_mu);
    if (!g_tag->empty()) stream_ << '[' << *g_tag << "] ";
  }
  stream_ << prefix;
}

LogMessage::~LogMessage() {
  const std::string text = EscapeControlCharacters(stream_.str()) + '\n';
  // One write(2) keeps concurrent lines whole.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
  {
    std::lock_guard<std::mutex> lock(g_sinks_mu);
    for (LogSink* sink : *g_sinks) {
      sink->Send(severity_, absl::string_view(text.data(), text.size() - 1));
    }
  }
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace internal
}  // namespace tecl
