// SHA-256, sealed files (atomic write, refusal of corrupt and truncated files), checkpoint round
// trips, encoder exports, listing and pruning.
#include "services/worker/train/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "services/worker/model/error.h"
#include "services/worker/train/sealed_file.h"
#include "services/worker/train/sha256.h"
#include "services/worker/train/synthetic_batches.h"
#include "services/worker/train/trainer.h"

namespace tecl::worker::core {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Hex(const std::string& text) { return DigestHex(ComputeSha256(text.data(), text.size())); }

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + 3);
  for (size_t chunk : {1, 3, 63, 64, 65, 500}) {
    Sha256 sha;
    for (size_t at = 0; at < data.size(); at += chunk) sha.Update(data.data() + at, std::min(chunk, data.size() - at));
    EXPECT_EQ(DigestHex(sha.Finish()), Hex(data)) << chunk;
  }
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tecl_checkpoint_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    if (!fs::exists(dir_)) return names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void Write(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }

  fs::path dir_;
};

std::vector<char> Bytes(const std::string& text) { return std::vector<char>(text.begin(), text.end()); }

// Expects Error(code) whose message contains `text`.
template <typename F>
void ExpectError(F&& f, ErrorCode code, const std::string& text) {
  try {
    f();
    FAIL() << "no error; expected " << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_THAT(e.what(), HasSubstr(text));
  }
}

using SealedFileTest = TempDir;

TEST_F(SealedFileTest, WritesAtomicallyWithHeaderAndChecksum) {
  const std::string path = Path("sub/folder/a.tecl");  // Folders are created.
  const WrittenFile written = WriteSealedFile(path, SealedKind::kEncoder, Bytes("payload bytes"));
  EXPECT_EQ(written.path, path);
  EXPECT_EQ(written.sha256, Hex("payload bytes"));
  const std::string file = Read(path);
  EXPECT_EQ(written.size_bytes, static_cast<int64_t>(file.size()));
  EXPECT_EQ(file.size(), kSealedHeaderSize + 13);
  EXPECT_EQ(file.substr(0, 8), "TECLCKPT");
  EXPECT_EQ(file.substr(kSealedHeaderSize), "payload bytes");
  EXPECT_THAT(Names(), ElementsAre("sub"));
  // No temporary file remains next to the target.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "sub/folder"), fs::directory_iterator{}), 1);

  const SealedFile read = ReadSealedFile(path);
  EXPECT_EQ(read.kind, SealedKind::kEncoder);
  EXPECT_EQ(std::string(read.payload.begin(), read.payload.end()), "payload bytes");
  EXPECT_EQ(read.sha256, written.sha256);

  WriteSealedFile(path, SealedKind::kCheckpoint, Bytes("second"));  // Replaces the file.
  EXPECT_EQ(std::string(ReadSealedFile(path).payload.data(), 6), "second");
}

TEST_F(SealedFileTest, RefusesCorruptAndTruncatedFiles) {
  const std::string path = Path("c.tecl");
  WriteSealedFile(path, SealedKind::kCheckpoint, Bytes(std::string(1000, 'x')));
  const std::string good = Read(path);

  std::string flipped = good;
  flipped[kSealedHeaderSize + 500] ^= 0x01;
  Write(path, flipped);
  ExpectError([&] { ReadSealedFile(path); }, ErrorCode::kDataLoss,
              "checkpoint " + path + ": checksum mismatch (payload SHA-256 ");

  Write(path, good.substr(0, good.size() - 100));
  ExpectError([&] { ReadSealedFile(path); }, ErrorCode::kDataLoss,
              "checkpoint " + path + ": truncated: the header declares 1000 payload bytes but the file holds 900");

  Write(path, good.substr(0, 20));
  ExpectError([&] { ReadSealedFile(path); }, ErrorCode::kDataLoss,
              "checkpoint " + path + ": truncated: 20 bytes, shorter than the 56-byte header");

  Write(path, good + "junk");
  ExpectError([&] { ReadSealedFile(path); }, ErrorCode::kDataLoss, "corrupt: 4 bytes after the declared 1000-byte payload");

  std::string magic = good;
  magic[0] = 'X';
  Write(path, magic);
  ExpectError([&] { ReadSealedFile(path); }, ErrorCode::kDataLoss, "not a TECL checkpoint (bad magic)");

  std::string version = good;
  version[8] = 9;
  Write(path, version);
  ExpectError([&] { ReadSealedFile(path); }, ErrorCode::kDataLoss,
              "unsupported format version 9 (this build reads version 1)");

  ExpectError([&] { ReadSealedFile(Path("missing.tecl")); }, ErrorCode::kNotFound,
              "checkpoint " + Path("missing.tecl") + ": cannot open: No such file or directory");
}

