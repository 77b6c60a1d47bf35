#pragma once

// Helpers shared by kdistill's tests: temporary directories, running programs, Python fixtures.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <torch/torch.h>

#include <map>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/data/tensor_dataset.h"

#ifndef KDISTILL_PYTHON
#define KDISTILL_PYTHON "/usr/bin/python3"
#endif
#ifndef KDISTILL_TEST_DIR
#define KDISTILL_TEST_DIR "."
#endif

namespace kdistill::test {

/// Whether every tensor of `a` equals its counterpart in `b` bitwise (same shapes, same values).
inline bool same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].sizes().equals(b[i].sizes()) || !a[i].equal(b[i])) return false;
  }
  return true;
}

/// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kdistill-test-XXXXXX").string();
    char* made = ::mkdtemp(pattern.data());
    if (!made) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

/// Result of running a shell command.
struct Output {
  int status = -1;  ///< exit status, or 128 + signal
  std::string out;  ///< stdout
  std::string err;  ///< stderr
};

/// Runs `command` through /bin/sh, capturing stdout and stderr into files.
inline Output run(const std::string& command) {
  TempDir tmp;
  const std::string out_path = tmp / "out", err_path = tmp / "err";
  const std::string full = "(" + command + ") >" + out_path + " 2>" + err_path + " </dev/null";
  int raw = std::system(full.c_str());
  Output o;
  if (WIFEXITED(raw)) o.status = WEXITSTATUS(raw);
  else if (WIFSIGNALED(raw)) o.status = 128 + WTERMSIG(raw);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  o.out = slurp(out_path);
  o.err = slurp(err_path);
  return o;
}

/// This test executable's path (the kill and data-parallel tests start it as their child).
inline std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

/// A 3-class problem of 8 features labelled by one fixed linear rule (the same for every seed):
/// `n` samples drawn with `seed`.
inline data::TensorDataset rule_data(int64_t n, uint64_t seed, const std::string& name = "rule") {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 8});
  torch::manual_seed(999);
  auto w = torch::randn({8, 3});
  return data::TensorDataset(x, x.matmul(w).argmax(1), 3, name);
}

/// The message of the kdistill::Error that `f` throws, or a marker when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no kdistill::Error thrown>";
}

/// Whether Debian's python3 with torch is available for generating fixtures.
inline bool have_python_torch() {
  static const bool ok = run(std::string(KDISTILL_PYTHON) + " -c 'import torch'").status == 0;
  return ok;
}

/// Whether Debian's Python can import `module` (asked once per module).
inline bool have_python_module(const std::string& module) {
  static std::map<std::string, bool> known;
  auto it = known.find(module);
  if (it == known.end()) {
    it = known.emplace(module, run(std::string(KDISTILL_PYTHON) + " -c 'import " + module + "'").status == 0).first;
  }
  return it->second;
}

/// Runs a Python snippet with Debian's interpreter; returns its output.
inline Output python(const std::string& code) {
  TempDir tmp;
  const std::string script = tmp / "snippet.py";
  std::ofstream(script) << code;
  return run(std::string(KDISTILL_PYTHON) + " " + script);
}

}  // namespace kdistill::test

/// Skips the test visibly when python3-torch is missing.
#define KDISTILL_REQUIRE_PYTHON_TORCH()                                             \
  do {                                                                              \
    if (!::kdistill::test::have_python_torch())                                     \
      GTEST_SKIP() << "python3-torch is not installed (" KDISTILL_PYTHON "): skipped"; \
  } while (0)
