#include "learner/core/host_allocator.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace engram::learner {

bool TuneHostAllocatorForTraining(int64_t mmap_threshold_bytes, int64_t trim_threshold_bytes) {
#if defined(__GLIBC__)
  // glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit (HEAP_MAX_SIZE / 2); mallopt returns 0
  // for values beyond.
  if (mmap_threshold_bytes < 0 || trim_threshold_bytes < 0 ||
      mmap_threshold_bytes > (int64_t{1} << 30) || trim_threshold_bytes > (int64_t{1} << 30)) {
    return false;
  }
  if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold_bytes)) == 0) return false;
  return mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold_bytes)) != 0;
#else
  return false;
#endif
}

}  // namespace engram::learner
