// Manifest formats (class folders, UCF101, CSV), their errors, and data-root confinement.
#include "services/dataloader/manifest/manifest.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/dataloader/manifest/data_roots.h"

namespace tecl::dataloader {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using tecl::v1::DatasetSpec;

MATCHER_P2(StatusIs, code, substring, "") {
  const absl::Status& status = arg;
  *result_listener << "status " << status;
  return status.code() == code &&
         std::string(status.message()).find(substring) != std::string::npos;
}

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/manifest_test_XXXXXX";
    dir_ = fs::weakly_canonical(mkdtemp(pattern.data())).string();
    root_ = dir_ + "/data";
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& relative, const std::string& content = "") {
    const fs::path path = fs::path(root_) / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << content;
  }

  DatasetSpec Spec(DatasetSpec::Format format) {
    DatasetSpec spec;
    spec.set_format(format);
    spec.set_root(root_);
    return spec;
  }

  absl::StatusOr<Manifest> Load(const DatasetSpec& spec, std::vector<std::string> roots = {}) {
    absl::StatusOr<DataRoots> data_roots = DataRoots::Create(roots);
    EXPECT_TRUE(data_roots.ok()) << data_roots.status();
    return LoadManifest(spec, *data_roots);
  }

  std::vector<std::string> Paths(const Manifest& manifest) {
    std::vector<std::string> paths;
    for (const VideoEntry& video : manifest.videos) {
      paths.push_back(fs::path(video.path).lexically_relative(root_).string());
    }
    return paths;
  }

  std::string dir_;
  std::string root_;
};

// ---- Class folders ---------------------------------------------------------------------------

TEST_F(ManifestTest, ClassFoldersWithoutListsAreAllTrainInNameOrder) {
  Write("walk/b.mp4");
  Write("walk/a.avi");
  Write("walk/notes.txt");  // Not a video extension: ignored.
  Write("walk/.hidden.mp4");
  Write("run/c.MKV");
  Write(".cache/x.mp4");  // Hidden folder: not a class.
  absl::StatusOr<Manifest> manifest = Load(Spec(DatasetSpec::FORMAT_CLASS_FOLDERS));
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_THAT(manifest->classes, ElementsAre("run", "walk"));
  EXPECT_THAT(Paths(*manifest), ElementsAre("run/c.MKV", "walk/a.avi", "walk/b.mp4"));
  EXPECT_EQ(manifest->videos[0].label, 0);
  EXPECT_EQ(manifest->videos[2].label, 1);
  EXPECT_EQ(manifest->Count(Split::kTrain), 3);
  EXPECT_EQ(manifest->Count(Split::kTest), 0);
  EXPECT_EQ(manifest->root, root_);
}

TEST_F(ManifestTest, ClassFoldersWithBothListsTakeExactlyTheListedVideos) {
  Write("a/1.mp4");
  Write("a/2.mp4");
  Write("b/3.mp4");
  Write("b/unlisted.mp4");
  Write("trainlist.txt", "# comment\r\nb/3.mp4 7\r\n\r\na/1.mp4\r\n");
  Write("testlist.txt", "a/2.mp4\n");
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CLASS_FOLDERS);
  spec.set_train_list("trainlist.txt");
  spec.set_test_list("testlist.txt");
  absl::StatusOr<Manifest> manifest = Load(spec);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_THAT(Paths(*manifest), ElementsAre("b/3.mp4", "a/1.mp4", "a/2.mp4"));
  EXPECT_EQ(manifest->videos[0].label, 1);  // From the folder, not the list's "7".
  EXPECT_EQ(manifest->videos[0].split, Split::kTrain);
  EXPECT_EQ(manifest->videos[2].split, Split::kTest);
  absl::StatusOr<std::vector<int64_t>> train = manifest->SelectSplit("train");
  ASSERT_TRUE(train.ok());
  EXPECT_THAT(*train, ElementsAre(0, 1));
  EXPECT_THAT(*manifest->SelectSplit("all"), ElementsAre(0, 1, 2));
  EXPECT_THAT(manifest->SelectSplit("val").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "dataset.split: \"val\""));
}

TEST_F(ManifestTest, ClassFoldersWithOnlyATestListTrainOnTheRest) {
  Write("a/1.mp4");
  Write("a/2.mp4");
  Write("b/3.mp4");
  Write("testlist.txt", "a/2.mp4\n");
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CLASS_FOLDERS);
  spec.set_test_list("testlist.txt");
  absl::StatusOr<Manifest> manifest = Load(spec);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_THAT(Paths(*manifest), ElementsAre("a/1.mp4", "b/3.mp4", "a/2.mp4"));
  EXPECT_EQ(manifest->Count(Split::kTrain), 2);
  EXPECT_EQ(manifest->Count(Split::kTest), 1);
}

