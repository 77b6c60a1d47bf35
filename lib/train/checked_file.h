#pragma once

// A self-checking file container: a magic line, the payload length and a SHA-256 of the payload.
// A truncated, padded or bit-flipped file is refused before anything is parsed from it.

#include <string>
#include <vector>

namespace kdistill::detail {

/// Writes `payload` atomically to `path` under `magic` (at most 15 characters).
void write_checked_file(const std::string& path, const std::string& magic, const std::vector<char>& payload);

/// Reads back a file written by `write_checked_file`; throws `kdistill::Error` naming the file
/// and the defect (wrong magic, wrong length, checksum mismatch).
std::vector<char> read_checked_file(const std::string& path, const std::string& magic);

}  // namespace kdistill::detail
