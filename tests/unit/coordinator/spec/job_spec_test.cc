// Job spec parsing, defaults, validation and YAML output.
#include "services/coordinator/spec/job_spec.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace tecl::coordinator {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kMinimal[] = R"(
name: demo
dataset:
  root: /data/synth
)";

tecl::v1::JobSpec Parse(const std::string& yaml) {
  absl::StatusOr<tecl::v1::JobSpec> spec = ParseJobSpecYaml(yaml);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : tecl::v1::JobSpec();
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

TEST(JobSpecDefaults, GpuDefaultsFollowTheMethod) {
  tecl::v1::JobSpec spec = Parse(kMinimal);
  EXPECT_EQ(spec.name(), "demo");
  EXPECT_EQ(spec.kind(), tecl::v1::JOB_KIND_PRETRAIN);
  EXPECT_EQ(spec.model().backbone(), "r2plus1d_18");
  EXPECT_EQ(spec.sampling().clip_length(), 16);
  EXPECT_EQ(spec.sampling().crop_size(), 112);
  EXPECT_THAT(spec.sampling().speeds(), ElementsAre(1, 2, 4, 8));
  EXPECT_EQ(spec.optimizer().name(), "adamw");
  EXPECT_DOUBLE_EQ(spec.optimizer().lr(), 3e-4);
  EXPECT_TRUE(spec.optimizer().scale_lr());
  EXPECT_DOUBLE_EQ(spec.optimizer().weight_decay(), 1e-4);
  EXPECT_DOUBLE_EQ(spec.method().weights().equivariance(), 1.0);
  EXPECT_DOUBLE_EQ(spec.method().weights().instance(), 1.0);
  EXPECT_DOUBLE_EQ(spec.method().equivariance_temperature(), 0.1);
  EXPECT_DOUBLE_EQ(spec.method().instance_temperature(), 0.1);
  EXPECT_EQ(spec.method().instance_positive(), tecl::v1::INSTANCE_POSITIVE_OTHER_CLIP);
  EXPECT_DOUBLE_EQ(spec.augment().crop_area_min(), 0.2);
  EXPECT_DOUBLE_EQ(spec.augment().jitter_prob(), 0.8);
  EXPECT_DOUBLE_EQ(spec.augment().grayscale_prob(), 0.2);
  EXPECT_DOUBLE_EQ(spec.distributed().bucket_size_mb(), 25.0);
  EXPECT_TRUE(spec.distributed().global_batch_loss());
  EXPECT_TRUE(spec.model().sync_batchnorm());
  EXPECT_EQ(spec.optimizer().precision(), tecl::v1::OptimizerSpec::PRECISION_BF16);  // cuda preset
  EXPECT_DOUBLE_EQ(spec.optimizer().eps(), 1e-8);
  EXPECT_EQ(spec.distributed().backend(), tecl::v1::DistributedSpec::BACKEND_NCCL);
  EXPECT_EQ(spec.resources().device(), tecl::v1::DEVICE_CUDA);
  EXPECT_EQ(spec.schedule().warmup_steps(), spec.schedule().total_steps() / 20);
  EXPECT_GT(spec.restart().max_restarts(), 0);
  EXPECT_GT(spec.restart().heartbeat_timeout_s(), 0);
  EXPECT_DOUBLE_EQ(spec.restart().loader_stall_timeout_s(), 60.0);
  EXPECT_DOUBLE_EQ(spec.restart().loader_start_timeout_s(), 300.0);
  EXPECT_FALSE(spec.has_eval());
  EXPECT_TRUE(ValidateJobSpec(spec, {}).ok()) << ValidateJobSpec(spec, {});
}

TEST(JobSpecDefaults, Tiny3dGetsTheCpuPreset) {
  tecl::v1::JobSpec spec = Parse(std::string(kMinimal) + "model: {backbone: tiny3d}\n");
  EXPECT_EQ(spec.sampling().clip_length(), 8);
  EXPECT_EQ(spec.sampling().crop_size(), 64);
  EXPECT_EQ(spec.resources().device(), tecl::v1::DEVICE_CPU);
  EXPECT_EQ(spec.distributed().backend(), tecl::v1::DistributedSpec::BACKEND_GLOO);
  EXPECT_EQ(spec.optimizer().precision(), tecl::v1::OptimizerSpec::PRECISION_FP32);
}

TEST(JobSpecDefaults, EvalDefaults) {
  tecl::v1::JobSpec spec = Parse(std::string(kMinimal) + "kind: eval\neval: {random_init: true}\n");
  EXPECT_EQ(spec.kind(), tecl::v1::JOB_KIND_EVAL);
  EXPECT_EQ(spec.eval().clips_per_video(), 10);
  EXPECT_THAT(spec.eval().recall_at(), ElementsAre(1, 5, 10, 20, 50));
  EXPECT_EQ(spec.eval().probe_epochs(), 500);
  EXPECT_DOUBLE_EQ(spec.eval().probe_lr(), 1.0);
}

TEST(JobSpecDefaults, GivenValuesWinAndDerivedValuesFollowThem) {
  tecl::v1::JobSpec spec = Parse(std::string(kMinimal) + R"(
schedule: {total_steps: 1000}
resources: {device: cpu, trainers: 3}
sampling: {speeds: [1, 3]}
seed: 18446744073709551615
)");
  EXPECT_EQ(spec.schedule().warmup_steps(), 50);
  EXPECT_EQ(spec.distributed().backend(), tecl::v1::DistributedSpec::BACKEND_GLOO);
  EXPECT_EQ(spec.resources().trainers(), 3);
  EXPECT_THAT(spec.sampling().speeds(), ElementsAre(1, 3));
  EXPECT_EQ(spec.seed(), 18446744073709551615ull);
}

TEST(JobSpecParse, RelativePathsResolveAgainstTheBaseDir) {
  ParseOptions options;
  options.base_dir = "/home/me/tecl";
  options.default_name = "from-file";
  absl::StatusOr<tecl::v1::JobSpec> spec =
      ParseJobSpecYaml("dataset: {root: data/synth}\ncheckpoint: {dir: ./ckpt}\n", options);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "from-file");
  EXPECT_EQ(spec->dataset().root(), "/home/me/tecl/data/synth");
  EXPECT_EQ(spec->checkpoint().dir(), "/home/me/tecl/ckpt");
}