TEST_F(ManifestTest, ClassFolderListErrorsNameFileAndLine) {
  Write("a/1.mp4");
  Write("trainlist.txt", "a/1.mp4\nnowhere/2.mp4\n");
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CLASS_FOLDERS);
  spec.set_train_list("trainlist.txt");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/trainlist.txt:2: \"nowhere/2.mp4\" is not inside a class folder"));

  Write("trainlist.txt", "a/1.mp4\n");
  Write("testlist.txt", "\na/1.mp4\n");
  spec.set_test_list("testlist.txt");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/testlist.txt:2: \"" + root_ + "/a/1.mp4\" is already listed at " +
                           root_ + "/trainlist.txt:1"));

  spec.set_test_list("missing.txt");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "dataset.test_list: \"" + root_ + "/missing.txt\" does not exist"));
}

TEST_F(ManifestTest, EmptyDataSetAndMissingRootAreFailedPrecondition) {
  EXPECT_THAT(Load(Spec(DatasetSpec::FORMAT_CLASS_FOLDERS)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no videos found under"));
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CLASS_FOLDERS);
  spec.set_root(root_ + "/absent");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "dataset.root: \"" + root_ +
                                                                  "/absent\" does not exist"));
  spec.set_root("");
  EXPECT_THAT(Load(spec).status(), StatusIs(absl::StatusCode::kInvalidArgument, "dataset.root: missing"));
  spec = Spec(DatasetSpec::FORMAT_UNSPECIFIED);
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "dataset.format: missing; set class_folders, ucf101 or csv"));
}

// ---- UCF101 ----------------------------------------------------------------------------------

TEST_F(ManifestTest, Ucf101ListsWithAndWithoutLabels) {
  Write("classInd.txt", "1 ApplyEyeMakeup\r\n2 HandStandPushups\r\n");
  Write("trainlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_H_g01_c01.avi 2\n");
  Write("testlist01.txt", "HandstandPushups/v_H_g02_c01.avi\n");  // Folder differs in case.
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_UCF101);
  spec.set_class_index("classInd.txt");
  spec.set_train_list("trainlist01.txt");
  spec.set_test_list("testlist01.txt");
  absl::StatusOr<Manifest> manifest = Load(spec);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_THAT(manifest->classes, ElementsAre("ApplyEyeMakeup", "HandStandPushups"));
  EXPECT_THAT(Paths(*manifest),
              ElementsAre("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                          "HandstandPushups/v_H_g01_c01.avi", "HandstandPushups/v_H_g02_c01.avi"));
  EXPECT_EQ(manifest->videos[0].label, 0);
  EXPECT_EQ(manifest->videos[1].label, 1);
  EXPECT_EQ(manifest->videos[2].label, 1);
  EXPECT_EQ(manifest->videos[2].split, Split::kTest);
}

TEST_F(ManifestTest, Ucf101ErrorsNameFileAndLine) {
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_UCF101);
  spec.set_class_index("classInd.txt");
  spec.set_train_list("trainlist01.txt");
  Write("trainlist01.txt", "A/x.avi 1\n");

  Write("classInd.txt", "1 A\nB\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/classInd.txt:2: \"B\" is not \"<index> <class name>\""));
  Write("classInd.txt", "1 A\n1 B\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/classInd.txt:2: class index 1 is already used at " + root_ +
                           "/classInd.txt:1"));
  Write("classInd.txt", "1 A\n3 B\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "class indices are not 1..2"));

  Write("classInd.txt", "1 A\n2 B\n");
  Write("trainlist01.txt", "A/x.avi 1\nB/y.avi 3\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/trainlist01.txt:2: label 3 is outside the classes 1..2"));
  Write("trainlist01.txt", "A/x.avi\nC/z.avi\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/trainlist01.txt:2: \"C/z.avi\" has no label and its folder \"C\" "
                               "is not a class"));
  spec.clear_class_index();
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "dataset.class_index: missing"));
}

// ---- CSV -------------------------------------------------------------------------------------

TEST_F(ManifestTest, CsvWithClassNamesQuotingAndSplits) {
  Write("videos.csv",
        "split,path,label\n"
        "train,clips/a.mp4,walk\n"
        "test,\"clips/b,1.mp4\",run\n"
        ",clips/c.mp4,\n"
        "TEST,/elsewhere.mp4,walk\n");
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CSV);
  spec.set_manifest("videos.csv");
  absl::StatusOr<Manifest> manifest = Load(spec);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_THAT(manifest->classes, ElementsAre("run", "walk"));
  ASSERT_EQ(manifest->videos.size(), 4u);
  EXPECT_EQ(manifest->videos[0].path, root_ + "/clips/a.mp4");
  EXPECT_EQ(manifest->videos[0].label, 1);
  EXPECT_EQ(manifest->videos[1].path, root_ + "/clips/b,1.mp4");
  EXPECT_EQ(manifest->videos[1].label, 0);
  EXPECT_EQ(manifest->videos[1].split, Split::kTest);
  EXPECT_EQ(manifest->videos[2].label, -1);
  EXPECT_EQ(manifest->videos[2].split, Split::kTrain);
  EXPECT_EQ(manifest->videos[3].path, "/elsewhere.mp4");  // No data roots: allowed.
}

