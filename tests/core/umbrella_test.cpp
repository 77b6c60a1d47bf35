// The umbrella header is "everything in kdistill's public API": every header under
// include/kdistill/ must be reachable from it, and the exported-API region of every header must
// be closed (an unbalanced `visibility push` would leak into the includer).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kdistill/kdistill.h"

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

TEST(Umbrella, IncludesEveryPublicHeader) {
  const fs::path root = fs::path(KDISTILL_SOURCE_DIR) / "include";
  const std::string umbrella = slurp(root / "kdistill" / "kdistill.h");
  int headers = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root / "kdistill")) {
    if (entry.path().extension() != ".h" || entry.path().filename() == "kdistill.h") continue;
    ++headers;
    const std::string rel = fs::relative(entry.path(), root).generic_string();
    EXPECT_THAT(umbrella, ::testing::HasSubstr("#include \"" + rel + "\"")) << rel << " is not in kdistill.h";
  }
  EXPECT_GE(headers, 30);
}

TEST(Umbrella, EveryHeaderClosesItsExportedRegion) {
  const fs::path root = fs::path(KDISTILL_SOURCE_DIR) / "include" / "kdistill";
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".h" || entry.path().filename() == "kdistill.h") continue;
    const std::string text = slurp(entry.path());
    EXPECT_EQ(count(text, "#pragma GCC visibility push(default)"), 1u) << entry.path();
    EXPECT_EQ(count(text, "#pragma GCC visibility pop"), 1u) << entry.path();
  }
}

}  // namespace
