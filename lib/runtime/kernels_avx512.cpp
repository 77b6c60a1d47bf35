// The kernels built for CPUs with AVX-512 (F, DQ, VL, BW) and FMA (see kernels.cpp).
#define KDISTILL_RUNTIME_KERNELS avx512
#define Eigen kdistill_eigen_avx512
#include "runtime/kernels.cpp"
