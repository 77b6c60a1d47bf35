#pragma once

/// kdistill's version; CMake reads the three numbers below, so this header is the only place it is set.
#define KDISTILL_VERSION_MAJOR 0
#define KDISTILL_VERSION_MINOR 1
#define KDISTILL_VERSION_PATCH 0

#define KDISTILL_STRINGIFY_IMPL(x) #x
#define KDISTILL_STRINGIFY(x) KDISTILL_STRINGIFY_IMPL(x)
/// The version as a string literal, e.g. "0.1.0".
#define KDISTILL_VERSION_STRING                                                          \
  KDISTILL_STRINGIFY(KDISTILL_VERSION_MAJOR) "." KDISTILL_STRINGIFY(KDISTILL_VERSION_MINOR) "." \
      KDISTILL_STRINGIFY(KDISTILL_VERSION_PATCH)

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {
/// kdistill's version string, e.g. "0.1.0".
inline constexpr const char* kVersion = KDISTILL_VERSION_STRING;
}  // namespace kdistill
#pragma GCC visibility pop
