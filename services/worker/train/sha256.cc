#include "services/worker/train/sha256.h"

#include <openssl/evp.h>

#include <stdexcept>
#include <string>

namespace tecl::worker::core {
namespace {

void Check(int ok, const char* call) {
  if (ok != 1) throw std::runtime_error(std::string("SHA-256: libcrypto ") + call + " failed");
}

}  // namespace

void Sha256::ContextDeleter::operator()(evp_md_ctx_st* context) const { EVP_MD_CTX_free(context); }

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  if (context_ == nullptr) throw std::runtime_error("SHA-256: libcrypto EVP_MD_CTX_new failed");
  Check(EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(const void* data, size_t size) {
  if (size == 0) return;
  Check(EVP_DigestUpdate(context_.get(), data, size), "EVP_DigestUpdate");
}

Sha256Digest Sha256::Finish() {
  Sha256Digest digest;
  unsigned int length = 0;
  Check(EVP_DigestFinal_ex(context_.get(), digest.data(), &length), "EVP_DigestFinal_ex");
  if (length != digest.size()) {
    throw std::runtime_error("SHA-256: libcrypto returned a digest of another size");
  }
  return digest;
}

Sha256Digest ComputeSha256(const void* data, size_t size) {
  Sha256 sha;
  sha.Update(data, size);
  return sha.Finish();
}

std::string DigestHex(const Sha256Digest& digest) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * digest.size());
  for (uint8_t byte : digest) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 15]);
  }
  return out;
}

}  // namespace tecl::worker::core
