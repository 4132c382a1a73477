// The Gram matrix of centred float32 rows quantized to 16-bit integers (gram.h): the bulk of
// Krum's distances at integer multiply-add speed; krum_gram.cpp turns it into rigorous bounds
// on the exact direct-difference distances.
//
// Quantization, for row i and each block b of kBlockCols columns:
//   x_ik = fl(u_ik - centre_k) in float; s_ib = fl(max_k |x_ik| / kQuantMax);
//   q_ik = x_ik / s_ib rounded to an integer and clamped to +-kQuantMax; z_ik = s_ib q_ik.
//   The residual x_ik - z_ik is taken in double and its norm bounded from above, so the
//   bound holds whatever integers were chosen (the rounding only makes it tight).
// Products: G_ij = sum_b s_ib s_jb P_ijb, P_ijb = sum_{k in b} q_ik q_jk exactly: int32 sums of
//   kChunkCols products (gram.h: no overflow), each converted and added into double exactly
//   (|P| < 2^53). One multiply-add of 16-bit pairs (vpdpwssd where the CPU has AVX-512 VNNI,
//   else pmaddwd + paddd) does two columns per 32-bit lane: twice a float FMA's products.
// Blocking (a small GEMM on one matrix):
//   - The block's rows are packed into panels of kPanel rows: for each column pair t, the
//     panel's kPanel 32-bit words (q_{r,2t}, q_{r,2t+1}) side by side (rows past n are zero).
//   - A micro-tile (gram_tile.h) is kTileRows rows of panel p (one word broadcast each) times
//     kTileVecs vectors of rows of panel q, q >= p, over kChunkCols columns, in integer registers.
//   - Panels q are dealt to the threads largest first; the sums of panels 0..q against panel q
//     collect in a per-thread strip (panel q's chunk stays in L1 while the others pass by),
//     then go into G. Each G_ij is summed by one thread in one fixed order, so the bits do
//     not depend on the thread count.
// Compiled once per SIMD level (simd_level.h), with FMA contraction allowed.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <omp.h>
#include <utility>
#include <vector>

#include "fedrobust/order.h"
#include "gram.h"

#include "threads.h"

FR_BEGIN_SIMD_CODE
#include "simd.h"
#include "tile.h"
#include "gram_tile.h"

