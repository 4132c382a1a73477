// Types shared by the CPU and CUDA kernels.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FR_HD __host__ __device__ __forceinline__
#define FR_UNROLL _Pragma("unroll")
#else
#define FR_HD inline
#define FR_UNROLL
#endif

namespace fedrobust {

// A read-only (n_rows, cols) matrix given by one pointer per row and the
// distance between consecutive elements of a row (in elements, may be
// negative). Any numpy / torch layout - C, Fortran, strided, a subset of the
// rows - is expressed without copying.
template <class T>
struct RowsView {
  const T* const* rows;
  int64_t n_rows;
  int64_t cols;
  int64_t col_stride;

  FR_HD T at(int64_t i, int64_t j) const { return rows[i][j * col_stride]; }
};

}  // namespace fedrobust
