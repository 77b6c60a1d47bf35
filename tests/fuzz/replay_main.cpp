// Replays fuzz inputs through a fuzz target without libFuzzer, so that the seed corpus and every
// crash ever found run as ordinary ctest tests in the normal (gcc) build.
//
//   fuzz_idx_replay FILE_OR_DIR...   runs each file (directories: every file inside, sorted)

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  // Like libFuzzer's -malloc_limit_mb: a reader that trusts a header and asks for gigabytes fails
  // here too, instead of succeeding on an overcommitting kernel.
  // Not under AddressSanitizer, whose shadow memory counts as data (scripts/sanitize.sh).
#if !defined(__SANITIZE_ADDRESS__)
  const rlimit data_limit{rlim_t{4} << 30, rlim_t{4} << 30};
  if (setrlimit(RLIMIT_DATA, &data_limit) != 0) std::perror("replay: setrlimit(RLIMIT_DATA)");
#endif
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    if (fs::is_directory(arg)) {
      for (const auto& entry : fs::directory_iterator(arg)) {
        if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') inputs.push_back(entry.path());
      }
    } else if (fs::is_regular_file(arg)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a directory\n", argv[i]);
      return 2;
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no inputs\n");
    return 2;
  }
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replay: %zu inputs ran cleanly\n", inputs.size());
  return 0;
}