TEST(JobSpecParse, YamlRoundTripsEveryField) {
  tecl::v1::JobSpec spec = Parse(R"(
name: round-trip
kind: eval
priority: -3
seed: 99
dataset: {root: /data/x, format: csv, manifest: "m: 1.csv", fps: 12.5}
method: {instance_positive: same_frames, equivariance_temperature: 0.07}
optimizer: {lr: 0.000123456789, scale_lr: false}
eval: {checkpoint: /ckpt/a.pt, recall_at: [1, 3]}
)");
  const std::string yaml = JobSpecToYaml(spec);
  EXPECT_THAT(yaml, HasSubstr("instance_positive: same_frames"));
  EXPECT_THAT(yaml, HasSubstr("format: csv"));
  tecl::v1::JobSpec again = Parse(yaml);
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(spec, again)) << diff << "\n" << yaml;
}

// Found by fuzz/job_spec_fuzzer (its input, minimised): a byte that is not UTF-8 was kept in the
// spec, which protobuf cannot send and JobSpecToYaml wrote back as U+FFFD.
TEST(JobSpecParse, TextThatIsNotUtf8IsRefused) {
  const std::string fuzzed("dataset:\n root: \xd9", 17);
  absl::StatusOr<tecl::v1::JobSpec> spec = ParseJobSpecYaml(fuzzed);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("dataset.root: is not UTF-8 text"));
  for (const char* bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82"}) {
    EXPECT_FALSE(ParseJobSpecYaml(std::string("name: \"x") + bad + "\"\n").ok()) << bad;
  }
  tecl::v1::JobSpec utf8 = Parse("name: \"caf\xc3\xa9 \xf0\x9f\x8e\xa5\"\n");
  EXPECT_EQ(utf8.name(), "caf\xc3\xa9 \xf0\x9f\x8e\xa5");
  EXPECT_EQ(Parse(JobSpecToYaml(utf8)).name(), utf8.name());
}

