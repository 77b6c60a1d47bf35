#pragma once

#include <memory>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace spdlog {
class logger;
}

namespace kdistill {

/// The library's spdlog logger, named "kdistill".
///
/// kdistill logs only through it and never reconfigures it after creation. Its level comes from
/// the environment on first use (`SPDLOG_LEVEL=kdistill=debug`, default `info`); include
/// `<spdlog/spdlog.h>` to log through it or change its sinks.
std::shared_ptr<spdlog::logger> logger();

}  // namespace kdistill
#pragma GCC visibility pop
