// The coordinate-wise rules on ONE column held by one thread: the per-column
// code of the CUDA kernels for small m (csrc/cuda/coordinatewise.cu). The CPU
// module runs the very same functions (_cpu.column_rule_scalar), so the CPU
// tests check this logic against the reference without a GPU.
//
// The column x[0], x[stride], ..., x[(m-1) stride] is copied into a local array
// of canonical values (order.h) and insertion-sorted when m <= kMax, or its ranks
// are found by radix selection otherwise; the median and the trimmed mean then use
// order.h's formulas, the trimmed mean with the same row-order pass as the CPU
// kernel, so every backend gives the same bits.
#pragma once
#include <cstdint>
#include <cstring>

#include "fedrobust/common.h"
#include "fedrobust/order.h"

namespace fedrobust {

// Ordered keys: an unsigned integer per canonical value with the same order
// (bits with the sign bit set for x >= 0, all bits flipped for x < 0).
template <class T>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = uint32_t;
};
template <>
struct KeyOf<double> {
  using type = uint64_t;
};

template <class T>
FR_HD typename KeyOf<T>::type ordered_key(T x) {
  using K = typename KeyOf<T>::type;
  constexpr K sign = K(1) << (8 * sizeof(K) - 1);
  K u;
  memcpy(&u, &x, sizeof(K));
  return (u & sign) ? ~u : (u | sign);
}

template <class T>
FR_HD T from_ordered_key(typename KeyOf<T>::type k) {
  using K = typename KeyOf<T>::type;
  constexpr K sign = K(1) << (8 * sizeof(K) - 1);
  const K u = (k & sign) ? (k & ~sign) : ~k;
  T x;
  memcpy(&x, &u, sizeof(K));
  return x;
}

// The value of rank r (0-based, ascending, canonical) of a column of any length, with no
// scratch but a 256-bin histogram: a most-significant-digit radix selection over the
// ordered keys, one pass over the column per 8-bit digit (4 for float, 8 for double).
template <class T>
FR_HD T column_select_radix(const T* x, int64_t stride, int64_t m, int64_t r) {
  using K = typename KeyOf<T>::type;
  K prefix = 0, known = 0;  // the digits found so far, and the mask of their bits
  uint32_t hist[256];
  for (int shift = 8 * static_cast<int>(sizeof(K)) - 8; shift >= 0; shift -= 8) {
    for (int b = 0; b < 256; ++b) hist[b] = 0;
    for (int64_t i = 0; i < m; ++i) {
      const K k = ordered_key(canonical(x[i * stride]));
      if ((k & known) == prefix) ++hist[(k >> shift) & 0xff];
    }
    int b = 0;
    while (r >= static_cast<int64_t>(hist[b])) r -= hist[b++];
    prefix |= static_cast<K>(b) << shift;
    known |= static_cast<K>(0xff) << shift;
  }
  return from_ordered_key<T>(prefix);
}

// The values of ranks r1 <= r2 (ascending, canonical) of the column: insertion sort in a
// local array when m <= kMax, else two radix selections.
template <class T, int kMax>
FR_HD void column_ranks(const T* x, int64_t stride, int64_t m, int64_t r1, int64_t r2, T* lo, T* hi) {
  if (m > kMax) {
    *lo = column_select_radix(x, stride, m, r1);
    *hi = r2 == r1 ? *lo : column_select_radix(x, stride, m, r2);
    return;
  }
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
