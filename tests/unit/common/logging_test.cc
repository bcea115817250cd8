// Log lines: text from requests cannot forge or hide a log line.
#include "services/common/logging.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tecl {
namespace {

TEST(LoggingTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(EscapeControlCharacters("plain text, ünïcode"), "plain text, ünïcode");
  EXPECT_EQ(EscapeControlCharacters("host\nI1204 forged line"), "host\\nI1204 forged line");
  EXPECT_EQ(EscapeControlCharacters("a\rb\tc"), "a\\rb\\tc");
  EXPECT_EQ(EscapeControlCharacters(std::string("esc\x1b[2Jclear\x7f\0", 14)),
            "esc\\x1b[2Jclear\\x7f\\x00");
}

class CollectingSink : public LogSink {
 public:
  void Send(LogSeverity severity, absl::string_view line) override {
    lines.emplace_back(line);
    severities.push_back(severity);
  }
  std::vector<std::string> lines;
  std::vector<LogSeverity> severities;
};

TEST(LoggingTest, SinksGetEachEscapedLineUntilRemoved) {
  CollectingSink sink;
  AddLogSink(&sink);
  TECL_LOG(WARNING) << "first\nforged";
  TECL_LOG(INFO) << "second";
  RemoveLogSink(&sink);
  TECL_LOG(INFO) << "after removal";
  ASSERT_EQ(sink.lines.size(), 2u);
  EXPECT_THAT(sink.lines[0], ::testing::StartsWith("W"));
  EXPECT_THAT(sink.lines[0], ::testing::EndsWith("logging_test.cc:34] first\\nforged"));
  EXPECT_THAT(sink.lines[1], ::testing::EndsWith("] second"));
  EXPECT_EQ(sink.severities[0], LogSeverity::kWarning);
}

}  // namespace
}  // namespace tecl
