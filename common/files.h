#ifndef ENGRAM_COMMON_FILES_H_
#define ENGRAM_COMMON_FILES_H_

// Small file operations shared by the processes.

#include <string>

#include "absl/status/status.h"

namespace engram {

// Writes `contents` to `path` through `path`.tmp and a rename, so that readers see the old
// file or the new one, never a partial one. UNAVAILABLE names the file that failed.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace engram

#endif  // ENGRAM_COMMON_FILES_H_
