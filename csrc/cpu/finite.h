// Whether values are finite, for the units that check rows of U (statistics.cpp's
// nonfinite_rows, training.cpp's flags).
//
// Included by the vectorised units AFTER FR_BEGIN_SIMD_CODE (simd_level.h), so that it is
// compiled for the unit's SIMD level, in the level's namespace. It needs <cstdint>.
#pragma once

namespace fedrobust::cpu::FR_ARCH {

// Whether any of x[0], x[stride], ..., x[(n - 1) stride] is a NaN or an Inf (x - x is NaN
// exactly for those). The OR is over integers: the contiguous loop vectorises (a bool one
// with a stride does not).
template <class T>
bool holds_nonfinite(const T* x, int64_t n, int64_t stride = 1) {
  int bad = 0;
  if (stride == 1) {
    for (int64_t j = 0; j < n; ++j) bad |= !(x[j] - x[j] == T(0));
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const T v = x[j * stride];
      bad |= !(v - v == T(0));
    }
  }
  return bad != 0;
}

}  // namespace fedrobust::cpu::FR_ARCH
