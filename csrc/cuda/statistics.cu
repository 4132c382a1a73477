// CUDA twins of csrc/cpu/statistics.cpp's mean and coordinate_stats and of Bulyan's
// second stage (coordinatewise.cpp closest_to_median_mean): one thread per column runs
// column.h over the listed rows in list order, in double, the CPU's order and
// arithmetic (no FMA on either side), so the results are the CPU's bits.
#include <cuda_runtime.h>

#include "fedrobust/column.h"
#include "launch.h"
#include "statistics.h"

namespace fedrobust::cuda {
namespace {

constexpr int kThreads = 256;

// Calls f(j, column j's first element) for every column, grid-stride.
template <class T, class F>
__device__ void for_each_column(const Matrix<T>& u, F f) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < u.cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(j, u.data + j * u.col_stride);
}

template <class T>
__global__ void mean_kernel(Matrix<T> u, const int64_t* rows, int64_t n, T* out) {
  for_each_column(u, [&](int64_t j, const T* x) { out[j] = column_mean(x, u.row_stride, rows, n); });
}

template <class T>
__global__ void stats_kernel(Matrix<T> u, const int64_t* rows, int64_t n, T* mean, T* std, T* min, T* max) {
  for_each_column(u, [&](int64_t j, const T* x) {
    column_stats(x, u.row_stride, rows, n, mean + j, std + j, min + j, max + j);
  });
}

template <class T>
__global__ void bulyan_kernel(Matrix<T> u, const int64_t* rows, int64_t n, int64_t gamma, T* out) {
  for_each_column(u, [&](int64_t j, const T* x) { out[j] = column_bulyan<T, kMaxRows>(x, u.row_stride, rows, n, gamma); });
}

// Grid-stride over every element; a non-finite one marks its row (out zeroed before).
template <class T>
__global__ void nonfinite_rows_kernel(Matrix<T> u, uint8_t* out) {
  const int64_t n = u.rows * u.cols;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / u.cols, j = e % u.cols;
    if (!isfinite(u.data[i * u.row_stride + j * u.col_stride])) out[i] = 1;
  }
}

// Grid-stride over the n * cols output elements.
template <class T>
__global__ void gather_rows_kernel(Matrix<T> u, const int64_t* rows, int64_t n, T* out) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n * u.cols;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = e / u.cols, j = e % u.cols;
    out[e] = u.data[rows[k] * u.row_stride + j * u.col_stride];
  }
}

}  // namespace

template <class T>
void gather_rows(const Matrix<T>& u, const int64_t* rows, int64_t n, T* out, cudaStream_t stream) {
  gather_rows_kernel<T><<<grid_blocks(n * u.cols, kThreads), kThreads, 0, stream>>>(u, rows, n, out);
  check(cudaGetLastError(), "row gather kernel");
}

template <class T>
void nonfinite_rows(const Matrix<T>& u, uint8_t* out, cudaStream_t stream) {
  check(cudaMemsetAsync(out, 0, static_cast<size_t>(u.rows), stream), "clearing the row flags");
  nonfinite_rows_kernel<T><<<grid_blocks(u.rows * u.cols, kThreads), kThreads, 0, stream>>>(u, out);
  check(cudaGetLastError(), "non-finite rows kernel");
}

template <class T>
void mean(const Matrix<T>& u, const int64_t* rows, int64_t n, T* out, cudaStream_t stream) {
  mean_kernel<T><<<grid_blocks(u.cols, kThreads), kThreads, 0, stream>>>(u, rows, n, out);
  check(cudaGetLastError(), "mean kernel");
}

template <class T>
void coordinate_stats(const Matrix<T>& u, const int64_t* rows, int64_t n, T* mean, T* std, T* min, T* max,
                      cudaStream_t stream) {
  stats_kernel<T><<<grid_blocks(u.cols, kThreads), kThreads, 0, stream>>>(u, rows, n, mean, std, min, max);
  check(cudaGetLastError(), "coordinate statistics kernel");
}

template <class T>
void closest_to_median_mean(const Matrix<T>& u, const int64_t* rows, int64_t n, int64_t gamma, T* out,
                            cudaStream_t stream) {
  bulyan_kernel<T><<<grid_blocks(u.cols, kThreads), kThreads, 0, stream>>>(u, rows, n, gamma, out);
  check(cudaGetLastError(), "Bulyan kernel");
}

#define FR_INSTANTIATE(T)                                                                                        \
  template void mean<T>(const Matrix<T>&, const int64_t*, int64_t, T*, cudaStream_t);                           \
  template void coordinate_stats<T>(const Matrix<T>&, const int64_t*, int64_t, T*, T*, T*, T*, cudaStream_t);    \
  template void closest_to_median_mean<T>(const Matrix<T>&, const int64_t*, int64_t, int64_t, T*, cudaStream_t); \
  template void nonfinite_rows<T>(const Matrix<T>&, uint8_t*, cudaStream_t);                                  \
  template void gather_rows<T>(const Matrix<T>&, const int64_t*, int64_t, T*, cudaStream_t);
FR_INSTANTIATE(float)
FR_INSTANTIATE(double)
#undef FR_INSTANTIATE

}  // namespace fedrobust::cuda
