#include "tests/testing/test_pki.h"

#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testing/http_get.h"

namespace tecl::testing {
namespace {

absl::Status Run(const std::string& command) {
  const CommandResult result = RunCommand(command + " 2>&1");
  if (result.exit_code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(command, " failed: ", result.output));
}

}  // namespace

absl::StatusOr<TestPki> TestPki::Create(const std::string& dir) {
  TestPki pki;
  pki.dir_ = dir;
  pki.ca_cert_ = dir + "/ca.pem";
  pki.ca_key_ = dir + "/ca.key";
  absl::Status made = Run(absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      "-subj /CN=tecl-test-ca -keyout ", pki.ca_key_, " -out ", pki.ca_cert_));
  if (!made.ok()) return made;
  return pki;
}

absl::StatusOr<TestCertificate> TestPki::Issue(const std::string& file,
                                               const std::string& common_name,
                                               const std::vector<std::string>& dns_names) const {
  TestCertificate c{absl::StrCat(dir_, "/", file, ".pem"), absl::StrCat(dir_, "/", file, ".key")};
  const std::string csr = absl::StrCat(dir_, "/", file, ".csr");
  const std::string ext = absl::StrCat(dir_, "/", file, ".ext");
  std::vector<std::string> names = {"DNS:localhost", "IP:127.0.0.1"};
  for (const std::string& dns : dns_names) names.push_back("DNS:" + dns);
  std::ofstream(ext) << "subjectAltName=" << absl::StrJoin(names, ",") << "\n"
                     << "extendedKeyUsage=serverAuth,clientAuth\n";
  absl::Status made = Run(absl::StrCat(
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=", common_name,
      "' -keyout ", c.key, " -out ", csr));
  if (made.ok()) {
    made = Run(absl::StrCat("openssl x509 -req -in ", csr, " -CA ", ca_cert_, " -CAkey ", ca_key_,
                            " -CAcreateserial -days 1 -extfile ", ext, " -out ", c.cert));
  }
  if (!made.ok()) return made;
  return c;
}

}  // namespace tecl::testing
