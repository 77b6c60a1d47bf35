#include "kdistill/core/logging.h"

#include <mutex>

#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace kdistill {

std::shared_ptr<spdlog::logger> logger() {
  static std::once_flag once;
  static std::shared_ptr<spdlog::logger> instance;
  std::call_once(once, [] {
    // A host application may have registered "kdistill" already (with its own sinks): use it.
    instance = spdlog::get("kdistill");
    if (!instance) {
      instance = spdlog::stderr_color_mt("kdistill");
      instance->set_level(spdlog::level::info);
      spdlog::cfg::load_env_levels();  // honours SPDLOG_LEVEL=kdistill=debug
    }
  });
  return instance;
}

}  // namespace kdistill
