// tecl-dataloader: decodes, samples and augments clip batches and streams them to trainers.
#include <fstream>

#include "absl/flags/flag.h"
#include "services/common/flags.h"
#include "services/common/logging.h"
#include "services/common/client_flags.h"
#include "services/common/server_flags.h"
#include "services/dataloader/service/dataloader_server.h"

ABSL_FLAG(std::vector<std::string>, data_root, {}, "Comma-separated folders data sets must lie under (empty = any)");
ABSL_FLAG(std::vector<std::string>, write_root, {},
          "Comma-separated folders prepare jobs may write prepared data sets under (empty = none: "
          "prepare jobs are refused)");
ABSL_FLAG(int, decode_threads, 0, "Decode threads shared by all streams (0 = --threads, else one per core)");
ABSL_FLAG(int, threads, 0, "Decode threads when --decode_threads is 0 (teclctl local sets TECL_THREADS)");
ABSL_FLAG(int, max_streams, 64, "Concurrent StreamBatches calls; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, decode_budget, absl::Seconds(20), "Longest decode of one video's clips");
ABSL_FLAG(int, index_cache_videos, 16384, "Videos whose frame index stays cached");
ABSL_FLAG(int64_t, index_cache_bytes, int64_t{512} << 20,
          "Bytes the cached frame indexes may hold (about 48 bytes a frame; at least 1 MiB)");
ABSL_FLAG(int, max_video_width, 8192, "Widest video decoded; wider ones are skipped (too_large)");
ABSL_FLAG(int, max_video_height, 8192, "Tallest video decoded; taller ones are skipped (too_large)");
ABSL_FLAG(int64_t, max_video_frames, 1'000'000,
          "Most frames of a video decoded (at dataset.fps when set); longer ones are skipped "
          "(too_large)");
ABSL_FLAG(std::string, manifest, "", "Data set for requests naming none: class-folder root or CSV");
ABSL_FLAG(bool, register, true, "Register with --coordinator and heartbeat (false = standalone)");
ABSL_FLAG(std::string, advertise_address, "", "host:port trainers reach this loader at (default: the listen address)");
ABSL_FLAG(std::string, port_file, "", "Write the bound host:port here once serving (for --listen with port 0)");

int main(int argc, char** argv) {
  tecl::BlockTerminationSignals();
  tecl::ParseFlags(argc, argv, "decodes, samples and augments clip batches for TECL trainers.\nUsage: tecl-dataloader [flags]");
  tecl::SetLogTag("dataloader");
  tecl::dataloader::DataLoaderConfig config;
  auto server_options = tecl::ServerOptionsFromFlags("0.0.0.0:7080");
  auto channel = tecl::ChannelOptionsFromFlags();
  if (!server_options.ok() || !channel.ok()) {
    TECL_LOG(ERROR) << (server_options.ok() ? channel.status() : server_options.status()).message();
    return 2;
  }
  config.server = *std::move(server_options);
  config.data_roots = absl::GetFlag(FLAGS_data_root);
  config.write_roots = absl::GetFlag(FLAGS_write_root);
  config.loader.decode_threads = absl::GetFlag(FLAGS_decode_threads) > 0 ? absl::GetFlag(FLAGS_decode_threads)
                                                                          : absl::GetFlag(FLAGS_threads);
  config.loader.max_streams = absl::GetFlag(FLAGS_max_streams);
  config.loader.decode_budget = absl::GetFlag(FLAGS_decode_budget);
  config.index_cache_videos = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_index_cache_videos)));
  config.index_cache_bytes =
      static_cast<size_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_index_cache_bytes)));
  config.loader.input_limits = {absl::GetFlag(FLAGS_max_video_width),
                                absl::GetFlag(FLAGS_max_video_height),
                                absl::GetFlag(FLAGS_max_video_frames)};
  config.manifest = absl::GetFlag(FLAGS_manifest);
  if (absl::GetFlag(FLAGS_register)) config.coordinator = absl::GetFlag(FLAGS_coordinator);
  config.coordinator_channel = *channel;
  config.advertise_address = absl::GetFlag(FLAGS_advertise_address);
  auto server = tecl::dataloader::DataLoaderServer::Start(config);
  if (!server.ok()) {
    TECL_LOG(ERROR) << "cannot start: " << server.status().message();
    return 1;
  }
  if (const std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
    std::ofstream(port_file + ".tmp") << (*server)->address() << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  const int signal = tecl::WaitForTerminationSignal();
  TECL_LOG(INFO) << "signal " << signal << ": shutting down";
  (*server)->Shutdown(absl::Seconds(10));
  return 0;
}
