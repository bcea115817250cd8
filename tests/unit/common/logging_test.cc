// Log lines: text from requests cannot forge or hide a log line.
#include "services/common/logging.h"

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

}  // namespace
}  // namespace tecl
