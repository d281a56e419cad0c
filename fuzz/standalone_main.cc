// A driver for the libFuzzer targets in builds without libFuzzer (GCC, the default): runs
// every input of the given corpus files and directories, then mutations of them (bit flips,
// byte changes, truncations, insertions, splices of two inputs) until --seconds have
// passed or --runs mutations were tried. Deterministic for a --seed. Exit 0 when nothing
// crashed; a crash is the sanitizer's or the signal's (run it under the asan preset).
//
//   fuzz_<target> [--seconds=3] [--runs=-1] [--seed=1] CORPUS_DIR_OR_FILE...
//
// With -DENGRAM_FUZZ=ON (clang) the same targets link libFuzzer instead.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Run(const std::string& input) {
  // A copy in its own allocation, so that AddressSanitizer sees reads past the end.
  std::vector<uint8_t> bytes(input.begin(), input.end());
  LLVMFuzzerTestOneInput(bytes.empty() ? nullptr : bytes.data(), bytes.size());
}

std::string Mutate(const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  std::string s = corpus[pick(corpus.size())];
  const int edits = 1 + static_cast<int>(pick(4));
  for (int e = 0; e < edits; ++e) {
    switch (pick(6)) {
      case 0:  // flip a bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:  // an interesting byte
        if (!s.empty()) {
          static const char kBytes[] = {0, 1, 0x7f, static_cast<char>(0x80),
                                        static_cast<char>(0xff)};
          s[pick(s.size())] = kBytes[pick(sizeof(kBytes))];
        }
        break;
      case 2:  // truncate
        if (!s.empty()) s.resize(pick(s.size()));
        break;
      case 3: {  // insert random bytes
        std::string bytes(1 + pick(8), '\0');
        for (char& c : bytes) c = static_cast<char>(pick(256));
        s.insert(s.empty() ? 0 : pick(s.size() + 1), bytes);
        break;
      }
      case 4: {  // duplicate a chunk
        if (s.empty()) break;
        const size_t at = pick(s.size()), length = 1 + pick(std::min<size_t>(64, s.size() - at));
        s.insert(pick(s.size() + 1), s.substr(at, length));
        break;
      }
      default: {  // splice with another input
        const std::string& other = corpus[pick(corpus.size())];
        if (other.empty() || s.empty()) break;
        s = s.substr(0, pick(s.size())) + other.substr(pick(other.size()));
        break;
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  long long runs = -1;
  uint64_t seed = 1;
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--seconds=", 0) == 0) {
      seconds = std::atof(arg.c_str() + 10);
    } else if (arg.rfind("--runs=", 0) == 0) {
      runs = std::atoll(arg.c_str() + 7);
    } else if (arg.rfind("--seed=", 0) == 0) {
      seed = std::strtoull(arg.c_str() + 7, nullptr, 10);
    } else if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        if (entry.is_regular_file()) corpus.push_back(ReadFile(entry.path()));
      }
    } else if (std::filesystem::is_regular_file(arg)) {
      corpus.push_back(ReadFile(arg));
    } else {
      std::fprintf(stderr, "%s: %s is neither a flag nor a corpus file or directory\n", argv[0],
                   arg.c_str());
      return 2;
    }
  }
  if (corpus.empty()) corpus.push_back("");
  for (const std::string& input : corpus) Run(input);
  std::mt19937_64 rng(seed);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  long long done = 0;
  while ((runs < 0 || done < runs) && std::chrono::steady_clock::now() < end) {
    Run(Mutate(corpus, rng));
    ++done;
  }
  std::printf("%s: %zu corpus inputs and %lld mutations, no crash\n", argv[0], corpus.size(), done);
  return 0;
}
