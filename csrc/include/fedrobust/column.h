// The coordinate-wise rules on ONE column held by one thread: the per-column
// code of the CUDA kernels (csrc/cuda/coordinatewise.cu, statistics.cu). The CPU
// module runs the very same functions (_cpu.column_rule_scalar), so the CPU
// tests check this logic against the reference without a GPU.
//
// The column x[0], x[stride], ..., x[(m-1) stride] is copied into a local array
// of canonical values (order.h) and insertion-sorted when m <= kMax, or its ranks
// are found by radix selection otherwise (radix_step is also the digit step of
// the CUDA tile selection for large m); the median and the trimmed mean then use
// order.h's formulas, the trimmed mean with the same row-order pass as the CPU
// kernel, so every backend gives the same bits. Bulyan's second stage, the mean
// and the masked statistics take a list of rows and follow the CPU's order too.
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "fedrobust/common.h"
#include "fedrobust/order.h"
#include "fedrobust/sorting_network.h"

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

// One digit of a most-significant-digit radix selection. hist[b] counts the keys
// that match the digits found so far (k & known == prefix) and have digit b at
// `shift`; the bin that holds rank r (0-based, among those keys) becomes the next
// digit: r drops the counts of the bins below it, and prefix / known gain the digit.
// Shared by column_select_radix (below) and the CUDA tile selection for large m
// (csrc/cuda/coordinatewise.cu), which builds the same histogram cooperatively.
template <class K>
FR_HD void radix_step(const uint32_t* hist, int shift, int64_t* r, K* prefix, K* known) {
  int b = 0;
  while (*r >= static_cast<int64_t>(hist[b])) *r -= hist[b++];
  *prefix |= static_cast<K>(b) << shift;
  *known |= static_cast<K>(0xff) << shift;
}

// Whether key k matches the digits found so far, and its digit at `shift`.
template <class K>
FR_HD bool radix_matches(K k, K prefix, K known) {
  return (k & known) == prefix;
}
template <class K>
FR_HD int radix_digit(K k, int shift) {
  return static_cast<int>((k >> shift) & 0xff);
}

// The value of rank r (0-based, ascending, canonical) of a column of any length, with no
// scratch but a 256-bin histogram: a most-significant-digit radix selection over the
// ordered keys, one pass over the column per 8-bit digit (4 for float, 8 for double).
template <class T>
FR_HD T column_select_radix(const T* x, int64_t stride, int64_t m, int64_t r) {
  using K = typename KeyOf<T>::type;
  K prefix = 0, known = 0;
  uint32_t hist[256];
  for (int shift = 8 * static_cast<int>(sizeof(K)) - 8; shift >= 0; shift -= 8) {
    for (int b = 0; b < 256; ++b) hist[b] = 0;
    for (int64_t i = 0; i < m; ++i) {
      const K k = ordered_key(canonical(x[i * stride]));
      if (radix_matches(k, prefix, known)) ++hist[radix_digit(k, shift)];
    }
    radix_step(hist, shift, &r, &prefix, &known);
  }
  return from_ordered_key<T>(prefix);
}

// v[0 .. m) = the column's canonical values, ascending (insertion sort).
template <class T>
FR_HD void column_sorted(const T* x, int64_t stride, int64_t m, T* v) {
  for (int64_t i = 0; i < m; ++i) {
    const T value = canonical(x[i * stride]);
    int64_t k = i;
    for (; k > 0 && v[k - 1] > value; --k) v[k] = v[k - 1];
    v[k] = value;
  }
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
  column_sorted(x, stride, m, v);
  *lo = v[r1];
  *hi = v[r2];
}

template <class T, int kMax>
FR_HD T column_median(const T* x, int64_t stride, int64_t m) {
  T lo, hi;
  column_ranks<T, kMax>(x, stride, m, (m - 1) / 2, m / 2, &lo, &hi);
  return median_from_middle(lo, hi, m);
}

