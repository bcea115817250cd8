// SHA-256 (FIPS 180-4), the checksum of checkpoint payloads (and of tecl.v1.Checkpoint.sha256).
//
// Thread-safety: a Sha256 object is used by one thread; the free functions are pure.
#ifndef TECL_SERVICES_WORKER_TRAIN_SHA256_H_
#define TECL_SERVICES_WORKER_TRAIN_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace tecl::worker::core {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  // The digest of everything passed to Update. The object must not be used afterwards.
  Sha256Digest Finish();

 private:
  void Block(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_;
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // Bytes passed to Update.
};

Sha256Digest ComputeSha256(const void* data, size_t size);

// Lower-case hex of a digest (64 characters).
std::string DigestHex(const Sha256Digest& digest);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_SHA256_H_
