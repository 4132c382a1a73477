// The per-element rules of the coordinate-wise statistics, shared by every
// backend so that CPU and CUDA give the same bits.
//
// Non-finite values (SPEC section 13, item 15): every ordering kernel first
// maps a value through `canonical`: NaN becomes +Inf (so trimming removes it
// like any other largest value) and -0 becomes +0 (so equal values are equal
// bit patterns and the order of a sort never shows in the result).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "fedrobust/common.h"

namespace fedrobust {

template <class T>
FR_HD T canonical(T x) {
  return x != x ? std::numeric_limits<T>::infinity() : x + T(0);
}

// A NaN result (e.g. -Inf and +Inf averaged) as the one quiet NaN of T: CPUs and
// GPUs make NaNs with different bits, and results must not depend on the backend.
template <class T>
FR_HD T one_nan(T x) {
  return x != x ? std::numeric_limits<T>::quiet_NaN() : x;
}

// The mean of two middle values lo <= hi: lo/2 + hi/2 evaluated in double (no overflow), or
// lo itself when the two are equal. Halving an odd multiple of the least double subnormal
// rounds to even, so lo/2 + hi/2 of two equal such values could leave them (5e-324 twice
// gave 0); for lo < hi the rounded mean stays within [lo, hi].
template <class T>
FR_HD T mean_of_middle(T lo, T hi) {
  if (lo == hi) return lo;
  return one_nan(static_cast<T>(0.5 * static_cast<double>(lo) + 0.5 * static_cast<double>(hi)));
}

// Median from the two middle order statistics lo = v[(m-1)/2], hi = v[m/2]:
// lo when m is odd, else mean_of_middle(lo, hi).
template <class T>
FR_HD T median_from_middle(T lo, T hi, int64_t m) {
  if (m % 2 == 1) return lo;
  return mean_of_middle(lo, hi);
}

// Leave-one-out median (the defenses, SPEC 9.5): the median of a column of m >= 2 values
// without one of them, x, from the sorted column v (canonical values):
//   p = (m-2)/2, q = (m-1)/2 (q = p for even m, p + 1 for odd m),
//   vp = v[p], vp1 = v[p+1], vp2 = v[p+2] (read only for odd m).
// Without x the m - 1 values' middle ranks p and q hold v[p] (or v[q]) when x sits above
// that rank, else the next value up. Removing any copy of a tied value leaves the same
// values, so x's lowest rank decides: "x sits above rank p" is x > v[p]. The result is
// median_from_middle of those two, exactly the median of the m - 1 values.
// Even m (m - 1 odd: the one middle value).
template <class T>
FR_HD T leave_one_out_median_even(T x, T vp, T vp1) {
  return x > vp ? vp : vp1;
}

// Odd m (m - 1 even: the two middle values averaged, median_from_middle).
template <class T>
FR_HD T leave_one_out_median_odd(T x, T vp, T vp1, T vp2) {
  const T lo = x > vp ? vp : vp1;
  const T hi = x > vp1 ? vp1 : vp2;
  return mean_of_middle(lo, hi);
}

template <class T>
FR_HD T leave_one_out_median_value(T x, T vp, T vp1, T vp2, int64_t m) {
  return m % 2 == 0 ? leave_one_out_median_even(x, vp, vp1) : leave_one_out_median_odd(x, vp, vp1, vp2);
}

// Trimmed mean from one pass over the column in row order.
//   lo = v[beta], hi = v[m-beta-1]   (sorted, canonical values)
//   mid_sum = sum, in row order and in double, of the values x with lo < x < hi
//   n_le = #{x <= lo},  n_ge = #{x >= hi}
// The kept values are the mid values plus (n_le - beta) copies of lo and
// (n_ge - beta) copies of hi, so
//   result = (mid_sum + (n_le - beta) * lo + (n_ge - beta) * hi) / (m - 2 beta)
// and result = lo when lo == hi (every kept value equals lo).
template <class T>
FR_HD T trimmed_mean_from_pass(T lo, T hi, double mid_sum, int64_t n_le, int64_t n_ge,
                               int64_t m, int64_t beta) {
  if (lo == hi) return lo;
  double total = mid_sum + static_cast<double>(n_le - beta) * static_cast<double>(lo) +
                 static_cast<double>(n_ge - beta) * static_cast<double>(hi);
  return one_nan(static_cast<T>(total / static_cast<double>(m - 2 * beta)));
}

// Bulyan's second stage on one coordinate: v holds theta sorted canonical
// values (element k at v[k * stride]). The gamma values closest to the
// median form a window v[l .. l+gamma); the first l whose right neighbour is
// at least as far from the median as v[l] is (ties keep the lower value).
// Returns the mean of the window, summed in ascending order in double.
template <class T>
FR_HD T closest_to_median_mean(const T* v, int64_t stride, int64_t theta, int64_t gamma) {
  // The median in double (not rounded to T): lo, or lo/2 + hi/2 for even theta.
  const double lo = static_cast<double>(v[((theta - 1) / 2) * stride]);
  const double med = theta % 2 == 1 ? lo : 0.5 * lo + 0.5 * static_cast<double>(v[(theta / 2) * stride]);
  int64_t l = 0;
  while (l < theta - gamma) {
    const double left_gap = med - static_cast<double>(v[l * stride]);
    const double right_gap = static_cast<double>(v[(l + gamma) * stride]) - med;
    if (right_gap >= left_gap) break;
    ++l;
  }
  double sum = 0.0;
  for (int64_t k = l; k < l + gamma; ++k) sum += static_cast<double>(v[k * stride]);
  return one_nan(static_cast<T>(sum / static_cast<double>(gamma)));
}

}  // namespace fedrobust
