#pragma once

#include <functional>
#include <string>
#include <vector>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::io {

/// Writes a file atomically: `write` fills a temporary file beside `path`, which is then flushed to
/// disk (fsync) and renamed over `path`, and the directory entry is synced. A reader, or a process
/// killed at any instant, sees either the old file or the complete new one, never a partial file.
/// On failure the temporary is removed and the old file is untouched.
///
/// Example:
/// ```
/// kdistill::io::atomic_write("model.pt", [&](const std::string& tmp) { torch::save(model, tmp); });
/// ```
void atomic_write(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);

/// Atomically replaces `path` with `content`.
void atomic_write_string(const std::string& path, const std::string& content);

/// Appends one line (a newline is added) and fsyncs: after a crash the file holds whole lines only,
/// except possibly a torn last line, which `read_lines` drops.
void append_line(const std::string& path, const std::string& line);

/// Reads a text file as lines; a final line without its newline (torn by a crash) is dropped.
std::vector<std::string> read_lines(const std::string& path);

/// Reads a whole file; throws `kdistill::Error` naming it when it cannot be read.
std::string read_file(const std::string& path);

/// Creates `dir` (and parents) and checks that a file can be written in it; throws
/// `kdistill::Error` naming the directory otherwise.
void ensure_writable_dir(const std::string& dir);

}  // namespace kdistill::io
#pragma GCC visibility pop
