// Pairwise squared Euclidean distances between rows (distances.cpp).
#pragma once
#include "fedrobust/common.h"
#include "simd_level.h"

namespace fedrobust::cpu {

// The build of each SIMD level (distances.cpp, compiled once per level).
namespace generic {
template <class T> void pairwise_sq_distances(const RowsView<T>& u, double* out);
}  // namespace generic
namespace avx2 {
template <class T> void pairwise_sq_distances(const RowsView<T>& u, double* out);
}  // namespace avx2

// out (n, n) row-major: squared Euclidean distances in double; exactly 0 on
// the diagonal; +Inf where either row holds a non-finite value.
template <class T>
void pairwise_sq_distances(const RowsView<T>& u, double* out) {
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::pairwise_sq_distances(u, out);
#endif
  generic::pairwise_sq_distances(u, out);
}

}  // namespace fedrobust::cpu
