// SHA-256 (FIPS 180-4), the checksum of checkpoint payloads (and of tecl.v1.Checkpoint.sha256),
// computed by OpenSSL's libcrypto (EVP interface).
//
// Errors: libcrypto failing to allocate or run the digest (it does not otherwise fail) throws
// std::runtime_error naming the EVP call.
// Thread-safety: a Sha256 object is used by one thread; the free functions are pure.
// Ownership: a Sha256 owns its EVP digest context; movable, not copyable.
#ifndef TECL_SERVICES_WORKER_TRAIN_SHA256_H_
#define TECL_SERVICES_WORKER_TRAIN_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header.

namespace tecl::worker::core {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void Update(const void* data, size_t size);
  // The digest of everything passed to Update. The object must not be used afterwards.
  Sha256Digest Finish();

 private:
  struct ContextDeleter {
    void operator()(evp_md_ctx_st* context) const;
  };
  std::unique_ptr<evp_md_ctx_st, ContextDeleter> context_;
};

Sha256Digest ComputeSha256(const void* data, size_t size);

// Lower-case hex of a digest (64 characters).
std::string DigestHex(const Sha256Digest& digest);

}  // namespace tecl::worker::core

#endif  // TECL_SERVICES_WORKER_TRAIN_SHA256_H_
