// Streaming per-coordinate statistics over the rows of a RowsView: the mean
// (the "mean" rule and Multi-Krum's average), the masked mean / population
// std / min / max that the attacks build on, and the non-finite row scan.
// Rows are read in order, a block of columns at a time, with double
// accumulators per column, so sums are in row order for any thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "fedrobust/order.h"
#include "statistics.h"

#include "threads.h"

FR_BEGIN_SIMD_CODE
#include "finite.h"
#include "tile.h"

namespace fedrobust::cpu::FR_ARCH {
namespace {

constexpr int64_t kBlock = 512;  // columns per block: 4 KiB of double accumulators

// acc[t] += f(row value at column j0 + t) for t < w.
template <class T, class F>
inline void accumulate_row(const T* src, int64_t col_stride, int64_t w, double* acc, F f) {
  if (col_stride == 1) {
    for (int64_t t = 0; t < w; ++t) acc[t] += f(src[t], t);
  } else {
    for (int64_t t = 0; t < w; ++t) acc[t] += f(src[t * col_stride], t);
  }
}

}  // namespace

template <class T>
void mean(const RowsView<T>& u, T* out) {
  const int64_t n_blocks = ceil_div(u.cols, kBlock);
  const double n = static_cast<double>(u.n_rows);
#pragma omp parallel for schedule(static) if (worth_threads(u.n_rows * u.cols))
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t j0 = b * kBlock, w = std::min(kBlock, u.cols - j0);
    double acc[kBlock] = {};
    int64_t i = 0;
    if (u.col_stride == 1) {
      // Four rows per pass over the accumulators: ((acc + x0) + x1) + x2) + x3 is the same
      // row-order sum, with one load and store of acc per four values instead of per value.
      for (; i + 4 <= u.n_rows; i += 4) {
        const T *r0 = u.rows[i] + j0, *r1 = u.rows[i + 1] + j0, *r2 = u.rows[i + 2] + j0, *r3 = u.rows[i + 3] + j0;
        for (int64_t t = 0; t < w; ++t) {
          double a = acc[t];
          a += static_cast<double>(r0[t]);
          a += static_cast<double>(r1[t]);
          a += static_cast<double>(r2[t]);
          a += static_cast<double>(r3[t]);
          acc[t] = a;
        }
      }
    }
    for (; i < u.n_rows; ++i)
      accumulate_row(u.rows[i] + j0 * u.col_stride, u.col_stride, w, acc,
                     [](T x, int64_t) { return static_cast<double>(x); });
    for (int64_t t = 0; t < w; ++t) out[j0 + t] = static_cast<T>(acc[t] / n);
  }
}

template <class T>
void coordinate_stats(const RowsView<T>& u, T* mean_out, T* std_out, T* min_out, T* max_out) {
  const int64_t n_blocks = ceil_div(u.cols, kBlock);
  const double n = static_cast<double>(u.n_rows);
#pragma omp parallel for schedule(static) if (worth_threads(u.n_rows * u.cols))
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t j0 = b * kBlock, w = std::min(kBlock, u.cols - j0);
    double sum[kBlock] = {}, sq[kBlock] = {}, mu[kBlock];
    T lo[kBlock], hi[kBlock];
    std::fill(lo, lo + w, std::numeric_limits<T>::infinity());
    std::fill(hi, hi + w, -std::numeric_limits<T>::infinity());
    for (int64_t i = 0; i < u.n_rows; ++i) {
      const T* src = u.rows[i] + j0 * u.col_stride;
      for (int64_t t = 0; t < w; ++t) {
        const T x = canonical(src[t * u.col_stride]);
        sum[t] += static_cast<double>(x);
        lo[t] = x < lo[t] ? x : lo[t];
        hi[t] = x > hi[t] ? x : hi[t];
      }
    }
    for (int64_t t = 0; t < w; ++t) mu[t] = sum[t] / n;
    // Second pass (the block is still in cache): population variance.
    for (int64_t i = 0; i < u.n_rows; ++i)
      accumulate_row(u.rows[i] + j0 * u.col_stride, u.col_stride, w, sq, [&](T x, int64_t t) {
        const double e = static_cast<double>(canonical(x)) - mu[t];
        return e * e;
      });
    for (int64_t t = 0; t < w; ++t) {
      mean_out[j0 + t] = static_cast<T>(mu[t]);
      std_out[j0 + t] = static_cast<T>(std::sqrt(sq[t] / n));
      min_out[j0 + t] = lo[t];
      max_out[j0 + t] = hi[t];
    }
  }
}

template <class T>
void nonfinite_rows(const RowsView<T>& u, uint8_t* out) {
#pragma omp parallel for schedule(static) if (worth_threads(u.n_rows * u.cols))
  for (int64_t i = 0; i < u.n_rows; ++i) out[i] = holds_nonfinite(u.rows[i], u.cols, u.col_stride) ? 1 : 0;
}

template void mean<float>(const RowsView<float>&, float*);
template void mean<double>(const RowsView<double>&, double*);
template void coordinate_stats<float>(const RowsView<float>&, float*, float*, float*, float*);
template void coordinate_stats<double>(const RowsView<double>&, double*, double*, double*, double*);
template void nonfinite_rows<float>(const RowsView<float>&, uint8_t*);
template void nonfinite_rows<double>(const RowsView<double>&, uint8_t*);

}  // namespace fedrobust::cpu::FR_ARCH
