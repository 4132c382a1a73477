// The quantized Gram matrix's packed layout and its micro-kernel (gram.h), shared by gram.cpp
// (pmaddwd + paddd, every SIMD level) and gram_vnni.cpp (vpdpwssd, AVX-512 VNNI).
//
// Included by those units AFTER FR_BEGIN_SIMD_CODE and simd.h (simd_level.h), so that it is
// compiled for the unit's SIMD level, in the level's namespace; everything here has internal
// linkage, so the two units (compiled for different instruction sets) never share a copy.
// It includes nothing itself: the unit includes <cstdint>, <cstring>, <algorithm>, <utility>
// and gram.h first.
#pragma once

namespace fedrobust::cpu::FR_ARCH {
namespace {

using simd::V;
using Words = V<int32_t>;                               // 32-bit lanes: two 16-bit values each
using Doubles = V<double>;                              // kLanes / 2 doubles: one machine vector
constexpr int64_t kLanes = simd::Vector<float>::lanes;  // 32-bit lanes per vector
constexpr int64_t kTileVecs = kLanes >= 16 ? 3 : 2;     // accumulators: 24 of 32 registers,
constexpr int64_t kTileRows = kLanes >= 16 ? 8 : 6;     // or 12 of 16
constexpr int64_t kTileCols = kTileVecs * kLanes;
constexpr int64_t kBlockWords = kBlockCols / 2, kChunkWords = kChunkCols / 2;
static_assert(kPanel % kTileCols == 0 && kPanel % kTileRows == 0 && kPanel % kLanes == 0,
              "tiles must divide a panel");
static_assert(kBlockWords % kLanes == 0, "a block is whole vectors of column pairs");
using Halves = std::make_index_sequence<kLanes / 2>;

template <class W>
inline W load(const void* p) {
  W v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The low or high kLanes / 2 lanes of a 32-bit vector, as doubles (exact): a double vector of
// all kLanes would be two machine vectors, which GCC moves through the stack.
template <class W, size_t... I>
inline Doubles low_half(W v, std::index_sequence<I...>) {
  return __builtin_convertvector(__builtin_shufflevector(v, v, I...), Doubles);
}
template <class W, size_t... I>
inline Doubles high_half(W v, std::index_sequence<I...>) {
  return __builtin_convertvector(__builtin_shufflevector(v, v, (I + kLanes / 2)...), Doubles);
}

// out[r kPanel + c] += sum over the words t < words of a(t, r) . b(t, c), r < kTileRows,
// c < kTileCols, with a(t, r) = a[t kPanel + r] and b(t, c) = b[t kPanel + c] (a 32-bit word
// of two 16-bit values; "." the sum of the two products, MultiplyAdd::apply). words <=
// kChunkWords: the int32 sums are exact, and so is their conversion to double.
template <class MultiplyAdd>
void micro_tile(const int32_t* a, const int32_t* b, int64_t words, double* out) {
  Words acc[kTileRows][kTileVecs] = {};
  for (int64_t t = 0; t < words; ++t) {
    Words bt[kTileVecs];
    for (int h = 0; h < kTileVecs; ++h) bt[h] = load<Words>(b + t * kPanel + h * kLanes);
    const int32_t* at = a + t * kPanel;
    for (int r = 0; r < kTileRows; ++r) {
      const Words ar = Words{} + at[r];
      for (int h = 0; h < kTileVecs; ++h) acc[r][h] = MultiplyAdd::apply(acc[r][h], ar, bt[h]);
    }
  }
  for (int r = 0; r < kTileRows; ++r)
    for (int h = 0; h < kTileVecs; ++h) {
      double* o = out + r * kPanel + h * kLanes;
      const Doubles lo = load<Doubles>(o) + low_half(acc[r][h], Halves{});
      const Doubles hi = load<Doubles>(o + kLanes / 2) + high_half(acc[r][h], Halves{});
      std::memcpy(o, &lo, sizeof(lo));
      std::memcpy(o + kLanes / 2, &hi, sizeof(hi));
    }
}

// The sums of the rows of panels 0..q against the rows of panel q over one packed block
// (panels: each kPanel x kBlockWords words, `words` of them used), into strip ((q + 1) kPanel
// x kPanel, zeroed here), kChunkCols columns at a time: panel q's chunk stays in L1 while the
// rows of panels 0..q pass by.
template <class MultiplyAdd>
void panel_strip(const int32_t* panels, int64_t q, int64_t words, double* strip) {
  const int64_t strip_rows = kPanel * (q + 1);
  std::fill(strip, strip + strip_rows * kPanel, 0.0);
  const int32_t* b = panels + q * kPanel * kBlockWords;
  for (int64_t t0 = 0; t0 < words; t0 += kChunkWords) {
    const int64_t chunk = std::min(kChunkWords, words - t0);
    for (int64_t i0 = 0; i0 < strip_rows; i0 += kTileRows) {
      const int32_t* a = panels + (i0 / kPanel) * kPanel * kBlockWords + t0 * kPanel + i0 % kPanel;
      for (int64_t c0 = 0; c0 < kPanel; c0 += kTileCols)
        micro_tile<MultiplyAdd>(a, b + t0 * kPanel + c0, chunk, strip + i0 * kPanel + c0);
    }
  }
}

}  // namespace
}  // namespace fedrobust::cpu::FR_ARCH
