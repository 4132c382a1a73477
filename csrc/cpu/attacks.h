// The attacks' crafting kernels (attacks.cpp): the trim and Gaussian attacks'
// values from per-coordinate statistics, and the Krum attack's norms, dots
// and sent updates.
#pragma once
#include <cstdint>

#include "fedrobust/common.h"
#include "fedrobust/craft.h"
#include "simd_level.h"

namespace fedrobust::cpu {

using fedrobust::CraftMode;

// Arguments of craft_coordinates.
template <class T>
struct CraftSpec {
  RowsView<T> rows;          // the rows whose per-coordinate statistics set the values
  CraftMode mode;
  const int8_t* direction;   // (cols,) s_j in {-1, 0, 1}: kTrimFull only
  const T* base;             // (cols,) or null: kTrimFull intervals on base + value (model values)
  double b;                  // kTrimFull interval factor, > 1
  double sigma_lo, sigma_hi; // kTrimPartial interval in standard deviations
  uint64_t seed, round;      // the counter of random.h, with out_ids[k] and the column
  const int64_t* out_ids;    // (n_out,)
  int64_t n_out;
  T* out;                    // (n_out, cols) row-major
  int8_t* direction_out;     // (cols,) or null: the direction used
};

// Arguments of krum_craft.
template <class T>
struct KrumCraft {
  const int8_t* direction;   // (cols,) s
  int64_t cols;
  double lambda, eps;
  uint64_t seed, round;
  const int64_t* out_ids;    // (n_out,) counter rows
  int64_t n_out;
  T* out;                    // (n_out, cols) row-major
};

// The build of each SIMD level (attacks.cpp, compiled once per level).
namespace generic {
template <class T> void craft_coordinates(const CraftSpec<T>& spec);
template <class T> void norms_and_dots(const RowsView<T>& u, const int8_t* direction, double* sq_norms, double* dots);
template <class T> void krum_craft(const KrumCraft<T>& spec);
}  // namespace generic
namespace avx2 {
template <class T> void craft_coordinates(const CraftSpec<T>& spec);
template <class T> void norms_and_dots(const RowsView<T>& u, const int8_t* direction, double* sq_norms, double* dots);
template <class T> void krum_craft(const KrumCraft<T>& spec);
}  // namespace avx2

// spec.out (n_out, cols): the trim / Gaussian attack values of spec.mode from
// the per-coordinate statistics of spec.rows; spec.direction_out the
// direction used.
template <class T>
void craft_coordinates(const CraftSpec<T>& spec) {
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::craft_coordinates(spec);
#endif
  generic::craft_coordinates(spec);
}

// sq_norms[i] = ||u_i||^2, dots[i] = <u_i, direction>, (n,) in double.
template <class T>
void norms_and_dots(const RowsView<T>& u, const int8_t* direction, double* sq_norms, double* dots) {
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::norms_and_dots(u, direction, sq_norms, dots);
#endif
  generic::norms_and_dots(u, direction, sq_norms, dots);
}

// spec.out (n_out, cols): the Krum attack's sent updates, row 0 = -lambda s,
// row k >= 1 = row 0 + r_k v_k with |v_k| = 1 and r_k ~ U(0, eps).
template <class T>
void krum_craft(const KrumCraft<T>& spec) {
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::krum_craft(spec);
#endif
  generic::krum_craft(spec);
}

}  // namespace fedrobust::cpu
