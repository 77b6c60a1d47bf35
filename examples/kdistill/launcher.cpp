// The kdistill executable. It links nothing heavy: it chooses OpenMP's wait policy, then loads the
// command (libkdistill_command.so, which links libtorch and, through it, libgomp) and runs it.
//
// libgomp reads OMP_WAIT_POLICY once, when it is loaded. Measured on an idle 2-core machine
// (bench/results/omp_policy_cpu.json), active waiting trains 1.02-1.37x faster than passive; with
// one other busy process it is 1.5-3x slower. A training machine given to one job is the common
// case, so unless the user chose a policy the command waits actively. On a shared machine set
// OMP_WAIT_POLICY=passive. Choosing it here, before the load, costs nothing; the command used to
// restart itself once libtorch had loaded, which cost 0.5-0.7 s on every run.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) ::setenv("OMP_WAIT_POLICY", "active", 1);
  // Found through the executable's RUNPATH: the build's lib/ folder, or ../lib once installed.
  void* command = ::dlopen("libkdistill_command.so", RTLD_LAZY | RTLD_GLOBAL);
  if (command == nullptr) {
    std::fprintf(stderr, "error: cannot load the kdistill command: %s\n", ::dlerror());
    return 1;
  }
  using Main = int (*)(int, char**);
  auto run = reinterpret_cast<Main>(::dlsym(command, "kdistill_command_main"));
  if (run == nullptr) {
    std::fprintf(stderr, "error: the kdistill command module has no entry point: %s\n", ::dlerror());
    return 1;
  }
  return run(argc, argv);
}
