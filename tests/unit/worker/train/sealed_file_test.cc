// The Env seam of sealed files: one contract suite for every Env (POSIX, and the fault-injecting
// one with no fault), then sealed-file writes that fail part way (a short write, a failed fsync, a
// crash between write and rename): the previous checkpoint stays intact and readable, the error
// is Error(kUnavailable) naming the file, no half-written file is visible, and pruning removes
// what a crash left behind.
#include "services/worker/train/sealed_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "services/worker/model/error.h"
#include "services/worker/train/env.h"
#include "services/worker/train/fault_injecting_env.h"

namespace tecl::worker::core {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Op = FaultInjectingEnv::Op;

class TempDirTest {
 protected:
  TempDirTest() {
    dir_ = fs::temp_directory_path() /
           ("tecl_sealed_file_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TempDirTest() { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  // Names in the folder, sorted; `hidden` includes dot files.
  std::vector<std::string> Names(bool hidden) const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      const std::string name = entry.path().filename().string();
      if (hidden || name[0] != '.') names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

// ------------------------------------------------------------------------------------------------
// Env contract, for every implementation.

struct EnvFactory {
  std::string name;
  std::function<std::unique_ptr<Env>()> make;  // nullptr result = Env::Default().
};

class EnvContractTest : public TempDirTest, public ::testing::TestWithParam<EnvFactory> {
 protected:
  void SetUp() override {
    owned_ = GetParam().make();
    env_ = owned_ ? owned_.get() : Env::Default();
  }
  std::unique_ptr<Env> owned_;
  Env* env_ = nullptr;
};

TEST_P(EnvContractTest, WritesSyncsAndClosesAFile) {
  std::unique_ptr<WritableFile> file;
  ASSERT_FALSE(env_->NewWritableFile(Path("f"), &file));
  ASSERT_NE(file, nullptr);
  EXPECT_FALSE(file->Append("hello ", 6));
  EXPECT_FALSE(file->Append("world", 5));
  EXPECT_FALSE(file->Sync());
  EXPECT_FALSE(file->Close());
  EXPECT_EQ(file->Append("x", 1), std::errc::bad_file_descriptor);
  EXPECT_EQ(file->Close(), std::errc::bad_file_descriptor);
  EXPECT_EQ(Read(Path("f")), "hello world");

  ASSERT_FALSE(env_->NewWritableFile(Path("f"), &file));  // Truncates.
  EXPECT_FALSE(file->Close());
  EXPECT_EQ(Read(Path("f")), "");
  EXPECT_EQ(env_->NewWritableFile(Path("missing/f"), &file), std::errc::no_such_file_or_directory);
}

TEST_P(EnvContractTest, FolderOperations) {
  EXPECT_FALSE(env_->CreateDirs(Path("a/b/c")));
  EXPECT_FALSE(env_->CreateDirs(Path("a/b/c")));  // Existing: success.
  EXPECT_TRUE(fs::is_directory(Path("a/b/c")));
  std::ofstream(Path("plain")) << "x";
  EXPECT_TRUE(env_->CreateDirs(Path("plain/sub")));

  std::ofstream(Path("from")) << "new";
  std::ofstream(Path("to")) << "old";
  EXPECT_FALSE(env_->RenameFile(Path("from"), Path("to")));
  EXPECT_EQ(Read(Path("to")), "new");
  EXPECT_FALSE(fs::exists(Path("from")));
  EXPECT_EQ(env_->RenameFile(Path("from"), Path("to")), std::errc::no_such_file_or_directory);
  EXPECT_FALSE(env_->SyncDir(dir_.string()));
  EXPECT_EQ(env_->SyncDir(Path("nope")), std::errc::no_such_file_or_directory);

  std::vector<std::string> names;
  EXPECT_FALSE(env_->GetChildren(dir_.string(), &names));
  EXPECT_THAT(names, UnorderedElementsAre("a", "plain", "to"));
  EXPECT_EQ(env_->GetChildren(Path("nope"), &names), std::errc::no_such_file_or_directory);

  EXPECT_FALSE(env_->RemoveFile(Path("to")));
  EXPECT_EQ(env_->RemoveFile(Path("to")), std::errc::no_such_file_or_directory);
  EXPECT_FALSE(fs::exists(Path("to")));
}

TEST_P(EnvContractTest, SealedFilesRoundTripThroughIt) {
  const std::vector<char> payload(1000, 'p');
  const WrittenFile written =
      WriteSealedFile(Path(CheckpointFileName(7)), SealedKind::kCheckpoint, payload, env_);
  EXPECT_EQ(ReadSealedFile(written.path).payload, payload);
  EXPECT_THAT(Names(/*hidden=*/true), ElementsAre("ckpt-000000000007.tecl"));
  ASSERT_EQ(ListCheckpoints(dir_.string(), env_).size(), 1u);
  EXPECT_EQ(ListCheckpoints(dir_.string(), env_)[0].step, 7);
}

INSTANTIATE_TEST_SUITE_P(
    Envs, EnvContractTest,
    ::testing::Values(EnvFactory{"Posix", [] { return std::unique_ptr<Env>(); }},
                      EnvFactory{"FaultInjectingNoFault",
                                 [] { return std::make_unique<FaultInjectingEnv>(); }}),
    [](const ::testing::TestParamInfo<EnvFactory>& info) { return info.param.name; });

// ------------------------------------------------------------------------------------------------
// Failures part way through a write.

class SealedFileFaultTest : public TempDirTest, public ::testing::Test {
 protected:
  // Writes `name` through env_ and expects Error(kUnavailable) containing `text`.
  void ExpectWriteFails(const std::string& name, const std::string& text) {
    try {
      WriteSealedFile(Path(name), SealedKind::kCheckpoint, std::vector<char>(1000, 'n'), &env_);
      FAIL() << "no error; expected " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
      EXPECT_THAT(e.what(), HasSubstr("checkpoint " + Path(name) + ": " + text));
    }
  }
  // The previous checkpoint (step 1) is intact, the failed one (step 2) invisible.
  void ExpectOnlyTheFirstCheckpoint() {
    EXPECT_EQ(std::string(ReadSealedFile(Path(CheckpointFileName(1))).payload.data(), 5), "first");
    EXPECT_THAT(Names(/*hidden=*/false), ElementsAre(CheckpointFileName(1)));
    const std::vector<CheckpointEntry> listed = ListCheckpoints(dir_.string());
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].step, 1);
  }
  void WriteFirst() {
    WriteSealedFile(Path(CheckpointFileName(1)), SealedKind::kCheckpoint,
                    std::vector<char>{'f', 'i', 'r', 's', 't'}, &env_);
  }

  FaultInjectingEnv env_;
};

TEST_F(SealedFileFaultTest, WritesInTheDocumentedOrder) {
  WriteFirst();
  const std::string temp = Path(".ckpt-000000000001.tecl.tmp");
  EXPECT_THAT(env_.Log(),
              ElementsAre("mkdir " + dir_.string(), "create " + temp, "append " + temp + " 56",
                          "append " + temp + " 5", "sync " + temp, "close " + temp,
                          "rename " + temp + " " + Path(CheckpointFileName(1)),
                          "syncdir " + dir_.string()));
}

TEST_F(SealedFileFaultTest, ShortWriteLeavesThePreviousCheckpoint) {
  WriteFirst();
  env_.FailWritesAfter(100);  // The header and 44 payload bytes land, then the disk is full.
  ExpectWriteFails(CheckpointFileName(2), "write failed: No space left on device");
  ExpectOnlyTheFirstCheckpoint();
  EXPECT_THAT(Names(/*hidden=*/true), ElementsAre(CheckpointFileName(1)));  // Temp file removed.
}

TEST_F(SealedFileFaultTest, FailedFsyncLeavesThePreviousCheckpoint) {
  WriteFirst();
  env_.FailNext(Op::kSync, std::errc::io_error);
  ExpectWriteFails(CheckpointFileName(2), "fsync failed: Input/output error");
  ExpectOnlyTheFirstCheckpoint();
  EXPECT_THAT(Names(/*hidden=*/true), ElementsAre(CheckpointFileName(1)));
}

TEST_F(SealedFileFaultTest, FailedRenameLeavesThePreviousCheckpoint) {
  WriteFirst();
  env_.FailNext(Op::kRename, std::errc::permission_denied);
  ExpectWriteFails(CheckpointFileName(2), "rename of the temporary file failed: Permission denied");
  ExpectOnlyTheFirstCheckpoint();
  EXPECT_THAT(Names(/*hidden=*/true), ElementsAre(CheckpointFileName(1)));
}

TEST_F(SealedFileFaultTest, CrashBetweenWriteAndRenameLeavesAHiddenTempThatPruningRemoves) {
  WriteFirst();
  env_.CrashBefore(Op::kRename);
  ExpectWriteFails(CheckpointFileName(2),
                   "rename of the temporary file failed: Input/output error");
  EXPECT_TRUE(env_.crashed());
  ExpectOnlyTheFirstCheckpoint();
  // The crashed "process" could not clean up: the complete temporary file stays, hidden.
  EXPECT_THAT(Names(/*hidden=*/true),
              ElementsAre(".ckpt-000000000002.tecl.tmp", CheckpointFileName(1)));
  EXPECT_EQ(Read(Path(".ckpt-000000000002.tecl.tmp")).size(), kSealedHeaderSize + 1000);

  // The restarted process: pruning keeps a temp newer than the newest checkpoint (it may be a
  // write in progress) and removes it once a newer checkpoint exists.
  env_.Reset();
  EXPECT_THAT(PruneCheckpoints(dir_.string(), 2, &env_), IsEmpty());
  WriteSealedFile(Path(CheckpointFileName(3)), SealedKind::kCheckpoint, {'t', 'h', 'i', 'r', 'd'},
                  &env_);
  EXPECT_THAT(PruneCheckpoints(dir_.string(), 2, &env_),
              ElementsAre(Path(".ckpt-000000000002.tecl.tmp")));
  EXPECT_THAT(Names(/*hidden=*/true), ElementsAre(CheckpointFileName(1), CheckpointFileName(3)));
}

TEST_F(SealedFileFaultTest, FolderFailuresAreUnavailable) {
  env_.FailNext(Op::kCreateDirs, std::errc::read_only_file_system);
  ExpectWriteFails(CheckpointFileName(1), "cannot create the folder");
  env_.FailNext(Op::kCreate, std::errc::no_space_on_device);
  ExpectWriteFails(CheckpointFileName(1), "cannot create " + Path(".ckpt-000000000001.tecl.tmp"));
  EXPECT_THAT(Names(/*hidden=*/true), IsEmpty());

  WriteFirst();
  WriteSealedFile(Path(CheckpointFileName(2)), SealedKind::kCheckpoint, {'2'}, &env_);
  env_.FailNext(Op::kRemove, std::errc::permission_denied);
  try {
    PruneCheckpoints(dir_.string(), 1, &env_);
    FAIL() << "pruning did not fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_THAT(e.what(), HasSubstr("checkpoint " + Path(CheckpointFileName(1)) +
                                    ": cannot delete it while pruning: Permission denied"));
  }
  env_.FailNext(Op::kList, std::errc::permission_denied);
  try {
    ListCheckpoints(dir_.string(), &env_);
    FAIL() << "listing did not fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_THAT(e.what(), HasSubstr("checkpoint folder " + dir_.string() +
                                    ": cannot list it: Permission denied"));
  }
}

}  // namespace
}  // namespace tecl::worker::core