// Leave-one-out medians of a column of m >= 2 values: out[i * out_stride] = the median of
// the column without value i (order.h's leave_one_out_median_value), from the values of
// ranks p, p + 1 and (odd m) p + 2, p = (m - 2) / 2: a local insertion sort when
// m <= kMax, else radix selections.
template <class T, int kMax>
FR_HD void column_leave_one_out_median(const T* x, int64_t stride, int64_t m, T* out, int64_t out_stride) {
  const int64_t p = (m - 2) / 2;
  const int64_t top = m % 2 == 1 ? p + 2 : p + 1;  // the highest rank read
  T vp, vp1, vp2;
  if (m > kMax) {
    vp = column_select_radix(x, stride, m, p);
    vp1 = column_select_radix(x, stride, m, p + 1);
    vp2 = top == p + 1 ? vp1 : column_select_radix(x, stride, m, top);
  } else {
    T v[kMax];
    column_sorted(x, stride, m, v);
    vp = v[p];
    vp1 = v[p + 1];
    vp2 = v[top];
  }
  for (int64_t i = 0; i < m; ++i)
    out[i * out_stride] = leave_one_out_median_value(canonical(x[i * stride]), vp, vp1, vp2, m);
}

// Leave-one-out trimmed means of a column of m >= 2 values, each the trimmed mean of the
// other m - 1 with b values trimmed at each end (2b < m - 1), exactly as the rule computes
// it on those m - 1 rows (order.h's trimmed_mean_from_pass, its mid sum in row order).
// From the sorted column v: a0 = v[b], a1 = v[b+1], z1 = v[m-2-b], z0 = v[m-1-b]. Without
// a value x (its lowest rank decides, as for the median) the m - 1 values' thresholds are
//   x <= a0:        (a1, z0)   and x is not strictly between them
//   a0 < x <= z1:   (a0, z0)   x is between them unless x == z0
//   x > z1:         (a0, z1)   and x is not strictly between them
// so the first and last cases take one row-order sum of the whole column each (s_low,
// s_high), and only the middle one a sum that skips x's row (s_mid when x == z0).
template <class T>
struct LeaveOneOutTrim {
  T a0, a1, z1, z0;
  double s_low, s_high;    // row-order sums of the values in (a1, z0) and in (a0, z1)
  double s_mid;            // and in (a0, z0)
  int64_t le_a0, le_a1;    // #{values <= a0}, #{values <= a1}
  int64_t ge_z1, ge_z0;    // #{values >= z1}, #{values >= z0}
};

// The sums and counts of LeaveOneOutTrim from one pass over the column in row order.
template <class T>
FR_HD LeaveOneOutTrim<T> leave_one_out_trim_pass(const T* x, int64_t stride, int64_t m, T a0, T a1, T z1, T z0) {
  LeaveOneOutTrim<T> c{a0, a1, z1, z0, 0.0, 0.0, 0.0, 0, 0, 0, 0};
  // Adding 0.0 for a value outside a range leaves the sum's bits as they are (a sum that
  // starts at +0.0 and adds canonical values is never -0.0), so the selects below are the
  // rule's "add the values strictly between", without branches.
  for (int64_t i = 0; i < m; ++i) {
    const T v = canonical(x[i * stride]);
    const double dv = static_cast<double>(v);
    c.s_low += a1 < v && v < z0 ? dv : 0.0;
    c.s_high += a0 < v && v < z1 ? dv : 0.0;
    c.s_mid += a0 < v && v < z0 ? dv : 0.0;
    c.le_a0 += v <= a0;
    c.le_a1 += v <= a1;
    c.ge_z1 += v >= z1;
    c.ge_z0 += v >= z0;
  }
  return c;
}

// Whether value x's leave-one-out result needs the row-order sum of the values in (a0, z0)
// without x's row (the middle case, x strictly between a0 and z0).
template <class T>
FR_HD bool leave_one_out_trim_skips(T x, const LeaveOneOutTrim<T>& c) {
  return x > c.a0 && !(x > c.z1) && x < c.z0;
}

