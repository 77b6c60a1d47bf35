#pragma once

// Running the kdistill command from tests, and the shape of its failures.

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "support.h"

#ifndef KDISTILL_CLI
#error "KDISTILL_CLI (the path of the kdistill command) must be defined by the build"
#endif

namespace kdistill::test {

/// Runs `kdistill ARGS`.
inline Output cli(const std::string& args) { return run(std::string(KDISTILL_CLI) + " " + args); }

/// A runtime failure's stderr: exactly one line, starting "error:", containing `needle`.
inline void expect_one_error_line(const Output& o, const std::string& needle) {
  EXPECT_EQ(o.err.rfind("error: ", 0), 0u) << o.err;
  EXPECT_NE(o.err.find(needle), std::string::npos) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
}

}  // namespace kdistill::test