TEST(JobSpecParse, OverridesSetNestedFields) {
  absl::StatusOr<std::string> yaml =
      ApplyYamlOverrides(kMinimal, {"resources.trainers=4", "eval.source_job_id=job-000007",
                                    "sampling.speeds=[1, 2]", "kind=eval"});
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  tecl::v1::JobSpec spec = Parse(*yaml);
  EXPECT_EQ(spec.resources().trainers(), 4);
  EXPECT_EQ(spec.eval().source_job_id(), "job-000007");
  EXPECT_THAT(spec.sampling().speeds(), ElementsAre(1, 2));
  EXPECT_EQ(spec.kind(), tecl::v1::JOB_KIND_EVAL);
  EXPECT_THAT(ApplyYamlOverrides(kMinimal, {"novalue"}).status().message(),
              HasSubstr("expected path.to.field=value"));
  EXPECT_THAT(ApplyYamlOverrides(kMinimal, {"name.x=1"}).status().message(),
              HasSubstr("name is not a mapping"));
}

TEST(JobSpecParse, ClosestMatch) {
  EXPECT_EQ(ClosestMatch("clip_lenght", {"clip_length", "crop_size"}), "clip_length");
  EXPECT_EQ(ClosestMatch("r50", {"r2plus1d_18", "r3d_18", "tiny3d"}), "");
  EXPECT_EQ(ClosestMatch("r3d18", {"r2plus1d_18", "r3d_18", "tiny3d"}), "r3d_18");
  EXPECT_EQ(ClosestMatch("zzzzzz", {"clip_length"}), "");
}

// One broken spec and what its message must say.
struct BrokenSpec {
  const char* label;
  const char* yaml;     // Appended to kMinimal (later keys given twice are separate cases).
  const char* path;     // The field path the message names.
  const char* message;  // And what it says about it.
};

class BrokenSpecTest : public ::testing::TestWithParam<BrokenSpec> {};

TEST_P(BrokenSpecTest, IsRefusedNamingTheField) {
  const BrokenSpec& c = GetParam();
  SpecLimits limits;
  limits.max_trainers = 16;
  absl::StatusOr<tecl::v1::JobSpec> spec = LoadJobSpec(std::string(c.yaml), ParseOptions(), limits);
  ASSERT_FALSE(spec.ok()) << c.label;
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << c.label;
  EXPECT_THAT(std::string(spec.status().message()), AllOf(HasSubstr(c.path), HasSubstr(c.message)))
      << c.label;
}

constexpr char kRoot[] = "name: x\ndataset: {root: /data/x}\n";
#define SPEC(extra) (std::string(kRoot) + extra).c_str()

