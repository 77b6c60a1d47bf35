#pragma once

// A test seam in io::atomic_write, private to the library (not installed). The kill tests install
// a hook in a child process and SIGKILL it from inside a write (tests/train/trainer_test.cpp,
// tests/teachers/cache_test.cpp), which a timer-based kill hits only by luck.

#include <string>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::io::detail {

/// Called by atomic_write once the temporary file `tmp` is complete and synced, just before it is
/// renamed over `path`. nullptr (the default) for none.
using AtomicWriteHook = void (*)(const std::string& path, const std::string& tmp);

/// Installs `hook` for this process; returns the previous one.
AtomicWriteHook set_atomic_write_hook(AtomicWriteHook hook);

}  // namespace kdistill::io::detail
#pragma GCC visibility pop