TEST_F(SealedFileTest, WriteFailureIsReported) {
  fs::create_directories(dir_);
  Write(Path("plain_file"), "x");
  ExpectError([&] { WriteSealedFile(Path("plain_file/ckpt.tecl"), SealedKind::kCheckpoint, Bytes("p")); },
              ErrorCode::kUnavailable, "cannot create the folder");
}

TEST_F(SealedFileTest, ListsAndPrunesToTheNewestK) {
  fs::create_directories(dir_);
  for (int64_t step : {5, 100, 20, 1000}) {
    WriteSealedFile(Path(CheckpointFileName(step)), SealedKind::kCheckpoint, Bytes("p"));
  }
  Write(Path("notes.txt"), "keep me");
  Write(Path("ckpt-12.tecl"), "not our name pattern");
  Write(Path(".ckpt-000000000050.tecl.tmp"), "stale temporary file");
  Write(Path(".ckpt-000000002000.tecl.tmp"), "newer than every checkpoint: may be in progress");
  EXPECT_EQ(CheckpointFileName(1000), "ckpt-000000001000.tecl");
  EXPECT_EQ(EncoderFileName(1000), "encoder-000000001000.tecl");
  Write(Path(EncoderFileName(1000)), "an encoder export is no checkpoint");

  std::vector<int64_t> steps;
  for (const CheckpointEntry& entry : ListCheckpoints(dir_.string())) steps.push_back(entry.step);
  EXPECT_THAT(steps, ElementsAre(5, 20, 100, 1000));

  const auto removed = PruneCheckpoints(dir_.string(), 2);
  EXPECT_THAT(removed, ElementsAre(Path(CheckpointFileName(5)), Path(CheckpointFileName(20)),
                                   Path(".ckpt-000000000050.tecl.tmp")));
  EXPECT_THAT(Names(), ElementsAre(".ckpt-000000002000.tecl.tmp", "ckpt-000000000100.tecl",
                                   "ckpt-000000001000.tecl", "ckpt-12.tecl",
                                   "encoder-000000001000.tecl", "notes.txt"));
  EXPECT_TRUE(PruneCheckpoints(dir_.string(), 2).empty());
  ExpectError([&] { PruneCheckpoints(dir_.string(), 0); }, ErrorCode::kInvalidArgument,
              "checkpoint.keep: 0 must be >= 1");
  EXPECT_TRUE(ListCheckpoints(Path("does_not_exist")).empty());
}

// ------------------------------------------------------------------------------------------------

TrainerOptions SmallOptions(uint64_t seed) {
  TrainerOptions options;
  options.model.backbone = "tiny3d";
  options.model.head_hidden = 16;
  options.model.psi_hidden = 16;
  options.model.psi_dim = 8;
  options.model.projection_hidden = 16;
  options.model.projection_dim = 8;
  options.optimizer.lr = 1e-3;
  options.optimizer.scale_lr = false;
  options.schedule.total_steps = 20;
  options.schedule.warmup_steps = 2;
  options.seed = seed;
  return options;
}

Batch SmallBatch(uint64_t seed) {
  SyntheticMotionOptions options;
  options.groups = 2;
  options.clip_length = 4;
  options.size = 16;
  options.video_frames = 80;
  return MakeSyntheticMotionBatch(options, seed);
}

// Parameters and buffers by name.
std::vector<std::pair<std::string, torch::Tensor>> State(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : module.named_parameters()) out.emplace_back(item.key(), item.value().detach().clone());
  for (const auto& item : module.named_buffers()) out.emplace_back(item.key(), item.value().clone());
  return out;
}

