#include "cli_util.h"

#include "kdistill/core/error.h"

namespace kdistill::cli {

std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& text) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    const auto item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    check(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos && item.size() < 10, flag,
          ": expected positive integers separated by commas, got \"", text, "\"");
    out.push_back(std::stoll(item));
    check(out.back() > 0, flag, ": values must be > 0, got \"", text, "\"");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace kdistill::cli
