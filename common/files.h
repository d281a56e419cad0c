#ifndef ENGRAM_COMMON_FILES_H_
#define ENGRAM_COMMON_FILES_H_

// Small file operations shared by the processes.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace engram {

// Writes `contents` to `path` through `path`.tmp and a rename, so that readers see the old
// file or the new one, never a partial one. UNAVAILABLE names the file that failed.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// Size and zlib crc32 of a file's bytes, to tell a damaged file before a parser sees it.
struct FileDigest {
  int64_t bytes = 0;
  uint32_t crc32 = 0;
};
// NOT_FOUND naming the file when it cannot be opened; UNAVAILABLE on a read error.
absl::StatusOr<FileDigest> DigestFile(const std::string& path);

}  // namespace engram

#endif  // ENGRAM_COMMON_FILES_H_
