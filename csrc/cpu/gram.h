// The Gram matrix of centred float32 rows quantized to 16-bit integers (gram.cpp): exact
// integer dot products at integer multiply-add speed, for bounds on Krum's distances
// (krum_gram.cpp). Built at every SIMD level, avx512 included.
#pragma once
#include <cstdint>

#include "fedrobust/common.h"
#include "simd_level.h"

namespace fedrobust::cpu {

// Rows per packed panel; columns per block (one scale per row and block); columns per
// int32 sum (kChunkCols products of at most kQuantMax^2 each stay below 2^31).
constexpr int64_t kPanel = 48;
constexpr int64_t kBlockCols = 2048;
constexpr int64_t kChunkCols = 256;
constexpr int32_t kQuantMax = 2895;
static_assert(kChunkCols * kQuantMax * kQuantMax < (int64_t{1} << 31), "an int32 sum must not overflow");
static_assert(kBlockCols % kChunkCols == 0 && kChunkCols % 2 == 0, "chunks of column pairs tile a block");
// Centred values beyond kGramMaxAbs are refused; a row's block whose largest centred value
// is below kGramMinAbs is quantized to zeros (all of it then residual), so that no scale
// is subnormal.
constexpr float kGramMaxAbs = 1e17f;
constexpr float kGramMinAbs = 1e-30f;

// The rounding of `gram` below: |G_ij - <z_i, z_j>| <= gram_relative_error(cols) ||z_i|| ||z_j||.
// Each block adds s_ib s_jb P_b (P_b an exact integer, s_ib s_jb exact in double) with one
// rounding for the product and one for the sum: 2 per block, and Cauchy-Schwarz bounds
// sum_b |<z_ib, z_jb>| by ||z_i|| ||z_j||. Doubled for safety.
inline double gram_relative_error(int64_t cols) {
  const double blocks = static_cast<double>((cols + kBlockCols - 1) / kBlockCols);
  return 2.0 * (2.0 * blocks + 2.0) * 0x1p-53;
}

namespace generic {
bool quantized_gram(const RowsView<float>& u, const float* centre, double* gram, double* residual);
}  // namespace generic
namespace avx2 {
bool quantized_gram(const RowsView<float>& u, const float* centre, double* gram, double* residual);
}  // namespace avx2
namespace avx512 {
bool quantized_gram(const RowsView<float>& u, const float* centre, double* gram, double* residual);
}  // namespace avx512

// With x_i = fl(u_i - centre) in float, and for each row i and block b of kBlockCols columns
// a scale s_ib > 0 (or 0) and integers |q_ik| <= kQuantMax, z_ik = s_ib q_ik:
//   gram (n, n) row-major, symmetric: G_ij = sum_b s_ib s_jb sum_{k in b} q_ik q_jk, the
//     integer sums exact, within gram_relative_error(cols) ||z_i|| ||z_j|| of <z_i, z_j>;
//   residual (n,): residual_i >= ||x_i - z_i||, a rigorous upper bound.
// Returns false (both then unusable) if some x_ik is not finite or exceeds kGramMaxAbs.
// Bits do not depend on the thread count.
inline bool quantized_gram(const RowsView<float>& u, const float* centre, double* gram, double* residual) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::quantized_gram(u, centre, gram, residual);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::quantized_gram(u, centre, gram, residual);
#endif
  return generic::quantized_gram(u, centre, gram, residual);
}

}  // namespace fedrobust::cpu
