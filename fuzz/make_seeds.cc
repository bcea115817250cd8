// tecl-fuzz-seeds EXAMPLES_DIR OUT_DIR: the seed corpora the product itself can write, one
// folder per harness under OUT_DIR: SubmitJob and StreamBatches requests carrying the specs of
// EXAMPLES_DIR/*.yaml (as teclctl and a trainer send them), and sealed files written by
// WriteSealedFile. scripts/fuzz adds the job spec YAML and the video files.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "services/coordinator/spec/job_spec.h"
#include "services/worker/train/sealed_file.h"
#include "tecl/v1/coordinator.pb.h"
#include "tecl/v1/dataloader.pb.h"

namespace {

namespace fs = std::filesystem;

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s EXAMPLES_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path examples(argv[1]), out(argv[2]);
  for (const char* harness : {"submit_job_request", "stream_batches_request", "sealed_file"}) {
    fs::create_directories(out / harness);
  }
  int specs = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(examples)) {
    if (entry.path().extension() != ".yaml") continue;
    std::stringstream text;
    text << std::ifstream(entry.path()).rdbuf();
    tecl::coordinator::ParseOptions options;
    options.base_dir = "/data";
    absl::StatusOr<tecl::v1::JobSpec> spec = tecl::coordinator::ParseJobSpecYaml(text.str(), options);
    if (!spec.ok()) {
      std::fprintf(stderr, "%s: %s\n", entry.path().c_str(), spec.status().ToString().c_str());
      return 1;
    }
    const std::string stem = entry.path().stem().string();
    tecl::v1::SubmitJobRequest submit;
    *submit.mutable_spec() = *spec;
    submit.set_request_id("req-" + stem);
    WriteFile(out / "submit_job_request" / (stem + ".bin"), submit.SerializeAsString());

    tecl::v1::StreamBatchesRequest stream;
    stream.set_job_id("job-000001");
    *stream.mutable_spec() = *spec;
    stream.set_rank(1);
    stream.set_world_size(2);
    stream.set_start_step(40);
    stream.set_step_stride(2);
    WriteFile(out / "stream_batches_request" / (stem + "-train.bin"), stream.SerializeAsString());
    stream.set_mode(tecl::v1::STREAM_MODE_EVAL);
    stream.set_rank(0);
    stream.set_world_size(1);
    stream.set_start_step(1);
    stream.set_step_stride(1);
    stream.set_eval_videos_per_batch(2);
    WriteFile(out / "stream_batches_request" / (stem + "-eval.bin"), stream.SerializeAsString());
    ++specs;
  }
  using tecl::worker::core::SealedKind;
  const std::vector<char> payload = {'\x80', '\x02', '}', 'q', '\x00', '.'};
  tecl::worker::core::WriteSealedFile((out / "sealed_file" / "checkpoint.tecl").string(),
                                      SealedKind::kCheckpoint, payload);
  tecl::worker::core::WriteSealedFile((out / "sealed_file" / "encoder.tecl").string(),
                                      SealedKind::kEncoder, std::vector<char>(300, 'w'));
  tecl::worker::core::WriteSealedFile((out / "sealed_file" / "empty.tecl").string(),
                                      SealedKind::kCheckpoint, {});
  std::printf("tecl-fuzz-seeds: %d specs, 3 sealed files in %s\n", specs, out.c_str());
  return specs > 0 ? 0 : 1;
}
