// The coordinate-wise rules on ONE column held by one thread: the per-column
// code of the CUDA kernels for small m (csrc/cuda/coordinatewise.cu). The CPU
// module runs the very same functions (_cpu.column_rule_scalar), so the CPU
// tests check this logic against the reference without a GPU.
//
// The column x[0], x[stride], ..., x[(m-1) stride] (m <= kMax) is copied into a
// local array of canonical values (order.h) and insertion-sorted; the median
// and the trimmed mean then use order.h's formulas, the trimmed mean with the
// same row-order pass as the CPU kernel, so every backend gives the same bits.
#pragma once
#include <cstdint>

#include "fedrobust/common.h"
#include "fedrobust/order.h"

namespace fedrobust {

// The values of ranks r1 <= r2 (ascending, canonical) of the column.
template <class T, int kMax>
FR_HD void column_ranks(const T* x, int64_t stride, int64_t m, int64_t r1, int64_t r2, T* lo, T* hi) {
  T v[kMax];
  for (int64_t i = 0; i < m; ++i) {
    const T value = canonical(x[i * stride]);
    int64_t k = i;
    for (; k > 0 && v[k - 1] > value; --k) v[k] = v[k - 1];
    v[k] = value;
  }
  *lo = v[r1];
  *hi = v[r2];
}

template <class T, int kMax>
FR_HD T column_median(const T* x, int64_t stride, int64_t m) {
  T lo, hi;
  column_ranks<T, kMax>(x, stride, m, (m - 1) / 2, m / 2, &lo, &hi);
  return median_from_middle(lo, hi, m);
}

template <class T, int kMax>
FR_HD T column_trimmed_mean(const T* x, int64_t stride, int64_t m, int64_t beta) {
  T lo, hi;
  column_ranks<T, kMax>(x, stride, m, beta, m - beta - 1, &lo, &hi);
  double mid_sum = 0.0;
  int64_t n_le = 0, n_ge = 0;
  for (int64_t i = 0; i < m; ++i) {
    const T value = canonical(x[i * stride]);
    if (value <= lo) {
      ++n_le;
    } else if (value >= hi) {
      ++n_ge;
    } else {
      mid_sum += static_cast<double>(value);
    }
  }
  return trimmed_mean_from_pass(lo, hi, mid_sum, n_le, n_ge, m, beta);
}

}  // namespace fedrobust
