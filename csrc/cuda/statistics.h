// Host entry points of the CUDA per-column statistics over a list of rows
// (statistics.cu): the mean (the "mean" rule, Multi-Krum's average), the masked
// mean / population std / min / max, and Bulyan's second stage.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "coordinatewise.h"

namespace fedrobust::cuda {

// rows: n device row indices into u, or null for all u.rows rows (n = u.rows).
// Outputs are (u.cols,) device arrays, written on `stream`.
template <class T>
void mean(const Matrix<T>& u, const int64_t* rows, int64_t n, T* out, cudaStream_t stream);
template <class T>
void coordinate_stats(const Matrix<T>& u, const int64_t* rows, int64_t n, T* mean, T* std, T* min, T* max,
                      cudaStream_t stream);
// The mean of the gamma values closest to each column's median over the n <= kMaxRows rows.
template <class T>
void closest_to_median_mean(const Matrix<T>& u, const int64_t* rows, int64_t n, int64_t gamma, T* out,
                            cudaStream_t stream);

// out (n, u.cols) row-major on the device: the listed rows of u, in list order.
template <class T>
void gather_rows(const Matrix<T>& u, const int64_t* rows, int64_t n, T* out, cudaStream_t stream);

// out (u.rows,) device bytes: 1 where the row holds a NaN or an Inf, else 0.
template <class T>
void nonfinite_rows(const Matrix<T>& u, uint8_t* out, cudaStream_t stream);

}  // namespace fedrobust::cuda