namespace fedrobust::cpu::FR_ARCH {
#if defined(FR_ARCH_AVX512)
// gram_vnni.cpp: panel_strip with vpdpwssd, compiled for AVX-512 VNNI (called only where the CPU has it).
void panel_strip_vnni(const int32_t* panels, int64_t q, int64_t words, double* strip);
#endif

namespace {

using Floats = V<float>;
constexpr int64_t kQuantizeAhead = 2;  // pack_panel prefetches the row this many rows ahead
typedef int16_t HalfWords __attribute__((vector_size(kLanes * sizeof(int16_t))));

// acc + (per 32-bit lane) a.lo * b.lo + a.hi * b.hi, the halves 16-bit signed integers:
// pmaddwd + paddd (gram_vnni.cpp has the one-instruction vpdpwssd).
struct PairedMultiplyAdd {
  static Words apply(Words acc, Words a, Words b) {
#if defined(FR_ARCH_AVX512)
    return acc + (Words)_mm512_madd_epi16((__m512i)a, (__m512i)b);
#elif defined(FR_ARCH_AVX2)
    return acc + (Words)_mm256_madd_epi16((__m256i)a, (__m256i)b);
#else
    return acc + (Words)_mm_madd_epi16((__m128i)a, (__m128i)b);
#endif
  }
};

// vpdpwssd where the CPU has AVX-512 VNNI, unless FEDROBUST_NO_VNNI is set (the tests check
// that both instructions give the same bits: the integer sums are exact either way).
bool use_vnni() {
#if defined(FR_ARCH_AVX512)
  static const bool vnni = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && std::getenv("FEDROBUST_NO_VNNI") == nullptr;
  }();
  return vnni;
#else
  return false;
#endif
}

// In-place transpose of a kLanes x kLanes block of 32-bit values held as kLanes vectors:
// stage `half` swaps the off-diagonal half x half blocks of every 2 half x 2 half block.
template <int64_t half>
inline void transpose(Words* v) {
  Words low, high;  // lane sources in (v_i, v_{i + half}) for the new v_i and v_{i + half}
  for (int64_t l = 0; l < kLanes; ++l) {
    low[l] = static_cast<int32_t>((l & half) ? kLanes + l - half : l);
    high[l] = static_cast<int32_t>((l & half) ? kLanes + l : l + half);
  }
  for (int64_t i = 0; i < kLanes; ++i)
    if ((i & half) == 0) {
      const Words x = v[i], y = v[i + half];
      v[i] = __builtin_shuffle(x, y, low);
      v[i + half] = __builtin_shuffle(x, y, high);
    }
  if constexpr (half > 1) transpose<half / 2>(v);
}

// One row's block: x_k = fl(src[k stride] - centre[k]), k < w, quantized into q[0, kBlockCols)
// (zeros past w). Sets *scale (0 where the block is below kGramMinAbs) and adds the squared
// residuals sum_k (x_k - scale q_k)^2, taken in double, to *residual_sq. Returns false (q
// then unset) if some x_k is not finite or exceeds kGramMaxAbs. x: kBlockCols floats.
// `ahead` (or null): a later row's segment, prefetched while this one is read (each row
// segment is its own stream from memory).
bool quantize_row(const float* src, int64_t stride, const float* centre, int64_t w, float* x, int16_t* q,
                  float* scale, double* residual_sq, const float* ahead) {
  const int64_t full = stride == 1 ? w / kLanes * kLanes : 0;
  Floats largest = Floats{};
  auto bad = Floats{} < Floats{};  // all false
  const Floats limit = Floats{} + kGramMaxAbs;
  for (int64_t k = 0; k < full; k += kLanes) {
    if (ahead) __builtin_prefetch(ahead + k);  // a later row's segment, a line per vector
    const Floats v = load<Floats>(src + k) - load<Floats>(centre + k);
    bad |= !(v <= limit && -v <= limit);  // true for NaN and +-Inf
    largest = simd::vmax(largest, simd::vmax(v, -v));
    std::memcpy(x + k, &v, sizeof(v));
  }
  float top = 0.0f;
  bool ok = true;
  for (int64_t l = 0; l < kLanes; ++l) {
    ok &= bad[l] == 0;
    top = std::max(top, largest[l]);
  }
  for (int64_t k = full; k < w; ++k) {
    x[k] = src[k * stride] - centre[k];
    ok &= std::fabs(x[k]) <= kGramMaxAbs;
    top = std::max(top, std::fabs(x[k]));
  }
  if (!ok) return false;

  const int64_t words_end = (w + 1) / 2 * 2;
  std::fill(q + words_end, q + kBlockCols, int16_t{0});
  if (words_end > w) x[w] = 0.0f;
  double sum = 0.0;
  if (top < kGramMinAbs) {  // all residual: z = 0
    *scale = 0.0f;
    std::fill(q, q + words_end, int16_t{0});
    for (int64_t k = 0; k < w; ++k) sum += static_cast<double>(x[k]) * x[k];
    *residual_sq += sum;
    return true;
  }
  const float s = top / static_cast<float>(kQuantMax), inverse = 1.0f / s;
  *scale = s;
  // x / s rounded to an integer by the 1.5 * 2^23 trick (|x / s| <= kQuantMax (1 + 2^-22)),
  // clamped; the residual x - s q in double (s q is exact there: 24 + 13 bits).
  const float magic = 12582912.0f, qmax = static_cast<float>(kQuantMax);
  const int64_t vec_end = words_end / kLanes * kLanes;
  const double sd = s;
  Doubles acc_lo = {}, acc_hi = {};
  for (int64_t k = 0; k < vec_end; k += kLanes) {
    const Floats v = load<Floats>(x + k);
    Floats r = (v * inverse + magic) - magic;
    r = simd::vmin(simd::vmax(r, Floats{} - qmax), Floats{} + qmax);
    const Doubles e_lo = low_half(v, Halves{}) - low_half(r, Halves{}) * sd;
    const Doubles e_hi = high_half(v, Halves{}) - high_half(r, Halves{}) * sd;
    acc_lo += e_lo * e_lo;
    acc_hi += e_hi * e_hi;
    const HalfWords qk = __builtin_convertvector(__builtin_convertvector(r, Words), HalfWords);
    std::memcpy(q + k, &qk, sizeof(qk));
  }
  const Doubles acc = acc_lo + acc_hi;
  for (int64_t l = 0; l < kLanes / 2; ++l) sum += acc[l];
  for (int64_t k = vec_end; k < words_end; ++k) {
    const float r = std::min(std::max((x[k] * inverse + magic) - magic, -qmax), qmax);
    const double e = static_cast<double>(x[k]) - static_cast<double>(r) * static_cast<double>(s);
    sum += e * e;
    q[k] = static_cast<int16_t>(r);
  }
  *residual_sq += sum;
  return true;
}

// Panel p of the block [j0, j0 + w): quantize its rows (scales[r], residual_sq[row]) into
// rows (kPanel x kBlockCols 16-bit values), then transpose their 32-bit words into dst:
// dst[t kPanel + r] = (q_{r,2t}, q_{r,2t+1}), zero for rows past n. Returns false if a row
// holds a value quantize_row refuses.
bool pack_panel(const RowsView<float>& u, const float* centre, int64_t p, int64_t j0, int64_t w, int32_t* dst,
                float* scales, double* residual_sq, float* x, int16_t* rows) {
  const int64_t valid = std::min(kPanel, u.n_rows - kPanel * p);
  for (int64_t r = 0; r < kPanel; ++r) {
    int16_t* q = rows + r * kBlockCols;
    if (r < valid) {
      const int64_t i = kPanel * p + r;
      const float* ahead = u.col_stride == 1 && i + kQuantizeAhead < u.n_rows ? u.rows[i + kQuantizeAhead] + j0
                                                                                         : nullptr;
      if (!quantize_row(u.rows[i] + j0 * u.col_stride, u.col_stride, centre + j0, w, x, q, scales + r,
                        residual_sq + i, ahead))
        return false;
    } else {
      std::fill(q, q + kBlockCols, int16_t{0});
      scales[r] = 0.0f;
    }
  }
  const int64_t words = (w + 1) / 2;
  for (int64_t r0 = 0; r0 < kPanel; r0 += kLanes)
    for (int64_t t0 = 0; t0 < words; t0 += kLanes) {
      Words block[kLanes];
      for (int64_t l = 0; l < kLanes; ++l) block[l] = load<Words>(rows + (r0 + l) * kBlockCols + 2 * t0);
      transpose<kLanes / 2>(block);
      for (int64_t l = 0; l < kLanes; ++l) std::memcpy(dst + (t0 + l) * kPanel + r0, &block[l], sizeof(Words));
    }
  return true;
}

}  // namespace

