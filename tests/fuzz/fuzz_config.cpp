// Fuzz target: the run-configuration parser (`kdistill train --config run.yaml`).
// Contract: any text is either parsed into a RunConfig or rejected with kdistill::Error (never a
// yaml-cpp exception, a crash or a hang), and what parses round-trips: to_yaml of the parsed
// config parses again to the same YAML (the manifest's config.yaml reproduces the run).

#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "kdistill/train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kdistill::fuzz::expect_clean([&] {
    const auto config = kdistill::parse_config(text, "fuzz.yaml", "/base");
    const std::string once = kdistill::to_yaml(config);
    std::string twice;
    try {
      twice = kdistill::to_yaml(kdistill::parse_config(once, "round-trip.yaml", "/base"));
    } catch (const kdistill::Error& e) {
      std::fprintf(stderr, "fuzz_config: to_yaml output does not parse: %s\n---\n%s\n", e.what(), once.c_str());
      std::abort();
    }
    if (once != twice) {
      std::fprintf(stderr, "fuzz_config: round trip changed the config\n--- first\n%s\n--- second\n%s\n",
                   once.c_str(), twice.c_str());
      std::abort();
    }
  });
  return 0;
}
