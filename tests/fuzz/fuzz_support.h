#pragma once

// Shared by the fuzz targets: a scratch file for readers that take paths, and the contract every
// target checks. kdistill's readers may reject an input only with kdistill::Error; any other
// exception escapes LLVMFuzzerTestOneInput, reaches std::terminate and is reported as a crash.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "kdistill/core/error.h"

namespace kdistill::fuzz {

/// A per-process scratch file (in /dev/shm when present: the readers take paths, and each input is
/// written there first). Removed at exit.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& suffix) {
    const std::filesystem::path dir =
        std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    path_ = (dir / ("kdistill-fuzz-" + std::to_string(::getpid()) + suffix)).string();
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  /// Replaces the file's contents with `size` bytes at `data`.
  const std::string& write(const uint8_t* data, size_t size) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) throw std::runtime_error("fuzz: cannot open scratch file " + path_);
    if (size > 0 && std::fwrite(data, 1, size, f) != size) {
      std::fclose(f);
      throw std::runtime_error("fuzz: cannot write scratch file " + path_);
    }
    std::fclose(f);
    return path_;
  }

 private:
  std::string path_;
};

/// Runs `body`; kdistill::Error (a rejected input) is the expected outcome for most inputs. An
/// Error with an empty message is a bug too: the user would get a bare "error:" line.
template <typename F>
void expect_clean(F&& body) {
  try {
    body();
  } catch (const kdistill::Error& e) {
    if (std::string(e.what()).empty()) {
      std::fprintf(stderr, "fuzz: kdistill::Error with an empty message\n");
      std::abort();
    }
  }
}

}  // namespace kdistill::fuzz
