#pragma once

// The kdistill command's subcommands. Each registers its flags on the CLI11 app and returns the
// function to run after parsing; library errors propagate as kdistill::Error to main().

#include <functional>

#include <CLI/CLI.hpp>

namespace kdistill::cli {

using Run = std::function<int()>;

/// `kdistill demo`: teacher, baseline student and distilled student on Fashion-MNIST.
Run add_demo(CLI::App& app);
/// `kdistill train --config run.yaml | --resume DIR`: a configured run.
Run add_train(CLI::App& app);
/// `kdistill cache-teacher`: a teacher's logits over a data set, to HDF5.
Run add_cache_teacher(CLI::App& app);
/// `kdistill bench`: teacher and student latency side by side.
Run add_bench(CLI::App& app);
/// `kdistill eval`: accuracy, agreement and calibration of a TorchScript model.
Run add_eval(CLI::App& app);
/// `kdistill compare`: two models on the same samples, with McNemar's test and a bootstrap interval.
Run add_compare(CLI::App& app);
/// `kdistill export`: a TorchScript student written as HDF5 for the Eigen runtime.
Run add_export(CLI::App& app);

}  // namespace kdistill::cli