// The trimmed mean of the m - 1 values other than x (canonical); skip_sum is the row-order
// sum of the values in (a0, z0) without x's row, read only where leave_one_out_trim_skips.
// Written as selects (the three cases share one trimmed_mean_from_pass), and x is taken off
// the counts of the m - 1 values wherever it sits at or beyond a threshold.
template <class T>
FR_HD T leave_one_out_trim_value(T x, const LeaveOneOutTrim<T>& c, double skip_sum, int64_t m, int64_t b) {
  const bool low = !(x > c.a0), high = x > c.z1;
  const T lo = low ? c.a1 : c.a0;
  const T hi = high ? c.z1 : c.z0;
  const double mid = low ? c.s_low : high ? c.s_high : leave_one_out_trim_skips(x, c) ? skip_sum : c.s_mid;
  const int64_t n_le = (low ? c.le_a1 : c.le_a0) - (x <= lo);
  const int64_t n_ge = (high ? c.ge_z1 : c.ge_z0) - (x >= hi);
  return trimmed_mean_from_pass(lo, hi, mid, n_le, n_ge, m - 1, b);
}

// out[i * out_stride] = the trimmed mean (b trimmed) of the column without value i, for all
// i: ranks b, b+1, m-2-b, m-1-b from a local insertion sort (m <= kMax) or radix selections,
// one pass for the sums and counts, and each middle-case row's skipping sum in row order.
template <class T, int kMax>
FR_HD void column_leave_one_out_trimmed_mean(const T* x, int64_t stride, int64_t m, int64_t b, T* out,
                                             int64_t out_stride) {
  T a0, a1, z1, z0;
  if (m > kMax) {
    a0 = column_select_radix(x, stride, m, b);
    a1 = column_select_radix(x, stride, m, b + 1);
    z1 = column_select_radix(x, stride, m, m - 2 - b);
    z0 = column_select_radix(x, stride, m, m - 1 - b);
  } else {
    T v[kMax];
    column_sorted(x, stride, m, v);
    a0 = v[b];
    a1 = v[b + 1];
    z1 = v[m - 2 - b];
    z0 = v[m - 1 - b];
  }
  const LeaveOneOutTrim<T> c = leave_one_out_trim_pass(x, stride, m, a0, a1, z1, z0);
  for (int64_t i = 0; i < m; ++i) {
    const T xi = canonical(x[i * stride]);
    double skip_sum = 0.0;
    if (leave_one_out_trim_skips(xi, c)) {
      for (int64_t j = 0; j < m; ++j) {
        const T v = canonical(x[j * stride]);
        skip_sum += j != i && a0 < v && v < z0 ? static_cast<double>(v) : 0.0;  // as in the pass
      }
    }
    out[i * out_stride] = leave_one_out_trim_value(xi, c, skip_sum, m, b);
  }
}