std::vector<BrokenSpec> BrokenSpecs() {
  static std::vector<std::string> storage;
  auto add = [](std::vector<BrokenSpec>* out, const char* label, std::string yaml, const char* path,
                const char* message) {
    storage.push_back(std::move(yaml));
    out->push_back({label, nullptr, path, message});
    out->back().yaml = storage.back().c_str();
  };
  storage.reserve(100);
  std::vector<BrokenSpec> c;
  const std::string r = kRoot;
  add(&c, "unknown top key", r + "sampleing: {clip_length: 8}\n", "sampleing",
      "did you mean sampling?");
  add(&c, "unknown nested key", r + "sampling: {clip_lenght: 8}\n", "sampling.clip_lenght",
      "did you mean clip_length?");
  add(&c, "unknown key far from any", r + "zzzzzzzz: 1\n", "zzzzzzzz",
      "the fields here are name, kind");
  add(&c, "string for int", r + "sampling: {clip_length: sixteen}\n", "sampling.clip_length",
      "expected an integer, got \"sixteen\"");
  add(&c, "float for int", r + "resources: {trainers: 1.5}\n", "resources.trainers",
      "expected an integer");
  add(&c, "list for scalar", r + "sampling: {crop_size: [1]}\n", "sampling.crop_size",
      "expected an integer, got a list");
  add(&c, "scalar for list", r + "sampling: {speeds: 4}\n", "sampling.speeds", "expected a list");
  add(&c, "bad list element", r + "sampling: {speeds: [1, two]}\n", "sampling.speeds[1]",
      "expected an integer");
  add(&c, "scalar for message", r + "model: tiny3d\n", "model", "expected a mapping");
  add(&c, "bad bool", r + "optimizer: {scale_lr: maybe}\n", "optimizer.scale_lr", "true or false");
  add(&c, "bad enum", r + "resources: {device: tpu}\n", "resources.device",
      "\"tpu\" is not one of cpu, cuda");
  add(&c, "bad kind", r + "kind: finetune\n", "kind", "is not one of pretrain, eval");
  add(&c, "negative seed", r + "seed: -1\n", "seed", "non-negative integer");
  add(&c, "int32 overflow", r + "priority: 99999999999\n", "priority", "does not fit");
  add(&c, "duplicate key", r + "sampling: {crop_size: 64, crop_size: 32}\n", "sampling.crop_size",
      "given twice");
  add(&c, "unknown backbone", r + "model: {backbone: r50}\n", "model.backbone",
      "\"r50\" is not one of r2plus1d_18, r3d_18, tiny3d");
  add(&c, "backbone typo", r + "model: {backbone: r3d18}\n", "model.backbone",
      "did you mean r3d_18?");
  add(&c, "missing root", "name: x\n", "dataset.root", "missing; set it to the folder");
  add(&c, "relative root at the coordinator", "name: x\ndataset: {root: data/synth}\n",
      "dataset.root", "is relative");
  add(&c, "csv without manifest", "name: x\ndataset: {root: /d, format: csv}\n", "dataset.manifest",
      "missing");
  add(&c, "ucf101 without lists", "name: x\ndataset: {root: /d, format: ucf101}\n",
      "dataset.class_index", "missing");
  add(&c, "bad split", "name: x\ndataset: {root: /d, split: test}\n", "dataset.split",
      "is not one of train, all");
  add(&c, "zero trainers", r + "resources: {trainers: 0}\n", "resources.trainers",
      "use at least 1");
  add(&c, "too many trainers", r + "resources: {trainers: 17}\n", "resources.trainers",
      "more than this cluster's maximum of 16");
  add(&c, "zero dataloaders", r + "resources: {dataloaders_per_trainer: 0}\n",
      "resources.dataloaders_per_trainer", "use at least 1");
  add(&c, "speeds not ascending", r + "sampling: {speeds: [1, 4, 2]}\n", "sampling.speeds",
      "strictly ascending");
  add(&c, "speed zero", r + "sampling: {speeds: [0, 1]}\n", "sampling.speeds[0]", "at least 1");
  add(&c, "speeds empty", r + "sampling: {speeds: []}\n", "sampling.speeds", "empty");
  add(&c, "clip span", r + "sampling: {clip_length: 128, speeds: [1, 8]}\n", "sampling",
      "spans 1017 source frames ((clip_length - 1) x speed + 1), more than 512");
  add(&c, "zero clip length", r + "sampling: {clip_length: 0}\n", "sampling.clip_length",
      "out of range");
  add(&c, "probability above one", r + "augment: {flip_prob: 1.5}\n", "augment.flip_prob",
      "out of range");
  add(&c, "crop range swapped", r + "augment: {crop_area_min: 0.9, crop_area_max: 0.5}\n",
      "augment.crop_area_max", "below crop_area_min");
  add(&c, "nan lr", r + "optimizer: {lr: .nan}\n", "optimizer.lr", "out of range");
  add(&c, "negative lr", r + "optimizer: {lr: -1}\n", "optimizer.lr", "out of range");
  add(&c, "unknown optimizer", r + "optimizer: {name: sgd}\n", "optimizer.name",
      "is not one of adamw");
  add(&c, "warmup beyond total", r + "schedule: {total_steps: 10, warmup_steps: 20}\n",
      "schedule.warmup_steps", "must be in [0, total_steps = 10]");
  add(&c, "all weights zero",
      r + "method: {weights: {equivariance: 0, speed: 0, direction: 0, "
          "order: 0, instance: 0}}\n",
      "method.weights", "every loss weight is 0");
  add(&c, "negative weight", r + "method: {weights: {speed: -1}}\n", "method.weights.speed",
      "out of range");
  add(&c, "zero temperature", r + "method: {instance_temperature: 0}\n",
      "method.instance_temperature", "out of range");
  add(&c, "negative loader stall timeout", r + "restart: {loader_stall_timeout_s: -1}\n",
      "restart.loader_stall_timeout_s", "out of range");
  add(&c, "nan loader start timeout", r + "restart: {loader_start_timeout_s: .nan}\n",
      "restart.loader_start_timeout_s", "out of range");
  add(&c, "fp16 on cpu", r + "resources: {device: cpu}\noptimizer: {precision: fp16}\n",
      "optimizer.precision", "fp16 needs resources.device cuda");
  add(&c, "optimizer eps too large", r + "optimizer: {eps: 2}\n", "optimizer.eps", "out of range");
  add(&c, "nccl on cpu", r + "resources: {device: cpu}\ndistributed: {backend: nccl}\n",
      "distributed.backend", "nccl needs resources.device cuda");
  add(&c, "bad name", "name: my job\ndataset: {root: /d}\n", "name", "may only hold letters");
  add(&c, "eval with nothing to evaluate", r + "kind: eval\n", "eval", "nothing to evaluate");
  add(&c, "eval with two sources", r + "kind: eval\neval: {random_init: true, source_job_id: j}\n",
      "eval", "set exactly one of source_job_id, checkpoint, random_init");
  add(&c, "eval recall not ascending",
      r + "kind: eval\neval: {random_init: true, recall_at: [5, 1]}\n", "eval.recall_at",
      "strictly ascending");
  add(&c, "eval of class folders without splits",
      "name: x\nkind: eval\ndataset: {root: /d}\neval: {random_init: true}\n", "dataset.train_list",
      "evaluation needs both splits");
  add(&c, "yaml syntax", "name: [unclosed\n", "not valid YAML at line", "");
  add(&c, "empty document", "", "empty", "");
  add(&c, "top level list", "- 1\n- 2\n", "expected a mapping of JobSpec fields", "");
  return c;
}

