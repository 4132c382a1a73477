// CUDA twins of the coordinate-wise median and trimmed mean (csrc/cpu/coordinatewise.cpp)
// for small m: one thread per column runs column.h, the code the CPU tests exercise, so
// the results are the CPU's bits. Columns are read in row order by adjacent threads, so
// each row's reads coalesce when the columns are contiguous.
#include <cuda_runtime.h>

#include "coordinatewise.h"
#include "fedrobust/column.h"
#include "launch.h"

namespace fedrobust::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void median_kernel(const T* u, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[j] = column_median<T, kMaxRows>(u + j * col_stride, row_stride, m);
}

template <class T>
__global__ void trimmed_mean_kernel(const T* u, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                                    int64_t beta, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[j] = column_trimmed_mean<T, kMaxRows>(u + j * col_stride, row_stride, m, beta);
}

}  // namespace

template <class T>
void median(const Matrix<T>& u, T* out, cudaStream_t stream) {
  median_kernel<T><<<grid_blocks(u.cols, kThreads), kThreads, 0, stream>>>(u.data, u.rows, u.cols, u.row_stride,
                                                                 u.col_stride, out);
  check(cudaGetLastError(), "median kernel");
}

template <class T>
void trimmed_mean(const Matrix<T>& u, int64_t beta, T* out, cudaStream_t stream) {
  trimmed_mean_kernel<T><<<grid_blocks(u.cols, kThreads), kThreads, 0, stream>>>(u.data, u.rows, u.cols, u.row_stride,
                                                                       u.col_stride, beta, out);
  check(cudaGetLastError(), "trimmed mean kernel");
}

template void median<float>(const Matrix<float>&, float*, cudaStream_t);
template void median<double>(const Matrix<double>&, double*, cudaStream_t);
template void trimmed_mean<float>(const Matrix<float>&, int64_t, float*, cudaStream_t);
template void trimmed_mean<double>(const Matrix<double>&, int64_t, double*, cudaStream_t);

}  // namespace fedrobust::cuda
