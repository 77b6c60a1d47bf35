// The kernels built for CPUs with AVX2 and FMA (compiled with -mavx2 -mfma; see kernels.cpp).
#define KDISTILL_RUNTIME_KERNELS avx2
#define Eigen kdistill_eigen_avx2
#include "runtime/kernels.cpp"