INSTANTIATE_TEST_SUITE_P(Table, BrokenSpecTest, ::testing::ValuesIn(BrokenSpecs()),
                         [](const ::testing::TestParamInfo<BrokenSpec>& info) {
                           std::string name = info.param.label;
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(JobSpecValidate, ReportsEveryProblemAtOnce) {
  absl::StatusOr<tecl::v1::JobSpec> spec = LoadJobSpec(R"(
name: x
sampling: {clip_lenght: 8, speeds: [2, 1]}
model: {backbone: r50}
resources: {trainers: 0, device: tpu}
)",
                                                       {}, {});
  ASSERT_FALSE(spec.ok());
  const std::string message(spec.status().message());
  EXPECT_THAT(message, HasSubstr("job spec has 6 problems"));
  for (const char* path : {"sampling.clip_lenght", "sampling.speeds", "model.backbone",
                           "resources.trainers", "resources.device", "dataset.root"}) {
    EXPECT_THAT(message, HasSubstr(path));
  }
  // Line numbers point at the offending YAML.
  EXPECT_THAT(message, HasSubstr("(line 3)"));
}

TEST(JobSpecValidate, OversizedSpecIsRefused) {
  tecl::v1::JobSpec spec = Parse(kMinimal);
  spec.set_name(std::string(2000, 'a'));
  SpecLimits limits;
  limits.max_spec_bytes = 1000;
  EXPECT_THAT(ValidateJobSpec(spec, limits).message(), HasSubstr("more than the limit of 1000"));
}

std::string MakeTempDir() {
  char pattern[] = "/tmp/tecl_spec_test_XXXXXX";
  return mkdtemp(pattern);
}

TEST(JobSpecValidate, DataRootsAndExistingPaths) {
  const std::string dir = MakeTempDir();
  std::filesystem::create_directories(dir + "/data/synth");
  std::ofstream(dir + "/data/synth/trainlist.txt") << "a/1.mp4\n";
  SpecLimits limits;
  limits.data_roots = {dir + "/data/"};
  limits.check_paths_exist = true;
  auto yaml = [&](const std::string& root, const std::string& list) {
    return "name: x\ndataset: {root: " + root + ", train_list: " + list + "}\n";
  };
  EXPECT_TRUE(LoadJobSpec(yaml(dir + "/data/synth", "trainlist.txt"), {}, limits).ok());
  EXPECT_THAT(LoadJobSpec(yaml("/etc", "trainlist.txt"), {}, limits).status().message(),
              AllOf(HasSubstr("dataset.root"), HasSubstr("outside the data roots")));
  EXPECT_THAT(LoadJobSpec(yaml(dir + "/data/synth/../../x", "t"), {}, limits).status().message(),
              HasSubstr("contains \"..\""));
  EXPECT_THAT(LoadJobSpec(yaml(dir + "/data/missing", "t"), {}, limits).status().message(),
              AllOf(HasSubstr("dataset.root"), HasSubstr("does not exist")));
  EXPECT_THAT(LoadJobSpec(yaml(dir + "/data/synth", "nolist.txt"), {}, limits).status().message(),
              AllOf(HasSubstr("dataset.train_list"), HasSubstr("does not exist")));
  // The checkpoint folder need not exist yet (rank 0 creates it), but must be absolute.
  EXPECT_TRUE(LoadJobSpec(yaml(dir + "/data/synth", "trainlist.txt") + "checkpoint: {dir: " + dir +
                              "/not-yet}\n",
                          {}, limits)
                  .ok());
  EXPECT_THAT(LoadJobSpec(yaml(dir + "/data/synth", "trainlist.txt") + "checkpoint: {dir: ckpt}\n",
                          {}, limits)
                  .status()
                  .message(),
              AllOf(HasSubstr("checkpoint.dir"), HasSubstr("is relative")));
  // A sibling folder whose name starts like a data root is not under it.
  std::filesystem::create_directories(dir + "/data2");
  EXPECT_THAT(LoadJobSpec(yaml(dir + "/data2", "t"), {}, limits).status().message(),
              HasSubstr("outside the data roots"));
  std::filesystem::remove_all(dir);
}

// kind: prepare (docs/prepare.md): its own defaults and checks, none of a training job's.
TEST(JobSpecPrepare, DefaultsAndRelativeOutputRoot) {
  ParseOptions options;
  options.base_dir = "/work";
  absl::StatusOr<tecl::v1::JobSpec> spec = LoadJobSpec(
      "kind: prepare\nname: p\ndataset: {root: /data/raw}\nprepare: {output_root: prepared}\n",
      options, SpecLimits());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind(), tecl::v1::JOB_KIND_PREPARE);
  EXPECT_EQ(spec->prepare().output_root(), "/work/prepared");
  EXPECT_EQ(spec->prepare().short_side(), 128);
  EXPECT_EQ(spec->prepare().keyframe_interval(), 32);
  EXPECT_EQ(spec->prepare().codec(), tecl::v1::PrepareSpec::CODEC_H264);
  EXPECT_EQ(spec->prepare().crf(), 20);
  EXPECT_EQ(spec->resources().dataloaders(), 4);
  // The YAML round-trips with the section.
  absl::StatusOr<tecl::v1::JobSpec> again = ParseJobSpecYaml(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*spec, *again));
  // A pretraining spec never prints one.
  EXPECT_THAT(JobSpecToYaml(Parse(kMinimal)), Not(HasSubstr("prepare")));
}