void ExpectBitIdentical(const std::vector<std::pair<std::string, torch::Tensor>>& a,
                        const std::vector<std::pair<std::string, torch::Tensor>>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

using CheckpointTest = TempDir;

TEST_F(CheckpointTest, RoundTripRestoresEverythingAndTheNextStep) {
  Trainer original(SmallOptions(1));
  for (int step = 0; step < 3; ++step) original.TrainStep(SmallBatch(step));
  original.set_epoch(2);
  const std::string cursor("\x00sampler cursor\xff", 16);
  const std::string path = Path(CheckpointFileName(original.step()));
  const WrittenFile written = SaveCheckpoint(path, original, cursor);
  EXPECT_EQ(written.size_bytes, static_cast<int64_t>(fs::file_size(path)));
  const torch::Tensor draw_after_save = torch::rand({4});  // Advances the global generator.

  Trainer resumed(SmallOptions(99));  // Different initial weights.
  const ResumeState state = LoadCheckpoint(path, resumed);
  EXPECT_EQ(state.step, 3);
  EXPECT_EQ(state.epoch, 2);
  EXPECT_EQ(state.data_cursor, cursor);
  EXPECT_EQ(state.sha256, written.sha256);
  EXPECT_EQ(resumed.step(), 3);
  EXPECT_EQ(resumed.epoch(), 2);
  EXPECT_DOUBLE_EQ(resumed.NextLearningRate(), original.NextLearningRate());
  // The generator is back where it was when the checkpoint was written.
  EXPECT_TRUE(torch::equal(torch::rand({4}), draw_after_save));

  ExpectBitIdentical(State(*original.model()), State(*resumed.model()));  // BN buffers included.
  const auto po = original.NamedParameters(), pr = resumed.NamedParameters();
  for (size_t i = 0; i < po.size(); ++i) {
    const auto key = [](const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); };
    const auto& a = static_cast<torch::optim::AdamWParamState&>(*original.optimizer().state().at(key(po[i].second)));
    const auto& b = static_cast<torch::optim::AdamWParamState&>(*resumed.optimizer().state().at(key(pr[i].second)));
    EXPECT_EQ(a.step(), b.step());
    EXPECT_TRUE(torch::equal(a.exp_avg(), b.exp_avg())) << po[i].first;
    EXPECT_TRUE(torch::equal(a.exp_avg_sq(), b.exp_avg_sq())) << po[i].first;
  }

  // The next step gives the same loss and the same weights.
  const StepResult next_original = original.TrainStep(SmallBatch(3));
  const StepResult next_resumed = resumed.TrainStep(SmallBatch(3));
  EXPECT_EQ(next_original.loss.total, next_resumed.loss.total);
  EXPECT_EQ(*next_original.loss.equivariance, *next_resumed.loss.equivariance);
  EXPECT_EQ(next_original.info.learning_rate, next_resumed.info.learning_rate);
  ExpectBitIdentical(State(*original.model()), State(*resumed.model()));
}

TEST_F(CheckpointTest, CorruptOrTruncatedCheckpointIsRefusedAndNothingLoaded) {
  Trainer original(SmallOptions(1));
  original.TrainStep(SmallBatch(0));
  const std::string path = Path("ckpt.tecl");
  SaveCheckpoint(path, original, "cursor");
  const std::string good = Read(path);

  Trainer target(SmallOptions(5));
  const auto before = State(*target.model());
  std::string corrupt = good;
  corrupt[good.size() / 2] ^= 0x40;
  Write(path, corrupt);
  ExpectError([&] { LoadCheckpoint(path, target); }, ErrorCode::kDataLoss,
              "checkpoint " + path + ": checksum mismatch");
  Write(path, good.substr(0, good.size() / 3));
  ExpectError([&] { LoadCheckpoint(path, target); }, ErrorCode::kDataLoss,
              "checkpoint " + path + ": truncated: the header declares");
  ExpectBitIdentical(before, State(*target.model()));
  EXPECT_EQ(target.step(), 0);
  EXPECT_TRUE(target.optimizer().state().empty());
}

TEST_F(CheckpointTest, CheckpointOfAnotherModelIsRefused) {
  Trainer original(SmallOptions(1));
  const std::string path = Path("ckpt.tecl");
  SaveCheckpoint(path, original, "");
  TrainerOptions options = SmallOptions(1);
  options.loss.weights.order = 0;
  Trainer other(options);
  ExpectError([&] { LoadCheckpoint(path, other); }, ErrorCode::kFailedPrecondition,
              "heads psi,speed,direction,order,projection} but this trainer has {backbone tiny3d, "
              "head_hidden 16, psi_hidden 16, psi_dim 8, projection_hidden 16, projection_dim 8, "
              "num_speeds 4, heads psi,speed,direction,projection}; resume with the job's original "
              "model and method.weights");
}

