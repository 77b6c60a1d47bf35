// Tests for kdistill/io/atomic_file.h: atomic replacement, line logs and output directories.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"
#include "support.h"

namespace {

namespace fs = std::filesystem;
using kdistill::test::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

TEST(AtomicWrite, CreatesAndReplacesContent) {
  TempDir dir;
  const std::string path = dir / "state.json";
  kdistill::io::atomic_write_string(path, "first version, rather long\n");
  EXPECT_EQ(slurp(path), "first version, rather long\n");
  kdistill::io::atomic_write_string(path, "v2");  // shorter: nothing of the old content may remain
  EXPECT_EQ(slurp(path), "v2");
  const std::string binary("a\0b\0\xff", 5);
  kdistill::io::atomic_write_string(path, binary);
  EXPECT_EQ(slurp(path), binary);
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"state.json"});  // no temporaries left
  EXPECT_EQ(kdistill::io::read_file(path), binary);
}

TEST(AtomicWrite, CallbackWritesTheTemporary) {
  TempDir dir;
  const std::string path = dir / "out.txt";
  std::string seen;
  kdistill::io::atomic_write(path, [&](const std::string& tmp) {
    seen = tmp;
    EXPECT_NE(tmp, path);
    EXPECT_EQ(fs::path(tmp).parent_path(), fs::path(path).parent_path());  // same directory: rename is atomic
    std::ofstream(tmp) << "payload";
  });
  EXPECT_EQ(slurp(path), "payload");
  EXPECT_FALSE(fs::exists(seen));
}

TEST(AtomicWrite, ThrowingCallbackLeavesOldFileAndNoTemporaries) {
  TempDir dir;
  const std::string path = dir / "model.pt";
  kdistill::io::atomic_write_string(path, "old content");
  EXPECT_THROW(kdistill::io::atomic_write(path,
                                          [](const std::string& tmp) {
                                            std::ofstream(tmp) << "half-written new con";
                                            throw std::runtime_error("disk full");
                                          }),
               std::runtime_error);
  EXPECT_EQ(slurp(path), "old content");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"model.pt"});
}

TEST(AtomicWrite, CallbackThatWritesNothingFails) {
  TempDir dir;
  const std::string path = dir / "x.txt";
  kdistill::io::atomic_write_string(path, "keep");
  EXPECT_THROW(kdistill::io::atomic_write(path, [](const std::string&) {}), kdistill::Error);
  EXPECT_EQ(slurp(path), "keep");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"x.txt"});
}

TEST(AtomicWrite, MissingDirectoryThrows) {
  TempDir dir;
  EXPECT_THROW(kdistill::io::atomic_write_string(dir / "no/such/dir/file.txt", "x"), kdistill::Error);
  EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(AppendLine, RoundTripsThroughReadLines) {
  TempDir dir;
  const std::string path = dir / "log.jsonl";
  const std::vector<std::string> lines = {"{\"epoch\": 1}", "", "two words", "{\"epoch\": 2}"};
  for (const auto& l : lines) kdistill::io::append_line(path, l);
  EXPECT_EQ(kdistill::io::read_lines(path), lines);
  EXPECT_EQ(slurp(path), "{\"epoch\": 1}\n\ntwo words\n{\"epoch\": 2}\n");
}

TEST(ReadLines, DropsTornLastLine) {
  TempDir dir;
  const std::string path = dir / "log.txt";
  std::ofstream(path, std::ios::binary) << "a\nb\npartial";
  EXPECT_EQ(kdistill::io::read_lines(path), (std::vector<std::string>{"a", "b"}));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "only torn";
  EXPECT_TRUE(kdistill::io::read_lines(path).empty());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "\n\nx\n";
  EXPECT_EQ(kdistill::io::read_lines(path), (std::vector<std::string>{"", "", "x"}));
}

TEST(ReadLines, MissingFileGivesNoLines) {
  TempDir dir;
  EXPECT_TRUE(kdistill::io::read_lines(dir / "absent.txt").empty());
}

TEST(ReadFile, MissingFileThrowsNamingIt) {
  TempDir dir;
  const std::string path = dir / "absent.bin";
  EXPECT_THAT(kdistill::test::error_of([&] { kdistill::io::read_file(path); }), ::testing::HasSubstr(path));
}

TEST(EnsureWritableDir, CreatesNestedDirectories) {
  TempDir dir;
  const std::string nested = dir / "a/b/c";
  kdistill::io::ensure_writable_dir(nested);
  EXPECT_TRUE(fs::is_directory(nested));
  EXPECT_NO_THROW(kdistill::io::ensure_writable_dir(nested));  // existing: fine
  kdistill::io::atomic_write_string(nested + "/f.txt", "ok");
  EXPECT_EQ(slurp(nested + "/f.txt"), "ok");
}

TEST(EnsureWritableDir, PathUnderARegularFileThrowsNamingIt) {
  TempDir dir;
  const std::string file = dir / "file";
  std::ofstream(file) << "x";
  for (const std::string bad : {file + "/sub", file}) {
    EXPECT_THAT(kdistill::test::error_of([&] { kdistill::io::ensure_writable_dir(bad); }), ::testing::HasSubstr(bad));
  }
  EXPECT_TRUE(fs::is_regular_file(file));
  EXPECT_EQ(slurp(file), "x");
}

// A process SIGKILLed inside a write leaves its temporary behind; the next write of the same file
// removes the temporaries of dead processes and leaves live writers' and other files' alone.
TEST(AtomicWrite, NextWriteRemovesTemporariesOfDeadProcesses) {
  TempDir dir;
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ::waitpid(dead, nullptr, 0);
  const std::string path = dir / "last.pt";
  const std::string stale = path + ".tmp." + std::to_string(dead) + ".1f";
  const std::string live = path + ".tmp.1.2e";  // pid 1 is alive
  const std::string mine = path + ".tmp." + std::to_string(::getpid()) + ".3d";
  const std::string other = (dir / "best.pt") + ".tmp." + std::to_string(dead) + ".4c";
  // Names of another form are never touched, even with a dead pid in them.
  const std::string not_ours = path + ".tmp." + std::to_string(dead);
  const std::string not_hex = path + ".tmp." + std::to_string(dead) + ".xyz";
  const std::string signed_pid = path + ".tmp.+" + std::to_string(dead) + ".1f";
  for (const auto& f : {stale, live, mine, other, not_ours, not_hex, signed_pid}) std::ofstream(f) << "partial";
  kdistill::io::atomic_write_string(path, "new");
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(not_ours));
  EXPECT_TRUE(fs::exists(not_hex));
  EXPECT_TRUE(fs::exists(signed_pid));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_EQ(slurp(path), "new");
}

}  // namespace
