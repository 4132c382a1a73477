// The CUDA distance kernel's arithmetic (csrc/cuda/distances.cu): one stage of one
// thread's 4 x 4 micro-tile of row pairs, and the column chunks whose sums are added
// in order. The CPU runs the same code in the same order (_cpu.distances_by_micro_tiles),
// so the CPU tests check it and the GPU tests compare the kernel with it bit for bit.
//
// For rows a_x (x < 4) and b_y (y < 4) and `cols` columns (element c of a_x at
// a[c * ld + x], of b_y at b[c * ld + y]: the staged, column-major layout):
//
//   s_xy = sum_c (a_x[c] - b_y[c])^2
//
// with direct differences (exact for the close values that attacks send, unlike
// ||a||^2 + ||b||^2 - 2ab), accumulated in T with FMA over the stage, like the CPU
// kernel's float lanes over a chunk, then added to total[x][y] in double. A float
// stage sum that overflowed or may have underflowed (not below 3e38, or below 1e-30,
// zero included) is recomputed in double, as on the CPU. NaN or Inf in a row makes
// the sum NaN or Inf; the reduction turns it into +Inf.
#pragma once
#include <cmath>
#include <cstdint>

#include "fedrobust/common.h"

namespace fedrobust {

constexpr int kMicroTile = 4;  // rows per side of a thread's micro-tile

// Columns per stage (staged in shared memory at once): 32 float, 16 double.
template <class T>
constexpr int kStageCols = 128 / static_cast<int>(sizeof(T));

// Columns per chunk (the share of d of one block; its partial sums are added in chunk
// order): at least 4096, doubled while the (chunks, m, m) partials would pass 2^24
// doubles (one chunk at least) or the chunks the 65535 blocks of a grid's y dimension.
inline int64_t distance_chunk_cols(int64_t m, int64_t d) {
  int64_t chunk = 4096;
  while (chunk < d && ((d + chunk - 1) / chunk * m * m > (int64_t(1) << 24) || (d + chunk - 1) / chunk > 65535))
    chunk *= 2;
  return chunk;
}

FR_HD float fused_multiply_add(float x, float y, float z) { return fmaf(x, y, z); }
FR_HD double fused_multiply_add(double x, double y, double z) { return fma(x, y, z); }

// Whether a stage sum in T cannot be trusted (float: overflow or possible underflow).
FR_HD bool stage_needs_double(float s) { return !(s < 3.0e38f) || s < 1.0e-30f; }
FR_HD bool stage_needs_double(double) { return false; }

template <class T>
FR_HD void micro_tile_stage(const T* a, const T* b, int64_t ld, int cols, double total[kMicroTile][kMicroTile]) {
  T acc[kMicroTile][kMicroTile] = {};
  for (int c = 0; c < cols; ++c) {
    T av[kMicroTile], bv[kMicroTile];
    FR_UNROLL
    for (int x = 0; x < kMicroTile; ++x) av[x] = a[c * ld + x];
    FR_UNROLL
    for (int y = 0; y < kMicroTile; ++y) bv[y] = b[c * ld + y];
    FR_UNROLL
    for (int x = 0; x < kMicroTile; ++x)
      FR_UNROLL
      for (int y = 0; y < kMicroTile; ++y) {
        const T diff = av[x] - bv[y];
        acc[x][y] = fused_multiply_add(diff, diff, acc[x][y]);
      }
  }
  FR_UNROLL
  for (int x = 0; x < kMicroTile; ++x)
    FR_UNROLL
    for (int y = 0; y < kMicroTile; ++y) {
      if (!stage_needs_double(acc[x][y])) {
        total[x][y] += static_cast<double>(acc[x][y]);
        continue;
      }
      double exact = 0.0;
      for (int c = 0; c < cols; ++c) {
        const double diff = static_cast<double>(a[c * ld + x]) - static_cast<double>(b[c * ld + y]);
        exact += diff * diff;
      }
      total[x][y] += exact;
    }
}

}  // namespace fedrobust
