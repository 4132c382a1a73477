// Streaming per-coordinate statistics over the rows (statistics.cpp): the
// mean, the mean / population std / min / max, and the non-finite row scan.
#pragma once
#include <cstdint>

#include "fedrobust/common.h"
#include "simd_level.h"

namespace fedrobust::cpu {

// The build of each SIMD level (statistics.cpp, compiled once per level).
namespace generic {
template <class T> void mean(const RowsView<T>& u, T* out);
template <class T> void coordinate_stats(const RowsView<T>& u, T* mean, T* std, T* min, T* max);
template <class T> void nonfinite_rows(const RowsView<T>& u, uint8_t* out);
}  // namespace generic
namespace avx2 {
template <class T> void mean(const RowsView<T>& u, T* out);
template <class T> void coordinate_stats(const RowsView<T>& u, T* mean, T* std, T* min, T* max);
template <class T> void nonfinite_rows(const RowsView<T>& u, uint8_t* out);
}  // namespace avx2

// out (cols,): mean over rows, summed in row order in double.
template <class T>
void mean(const RowsView<T>& u, T* out) {
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::mean(u, out);
#endif
  generic::mean(u, out);
}

// mean, std, min, max (cols,): per-coordinate mean, population std, min and
// max over the rows.
template <class T>
void coordinate_stats(const RowsView<T>& u, T* mean, T* std, T* min, T* max) {
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::coordinate_stats(u, mean, std, min, max);
#endif
  generic::coordinate_stats(u, mean, std, min, max);
}

// out (n,): 1 where the row holds a NaN or an Inf, else 0.
template <class T>
void nonfinite_rows(const RowsView<T>& u, uint8_t* out) {
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::nonfinite_rows(u, out);
#endif
  generic::nonfinite_rows(u, out);
}

}  // namespace fedrobust::cpu
