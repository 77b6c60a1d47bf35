// The kdistill command. Exit status: 0 success, 1 runtime error (one "error:" line on stderr),
// 2 usage error (a message and a usage line). Bad input never crashes it.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "commands.h"
#include "kdistill/kdistill.h"

namespace {

constexpr const char* kUsage = "usage: kdistill [--version] [--help] <command> [options]; commands: demo, train, cache-teacher, bench, eval, compare, export\n";

int print_version() {
  auto info = kdistill::system_info();
  std::cout << "kdistill " << info.kdistill_version << "\n"
            << "libtorch " << info.torch_version << "\n"
            << "blas " << info.blas_kind << " (" << (info.blas_library.empty() ? "not loaded" : info.blas_library) << ")\n"
            << "threads " << info.threads << " (OMP_WAIT_POLICY="
            << (std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "unset") << ")\n"
            << "cpu bf16 " << info.cpu_bf16
            << (info.cpu_bf16 == "none" ? " (bf16 runs emulated: slower than fp32)" : " (--precision bf16 is fast here)")
            << "\n"
            << "cuda " << (info.cuda_available ? "available" : "not available");
  for (const auto& d : info.cuda_devices) std::cout << " " << d;
  std::cout << "\n";
  std::string backends;
  for (const char* b : {"gloo", "nccl"}) {
    if (kdistill::ProcessGroup::has_backend(b)) backends += backends.empty() ? b : std::string(", ") + b;
  }
  std::cout << "distributed " << (backends.empty() ? "none (built without Gloo's headers)" : backends) << "\n";
  if (info.blas_library.find("openblas-pthread") != std::string::npos) {
    std::cerr << "warning: libtorch is using OpenBLAS's pthread build, whose threads compete with LibTorch's "
                 "OpenMP threads; select the OpenMP build (scripts/setup.sh does).\n";
  }
  if (info.blas_kind == "reference") {
    std::cerr << "warning: libtorch is using the reference BLAS; dense layers run ~40x slower. "
                 "Install libopenblas0-openmp.\n";
  }
  return 0;
}

}  // namespace

// Called by the kdistill executable (launcher.cpp) once it has chosen OpenMP's wait policy.
extern "C" __attribute__((visibility("default"))) int kdistill_command_main(int argc, char** argv) {
  kdistill::tune_allocator();  // keep step buffers instead of faulting them in again every step
  CLI::App app{"kdistill: knowledge distillation on LibTorch, with measurements", "kdistill"};
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  bool version = false;
  app.add_flag("--version", version, "Print versions, the BLAS in use, threads and CUDA devices");
  std::map<CLI::App*, kdistill::cli::Run> runs;
  auto add = [&](const char* name, const char* help, kdistill::cli::Run (*make)(CLI::App&)) {
    auto* sub = app.add_subcommand(name, help);
    runs[sub] = make(*sub);
  };
  add("demo", "Distil a teacher into a small student on Fashion-MNIST (--task lm: byte-level language models on "
      "English text) and print the trade-off table",
      kdistill::cli::add_demo);
  add("train", "Run a configured distillation (--config run.yaml) or continue one (--resume DIR)",
      kdistill::cli::add_train);
  add("cache-teacher", "Run a teacher once over a data set and store its logits in HDF5", kdistill::cli::add_cache_teacher);
  add("bench", "Latency and throughput of a teacher and a student side by side", kdistill::cli::add_bench);
  add("eval", "Accuracy, agreement and calibration of a TorchScript model", kdistill::cli::add_eval);
  add("compare", "Two models on the same samples: accuracy difference, McNemar's exact test, bootstrap CI, "
      "agreement, latency, and the samples to review", kdistill::cli::add_compare);
  add("export", "Write a TorchScript student as an HDF5 file for the Eigen runtime (kdistill::runtime)",
      kdistill::cli::add_export);
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
  } catch (const CLI::ParseError& e) {  // a usage problem found after parsing (e.g. --config or --resume)
    std::cerr << "error: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const kdistill::Error& e) {
    std::cerr << "error: " << kdistill::first_line(e.what()) << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "error: " << kdistill::first_line(e.what_without_backtrace()) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << kdistill::first_line(e.what()) << "\n";
  } catch (...) {  // a foreign exception type (e.g. from HDF5) must still not abort the command
    std::cerr << "error: an unexpected exception of unknown type ended the command\n";
  }
  return 1;
}
