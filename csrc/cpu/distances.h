// Pairwise squared Euclidean distances between rows (distances.cpp).
#pragma once
#include "fedrobust/common.h"
#include "simd_level.h"

namespace fedrobust::cpu {

// A chunk row holds 2 KiB (less only at the end of a row), so that the "a" rows of a
// micro-tile stay in L1 while the tile walks along the "b" rows; in 32-byte vector lanes
// that is kMaxLaneTerms squares summed in one lane before the lanes go to double.
constexpr int64_t kMaxChunkBytes = 2048;
constexpr int64_t kMaxLaneTerms = 64;

// The rounding of the float32 kernel, for bounds on its output (krum_gram.cpp):
// |D - sum_k (a_k - b_k)^2| <= direct_relative_error(cols) D' + direct_absolute_error(cols),
// D the kernel's value and D' the exact one. Each lane sums at most kMaxLaneTerms terms,
// each from a rounded difference (relative 2^-24, squared: 2 u) and at most two more
// roundings (the square and the sum): gamma(2 kMaxLaneTerms + 2), u = 2^-24. The lanes and
// the chunks are added in double: (cols / 16 + 8) more roundings of 2^-53, doubled for
// safety. The absolute part covers squares and sums below the normal range.
inline double direct_relative_error(int64_t cols) {
  const double nu = (2.0 * kMaxLaneTerms + 2.0) * 0x1p-24;
  return nu / (1.0 - nu) + 2.0 * (static_cast<double>(cols) / 16.0 + 8.0) * 0x1p-53;
}
inline double direct_absolute_error(int64_t cols) { return 4.0 * static_cast<double>(cols) * 0x1p-149; }

// The build of each SIMD level (distances.cpp, compiled once per level).
namespace generic {
template <class T> void pairwise_sq_distances(const RowsView<T>& u, double* out);
template <class T> void sq_distance_rows(const RowsView<T>& u, const int64_t* rows, int64_t count, double* out);
}  // namespace generic
namespace avx2 {
template <class T> void pairwise_sq_distances(const RowsView<T>& u, double* out);
template <class T> void sq_distance_rows(const RowsView<T>& u, const int64_t* rows, int64_t count, double* out);
}  // namespace avx2
namespace avx512 {
template <class T> void pairwise_sq_distances(const RowsView<T>& u, double* out);
template <class T> void sq_distance_rows(const RowsView<T>& u, const int64_t* rows, int64_t count, double* out);
}  // namespace avx512

// out (n, n) row-major: squared Euclidean distances in double; exactly 0 on
// the diagonal; +Inf where either row holds a non-finite value.
template <class T>
void pairwise_sq_distances(const RowsView<T>& u, double* out) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::pairwise_sq_distances(u, out);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::pairwise_sq_distances(u, out);
#endif
  generic::pairwise_sq_distances(u, out);
}

}  // namespace fedrobust::cpu

namespace fedrobust::cpu {

// out (count, n) row-major: row r holds the squared distances from row rows[r] to every row,
// with the same bits as row rows[r] of pairwise_sq_distances (0 at rows[r] itself).
template <class T>
void sq_distance_rows(const RowsView<T>& u, const int64_t* rows, int64_t count, double* out) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::sq_distance_rows(u, rows, count, out);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::sq_distance_rows(u, rows, count, out);
#endif
  generic::sq_distance_rows(u, rows, count, out);
}

}  // namespace fedrobust::cpu
