#pragma once

// The kdistill command's subcommands. Each registers its flags on the CLI11 app and returns the
// function to run after parsing; library errors propagate as kdistill::Error to main().

#include <functional>

#include <CLI/CLI.hpp>

namespace kdistill::cli {

using Run = std::function<int()>;

/// `kdistill demo`: teacher, baseline student and distilled student on Fashion-MNIST.
Run add_demo(CLI::App& app);

}  // namespace kdistill::cli