TEST_F(CheckpointTest, EncoderExportAndCheckpointBothLoadAsEncoder) {
  Trainer trainer(SmallOptions(1));
  trainer.TrainStep(SmallBatch(0));
  trainer.TrainStep(SmallBatch(1));
  const std::string checkpoint = Path("ckpt.tecl"), encoder = Path("encoder.tecl");
  SaveCheckpoint(checkpoint, trainer, "");
  const WrittenFile exported = ExportEncoder(encoder, trainer.model()->backbone(), trainer.step());
  EXPECT_LT(exported.size_bytes, static_cast<int64_t>(fs::file_size(checkpoint)));

  trainer.model()->eval();
  const torch::Tensor x = torch::randn({2, 3, 4, 16, 16});
  torch::NoGradGuard no_grad;
  const torch::Tensor expected = trainer.model()->forward(x);
  for (const std::string& path : {encoder, checkpoint}) {
    const LoadedEncoder loaded = LoadEncoder(path, torch::kCPU);
    EXPECT_EQ(loaded.backbone->backbone_name(), "tiny3d");
    EXPECT_EQ(loaded.step, 2);
    EXPECT_EQ(loaded.source, path == encoder ? SealedKind::kEncoder : SealedKind::kCheckpoint);
    EXPECT_FALSE(loaded.backbone->is_training());
    ExpectBitIdentical(State(*loaded.backbone), State(trainer.model()->backbone()));
    EXPECT_TRUE(torch::equal(loaded.backbone->forward(x), expected)) << path;
  }
  ExpectError([&] { LoadCheckpoint(encoder, trainer); }, ErrorCode::kFailedPrecondition,
              "is an encoder export, not a training checkpoint");
}

// A channels-last trainer's checkpoint is written contiguous and resumes a contiguous trainer (and
// the other way round) with the same values: the layout is the trainer's business, not the file's.
TEST_F(CheckpointTest, ChannelsLastAndContiguousTrainersShareCheckpoints) {
  TrainerOptions channels_last_options = SmallOptions(1);
  channels_last_options.memory_format = MemoryFormat::kChannelsLast;
  Trainer channels_last(channels_last_options);
  channels_last.TrainStep(SmallBatch(0));
  const std::string path = Path(CheckpointFileName(channels_last.step()));
  SaveCheckpoint(path, channels_last, "");
  TrainerOptions contiguous_options = SmallOptions(2);
  contiguous_options.memory_format = MemoryFormat::kContiguous;
  Trainer contiguous(contiguous_options);
  LoadCheckpoint(path, contiguous);
  ExpectBitIdentical(State(*channels_last.model()), State(*contiguous.model()));
  for (const auto& [name, p] : contiguous.NamedParameters()) EXPECT_TRUE(p.is_contiguous()) << name;

  const std::string back = Path(CheckpointFileName(7));
  SaveCheckpoint(back, contiguous, "");
  Trainer reloaded(channels_last_options);
  LoadCheckpoint(back, reloaded);
  ExpectBitIdentical(State(*channels_last.model()), State(*reloaded.model()));
  for (const auto& [name, p] : reloaded.NamedParameters()) {
    if (p.dim() == 5) EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast3d)) << name;
  }
}

// fp16 (GPU only): the dynamic loss scale is in the checkpoint and a resume goes on with it.
TEST_F(CheckpointTest, Fp16CheckpointKeepsTheLossScale) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (fp16 is refused on the CPU)";
  TrainerOptions options = SmallOptions(1);
  options.device = c10::Device(c10::kCUDA, 0);
  options.optimizer.precision = Precision::kFp16;
  Trainer original(options);
  original.TrainStep(SmallBatch(0));
  original.loss_scale()->Restore({2048, 5, 3});
  const std::string path = Path(CheckpointFileName(original.step()));
  SaveCheckpoint(path, original, "");
  Trainer resumed(options);
  ASSERT_NE(resumed.loss_scale(), nullptr);
  EXPECT_EQ(resumed.loss_scale()->scale(), 65536);
  LoadCheckpoint(path, resumed);
  EXPECT_EQ(resumed.loss_scale()->scale(), 2048);
  EXPECT_EQ(resumed.loss_scale()->state().clean_streak, 5);
  EXPECT_EQ(resumed.loss_scale()->skipped_steps(), 3);
}

}  // namespace
}  // namespace tecl::worker::core
