#include "services/common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace tecl {
namespace {

std::string Hex(const uint8_t* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    hex[2 * i] = kDigits[data[i] >> 4];
    hex[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return hex;
}

}  // namespace

Digest Sha256(absl::string_view data) {
  Digest digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != digest.size()) {
    std::fprintf(stderr, "tecl: libcrypto failed to compute a SHA-256 digest\n");
    std::abort();
  }
  return digest;
}

std::string DigestHex(const Digest& digest) { return Hex(digest.data(), digest.size()); }

bool DigestsEqual(const Digest& a, const Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool SecretsEqual(absl::string_view a, absl::string_view b) {
  return DigestsEqual(Sha256(a), Sha256(b));
}

std::string RandomToken(int bytes) {
  std::vector<uint8_t> random(static_cast<size_t>(bytes > 0 ? bytes : 32));
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    std::fprintf(stderr, "tecl: the system's random generator failed; cannot make a credential\n");
    std::abort();
  }
  return Hex(random.data(), random.size());
}

}  // namespace tecl