// The trimmed mean of a column from its order statistics lo = v[beta], hi = v[m-beta-1]:
// one pass in row order (order.h's trimmed_mean_from_pass).
template <class T>
FR_HD T column_trimmed_pass(const T* x, int64_t stride, int64_t m, int64_t beta, T lo, T hi) {
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

template <class T, int kMax>
FR_HD T column_trimmed_mean(const T* x, int64_t stride, int64_t m, int64_t beta) {
  T lo, hi;
  column_ranks<T, kMax>(x, stride, m, beta, m - beta - 1, &lo, &hi);
  return column_trimmed_pass(x, stride, m, beta, lo, hi);
}

// The register path for m <= N (N a power of two; the CUDA kernels take it while N values
// of T fit in registers): the column, padded with +Inf, is sorted by Batcher's network
// on N wires with every comparator at a compile-time position, so the values never
// leave registers, and the ranks are picked by an unrolled scan (a run-time index
// would move the array to memory). Padding sorts last and never reaches a rank < m.
template <class T>
FR_HD void compare_swap(T& x, T& y) {
  const T lo = y < x ? y : x, hi = y < x ? x : y;
  x = lo;
  y = hi;
}

template <class T, int N, size_t... C>
FR_HD void sort_by_network(T* v, std::index_sequence<C...>) {
  constexpr Batcher<N> net = make_batcher<N>();
  (compare_swap(v[net.a[C]], v[net.b[C]]), ...);
}

template <class T, int N>
FR_HD T pick_rank(const T* v, int64_t r) {
  T out = v[0];
  FR_UNROLL
  for (int k = 1; k < N; ++k) out = k == r ? v[k] : out;
  return out;
}

template <class T, int N>
FR_HD void column_ranks_network(const T* x, int64_t stride, int64_t m, int64_t r1, int64_t r2, T* lo, T* hi) {
  T v[N];
  FR_UNROLL
  for (int k = 0; k < N; ++k) v[k] = k < m ? canonical(x[k * stride]) : std::numeric_limits<T>::infinity();
  sort_by_network<T, N>(v, std::make_index_sequence<Batcher<N>::size>{});
  *lo = pick_rank<T, N>(v, r1);
  *hi = pick_rank<T, N>(v, r2);
}

template <class T, int N>
FR_HD T column_median_network(const T* x, int64_t stride, int64_t m) {
  T lo, hi;
  column_ranks_network<T, N>(x, stride, m, (m - 1) / 2, m / 2, &lo, &hi);
  return median_from_middle(lo, hi, m);
}

template <class T, int N>
FR_HD T column_trimmed_mean_network(const T* x, int64_t stride, int64_t m, int64_t beta) {
  T lo, hi;
  column_ranks_network<T, N>(x, stride, m, beta, m - beta - 1, &lo, &hi);
  return column_trimmed_pass(x, stride, m, beta, lo, hi);
}

// Row r of a column given by a row list: rows[r], or r itself when rows is null.
FR_HD int64_t row_at(const int64_t* rows, int64_t r) { return rows ? rows[r] : r; }

// Bulyan's second stage on one column over n <= kMax listed rows: the values, canonical
// and insertion-sorted in a local array, then order.h's closest_to_median_mean.
template <class T, int kMax>
FR_HD T column_bulyan(const T* x, int64_t stride, const int64_t* rows, int64_t n, int64_t gamma) {
  T v[kMax];
  for (int64_t i = 0; i < n; ++i) {
    const T value = canonical(x[row_at(rows, i) * stride]);
    int64_t k = i;
    for (; k > 0 && v[k - 1] > value; --k) v[k] = v[k - 1];
    v[k] = value;
  }
  return closest_to_median_mean(v, 1, n, gamma);
}

// Mean of a column over n listed rows: summed in list order in double, then divided by n
// (csrc/cpu/statistics.cpp's mean, per column).
template <class T>
FR_HD T column_mean(const T* x, int64_t stride, const int64_t* rows, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[row_at(rows, i) * stride]);
  return static_cast<T>(sum / static_cast<double>(n));
}

// Mean, population std, min and max of a column over n listed rows, of the canonical values
// (NaN counts as +Inf), two passes in list order in double (statistics.cpp's
// coordinate_stats, per column).
template <class T>
FR_HD void column_stats(const T* x, int64_t stride, const int64_t* rows, int64_t n, T* mean, T* std, T* min,
                        T* max) {
  double sum = 0.0;
  T lo = canonical(x[row_at(rows, 0) * stride]), hi = lo;
  for (int64_t i = 0; i < n; ++i) {
    const T value = canonical(x[row_at(rows, i) * stride]);
    sum += static_cast<double>(value);
    lo = value < lo ? value : lo;
    hi = value > hi ? value : hi;
  }
  const double mu = sum / static_cast<double>(n);
  double sq = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(canonical(x[row_at(rows, i) * stride])) - mu;
    sq += e * e;
  }
  *mean = static_cast<T>(mu);
  *std = static_cast<T>(sqrt(sq / static_cast<double>(n)));
  *min = lo;
  *max = hi;
}

}  // namespace fedrobust
