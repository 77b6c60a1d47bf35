#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

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

}  // namespace kdistill
