// Sealed files (checkpoints, encoder exports) as a trainer reads them before decoding a single
// payload byte: ReadSealedFile on the fuzzer's bytes. It must either return the payload whose
// SHA-256 the header names or throw Error(kDataLoss); nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz/fuzz_input_file.h"
#include "services/worker/model/error.h"
#include "services/worker/train/sealed_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tecl::worker::core;
  static tecl::fuzz::FuzzInputFile file("ckpt.tecl");
  const std::string& path = file.Write(data, size);
  try {
    const SealedFile sealed = ReadSealedFile(path);
    if (sealed.payload.size() + kSealedHeaderSize != size || sealed.sha256.size() != 64) {
      std::fprintf(stderr, "ReadSealedFile accepted %zu bytes as a %zu-byte payload\n", size,
                   sealed.payload.size());
      std::abort();
    }
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kDataLoss) {
      std::fprintf(stderr, "ReadSealedFile threw %s, not DATA_LOSS: %s\n", ErrorCodeName(e.code()),
                   e.what());
      std::abort();
    }
  }
  return 0;
}
