// Test helper: a certificate authority and certificates made by the openssl command-line tool in a
// folder, for tests of TLS and mutual TLS on real certificates. Each certificate has the Common
// Name it is given (`<role>:<name>` for TECL principals), subjectAltName DNS:localhost and
// IP:127.0.0.1 (plus any extra DNS names), and both serverAuth and clientAuth key usage, as TECL's
// processes use one certificate both ways.
#ifndef TECL_TESTS_TESTING_TEST_PKI_H_
#define TECL_TESTS_TESTING_TEST_PKI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tecl::testing {

struct TestCertificate {
  std::string cert;  // PEM file.
  std::string key;   // PEM file.
};

class TestPki {
 public:
  // A new CA (P-256, valid one day) in `dir`. INTERNAL with openssl's output when it fails.
  static absl::StatusOr<TestPki> Create(const std::string& dir);

  // A certificate signed by the CA; `file` names its files in the folder.
  absl::StatusOr<TestCertificate> Issue(const std::string& file, const std::string& common_name,
                                        const std::vector<std::string>& dns_names = {}) const;

  const std::string& ca() const { return ca_cert_; }

 private:
  std::string dir_;
  std::string ca_cert_;
  std::string ca_key_;
};

}  // namespace tecl::testing

#endif  // TECL_TESTS_TESTING_TEST_PKI_H_
