// A serving program on kdistill::runtime alone: loads an exported student and, when given a
// missing file, reports the kdistill::Error the runtime library throws. Catching it here proves
// the exception's type is shared across the library boundary (symbol visibility).
#include <kdistill/runtime/runtime.h>

#include <iostream>
#include <vector>

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "no-such-student.h5";
  try {
    auto model = kdistill::runtime::Model::load(path);
    std::vector<float> x(model.input_size(), 0.0f), y(model.num_classes());
    model.predict(x.data(), 1, y.data());
    std::cout << "classes " << model.num_classes() << "\n";
    return 0;
  } catch (const kdistill::Error& e) {
    std::cout << "kdistill::Error: " << e.what() << "\n";
    return 3;
  }
}
