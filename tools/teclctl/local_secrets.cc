#include "tools/teclctl/local_secrets.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "services/common/crypto.h"

namespace tecl::teclctl {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRoles[] = {"coordinator", "dataloader", "trainer", "user", "reader"};
constexpr const char* kTokenRoles[] = {"user", "reader", "trainer", "dataloader"};
constexpr long kValidDays = 3650;

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using Cert = std::unique_ptr<X509, X509Deleter>;

absl::Status CryptoError(const std::string& what) {
  return absl::InternalError(absl::StrCat("libcrypto failed to ", what));
}

// Writes `text` to `path` (mode 0600), replacing it atomically.
absl::Status WritePrivate(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot write ", temp, ": ", std::strerror(error));
    return error == EACCES ? absl::PermissionDeniedError(message)
                           : absl::UnavailableError(message);
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

template <typename WritePem>
absl::StatusOr<std::string> Pem(WritePem write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (bio == nullptr || write(bio.get()) != 1) return CryptoError("write PEM");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

absl::StatusOr<Pkey> ReadKey(const std::string& path) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), BIO_free);
  if (bio == nullptr) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) return absl::DataLossError(absl::StrCat(path, " is not a PEM private key"));
  return key;
}

absl::StatusOr<Cert> ReadCert(const std::string& path) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), BIO_free);
  if (bio == nullptr) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) return absl::DataLossError(absl::StrCat(path, " is not a PEM certificate"));
  return cert;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  if (extension == nullptr) return CryptoError(absl::StrCat("make extension ", value));
  const int added = X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
  return added == 1 ? absl::OkStatus() : CryptoError("add an extension");
}

// A certificate for `key` with Common Name `cn`, signed by (issuer, issuer_key); self-signed when
// `issuer` is null (the CA).
absl::StatusOr<Cert> MakeCertificate(EVP_PKEY* key, const std::string& cn, X509* issuer,
                                     EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), 2) != 1) return CryptoError("make X509");
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) return CryptoError("draw a serial");
  serial_bytes[0] &= 0x7f;  // Positive.
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(
      BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr), BN_free);
  if (serial == nullptr ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return CryptoError("set the serial");
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), kValidDays * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  absl::Status status = AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (status.ok()) status = AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid");
  if (issuer == nullptr) {
    if (status.ok()) status = AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    if (status.ok()) status = AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    if (status.ok()) status = AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    if (status.ok()) {
      status = AddExtension(cert.get(), signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    }
    if (status.ok()) {
      status = AddExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
    }
  }
  if (!status.ok()) return status;
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return CryptoError("sign a certificate");
  }
  return cert;
}

absl::Status WriteKeyAndCert(const std::string& key_path, EVP_PKEY* key,
                             const std::string& cert_path, X509* cert) {
  absl::StatusOr<std::string> key_pem = Pem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> cert_pem = Pem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert); });
  if (!cert_pem.ok()) return cert_pem.status();
  absl::Status status = WritePrivate(key_path, *key_pem);
  if (status.ok()) status = WritePrivate(cert_path, *cert_pem);
  return status;
}

}  // namespace

LocalSecrets LocalSecretsIn(const std::string& home) {
  LocalSecrets secrets;
  secrets.dir = (fs::path(home) / "secrets").string();
  secrets.ca = secrets.dir + "/ca.pem";
  secrets.auth_file = secrets.dir + "/auth_file";
  return secrets;
}

absl::Status EnsureLocalSecrets(const LocalSecrets& secrets) {
  std::error_code error;
  fs::create_directories(secrets.dir, error);
  if (error || ::chmod(secrets.dir.c_str(), 0700) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", secrets.dir, ": ",
                                                    error ? error.message() : std::strerror(errno)));
  }
  // The authority: made once, reused.
  const std::string ca_key_path = secrets.dir + "/ca.key";
  Pkey ca_key;
  Cert ca_cert;
  if (fs::exists(ca_key_path) && fs::exists(secrets.ca)) {
    absl::StatusOr<Pkey> key = ReadKey(ca_key_path);
    if (!key.ok()) return key.status();
    absl::StatusOr<Cert> cert = ReadCert(secrets.ca);
    if (!cert.ok()) return cert.status();
    ca_key = *std::move(key);
    ca_cert = *std::move(cert);
  } else {
    ca_key.reset(EVP_EC_gen("P-256"));
    if (ca_key == nullptr) return CryptoError("make a P-256 key");
    absl::StatusOr<Cert> cert = MakeCertificate(ca_key.get(), "tecl local cluster CA", nullptr, nullptr);
    if (!cert.ok()) return cert.status();
    ca_cert = *std::move(cert);
    if (absl::Status s = WriteKeyAndCert(ca_key_path, ca_key.get(), secrets.ca, ca_cert.get());
        !s.ok()) {
      return s;
    }
  }
  for (const char* role : kRoles) {
    if (fs::exists(secrets.Key(role)) && fs::exists(secrets.Certificate(role))) continue;
    Pkey key(EVP_EC_gen("P-256"));
    if (key == nullptr) return CryptoError("make a P-256 key");
    absl::StatusOr<Cert> cert =
        MakeCertificate(key.get(), absl::StrCat(role, ":local"), ca_cert.get(), ca_key.get());
    if (!cert.ok()) return cert.status();
    if (absl::Status s = WriteKeyAndCert(secrets.Key(role), key.get(), secrets.Certificate(role),
                                         cert->get());
        !s.ok()) {
      return s;
    }
  }
  // Tokens, and the file the servers read them from.
  std::string auth_file = "# <role> <name> <token>: written by teclctl local up\n";
  for (const char* role : kTokenRoles) {
    const std::string path = secrets.Token(role);
    absl::StatusOr<std::string> token = LoadToken(path);
    if (!fs::exists(path) || !token.ok() || token->empty()) {
      token = RandomToken();
      if (absl::Status s = WritePrivate(path, *token + "\n"); !s.ok()) return s;
    }
    absl::StrAppend(&auth_file, role, " local ", *token, "\n");
  }
  return WritePrivate(secrets.auth_file, auth_file);
}

ChannelOptions LocalChannelOptions(const LocalSecrets& secrets, const std::string& role) {
  ChannelOptions options;
  absl::StatusOr<std::string> token = LoadToken(secrets.Token(role));
  if (token.ok()) options.token = *token;
  options.tls_ca_file = secrets.ca;
  options.tls_cert_file = secrets.Certificate(role);
  options.tls_key_file = secrets.Key(role);
  return options;
}

}  // namespace tecl::teclctl
