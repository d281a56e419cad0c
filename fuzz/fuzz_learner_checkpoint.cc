// Learner checkpoints (learner.pt) from untrusted bytes: DqnLearner::Load of a CartPole
// learner must return an error and leave the learner unchanged, never crash. The bytes go
// through LibTorch's archive reader (a zip of pickled tensors) first, so this also fuzzes
// Debian's LibTorch as the learner uses it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "learner/core/dqn.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  using engram::learner::DqnConfig;
  using engram::learner::DqnLearner;
  static const std::string path =
      (fs::temp_directory_path() / ("engram_fuzz_learner_" + std::to_string(::getpid()) + ".pt"))
          .string();
  static std::unique_ptr<DqnLearner> learner = [] {
    torch::set_num_threads(1);
    DqnConfig config;
    config.network.torso = engram::learner::Torso::kMlp;
    config.network.observation_shape = {4};
    config.network.num_actions = 2;
    config.network.hidden_sizes = {8};
    std::string error;
    return DqnLearner::Create(config, torch::kCPU, &error);
  }();
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  (void)learner->Load(path);
  return 0;
}
