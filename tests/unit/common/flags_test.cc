#include "services/common/flags.h"

#include <stdlib.h>

#include "absl/flags/flag.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, tecl_test_threads, 1, "threads");
ABSL_FLAG(std::string, tecl_test_name, "default", "name");

namespace tecl {
namespace {

TEST(FlagsTest, EnvironmentVariableName) {
  EXPECT_EQ(FlagEnvironmentVariable("metrics_listen"), "TECL_METRICS_LISTEN");
}

TEST(FlagsTest, EnvironmentGivesDefaultsAndCommandLineWins) {
  setenv("TECL_TECL_TEST_THREADS", "5", 1);
  setenv("TECL_TECL_TEST_NAME", "from-env", 1);
  char arg0[] = "prog";
  char arg1[] = "--tecl_test_threads=3";
  char arg2[] = "positional";
  char* argv[] = {arg0, arg1, arg2};
  std::vector<char*> rest = ParseFlags(3, argv, "usage");
  EXPECT_EQ(absl::GetFlag(FLAGS_tecl_test_threads), 3);
  EXPECT_EQ(absl::GetFlag(FLAGS_tecl_test_name), "from-env");
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_STREQ(rest[1], "positional");
}

TEST(FlagsDeathTest, MalformedEnvironmentValueExitsNamingTheVariable) {
  setenv("TECL_TECL_TEST_THREADS", "many", 1);
  char arg0[] = "prog";
  char* argv[] = {arg0};
  EXPECT_EXIT(ParseFlags(1, argv, "usage"), ::testing::ExitedWithCode(2),
              "TECL_TECL_TEST_THREADS=many");
}


}  // namespace
}  // namespace tecl
