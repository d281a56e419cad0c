#include "learner/core/compute_threads.h"

#include <dlfcn.h>

#include "torch/torch.h"

namespace engram::learner {

bool SetComputeThreads(int threads) {
  torch::set_num_threads(threads);
  // Looked up at run time: the BLAS behind libblas.so.3 is chosen by Debian's
  // alternatives, not at link time.
  using SetThreads = void (*)(int);
  auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_threads == nullptr) return false;
  set_threads(threads);
  return true;
}

}  // namespace engram::learner
