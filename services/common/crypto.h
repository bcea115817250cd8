// The few cryptographic primitives the services use, from OpenSSL's libcrypto: SHA-256, a
// comparison that takes the same time whatever the inputs, and random tokens.
//
// Thread-safety: pure functions (RandomToken draws from OpenSSL's thread-safe generator).
#ifndef TECL_SERVICES_COMMON_CRYPTO_H_
#define TECL_SERVICES_COMMON_CRYPTO_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace tecl {

using Digest = std::array<uint8_t, 32>;

// SHA-256 of `data`.
Digest Sha256(absl::string_view data);
// Lower-case hex of a digest (64 characters).
std::string DigestHex(const Digest& digest);

// Whether two digests are equal, in time independent of their contents.
bool DigestsEqual(const Digest& a, const Digest& b);
// Whether two secrets are equal, in time independent of their contents and lengths (compares
// their SHA-256 digests).
bool SecretsEqual(absl::string_view a, absl::string_view b);

// `bytes` random bytes from a cryptographically secure generator, as lower-case hex. Aborts the
// process if the generator fails (it cannot be seeded: nothing secure can be done).
std::string RandomToken(int bytes = 32);

}  // namespace tecl

#endif  // TECL_SERVICES_COMMON_CRYPTO_H_
