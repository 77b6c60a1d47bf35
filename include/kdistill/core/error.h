#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// The one exception type kdistill throws for bad user input and failed I/O.
///
/// Its message names the function, the argument and the offending value, e.g.
/// `kd_loss: temperature must be > 0, got -1`.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}
}  // namespace detail

/// Throws `kdistill::Error` whose message is the concatenation of `args` (streamed with `<<`).
///
/// Example:
/// ```
/// kdistill::fail("kd_loss: temperature must be > 0, got ", t);
/// ```
template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

/// Throws `kdistill::Error` built from `args` unless `condition` holds. The arguments are
/// evaluated even when `condition` holds: keep them cheap, and valid in both cases.
template <typename... Args>
void check(bool condition, Args&&... args) {
  if (!condition) fail(std::forward<Args>(args)...);
}

/// The first line of `message`. LibTorch's errors (`c10::Error::what_without_backtrace`) go on
/// with lines of context; kdistill's messages quote only their first line.
///
/// Example:
/// ```
/// kdistill::first_line("shape mismatch\nException raised from ...");  // "shape mismatch"
/// ```
inline std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

}  // namespace kdistill
#pragma GCC visibility pop