TEST_F(ManifestTest, CsvNumericLabelsAreTheIntegers) {
  Write("m.csv", "path,label\na.mp4,2\nb.mp4,0\n");
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CSV);
  spec.set_manifest("m.csv");
  absl::StatusOr<Manifest> manifest = Load(spec);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_THAT(manifest->classes, ElementsAre("0", "1", "2"));
  EXPECT_EQ(manifest->videos[0].label, 2);
  EXPECT_EQ(manifest->videos[1].label, 0);
}

TEST_F(ManifestTest, CsvErrorsNameFileAndLine) {
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CSV);
  spec.set_manifest("m.csv");
  Write("m.csv", "file,label\na.mp4,1\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/m.csv:1: the header \"file,label\" has no path column"));
  Write("m.csv", "path,label,split\na.mp4,1,train\nb.mp4,1,val\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/m.csv:3: split \"val\" is not one of train, test"));
  Write("m.csv", "path,label,split\n\"a.mp4,1,train\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, root_ + "/m.csv:2: a quoted field is not closed"));
  Write("m.csv", "path,label,split\na.mp4\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/m.csv:2: 1 fields but the header names 3 columns"));
  Write("m.csv", "path,label,split\na.mp4,1,train\n./a.mp4,1,test\n");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       root_ + "/m.csv:3: \"" + root_ + "/a.mp4\" is already listed at " + root_ +
                           "/m.csv:2"));
  Write("m.csv", "");
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, root_ + "/m.csv: empty"));
  spec.clear_manifest();
  EXPECT_THAT(Load(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "dataset.manifest: missing"));
}

TEST(SplitCsvRecordTest, Rfc4180Quoting) {
  EXPECT_THAT(*SplitCsvRecord("a,\"b,c\",\"d\"\"e\",,f"), ElementsAre("a", "b,c", "d\"e", "", "f"));
  EXPECT_THAT(*SplitCsvRecord(""), ElementsAre(""));
}

// ---- Data roots ------------------------------------------------------------------------------

TEST_F(ManifestTest, PathsOutsideTheDataRootsArePermissionDenied) {
  Write("a/1.mp4");
  DatasetSpec spec = Spec(DatasetSpec::FORMAT_CLASS_FOLDERS);
  EXPECT_TRUE(Load(spec, {root_}).ok());
  // The root itself outside.
  EXPECT_THAT(Load(spec, {dir_ + "/other"}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "dataset.root \"" + root_ + "\" is outside the data roots (" + dir_ + "/other)"));

  // A CSV naming a video outside the roots, absolute or through "..".
  fs::create_directories(dir_ + "/secret");
  Write("m.csv", "path\na/1.mp4\n/etc/passwd.mp4\n");
  DatasetSpec csv = Spec(DatasetSpec::FORMAT_CSV);
  csv.set_manifest("m.csv");
  EXPECT_THAT(Load(csv, {root_}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       root_ + "/m.csv:3 \"/etc/passwd.mp4\" is outside the data roots"));
  Write("m.csv", "path\n../secret/x.mp4\n");
  EXPECT_THAT(Load(csv, {root_}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, "../secret/x.mp4\" is outside the data roots"));

  // A list file reached through a symbolic link that leaves the roots.
  std::ofstream(dir_ + "/secret/list.txt") << "a/1.mp4\n";
  fs::create_symlink(dir_ + "/secret/list.txt", root_ + "/trainlist.txt");
  spec.set_train_list("trainlist.txt");
  EXPECT_THAT(Load(spec, {root_}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "dataset.train_list \"" + root_ + "/trainlist.txt\" (resolving to \"" + dir_ +
                           "/secret/list.txt\") is outside the data roots"));
}

TEST(DataRootsTest, PathIsUnderComparesWholeComponents) {
  EXPECT_TRUE(PathIsUnder("/data/x", "/data"));
  EXPECT_TRUE(PathIsUnder("/data", "/data"));
  EXPECT_FALSE(PathIsUnder("/database/x", "/data"));
  EXPECT_TRUE(PathIsUnder("/anything", "/"));
  EXPECT_THAT(DataRoots::Create({""}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "--data_root: an entry is empty"));
}

TEST_F(ManifestTest, LoadingTwiceGivesTheSameOrder) {
  for (const char* name : {"z/9.mp4", "z/1.mp4", "m/5.webm", "a/3.mov", "a/10.mp4"}) Write(name);
  absl::StatusOr<Manifest> first = Load(Spec(DatasetSpec::FORMAT_CLASS_FOLDERS));
  absl::StatusOr<Manifest> second = Load(Spec(DatasetSpec::FORMAT_CLASS_FOLDERS));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(Paths(*first), Paths(*second));
  EXPECT_THAT(Paths(*first), ElementsAre("a/10.mp4", "a/3.mov", "m/5.webm", "z/1.mp4", "z/9.mp4"));
}

TEST(VideoExtensionTest, KnownContainers) {
  EXPECT_TRUE(HasVideoExtension("x/y.MP4"));
  EXPECT_TRUE(HasVideoExtension("a.avi"));
  EXPECT_FALSE(HasVideoExtension("a.txt"));
  EXPECT_FALSE(HasVideoExtension("mp4"));
}

}  // namespace
}  // namespace tecl::dataloader