TEST(JobSpecPrepare, EveryBadFieldIsNamed) {
  const std::string base = "kind: prepare\nname: p\ndataset: {root: /data/raw}\n";
  struct Case {
    std::string yaml;
    const char* path;
    const char* message;
  };
  const Case cases[] = {
      {base, "prepare.output_root", "missing"},
      {base + "prepare: {output_root: /data/raw/copy}\n", "prepare.output_root",
       "overlaps dataset.root"},
      {base + "prepare: {output_root: /data}\n", "prepare.output_root", "overlaps dataset.root"},
      {base + "prepare: {output_root: /out, short_side: 127}\n", "prepare.short_side", "is odd"},
      {base + "prepare: {output_root: /out, short_side: 8}\n", "prepare.short_side",
       "out of range"},
      {base + "prepare: {output_root: /out, keyframe_interval: 0}\n",
       "prepare.keyframe_interval", "out of range"},
      {base + "prepare: {output_root: /out, crf: 60}\n", "prepare.crf", "out of range"},
      {base + "prepare: {output_root: /out, codec: vp9}\n", "prepare.codec",
       "is not one of h264, intra"},
      {base + "prepare: {output_root: /out}\nresources: {dataloaders: 0}\n",
       "resources.dataloaders", "out of range"},
      {base + "prepare: {output_root: /out}\nrestart: {heartbeat_timeout_s: 0}\n",
       "restart.heartbeat_timeout_s", "out of range"},
      {"name: x\ndataset: {root: /data/raw}\nprepare: {output_root: /out}\n", "prepare",
       "only a kind: prepare job reads it"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<tecl::v1::JobSpec> spec = LoadJobSpec(c.yaml, ParseOptions(), SpecLimits());
    ASSERT_FALSE(spec.ok()) << c.yaml;
    EXPECT_THAT(std::string(spec.status().message()),
                AllOf(HasSubstr(c.path), HasSubstr(c.message)))
        << c.yaml;
  }
}

TEST(JobSpecExamples, EveryExampleLoads) {
  const char* source = getenv("TECL_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(source) + "/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    absl::StatusOr<std::string> yaml =
        ApplyYamlOverrides(ReadFile(entry.path()), {"eval.source_job_id=job-000001"});
    ASSERT_TRUE(yaml.ok()) << yaml.status();
    // The CPU demo's spec has no eval section; the override adds one, ignored by pretraining.
    ParseOptions options;
    options.base_dir = "/work";
    SpecLimits limits;
    absl::StatusOr<tecl::v1::JobSpec> spec = LoadJobSpec(
        entry.path().filename() == "cpu-demo-random-init.yaml" ? ReadFile(entry.path()) : *yaml,
        options, limits);
    EXPECT_TRUE(spec.ok()) << entry.path() << ": " << spec.status();
  }
  EXPECT_GE(count, 4);
}

TEST(JobSpecExamples, CpuDemoIsTheCpuPreset) {
  const char* source = getenv("TECL_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  ParseOptions options;
  options.base_dir = "/repo";
  absl::StatusOr<tecl::v1::JobSpec> spec =
      LoadJobSpec(ReadFile(std::string(source) + "/examples/cpu-demo.yaml"), options, {});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model().backbone(), "tiny3d");
  EXPECT_EQ(spec->sampling().clip_length(), 8);
  EXPECT_EQ(spec->sampling().crop_size(), 64);
  EXPECT_EQ(spec->resources().device(), tecl::v1::DEVICE_CPU);
  EXPECT_EQ(spec->dataset().root(), "/repo/data/synth");
  EXPECT_EQ(spec->dataset().format(), tecl::v1::DatasetSpec::FORMAT_CLASS_FOLDERS);
  EXPECT_EQ(spec->dataset().train_list(), "trainlist.txt");
}

TEST(JobSpecEnums, ShortNames) {
  EXPECT_EQ(
      EnumValueShortName(*tecl::v1::JobKind_descriptor()->FindValueByName("JOB_KIND_PRETRAIN")),
      "pretrain");
  EXPECT_EQ(
      EnumValueShortName(*tecl::v1::JobState_descriptor()->FindValueByName("JOB_STATE_RUNNING")),
      "running");
  EXPECT_EQ(EnumValueShortName(*tecl::v1::DatasetSpec::Format_descriptor()->FindValueByName(
                "FORMAT_CLASS_FOLDERS")),
            "class_folders");
}

}  // namespace
}  // namespace tecl::coordinator
