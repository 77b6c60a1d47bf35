#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kdistill::cli {

/// Parses "1,8,64" into positive integers; errors name `flag`.
std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& text);

}  // namespace kdistill::cli
