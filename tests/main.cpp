// GoogleTest main. `kdistill_tests --child=train ...` instead runs a small training job,
// `--child=cache ...` writes a teacher-logit cache, `--child=stream ...` trains from a cache under
// a memory limit and `--child=malloc ...` reports how glibc served an allocation: the kill,
// memory and allocator tests start this same executable as their child.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace kdistill::test {
int train_child(const std::vector<std::string>& args);
int cache_child(const std::vector<std::string>& args);
int malloc_child(const std::vector<std::string>& args);
int dist_child(const std::vector<std::string>& args);
int stream_child(const std::vector<std::string>& args);
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--child=train") == 0) {
    return kdistill::test::train_child(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (argc > 1 && std::strcmp(argv[1], "--child=cache") == 0) {
    return kdistill::test::cache_child(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (argc > 1 && std::strcmp(argv[1], "--child=dist") == 0) {
    return kdistill::test::dist_child(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (argc > 1 && std::strcmp(argv[1], "--child=stream") == 0) {
    return kdistill::test::stream_child(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (argc > 1 && std::strcmp(argv[1], "--child=malloc") == 0) {
    return kdistill::test::malloc_child(std::vector<std::string>(argv + 2, argv + argc));
  }
  // Tests are short and CPU-bound; two threads like the machines the numbers are quoted for.
  torch::set_num_threads(2);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
