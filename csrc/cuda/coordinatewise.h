// Host entry points of the CUDA coordinate-wise kernels (coordinatewise.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fedrobust::cuda {

// Up to this many rows a thread sorts its column in a local array (and Bulyan's second
// stage takes at most this many selected rows); beyond, the median and the trimmed mean
// find their ranks by a block-wide radix selection over a tile of columns.
constexpr int kMaxRows = 128;

// A device matrix: element (i, j) at data[i * row_stride + j * col_stride] (in elements).
template <class T>
struct Matrix {
  const T* data;
  int64_t rows, cols, row_stride, col_stride;
};

// out (cols,) on the device, written on `stream`.
template <class T>
void median(const Matrix<T>& u, T* out, cudaStream_t stream);
template <class T>
void trimmed_mean(const Matrix<T>& u, int64_t beta, T* out, cudaStream_t stream);

// out (rows, cols), row-major, on the device: row i is the median of the rows other than
// row i (rows >= 2), one thread per column (column.h's column_leave_one_out_median).
template <class T>
void leave_one_out_median(const Matrix<T>& u, T* out, cudaStream_t stream);

// out (rows, cols), row-major, on the device: row i is the trimmed mean (b trimmed at each
// end) of the rows other than row i, one thread per column
// (column.h's column_leave_one_out_trimmed_mean).
template <class T>
void leave_one_out_trimmed_mean(const Matrix<T>& u, int64_t b, T* out, cudaStream_t stream);

}  // namespace fedrobust::cuda
