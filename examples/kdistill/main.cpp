// The kdistill command. Exit status: 0 success, 1 runtime error (one "error:" line on stderr),
// 2 usage error (a message and a usage line). Bad input never crashes it.
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "commands.h"
#include "kdistill/kdistill.h"

namespace {

constexpr const char* kUsage = "usage: kdistill [--version] [--help] <command> [options]; commands: demo\n";

int print_version() {
  auto info = kdistill::system_info();
  std::cout << "kdistill " << info.kdistill_version << "\n"
            << "libtorch " << info.torch_version << "\n"
            << "blas " << info.blas_kind << " (" << (info.blas_library.empty() ? "not loaded" : info.blas_library) << ")\n"
            << "threads " << info.threads << "\n"
            << "cuda " << (info.cuda_available ? "available" : "not available");
  for (const auto& d : info.cuda_devices) std::cout << " " << d;
  std::cout << "\n";
  if (info.blas_kind == "reference") {
    std::cerr << "warning: libtorch is using the reference BLAS; dense layers run ~40x slower. "
                 "Install libopenblas0-openmp.\n";
  }
  return 0;
}

std::string one_line(std::string s) {
  s = s.substr(0, s.find('\n'));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kdistill: knowledge distillation on LibTorch, with measurements", "kdistill"};
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  bool version = false;
  app.add_flag("--version", version, "Print versions, the BLAS in use, threads and CUDA devices");
  std::map<CLI::App*, kdistill::cli::Run> runs;
  auto add = [&](const char* name, const char* help, kdistill::cli::Run (*make)(CLI::App&)) {
    auto* sub = app.add_subcommand(name, help);
    runs[sub] = make(*sub);
  };
  add("demo", "Distil a teacher into a small student on Fashion-MNIST and print the trade-off table",
      kdistill::cli::add_demo);
  app.require_subcommand(0, 1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    if (version) return print_version();
    for (auto& [sub, run] : runs) {
      if (sub->parsed()) return run();
    }
    std::cerr << "error: no command given\n" << kUsage;
    return 2;
  } catch (const kdistill::Error& e) {
    std::cerr << "error: " << one_line(e.what()) << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "error: " << one_line(e.what_without_backtrace()) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << one_line(e.what()) << "\n";
  }
  return 1;
}
