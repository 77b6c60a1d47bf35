# Finds kdistill's dependencies. A missing one stops configuration with the Debian package that
# provides it, rather than CMake's generic "could not find" message.
include_guard(GLOBAL)

macro(kdistill_require _name _package)
  find_package(${_name} ${ARGN} QUIET)
  if(NOT ${_name}_FOUND)
    message(FATAL_ERROR
      "kdistill: ${_name} was not found. On Debian 12 install it with:\n"
      "    apt-get install ${_package}\n"
      "or run scripts/setup.sh, which installs every dependency.")
  endif()
endmacro()

kdistill_require(Torch libtorch-dev)
kdistill_require(spdlog libspdlog-dev)
kdistill_require(Eigen3 libeigen3-dev)
kdistill_require(HDF5 libhdf5-dev COMPONENTS CXX)
kdistill_require(ZLIB zlib1g-dev)
kdistill_require(yaml-cpp libyaml-cpp-dev)
kdistill_require(nlohmann_json nlohmann-json3-dev)
kdistill_require(OpenSSL libssl-dev COMPONENTS Crypto)
# libdeflate inflates a whole .gz file about 2x faster than zlib (lib/data/idx.cpp). It has no CMake
# package; its one header and library are found directly (no pkg-config needed).
find_path(KDISTILL_LIBDEFLATE_INCLUDE_DIR libdeflate.h)
find_library(KDISTILL_LIBDEFLATE_LIBRARY deflate)
if(NOT KDISTILL_LIBDEFLATE_INCLUDE_DIR OR NOT KDISTILL_LIBDEFLATE_LIBRARY)
  message(FATAL_ERROR
    "kdistill: libdeflate was not found. On Debian 12 install it with:\n"
    "    apt-get install libdeflate-dev\n"
    "or run scripts/setup.sh, which installs every dependency.")
endif()
if(KDISTILL_BUILD_EXAMPLES)
  kdistill_require(CLI11 libcli11-dev)
endif()
if(KDISTILL_BUILD_TESTS)
  kdistill_require(GTest libgtest-dev)
endif()
if(KDISTILL_BUILD_BENCH)
  kdistill_require(benchmark libbenchmark-dev)
endif()
if(NOT Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
  # The python3 first on PATH may be an interpreter that cannot see Debian's python3-torch.
  set(Python3_EXECUTABLE /usr/bin/python3 CACHE FILEPATH "Python used by tests and scripts")
endif()

# Debian's libtorch links libblas.so.3, which resolves to the reference BLAS unless an optimised
# one is installed: dense layers then run ~40x slower. Say so loudly at configure time.
set(_kd_blas_link "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/libblas.so.3")
if(EXISTS "${_kd_blas_link}")
  file(REAL_PATH "${_kd_blas_link}" _kd_blas_real)
  if(_kd_blas_real MATCHES "openblas-pthread")
    message(WARNING
      "kdistill: libblas.so.3 is OpenBLAS's pthread build (${_kd_blas_real}); its threads compete "
      "with LibTorch's OpenMP threads (measured: 2.8x slower training). scripts/setup.sh selects "
      "the OpenMP build: update-alternatives --set libblas.so.3-${CMAKE_LIBRARY_ARCHITECTURE} "
      "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp/libblas.so.3")
  elseif(_kd_blas_real MATCHES "/blas/libblas")
    message(WARNING
      "kdistill: libtorch will load the REFERENCE BLAS (${_kd_blas_real}); dense layers will "
      "run about 40x slower. Install libopenblas0-openmp (apt-get install libopenblas0-openmp).")
  else()
    message(STATUS "kdistill: BLAS behind libblas.so.3: ${_kd_blas_real}")
  endif()
endif()

if(Torch_VERSION)
  message(STATUS "kdistill: LibTorch ${Torch_VERSION}")
endif()

# Data-parallel training on CPUs uses c10d's Gloo process group, whose header includes Gloo's own
# (libtorch links libgloo, but Debian ships the headers separately). A libtorch without them
# (some CUDA distributions) still builds; only the gloo backend is then missing.
find_path(KDISTILL_GLOO_INCLUDE_DIR gloo/config.h HINTS ${TORCH_INCLUDE_DIRS})
if(NOT KDISTILL_GLOO_INCLUDE_DIR AND Torch_DIR MATCHES "^/usr/")
  message(FATAL_ERROR
    "kdistill: Gloo's headers (gloo/config.h) were not found: data-parallel training needs them. On Debian 12 "
    "install them with:\n    apt-get install libgloo-dev\nor run scripts/setup.sh, which installs every dependency.")
elseif(NOT KDISTILL_GLOO_INCLUDE_DIR)
  message(WARNING "kdistill: Gloo's headers were not found next to this libtorch: the gloo backend is left out")
endif()
