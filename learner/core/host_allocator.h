#ifndef ENGRAM_LEARNER_CORE_HOST_ALLOCATOR_H_
#define ENGRAM_LEARNER_CORE_HOST_ALLOCATOR_H_

// Host memory allocator settings for a training process.
//
// LibTorch's CPU tensors come from malloc. glibc returns a freed block above its mmap
// threshold to the kernel at once, and gives back the top of the heap beyond its trim
// threshold, so the megabyte-sized activations and gradients that every CPU update
// allocates and frees cost mmap/munmap and fresh page faults each time. Measured: a MinAtar
// update (batch 256, one core) took 17 ms with glibc's defaults and 6.5 ms with these
// settings. The price is that up to trim_threshold_bytes of freed memory stays mapped.

#include <cstdint>

namespace engram::learner {

// Call once at process start, before other threads allocate. Sets glibc's M_MMAP_THRESHOLD
// (blocks below it come from the heap and are reused) and M_TRIM_THRESHOLD (free memory at
// the heap top kept before returning any). Returns false where the C library has no such
// settings (not glibc) or rejects the values; nothing is changed then.
bool TuneHostAllocatorForTraining(int64_t mmap_threshold_bytes = int64_t{32} << 20,
                                  int64_t trim_threshold_bytes = int64_t{256} << 20);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_CORE_HOST_ALLOCATOR_H_
