#ifndef ENGRAM_LEARNER_CORE_COMPUTE_THREADS_H_
#define ENGRAM_LEARNER_CORE_COMPUTE_THREADS_H_

// CPU threads of a process that computes with LibTorch.
//
// Debian's LibTorch calls the system BLAS (OpenBLAS, with libopenblas0-pthread), which
// keeps its own pthread pool sized by the number of cores: torch::set_num_threads does not
// reach it. Its idle workers spin waiting for work, so on a 2-core machine shared by
// actors, replay shards and the learner one of them took 60% of a core (half of it in
// sched_yield) and the learner ran at 130 instead of ~250 updates/s (batch 64). Limiting
// both pools fixes that.

namespace engram::learner {

// Sets LibTorch's intra-op threads and, when the loaded BLAS is OpenBLAS, its threads to
// `threads` (>= 1). Call at process start, before the first computation. Returns whether
// an OpenBLAS thread setting was found (false with another BLAS; LibTorch's is set
// either way).
bool SetComputeThreads(int threads);

}  // namespace engram::learner

#endif  // ENGRAM_LEARNER_CORE_COMPUTE_THREADS_H_
