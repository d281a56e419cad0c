#ifndef ENGRAM_COMMON_TEST_CERTIFICATES_H_
#define ENGRAM_COMMON_TEST_CERTIFICATES_H_

// For tests: certificates made with the openssl tool in `dir`, P-256 keys, valid two days:
//   ca.pem / ca.key               a CA
//   server.pem / server.key       signed by it, for localhost and 127.0.0.1
//   client.pem / client.key       signed by it (a client certificate for mutual TLS)
//   rogue_ca.pem, rogue.pem / rogue.key   another CA and a client certificate it signed
// Returns false where openssl is not installed or fails (its output is in dir/openssl.log).

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace engram {

inline bool MakeTestCertificates(const std::string& dir) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) return false;
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script = absl::StrCat(
      "cd '", dir, "' && exec >openssl.log 2>&1 && set -e\n",  //
      "openssl req -x509 ", key, " -keyout ca.key -out ca.pem -days 2 -subj /CN=engram-ca\n",
      "openssl req -x509 ", key, " -keyout rogue_ca.key -out rogue_ca.pem -days 2",
      " -subj /CN=rogue-ca\n", "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext\n",
      "openssl req ", key, " -keyout server.key -out server.csr -subj /CN=localhost\n",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial",
      " -out server.pem -days 2 -extfile san.ext\n", "openssl req ", key,
      " -keyout client.key -out client.csr -subj /CN=engram-client\n",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial",
      " -out client.pem -days 2\n", "openssl req ", key,
      " -keyout rogue.key -out rogue.csr -subj /CN=rogue-client\n",
      "openssl x509 -req -in rogue.csr -CA rogue_ca.pem -CAkey rogue_ca.key",
      " -CAcreateserial -out rogue.pem -days 2\n");
  return std::system(script.c_str()) == 0;
}

}  // namespace engram

#endif  // ENGRAM_COMMON_TEST_CERTIFICATES_H_
