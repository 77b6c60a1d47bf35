#include "kdistill/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <random>
#include <sstream>

#include "io/atomic_file_hook.h"
#include "kdistill/core/error.h"

namespace kdistill::io {
namespace {

namespace fs = std::filesystem;

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) fail("atomic_write: cannot open ", path, " to sync it: ", std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the rename is still atomic there.
  if (rc != 0 && !(directory && err == EINVAL)) fail("atomic_write: fsync of ", path, " failed: ", std::strerror(err));
}

std::string temp_name(const std::string& path) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::ostringstream name;
  name << path << ".tmp." << ::getpid() << "." << std::hex << rng();
  return name.str();
}

std::string parent_dir(const std::string& path) {
  auto parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

std::atomic<detail::AtomicWriteHook> write_hook{nullptr};

// A process killed mid-write leaves its temporary `PATH.tmp.PID.HEX` behind (no handler runs on
// SIGKILL). The next write of PATH removes those whose writer no longer exists, so crashes do not
// accumulate half-written checkpoints. Only names of exactly that form are touched, and never
// this process's or a live process's. Limits: a dead writer whose pid was reused keeps its
// temporary until the pid is free again, and writers of the same file from different PID
// namespaces (containers sharing a directory) cannot see each other: do not share one output
// directory between concurrent runs.
void remove_stale_temps(const std::string& path, const std::string& dir) {
  const std::string prefix = fs::path(path).filename().string() + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // PID.HEX
    const auto dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos || dot > 9 || dot + 1 == rest.size() || rest.size() - dot - 1 > 16) continue;
    const std::string pid_text = rest.substr(0, dot), hex = rest.substr(dot + 1);
    if (pid_text.find_first_not_of("0123456789") != std::string::npos ||
        hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
      continue;
    }
    const long pid = std::stol(pid_text);  // at most 9 digits: fits, and pid_t's range
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}
}  // namespace

void atomic_write(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string dir = parent_dir(path);
  check(fs::is_directory(dir), "cannot write ", path, ": directory ", dir, " does not exist");
  remove_stale_temps(path, dir);
  const std::string tmp = temp_name(path);
  try {
    write(tmp);
    check(fs::exists(tmp), "atomic_write: nothing was written for ", path);
    fsync_path(tmp, false);
    if (auto hook = write_hook.load()) hook(path, tmp);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    check(!ec, "atomic_write: cannot rename ", tmp, " to ", path, ": ", ec.message());
    fsync_path(parent_dir(path), true);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

namespace detail {
AtomicWriteHook set_atomic_write_hook(AtomicWriteHook hook) { return write_hook.exchange(hook); }
}  // namespace detail

void atomic_write_string(const std::string& path, const std::string& content) {
  atomic_write(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    check(static_cast<bool>(out), "atomic_write: cannot create ", tmp, ": ", std::strerror(errno));
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    check(static_cast<bool>(out), "atomic_write: failed writing ", tmp);
  });
}

void append_line(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("append_line: cannot open ", path, ": ", std::strerror(errno));
  // A crash may have left a torn last line: start on a fresh line rather than glue onto it.
  std::string data = line + "\n";
  const off_t size = ::lseek(fd, 0, SEEK_END);
  char last = '\n';
  if (size > 0 && ::pread(fd, &last, 1, size - 1) == 1 && last != '\n') data = "\n" + data;
  // One write() of the whole line: with O_APPEND, a crash leaves it whole or torn at the end only.
  ssize_t n = ::write(fd, data.data(), data.size());
  int err = errno;
  ::fsync(fd);
  ::close(fd);
  if (n != static_cast<ssize_t>(data.size())) fail("append_line: failed writing ", path, ": ", std::strerror(err));
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  if (!fs::exists(path)) return lines;
  const std::string text = read_file(path);
  size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) break;  // torn last line
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), "read_file: cannot open ", path, ": ", std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void ensure_writable_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  check(!ec, "output directory ", dir, " cannot be created: ", ec.message());
  check(fs::is_directory(dir), "output directory ", dir, " is not a directory");
  check(::access(dir.c_str(), W_OK) == 0, "output directory ", dir, " is not writable: ", std::strerror(errno));
}

}  // namespace kdistill::io
