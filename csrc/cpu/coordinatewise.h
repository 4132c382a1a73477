// Coordinate-wise order statistics (coordinatewise.cpp): the median, the
// trimmed mean, and Bulyan's second stage. Built at every SIMD level, avx512 included.
#pragma once
#include <cstdint>

#include "fedrobust/common.h"
#include "simd_level.h"

namespace fedrobust::cpu {

// The build of each SIMD level (coordinatewise.cpp, compiled once per level).
namespace generic {
template <class T> void median(const RowsView<T>& u, T* out);
template <class T> void trimmed_mean(const RowsView<T>& u, int64_t beta, T* out);
template <class T> void closest_to_median_mean(const RowsView<T>& u, int64_t gamma, T* out);
template <class T> void leave_one_out_median(const RowsView<T>& u, T* out);
template <class T> void leave_one_out_trimmed_mean(const RowsView<T>& u, int64_t b, T* out);
}  // namespace generic
namespace avx2 {
template <class T> void median(const RowsView<T>& u, T* out);
template <class T> void trimmed_mean(const RowsView<T>& u, int64_t beta, T* out);
template <class T> void closest_to_median_mean(const RowsView<T>& u, int64_t gamma, T* out);
template <class T> void leave_one_out_median(const RowsView<T>& u, T* out);
template <class T> void leave_one_out_trimmed_mean(const RowsView<T>& u, int64_t b, T* out);
}  // namespace avx2
namespace avx512 {
template <class T> void median(const RowsView<T>& u, T* out);
template <class T> void trimmed_mean(const RowsView<T>& u, int64_t beta, T* out);
template <class T> void closest_to_median_mean(const RowsView<T>& u, int64_t gamma, T* out);
template <class T> void leave_one_out_median(const RowsView<T>& u, T* out);
template <class T> void leave_one_out_trimmed_mean(const RowsView<T>& u, int64_t b, T* out);
}  // namespace avx512

// out (cols,): coordinate-wise median (even n: lo/2 + hi/2, see order.h).
template <class T>
void median(const RowsView<T>& u, T* out) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::median(u, out);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::median(u, out);
#endif
  generic::median(u, out);
}

// out (cols,): coordinate-wise mean of the values ranked beta .. n-beta-1.
// Requires 0 <= beta and 2 beta < n.
template <class T>
void trimmed_mean(const RowsView<T>& u, int64_t beta, T* out) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::trimmed_mean(u, beta, out);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::trimmed_mean(u, beta, out);
#endif
  generic::trimmed_mean(u, beta, out);
}

// out (cols,): Bulyan's second stage, the mean of the gamma values closest
// to the coordinate's median. Requires 1 <= gamma <= n.
template <class T>
void closest_to_median_mean(const RowsView<T>& u, int64_t gamma, T* out) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::closest_to_median_mean(u, gamma, out);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::closest_to_median_mean(u, gamma, out);
#endif
  generic::closest_to_median_mean(u, gamma, out);
}

// out (n_rows, cols), row-major: row i is the median of the rows other than row i
// (order.h's leave_one_out_median_value), for n_rows >= 2. One selection per column
// (ranks p .. p+2 around the middle), then one pass writing every row's result.
template <class T>
void leave_one_out_median(const RowsView<T>& u, T* out) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::leave_one_out_median(u, out);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::leave_one_out_median(u, out);
#endif
  generic::leave_one_out_median(u, out);
}

// out (n_rows, cols), row-major: row i is the trimmed mean (b trimmed at each end, 2b <
// n_rows - 1) of the rows other than row i, with the rule's bits (column.h's
// LeaveOneOutTrim): one selection per column, one row-order pass, and the middle rows'
// skipping sums built together, O(m^2 / 2) vector adds per column.
template <class T>
void leave_one_out_trimmed_mean(const RowsView<T>& u, int64_t b, T* out) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::leave_one_out_trimmed_mean(u, b, out);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::leave_one_out_trimmed_mean(u, b, out);
#endif
  generic::leave_one_out_trimmed_mean(u, b, out);
}

}  // namespace fedrobust::cpu