bool quantized_gram(const RowsView<float>& u, const float* centre, double* gram, double* residual) {
  const int64_t n = u.n_rows, panels = ceil_div(n, kPanel);
  const bool vnni = use_vnni();
  std::fill(gram, gram + n * n, 0.0);
  std::vector<double> residual_sq(static_cast<size_t>(n), 0.0);
  std::vector<float> scales(static_cast<size_t>(panels * kPanel));
  Scratch<int32_t> packed(static_cast<size_t>(panels * kPanel * kBlockWords));
  bool refused = false;
#pragma omp parallel if (worth_threads(n * n * u.cols / 4))
  {
    Scratch<double> strip(static_cast<size_t>(panels * kPanel * kPanel));
    Scratch<float> x(static_cast<size_t>(kBlockCols));
    Scratch<int16_t> rows(static_cast<size_t>(kPanel * kBlockCols));
    for (int64_t j0 = 0; j0 < u.cols; j0 += kBlockCols) {
      const int64_t w = std::min(kBlockCols, u.cols - j0);
      const int64_t words = ceil_div((w + 1) / 2, kLanes) * kLanes;
#pragma omp for schedule(static)
      for (int64_t p = 0; p < panels; ++p)
        if (!pack_panel(u, centre, p, j0, w, packed.data() + p * kPanel * kBlockWords, scales.data() + p * kPanel,
                        residual_sq.data(), x.data(), rows.data())) {
#pragma omp atomic write
          refused = true;
        }
      // (the loop's barrier makes `refused` the same for every thread)
      if (refused) break;
#pragma omp for schedule(dynamic, 1)
      for (int64_t q_rank = 0; q_rank < panels; ++q_rank) {
        const int64_t q = panels - 1 - q_rank;
#if defined(FR_ARCH_AVX512)
        if (vnni) {
          panel_strip_vnni(packed.data(), q, words, strip.data());
        } else {
          panel_strip<PairedMultiplyAdd>(packed.data(), q, words, strip.data());
        }
#else
        panel_strip<PairedMultiplyAdd>(packed.data(), q, words, strip.data());
#endif
        // G_ij += (s_i s_j) P_ij for the upper triangle: i <= j, both below n.
        const int64_t q_first = kPanel * q, q_end = std::min(q_first + kPanel, n);  // panel q's rows
        for (int64_t i = 0; i < q_end; ++i) {
          const double s_i = scales[i];
          const double* strip_i = strip.data() + i * kPanel - q_first;
          double* gram_i = gram + i * n;
          for (int64_t j = std::max(i, q_first); j < q_end; ++j) gram_i[j] += (s_i * scales[j]) * strip_i[j];
        }
      }
    }
  }
  if (refused) return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) gram[j * n + i] = gram[i * n + j];
  // The squares and sums of the residuals: at most cols + 1 roundings of 2^-53 each, doubled.
  const double widen = 1.0 + 2.0 * static_cast<double>(u.cols + 4) * 0x1p-53;
  for (int64_t i = 0; i < n; ++i) residual[i] = std::sqrt(residual_sq[i] * widen) * (1.0 + 0x1p-50);
  return true;
}

}  // namespace fedrobust::cpu::FR_ARCH
