// Coordinate-wise order statistics: median, trimmed mean, and Bulyan's
// "mean of the values closest to the median".
//
// For each tile of columns (see tile.h) the kernel finds, per column, the
// values at the ranks it needs:
//   - n < kBandMinRows: a comparator network whose lanes are the tile's
//     columns: blocks of 16 rows sorted in registers as the tile loads, then
//     bitonic merges pruned to the needed ranks (merge_network). Every
//     comparator is one vector min and one vector max over a tile row, with
//     no branches; the merges' short-distance comparators run in registers,
//     a block of rows at a time;
//   - larger n: sampled pivots (BandFinder), linear in n: a pruned network over
//     a fixed sample of rows gives each column 6 pivots around each wanted
//     rank (on 16-bit keys of the floats where those tell the pivots apart);
//     one vector pass over all rows counts the values below each pivot,
//     a second collects the values strictly between the two pivots around the
//     rank into a short band, where the rank is selected (the tile's short
//     bands sorted together by a network, lanes = columns; longer ones one
//     column at a time). A band far longer than the sample suggests is
//     collected again from its column, and its rank selected there with
//     std::nth_element.
// All give the same values (order statistics are unique), so the switch
// never changes a result. The trimmed mean then makes one pass over the tile
// in row order (order.h: trimmed_mean_from_pass), so its rounding does not
// depend on how the thresholds were found, on the thread count, or on the
// backend.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "fedrobust/column.h"
#include "fedrobust/order.h"
#include "fedrobust/sorting_network.h"
#include "coordinatewise.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "threads.h"

FR_BEGIN_SIMD_CODE
#include "simd.h"
#include "streaming.h"
#include "tile.h"

namespace fedrobust::cpu::FR_ARCH {
namespace {

// Rows from which the ranks come from sampled pivots (BandFinder) instead of the network
// (measured: the pivots are slightly faster at 600 rows and 1.2x faster at 1000; the network
// was 1.6x faster at 300).
constexpr int64_t kBandMinRows = 512;

// Columns per tile on the network path: 256 bytes of each row.
template <class T>
constexpr int64_t kNetworkWidth = 256 / static_cast<int64_t>(sizeof(T));

// Columns per tile on the band path (BandFinder): 256 bytes of each row up to
// kWideBandMaxRows rows (measured faster than one or two 64-byte lines per row at 10,000
// rows), one line beyond, so that a tile of very many rows still fits in L3.
constexpr int64_t kWideBandMaxRows = 16384;
template <class T>
constexpr int64_t kBandWidth(int64_t n) {
  return (n <= kWideBandMaxRows ? 256 : 64) / static_cast<int64_t>(sizeof(T));
}

// Every aligned block of kPresorted tile rows is sorted, column by column, in registers
// (sort_blocks_of_16, load_tile_sorting_blocks: Batcher's 63 comparators per 16 loads and
// 16 stores; the last block completed with +Inf); merge_network's steps then merge the
// sorted blocks.
constexpr int64_t kPresorted = 16;
constexpr Sort16 kSort16 = make_sort16();

// Wires of a block step (merge_network): as many as the registers hold beside a temporary
// (32 vector registers at AVX-512, 16 below).
constexpr int kBlock = simd::kBytes == 64 ? 16 : 8;
constexpr HalfCleaners<kBlock> kHalfCleaners = half_cleaners<kBlock>();

// The comparators (a[c], b[c]), c < N, on the registers r, in order.
template <int N, class Vec, class Net>
inline void compare_in_registers(Vec* r, const Net& net) {
#pragma GCC unroll 64
  for (int c = 0; c < N; ++c) {
    const Vec x = r[net.a[c]], y = r[net.b[c]];
    r[net.a[c]] = simd::vmin(x, y);
    r[net.b[c]] = simd::vmax(x, y);
  }
}

// Above every value a network sorts: +Inf, or the largest integer (BandFinder's keys).
template <class T>
constexpr T top_of() {
  if constexpr (std::numeric_limits<T>::has_infinity) return std::numeric_limits<T>::infinity();
  return std::numeric_limits<T>::max();
}

// Rows [b, b + B) of vector k of a tile of W columns and n rows into r; rows from n on read as
// top_of<T>() (+Inf).
template <int B, int64_t W, class Vec, class T>
inline void load_block(const T* tile, int64_t n, int64_t b, int64_t k, Vec* r) {
  constexpr int64_t kVectors = W / simd::Vector<T>::lanes;
  const Vec* rows = reinterpret_cast<const Vec*>(tile + b * W);
  if (b + B <= n) {
#pragma GCC unroll 16
    for (int i = 0; i < B; ++i) r[i] = rows[i * kVectors + k];
    return;
  }
  for (int i = 0; i < B; ++i) r[i] = b + i < n ? rows[i * kVectors + k] : Vec{} + top_of<T>();
}

// r back into rows [b, min(b + B, n)) of vector k.
template <int B, int64_t W, class Vec, class T>
inline void store_block(const Vec* r, int64_t n, int64_t b, int64_t k, T* tile) {
  constexpr int64_t kVectors = W / simd::Vector<T>::lanes;
  Vec* rows = reinterpret_cast<Vec*>(tile + b * W);
  if (b + B <= n) {
#pragma GCC unroll 16
    for (int i = 0; i < B; ++i) rows[i * kVectors + k] = r[i];
    return;
  }
  for (int i = 0; b + i < n; ++i) rows[i * kVectors + k] = r[i];
}

// Apply merge_network's steps to all W columns of a tile of n rows (rows of W values) in
// place: a comparator is one vector min and one vector max per vector of a row; a block step
// loads its kBlock rows into registers (rows from n on as +Inf), applies the half-cleaners
// there and stores the rows below n.
template <class T, int64_t W = kNetworkWidth<T>>
void apply_merge_network(const std::vector<NetworkStep>& steps, int64_t n, T* tile) {
  using Vec = simd::V<T>;
  constexpr int64_t kVectors = W / simd::Vector<T>::lanes;
  for (const NetworkStep& step : steps) {
    if (step.b == kBlockStep) {
      for (int64_t k = 0; k < kVectors; ++k) {
        Vec r[kBlock];
        load_block<kBlock, W>(tile, n, step.a, k, r);
        compare_in_registers<HalfCleaners<kBlock>::size>(r, kHalfCleaners);
        store_block<kBlock, W>(r, n, step.a, k, tile);
      }
      continue;
    }
    Vec* a = reinterpret_cast<Vec*>(tile + step.a * W);
    Vec* b = reinterpret_cast<Vec*>(tile + step.b * W);
    for (int64_t k = 0; k < kVectors; ++k) {
      const Vec x = a[k], y = b[k];
      a[k] = simd::vmin(x, y);
      b[k] = simd::vmax(x, y);
    }
  }
}

// Sort every aligned block of 16 rows of a tile of n rows, column by column, in registers
// (the last block completed with +Inf, which stays above the rows).
template <class T, int64_t W = kNetworkWidth<T>>
void sort_blocks_of_16(int64_t n, T* tile) {
  using Vec = simd::V<T>;
  constexpr int64_t kVectors = W / simd::Vector<T>::lanes;
  for (int64_t b = 0; b < n; b += kPresorted) {
    for (int64_t k = 0; k < kVectors; ++k) {
      Vec r[kPresorted];
      load_block<kPresorted, W>(tile, n, b, k, r);
      compare_in_registers<Sort16::size>(r, kSort16);
      store_block<kPresorted, W>(r, n, b, k, tile);
    }
  }
}

// load_canonical_tile for a whole tile of the network's width (w == kNetworkWidth, rows
// contiguous), with every aligned block of 16 rows sorted column by column on the way
// (sort_blocks_of_16, in registers): each value is stored once, sorted, instead of stored,
// loaded and stored again. With `raw`, the loaded rows are also stored there unsorted.
// Prefetches the next tile like load_canonical_tile.
template <class T, int64_t W = kNetworkWidth<T>>
void load_tile_sorting_blocks(const RowsView<T>& u, int64_t j0, T* sorted, T* raw, const TileAhead<T>& ahead) {
  using Vec = simd::V<T>;
  constexpr int64_t L = simd::Vector<T>::lanes;
  constexpr int64_t kVectors = W / L;
  const Vec inf = Vec{} + std::numeric_limits<T>::infinity();
  const int64_t n = u.n_rows;
  for (int64_t b = 0; b < n; b += kPresorted) {
    const int64_t rows = std::min(kPresorted, n - b);
    for (int64_t i = b; i < b + rows; ++i)
      for (int64_t at = 0; at < W * static_cast<int64_t>(sizeof(T)); at += 64) ahead.prefetch(i, at);
    for (int64_t k = 0; k < kVectors; ++k) {
      Vec r[kPresorted];
#pragma GCC unroll 16
      for (int i = 0; i < kPresorted; ++i) {
        if (i < rows) {
          std::memcpy(&r[i], u.rows[b + i] + j0 + k * L, sizeof(Vec));
          r[i] = simd::vmin(r[i], inf) + T(0);  // canonical(): NaN -> +Inf (minps' rule), -0 -> +0
        } else {
          r[i] = inf;
        }
      }
      if (raw) store_block<kPresorted, W>(r, n, b, k, raw);
      compare_in_registers<Sort16::size>(r, kSort16);
      store_block<kPresorted, W>(r, n, b, k, sorted);
    }
  }
}

// Run `per_tile(tile, j0, w, width, ahead)` over column tiles in parallel (ahead: the tile
// after this one, TileAhead). Each thread owns a scratch tile of n x width values (+ `extra`
// values after it); with `twice`, the tile is loaded a second time right after the first
// (extra must leave room for it). With `presort` (the network's width), every aligned block
// of 16 rows of the tile (of the second copy with `twice`; the last block completed with
// +Inf) is sorted column by column before per_tile sees it, while loading where the tile is
// whole and its rows contiguous. With `keys` (float, not with twice or presort), the tile's
// keys (keys.h, n x width) are made as it loads, at the start of `extra`.
template <class T, class F>
void for_each_tile(const RowsView<T>& u, int64_t width, int64_t extra, bool twice, bool presort, bool keys,
                   F per_tile) {
  const int64_t n_tiles = ceil_div(u.cols, width);
  if (presort && width != kNetworkWidth<T>)
    throw std::logic_error("for_each_tile: presort needs the network's width");
  if (keys && (twice || presort || sizeof(T) != 4))
    throw std::logic_error("for_each_tile: keys need a float tile loaded once");
#pragma omp parallel if (worth_threads(u.n_rows * u.cols))
  {
    Scratch<T> scratch(static_cast<size_t>(u.n_rows * width + extra));
    T* second = twice ? scratch.data() + u.n_rows * width : nullptr;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_tiles; ++b) {
      const int64_t j0 = b * width;
      const int64_t w = std::min(width, u.cols - j0);
      const TileAhead<T> ahead(u, j0 + width, width);
      if (presort && w == width && u.col_stride == 1) {
        if (twice) load_tile_sorting_blocks<T>(u, j0, second, scratch.data(), ahead);
        else load_tile_sorting_blocks<T>(u, j0, scratch.data(), nullptr, ahead);
      } else {
          if constexpr (sizeof(T) == 4) {
            if (keys) load_canonical_tile<T, true>(u, j0, w, width, scratch.data(), second,
                                                   reinterpret_cast<Key*>(scratch.data() + u.n_rows * width));
            else load_canonical_tile(u, j0, w, width, scratch.data(), second);
          } else {
            load_canonical_tile(u, j0, w, width, scratch.data(), second);
          }
          if (presort) sort_blocks_of_16(u.n_rows, twice ? second : scratch.data());
        }
      per_tile(scratch.data(), j0, w, width, ahead);
    }
  }
}

// The lanes of a vector mask as bits (bit l = lane l true).
template <class M>
uint32_t mask_bits(M m) {
#if defined(FR_ARCH_AVX512)
  if constexpr (sizeof(m[0]) == 4) return static_cast<uint32_t>(_mm512_movepi32_mask((__m512i)m));
  else return static_cast<uint32_t>(_mm512_movepi64_mask((__m512i)m));
#elif defined(FR_ARCH_AVX2)
  if constexpr (sizeof(m[0]) == 4) return static_cast<uint32_t>(_mm256_movemask_ps((__m256)m));
  else return static_cast<uint32_t>(_mm256_movemask_pd((__m256d)m));
#elif defined(__SSE2__)
  if constexpr (sizeof(m[0]) == 4) return static_cast<uint32_t>(_mm_movemask_ps((__m128)m));
  else return static_cast<uint32_t>(_mm_movemask_pd((__m128d)m));
#else
  uint32_t bits = 0;
  for (int l = 0; l < static_cast<int>(sizeof(M) / sizeof(m[0])); ++l) bits |= static_cast<uint32_t>(m[l] != 0) << l;
  return bits;
#endif
}

// Selection of a few ascending ranks of n values per column (n >= kBandMinRows), linear in
// n, by pivots from a sample. Every step is exact, whatever the values:
//
// 1. Sample: the fixed rows (2k + 1) n / (2s), k < s, copied out of the tile; a pruned network
//    finds, per column, the sample values at kPivots positions spread evenly over
//    j(r) -/+ (2.5 sd + 1), where j(r) = (r + 1/2) s / n - 1/2 is where rank r would sit in the
//    sample and sd = sqrt(s p (1 - p)), p = (r + 1/2) / n, the spread of a sample rank. Ranks
//    whose spans overlap share one group of pivots p_0 <= ... <= p_{K-1}.
// 2. Count: one vector pass over the tile's rows, lanes = columns: less_k = #{x < p_k}.
//    Rank r lies in the interval [p_k, p_{k+1}) with less_k <= r < less_{k+1} (p_{-1} = -Inf,
//    less_{-1} = 0; p_K = +Inf, less_K = n).
// 3. Collect: a second pass counts eq = #{x == p_k} and appends the values strictly inside
//    (p_k, p_{k+1}) to the column's band (at most `cap`). With rel = r - less_k the value of
//    rank r is p_k when rel < eq, the (rel - eq)-th smallest of the band when that is inside
//    it, else +Inf (the top interval's +Inf values are not in the band).
// 4. Select: a rank slot's bands are the columns of a matrix (row k: the k-th value collected
//    in each column). Where the longest band has at most kMaxSortedBandRows rows, the matrix
//    is sorted by a network, lanes = columns (sort_band), and the value is read at its row;
//    otherwise each column's band is copied out and its value selected (select_in_band).
//
// A band longer than `cap` (the sample missed the rank, or the rows are in an order the
// sample does not represent) is collected again from its column: the values strictly inside
// its interval, where std::nth_element selects the rank (for a rank outside its pivots, the
// part of the column beyond the outer pivot).
//
// Keys: a float tile of at most kWideBandMaxRows rows comes with its 16-bit keys (keys.h,
// made by the tile load), and steps 1-3 run on them where they can, twice the lanes per
// compare and half the bytes per pass: the sample's keys are sorted, the pivots are the keys
// at the same positions, lowered to their floors (key_floor: key(x) < key(p_k) exactly when
// x < p_k), and step 3 collects the values in [p_k, p_{k+1}) by their keys, eq = 0 (a lowered
// pivot need not be a value). A tile where some column's pivot keys do not ascend strictly
// (ties, or values closer together than a key resolves) runs on the values as above. At
// (1000, 1e5) float32 on AVX-512 this took the median from 55.9-56.8 to 48.5-49.1 ms and the
// trimmed mean from 76.6-82.5 to 65.2-66.3 ms (best of 7, five runs in turn, read-once 22-24 ms).
template <class T>
struct BandFinder {
  // Pivots per rank group (measured at 600 to 50,000 rows: 6 is 2-4 % faster than 8 and 4).
  static constexpr int kPivots = 6;
  static constexpr int kMaxRanks = 4;
  using Count = typename std::remove_reference<decltype(simd::Mask<T>{}[0])>::type;
  static constexpr int64_t kLanes = simd::Vector<T>::lanes;
  // pack_table().idx[bits]: the lanes whose bit is set, in order, then zeros: the permutation
  // that packs those lanes of a vector to its front.
  struct PackTable {
    Count idx[1 << kLanes][kLanes];
  };
  static const PackTable& pack_table() {
    static const PackTable table = [] {
      PackTable t{};
      for (int bits = 0; bits < (1 << kLanes); ++bits)
        for (int l = 0, k = 0; l < kLanes; ++l)
          if (bits >> l & 1) t.idx[bits][k++] = static_cast<Count>(l);
      return t;
    }();
    return table;
  }
  // Store the lanes of v (values or Count ids, T's size) whose bit is set, in lane order, at
  // dst (room for a whole vector). AVX-512 compresses; other levels permute with pack_table()
  // (2^lanes permutations, too many at 16 lanes).
  template <class V, class E>
  static void pack_to_front(V v, uint32_t bits, E* dst) {
    static_assert(sizeof(E) == sizeof(T));
#if defined(FR_ARCH_AVX512)
    if constexpr (sizeof(T) == 4)
      _mm512_storeu_si512(dst, _mm512_maskz_compress_epi32(static_cast<__mmask16>(bits), (__m512i)v));
    else
      _mm512_storeu_si512(dst, _mm512_maskz_compress_epi64(static_cast<__mmask8>(bits), (__m512i)v));
#else
    simd::Mask<T> idx;
    std::memcpy(&idx, pack_table().idx[bits], sizeof(idx));
    const V packed = __builtin_shuffle(v, idx);
    std::memcpy(dst, &packed, sizeof(V));
#endif
  }
  // Lane by lane a < b (kLess), a <= b (kLessEqual) or a == b (kEqual).
  enum Compare { kLess, kLessEqual, kEqual };
#if defined(FR_ARCH_AVX512)
  template <Compare kCompare>
  static constexpr int kPredicate = kCompare == kLess ? _CMP_LT_OQ : kCompare == kLessEqual ? _CMP_LE_OQ : _CMP_EQ_OQ;
#endif
  template <Compare kCompare, class Vec>
  static auto compare(Vec a, Vec b) {
    return kCompare == kLess ? a < b : kCompare == kLessEqual ? a <= b : a == b;
  }
  // The lanes where the compare holds, as bits (bit l = lane l).
  template <Compare kCompare, class Vec>
  static uint32_t compare_bits(Vec a, Vec b) {
#if defined(FR_ARCH_AVX512)
    if constexpr (sizeof(T) == 4) return _mm512_cmp_ps_mask((__m512)a, (__m512)b, kPredicate<kCompare>);
    else return _mm512_cmp_pd_mask((__m512d)a, (__m512d)b, kPredicate<kCompare>);
#else
    return mask_bits(compare<kCompare>(a, b));
#endif
  }
  // c + 1 in the lanes where the compare holds: counts, lane by lane. At AVX-512 the
  // compare's mask register drives one masked subtract of -1.
  template <Compare kCompare, class Vec, class Mask>
  static Mask add_where(Mask c, Vec a, Vec b) {
#if defined(FR_ARCH_AVX512)
    if constexpr (sizeof(T) == 4) {
      const __mmask16 k = _mm512_cmp_ps_mask((__m512)a, (__m512)b, kPredicate<kCompare>);
      return (Mask)_mm512_mask_sub_epi32((__m512i)c, k, (__m512i)c, _mm512_set1_epi32(-1));
    } else {
      const __mmask8 k = _mm512_cmp_pd_mask((__m512d)a, (__m512d)b, kPredicate<kCompare>);
      return (Mask)_mm512_mask_sub_epi64((__m512i)c, k, (__m512i)c, _mm512_set1_epi64(-1));
    }
#else
    return c - compare<kCompare>(a, b);
#endif
  }
  // The lanes of x strictly between lo and hi, as bits (bit l = lane l).
  template <class Vec>
  static uint32_t inside_bits(Vec x, Vec lo, Vec hi) {
#if defined(FR_ARCH_AVX512)
    if constexpr (sizeof(T) == 4)
      return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask((__m512)x, (__m512)lo, _CMP_GT_OQ), (__m512)x, (__m512)hi, _CMP_LT_OQ);
    else
      return _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask((__m512d)x, (__m512d)lo, _CMP_GT_OQ), (__m512d)x, (__m512d)hi, _CMP_LT_OQ);
#else
    return mask_bits((x > lo) & (x < hi));
#endif
  }
  using KeyCount = uint16_t;  // counts of up to kWideBandMaxRows rows (keys.h)

  struct Group {
    int64_t first_rank, end_rank;  // ranks[first_rank .. end_rank) use these pivots
    int64_t pos[kPivots];          // ascending sample positions (equal ones allowed)
  };
  int64_t n, s, cap, width;  // width: kBandWidth<T>(n) columns per tile
  bool keyed;                // whether steps 1-3 may work on the tile's keys (float, n <= kWideBandMaxRows)
  int64_t band_rows;         // rows of a rank slot's band: cap + 1 rounded up to whole blocks of 16
  std::vector<int64_t> ranks;       // ascending, distinct
  std::vector<Group> groups;
  std::vector<int64_t> sample_pos;  // every group's positions, distinct, ascending
  std::vector<NetworkStep> net;     // selects sample_pos among the s sample rows
  // Bands of up to this many rows are sorted with band_networks(), lanes = columns; longer ones
  // are selected from, column by column (measured at 1,000 rows: 64 sorted rows cost about a
  // tenth of 64 select_in_band calls).
  static constexpr int64_t kMaxSortedBandRows = 128;
  // band_networks()[b]: the network that sorts (b + 1) * kPresorted rows whose blocks of 16 are
  // sorted, up to kMaxSortedBandRows rows; built once.
  static const std::vector<std::vector<NetworkStep>>& band_networks() {
    static const std::vector<std::vector<NetworkStep>> nets = [] {
      std::vector<std::vector<NetworkStep>> all_nets;
      for (int64_t rows = kPresorted; rows <= kMaxSortedBandRows; rows += kPresorted) {
        std::vector<int64_t> all(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) all[r] = r;
        all_nets.push_back(merge_network(rows, all, kPresorted, kBlock));
      }
      return all_nets;
    }();
    return nets;
  }

  BandFinder(int64_t n_, const std::vector<int64_t>& ranks_)
      : n(n_), width(kBandWidth<T>(n_)), keyed(sizeof(T) == 4 && n_ <= kWideBandMaxRows), ranks(ranks_) {
    if (ranks.size() > kMaxRanks) throw std::logic_error("BandFinder: at most 4 ranks");
    s = std::clamp<int64_t>(n / 8, 64, 1024);
    double widest = 0.0, lo_end = 0.0, hi_end = 0.0;
    for (int64_t q = 0; q < static_cast<int64_t>(ranks.size()); ++q) {
      const double p = (static_cast<double>(ranks[q]) + 0.5) / static_cast<double>(n);
      const double j = p * static_cast<double>(s) - 0.5;
      const double spread = 2.5 * std::sqrt(static_cast<double>(s) * p * (1.0 - p)) + 1.0;
      if (q > 0 && j - spread <= hi_end) {
        groups.back().end_rank = q + 1;
        hi_end = j + spread;
      } else {
        if (q > 0) place_pivots(groups.back(), lo_end, hi_end, &widest);
        groups.push_back(Group{q, q + 1, {}});
        lo_end = j - spread;
        hi_end = j + spread;
      }
    }
    place_pivots(groups.back(), lo_end, hi_end, &widest);
    // Values in one interval between pivots: about n (widest / (K - 1)) / s.
    const int64_t expected = static_cast<int64_t>(std::ceil(static_cast<double>(n) * widest / (kPivots - 1) /
                                                            static_cast<double>(s)));
    cap = std::min(n, 2 * expected + 64);
    cap = (cap + kLanes) / kLanes * kLanes - 1;  // a band's cap + 1 slots: whole vectors
    band_rows = ceil_div(cap + 1, kPresorted) * kPresorted;
    std::sort(sample_pos.begin(), sample_pos.end());
    sample_pos.erase(std::unique(sample_pos.begin(), sample_pos.end()), sample_pos.end());
    net = merge_network(s, sample_pos, kPresorted, kBlock);
  }

  void place_pivots(Group& g, double lo, double hi, double* widest) {
    *widest = std::max(*widest, hi - lo);
    for (int k = 0; k < kPivots; ++k) {
      const double at = lo + (hi - lo) * k / (kPivots - 1);
      g.pos[k] = std::clamp<int64_t>(static_cast<int64_t>(std::llround(at)), 0, s - 1);
      sample_pos.push_back(g.pos[k]);
    }
  }

  // The value of rank rel of b[0 .. nb) (ordered values: no NaN; b has room up to the next
  // multiple of the lanes, and is overwritten): quickselect with vector partitions. The
  // middle value v's rank range [#{b < v}, #{b <= v}) is counted a vector at a time (the
  // compares' bits counted); v is the answer when rel is in it, else the side holding rel
  // (the values below v, or above it) is packed to the front of b and the search goes on
  // there. Expected O(nb) work, O(nb^2) at worst; the partial last vector is masked.
  static T select_in_band(T* b, int64_t nb, int64_t rel) {
    using Vec = simd::V<T>;
    constexpr int64_t L = kLanes;
    constexpr uint32_t kAll = L == 32 ? ~0u : (1u << L) - 1;
    for (;;) {
      const T v = b[nb / 2];
      const Vec pivot = Vec{} + v;
      int64_t n_lt = 0, n_le = 0;
      for (int64_t j = 0; j < nb; j += L) {
        Vec x;
        std::memcpy(&x, b + j, sizeof(Vec));
        const uint32_t valid = nb - j >= L ? kAll : (1u << (nb - j)) - 1;
        n_lt += __builtin_popcount(compare_bits<kLess>(x, pivot) & valid);
        n_le += __builtin_popcount(compare_bits<kLessEqual>(x, pivot) & valid);
      }
      if (n_lt <= rel && rel < n_le) return v;
      const bool below = rel < n_lt;
      int64_t kept = 0;  // never past the vector just loaded: a store only covers values already read
      for (int64_t j = 0; j < nb; j += L) {
        Vec x;
        std::memcpy(&x, b + j, sizeof(Vec));
        const uint32_t valid = nb - j >= L ? kAll : (1u << (nb - j)) - 1;
        const uint32_t side = (below ? compare_bits<kLess>(x, pivot) : compare_bits<kLess>(pivot, x)) & valid;
        pack_to_front(x, side, b + kept);
        kept += __builtin_popcount(side);
      }
      if (!below) rel -= n_le;
      nb = kept;
    }
  }

  // Scratch values find_ranks needs beyond the tile: the tile's keys (when keyed: made by
  // the tile load, for_each_tile), the sample, the bands, one column, and each rank slot's
  // list.
  int64_t scratch_values() const {
    return key_tile_values() + s * width + kMaxRanks * band_rows * width + n + kMaxLanes +
           kMaxRanks * (list_capacity() + kMaxLanes);
  }
  // Values of T that hold the key tile, in whole 64-byte lines.
  int64_t key_tile_values() const {
    if (!keyed) return 0;
    return ceil_div(n * width * static_cast<int64_t>(sizeof(Key)), 64) * 64 / static_cast<int64_t>(sizeof(T));
  }
  // Entries of step 3's list: the bands' capacity over a tile.
  int64_t list_capacity() const { return cap * width; }
  static constexpr int64_t kMaxLanes = 64 / static_cast<int64_t>(sizeof(T));

  // Sort a slot's band (rows of W values: row k holds the k-th value collected in each column;
  // column t holds count[t] values, count[t] > cap meaning it overflowed and is not read) in
  // place, lanes = columns, when the tile has at least W / 2 columns (w) and its longest band
  // that did not overflow, rounded up to whole blocks of 16 rows, has at most
  // kMaxSortedBandRows rows: the rows past each column's count are set to +Inf (above every
  // band value), then sort_blocks_of_16 and band_networks() sort them. Returns whether it
  // sorted. A tile of fewer columns selects in each column's band instead (the trimmed mean
  // of (1000, 16): 89-91 us against 93-94 us sorting all W columns).
  template <int64_t W>
  bool sort_band(T* b, const int64_t* count, int64_t w) const {
    if (2 * w < W) return false;
    using Vec = simd::V<T>;
    using Mask = simd::Mask<T>;
    constexpr int64_t L = kLanes;
    alignas(64) Count valid[W];  // the rows that hold values, per column
    int64_t longest = 0;
    for (int64_t t = 0; t < W; ++t) {
      valid[t] = static_cast<Count>(count[t] <= cap ? count[t] : 0);
      longest = std::max<int64_t>(longest, valid[t]);
    }
    const int64_t rows = ceil_div(std::max<int64_t>(longest, 1), kPresorted) * kPresorted;
    if (rows > std::min(band_rows, kMaxSortedBandRows)) return false;
    const Vec inf = Vec{} + std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < rows; ++k) {
      for (int64_t t = 0; t < W; t += L) {
        Vec& row = *reinterpret_cast<Vec*>(b + k * W + t);
        row = (Mask{} + static_cast<Count>(k)) < *reinterpret_cast<const Mask*>(valid + t) ? row : inf;
      }
    }
    sort_blocks_of_16<T, W>(rows, b);
    apply_merge_network<T, W>(band_networks()[rows / kPresorted - 1], rows, b);
    return true;
  }

  // Rows of row_bytes bytes in a block that stays in L1 (32 KiB) while a pass sweeps it, at least 16.
  static constexpr int64_t rows_in_l1(int64_t row_bytes) { return std::max<int64_t>(16, 32 * 1024 / row_bytes); }

  // c + 1 in the lanes where x < p: count_pass's step, on values (add_where) or on keys (at
  // AVX-512 one compare into a mask register and one masked subtract of -1).
  template <class CVec, class XVec>
  static CVec count_less(CVec c, XVec x, XVec p) {
    if constexpr (std::is_floating_point_v<std::remove_reference_t<decltype(x[0])>>) {
      return add_where<kLess>(c, x, p);
    } else {
#if defined(FR_ARCH_AVX512)
      return (CVec)_mm512_mask_sub_epi16((__m512i)c, _mm512_cmplt_epi16_mask((__m512i)x, (__m512i)p), (__m512i)c,
                                         _mm512_set1_epi16(-1));
#else
      return c - (CVec)(x < p);
#endif
    }
  }

  // Step 2: count[g * kPivots + k][t] += #{x < pivot[g * kPivots + k][t]} over the tile's rows
  // of values x (E = T) or of keys (E = Key, C = KeyCount): per block of rows (rows_in_l1,
  // in L1 while every group and vector of lanes sweeps it), group and vector of lanes, the
  // kPivots counts in registers. The first group's sweep prefetches the next tile, the lines
  // under its columns in every row, where the tile load does not (measured: 4-7 % faster at
  // 10,000 rows; at 1,000 rows, where the load prefetches it already, a second prefetch cost
  // 3-6 %).
  template <int64_t W, class E, class C>
  void count_pass(const E* data, const E (*pivot)[W], C (*count)[W], const TileAhead<T>& ahead) const {
    typedef E EVec __attribute__((vector_size(simd::kBytes)));
    typedef C CVec __attribute__((vector_size(simd::kBytes)));
    constexpr int64_t EL = simd::kBytes / static_cast<int64_t>(sizeof(E));
    static_assert(sizeof(C) == sizeof(E) && W % EL == 0, "counts as wide as the data, whole vectors a row");
    // The tile's bytes under a vector's columns: the lines that start there are fetched.
    constexpr int64_t kVectorBytes = EL * static_cast<int64_t>(sizeof(T));
    static_assert(kVectorBytes <= 128, "at most two lines under a vector");
    const int64_t n_groups = static_cast<int64_t>(groups.size());
    constexpr int64_t kBlockRows = rows_in_l1(W * sizeof(E));
    const bool fetches = !load_prefetches_next_tile<T>(n, W);
    for (int64_t i0 = 0; i0 < n; i0 += kBlockRows) {
      const int64_t i1 = std::min(n, i0 + kBlockRows);
      for (int64_t g = 0; g < n_groups; ++g) {
        for (int64_t t = 0; t < W; t += EL) {
          EVec p[kPivots];
          CVec c[kPivots];
#pragma GCC unroll 8
          for (int k = 0; k < kPivots; ++k) {
            p[k] = *reinterpret_cast<const EVec*>(pivot[g * kPivots + k] + t);
            c[k] = *reinterpret_cast<const CVec*>(count[g * kPivots + k] + t);
          }
          const int64_t line = t * static_cast<int64_t>(sizeof(T));  // this vector's byte offset
          const bool fetch = g == 0 && fetches && line % 64 == 0;
          for (int64_t i = i0; i < i1; ++i) {
            if (fetch) {
              ahead.prefetch(i, line);
              if constexpr (kVectorBytes > 64) ahead.prefetch(i, line + 64);
            }
            const EVec x = *reinterpret_cast<const EVec*>(data + i * W + t);
#pragma GCC unroll 8
            for (int k = 0; k < kPivots; ++k) c[k] = count_less(c[k], x, p[k]);
          }
#pragma GCC unroll 8
          for (int k = 0; k < kPivots; ++k) *reinterpret_cast<CVec*>(count[g * kPivots + k] + t) = c[k];
        }
      }
    }
  }

  // Step 1 on values (E = T) or keys (E = Key): the sample (the fixed rows of `data`, n rows
  // of W, copied to `sample`) sorted by the pruned network, and pivot[g * kPivots + k] the
  // sample's entry at group g's position k.
  template <int64_t W, class E>
  void sample_pivots(const E* data, E* sample, E (*pivot)[W]) const {
    for (int64_t k = 0; k < s; ++k)
      std::memcpy(sample + k * W, data + ((2 * k + 1) * n / (2 * s)) * W, sizeof(E) * W);
    sort_blocks_of_16<E, W>(s, sample);
    apply_merge_network<E, W>(net, s, sample);
    for (int64_t g = 0; g < static_cast<int64_t>(groups.size()); ++g)
      for (int k = 0; k < kPivots; ++k)
        std::memcpy(pivot[g * kPivots + k], sample + groups[g].pos[k] * W, sizeof(E) * W);
  }

  // Whether every column t < w's pivot keys ascend strictly within each group; where two are
  // equal (ties among the values, or values closer together than a key resolves) the tile
  // takes the values' path instead.
  template <int64_t W>
  bool keys_ascend(const Key (*pivot_key)[W], int64_t w) const {
    for (int64_t g = 0; g < static_cast<int64_t>(groups.size()); ++g)
      for (int k = 1; k < kPivots; ++k)
        for (int64_t t = 0; t < w; ++t)
          if (!(pivot_key[g * kPivots + k - 1][t] < pivot_key[g * kPivots + k][t])) return false;
    return true;
  }

  // Vectors of keys (twice the lanes of T).
  typedef Key KeyVec __attribute__((vector_size(simd::kBytes)));
  static constexpr int64_t kKeyLanes = simd::kBytes / static_cast<int64_t>(sizeof(Key));

  // Step 2 on keys: less[g * kPivots + k][t] = #{key(x) < pivot_key[g * kPivots + k][t]} =
  // #{x < key_floor(pivot key)} over the tile's rows, from its keys (count_pass with
  // KeyCount counters).
  template <int64_t W>
  void count_keys_below(const Key* keys, const Key (*pivot_key)[W], Count (*less)[W], const TileAhead<T>& ahead) const {
    if constexpr (sizeof(T) == 4 && W % kKeyLanes == 0) {  // keyed: float, n <= kWideBandMaxRows, so W is 256 bytes
      const int64_t n_groups = static_cast<int64_t>(groups.size());
      alignas(64) KeyCount counts[kMaxRanks * kPivots][W] = {};
      count_pass<W>(keys, pivot_key, counts, ahead);
      for (int64_t g = 0; g < n_groups; ++g)
        for (int k = 0; k < kPivots; ++k)
          for (int64_t t = 0; t < W; ++t) less[g * kPivots + k][t] = counts[g * kPivots + k][t];
    }
  }

  // The lanes of x in [lo, hi), as bits (a keyed tile's band; inside_bits is the values' (lo, hi)).
  template <class Vec>
  static uint32_t band_bits(Vec x, Vec lo, Vec hi) {
    return compare_bits<kLessEqual>(lo, x) & compare_bits<kLess>(x, hi);
  }

  // The key bound of a slot's interval end: key_of(v), or, for a slot that collects nothing
  // (NaN bounds), `none` (the largest key as the lower end, the smallest as the upper).
  static Key key_bound(T v, Key none) { return v == v ? key_of(v) : none; }

  // Step 3's walk, shared by its two forms (inlined into it: a plain lambda left (50000, 1500)
  // 1-2 % slower): per block of rows (rows of row_bytes, in L1 while every slot sweeps it),
  // rank slot that collects and vector of kStep columns t,
  // append(q, t, i0, i1, offsets, list, used_q) appends to slot q's list (at list + used_q,
  // advancing used_q) the offsets of the kept values among rows [i0, i1) of those columns;
  // offsets holds the tile offsets of row i0's first kLanes columns from t.
  template <int64_t W, int64_t kStep, class Append>
  void collect_walk(int64_t row_bytes, const bool* collects, Count* lists, int64_t list_stride, int64_t* used,
                    Append append) const {
    using Mask = simd::Mask<T>;
    const int64_t n_ranks = static_cast<int64_t>(ranks.size()), block_rows = rows_in_l1(row_bytes);
    Mask lane_ids;
    for (int64_t l = 0; l < kLanes; ++l) lane_ids[l] = static_cast<Count>(l);
    for (int64_t i0 = 0; i0 < n; i0 += block_rows) {
      const int64_t i1 = std::min(n, i0 + block_rows);
      for (int64_t q = 0; q < n_ranks; ++q) {
        if (!collects[q]) continue;
        Count* list = lists + q * list_stride;
        int64_t used_q = used[q];
        for (int64_t t = 0; t < W; t += kStep)
          append(q, t, i0, i1, lane_ids + static_cast<Count>(i0 * W + t), list, used_q);
        used[q] = used_q;
      }
    }
  }

  // Step 3 on keys (eq stays 0): slot q's list gets the tile offsets of the values in
  // [lower, upper), i.e. of the keys in [key(lower), key(upper)): per vector of keys and row,
  // the two halves of the vector (the offsets of kLanes columns each) packed in turn.
  template <int64_t W>
  void collect_keys(const Key* keys, const T (*lower)[W], const T (*upper)[W], const bool* collects, Count* lists,
                    int64_t list_stride, int64_t* used) const {
    constexpr int64_t L = kLanes, KL = kKeyLanes;
    if constexpr (sizeof(T) == 4 && W % KL == 0) {
      using Mask = simd::Mask<T>;
      typedef Key KeyHalf __attribute__((vector_size(simd::kBytes / 2)));
      const int64_t list_cap = list_capacity();
      alignas(64) Key lo_key[kMaxRanks][W], hi_key[kMaxRanks][W];
      for (int64_t q = 0; q < static_cast<int64_t>(ranks.size()); ++q)
        for (int64_t t = 0; t < W; ++t) {
          lo_key[q][t] = key_bound(lower[q][t], std::numeric_limits<Key>::max());
          hi_key[q][t] = key_bound(upper[q][t], std::numeric_limits<Key>::min());
        }
      collect_walk<W, KL>(W * sizeof(Key), collects, lists, list_stride, used,
                          [&](int64_t q, int64_t t, int64_t i0, int64_t i1, Mask offsets, Count* list,
                              int64_t& used_q) __attribute__((always_inline)) {
        const KeyVec lo = *reinterpret_cast<const KeyVec*>(lo_key[q] + t);
        const KeyVec hi = *reinterpret_cast<const KeyVec*>(hi_key[q] + t);
        for (int64_t i = i0; i < i1; ++i, offsets += static_cast<Count>(W)) {
          const KeyVec x = *reinterpret_cast<const KeyVec*>(keys + i * W + t);
#if defined(FR_ARCH_AVX512)
          const uint32_t bits = _mm512_mask_cmplt_epi16_mask(_mm512_cmpge_epi16_mask((__m512i)x, (__m512i)lo),
                                                             (__m512i)x, (__m512i)hi);
          const uint32_t half_bits[2] = {bits & 0xFFFFu, bits >> 16};
#else
          const KeyVec in = (x >= lo) & (x < hi);
          KeyHalf half[2];
          std::memcpy(half, &in, sizeof(in));
          const uint32_t half_bits[2] = {mask_bits(__builtin_convertvector(half[0], Mask)),
                                         mask_bits(__builtin_convertvector(half[1], Mask))};
#endif
          for (int h = 0; h < 2; ++h) {
            if (used_q <= list_cap) {  // the list has L offsets of room beyond list_cap
              pack_to_front(offsets + static_cast<Count>(h * L), half_bits[h], list + used_q);
              used_q += __builtin_popcount(half_bits[h]);
            }
          }
        }
      });
    }
  }

  // Step 3 on the values: eq[q][t] = #{x == lower}, and slot q's list gets the tile offsets
  // of the values strictly inside (lower, upper).
  template <int64_t W>
  void collect_values(const T* tile, const T (*lower)[W], const T (*upper)[W], const bool* collects, Count* lists,
                      int64_t list_stride, int64_t* used, Count (*eq)[W]) const {
    using Vec = simd::V<T>;
    using Mask = simd::Mask<T>;
    const int64_t list_cap = list_capacity();
    collect_walk<W, kLanes>(W * sizeof(T), collects, lists, list_stride, used,
                            [&](int64_t q, int64_t t, int64_t i0, int64_t i1, Mask offsets, Count* list,
                                int64_t& used_q) __attribute__((always_inline)) {
      const Vec lo = *reinterpret_cast<const Vec*>(lower[q] + t);
      const Vec hi = *reinterpret_cast<const Vec*>(upper[q] + t);
      Mask e = *reinterpret_cast<const Mask*>(eq[q] + t);
      for (int64_t i = i0; i < i1; ++i, offsets += static_cast<Count>(W)) {
        const Vec x = *reinterpret_cast<const Vec*>(tile + i * W + t);
        e = add_where<kEqual>(e, x, lo);
        if (used_q <= list_cap) {  // the list has L offsets of room beyond list_cap
          const uint32_t bits = inside_bits(x, lo, hi);
          pack_to_front(offsets, bits, list + used_q);
          used_q += __builtin_popcount(bits);
        }
      }
      *reinterpret_cast<Mask*>(eq[q] + t) = e;
    });
  }

  // values[q][t] = the value of rank ranks[q] of column t < w of a tile of `width` columns;
  // the tile is left unchanged.
  void find_ranks(const T* tile, int64_t w, T* scratch, T* const* values, const TileAhead<T>& ahead) const {
    constexpr int64_t kWide = kBandWidth<T>(1), kNarrow = kBandWidth<T>(kWideBandMaxRows + 1);
    if (width == kWide) return find_ranks_in<kWide>(tile, w, scratch, values, ahead);
    find_ranks_in<kNarrow>(tile, w, scratch, values, ahead);
  }

  template <int64_t W>
  void find_ranks_in(const T* tile, int64_t w, T* scratch, T* const* values, const TileAhead<T>& ahead) const {
    static_assert((W & (W - 1)) == 0, "the column of tile offset o is o & (W - 1)");
    using Vec = simd::V<T>;
    using Mask = simd::Mask<T>;
    constexpr int64_t L = kLanes;
    constexpr T kInf = std::numeric_limits<T>::infinity();
    const int64_t n_groups = static_cast<int64_t>(groups.size());
    const int64_t n_ranks = static_cast<int64_t>(ranks.size());
    const Key* keys = reinterpret_cast<const Key*>(scratch);  // when keyed: the tile's keys
    T* sample = scratch + key_tile_values();
    T* band = sample + s * W;  // rank slot q's k-th value of column t: band[(q * band_rows + k) * W + t]
    T* column = band + kMaxRanks * band_rows * W;
    const int64_t list_cap = list_capacity();
    // Rank slot q's list: list_cap + L offsets into the tile (Count has T's size) from
    // lists + q * (list_cap + L).
    const int64_t list_stride = list_cap + L;
    Count* lists = reinterpret_cast<Count*>(column + n + kMaxLanes);

    // 1-2. Each column's pivots and less_k = #{x < p_k}: on the tile's keys where its sampled
    //      pivot keys ascend strictly in every column (keys_ascend; the pivots are then those
    //      keys' floors, key_floor), else on the values.
    alignas(64) T pivot[kMaxRanks * kPivots][W];
    alignas(64) Count less[kMaxRanks * kPivots][W];
    bool keyed_tile = false;
    if constexpr (sizeof(T) == 4) {
      if (keyed) {
        alignas(64) Key pivot_key[kMaxRanks * kPivots][W];
        sample_pivots<W>(keys, reinterpret_cast<Key*>(sample), pivot_key);
        keyed_tile = keys_ascend<W>(pivot_key, w);
        if (keyed_tile) {
          count_keys_below<W>(keys, pivot_key, less, ahead);
          for (int64_t g = 0; g < n_groups; ++g)
            for (int k = 0; k < kPivots; ++k)
              for (int64_t t = 0; t < W; ++t) pivot[g * kPivots + k][t] = key_floor(pivot_key[g * kPivots + k][t]);
        }
      }
    }
    if (!keyed_tile) {
      sample_pivots<W>(tile, sample, pivot);
      std::memset(less, 0, sizeof(less));
      count_pass<W>(tile, pivot, less, ahead);
    }

    // Each rank's interval [lower, upper) and its base less_k; a rank in the same interval
    // as the one before it shares that one's slot (its own bounds are NaN: it collects
    // nothing). On the values, a rank equal to less_k (k >= 0) is pivot k's own value (the
    // pivot is one of the column's values, so at least one value equals it): it is found
    // (at_pivot) and its slot collects nothing either. A slot that collects nothing in any
    // column skips step 3.
    alignas(64) T lower[kMaxRanks][W], upper[kMaxRanks][W];
    alignas(64) Count eq[kMaxRanks][W];
    int64_t base[kMaxRanks][W], interval[kMaxRanks][W], slot[kMaxRanks][W], count[kMaxRanks][W];
    T pivot_value[kMaxRanks][W];
    bool at_pivot[kMaxRanks][W], collects[kMaxRanks] = {};
    for (int64_t g = 0; g < n_groups; ++g) {
      const Count* lg = less[g * kPivots];
      for (int64_t q = groups[g].first_rank; q < groups[g].end_rank; ++q) {
        for (int64_t t = 0; t < W; ++t) {
          int64_t k = -1;  // the last pivot with less_k <= r
          while (k + 1 < kPivots && lg[(k + 1) * W + t] <= ranks[q]) ++k;
          lower[q][t] = k < 0 ? -kInf : pivot[g * kPivots + k][t];
          upper[q][t] = k + 1 < kPivots ? pivot[g * kPivots + k + 1][t] : kInf;
          base[q][t] = k < 0 ? 0 : lg[k * W + t];
          interval[q][t] = k;
          slot[q][t] = q;
          at_pivot[q][t] = !keyed_tile && k >= 0 && base[q][t] == ranks[q];
          const bool shares = q > groups[g].first_rank && interval[q - 1][t] == k && !at_pivot[q - 1][t];
          if (shares) slot[q][t] = slot[q - 1][t];
          if (at_pivot[q][t]) pivot_value[q][t] = lower[q][t];
          if (shares || at_pivot[q][t]) {
            lower[q][t] = upper[q][t] = std::numeric_limits<T>::quiet_NaN();
          } else if (t < w) {
            collects[q] = true;
          }
        }
      }
    }

    // 3. eq and the bands, per block of rows (as in step 2) and rank slot that collects: for
    //    each vector of lanes and row, the tile offsets of the values inside the slot's
    //    interval are packed to the front of a vector of offsets (pack_to_front) and appended
    //    to the slot's list, with no branch per value; each list is then dealt out to the
    //    columns' bands (the column of offset o is o mod W; each column's next place kept as
    //    its offset in the band, measured 1.5x faster than a row count). A list longer than
    //    list_cap (values in the intervals far beyond what the sample suggests) is dropped, and the
    //    slot's values are collected again one by one. A keyed tile's bands are the values in
    //    [lower, upper) (collect_keys; eq stays 0), the others' strictly inside (lower, upper).
    int64_t used[kMaxRanks] = {};
    bool sorted[kMaxRanks] = {};  // whether slot q's band is sorted (sort_band)
    for (int64_t q = 0; q < n_ranks; ++q) std::memset(eq[q], 0, sizeof(eq[q]));
    if (keyed_tile) {
      collect_keys<W>(keys, lower, upper, collects, lists, list_stride, used);
    } else {
      collect_values<W>(tile, lower, upper, collects, lists, list_stride, used, eq);
    }
    for (int64_t q = 0; q < n_ranks; ++q) {
      if (!collects[q]) continue;
      const Count* list = lists + q * list_stride;
      if (used[q] <= list_cap) {
        // at[t]: where column t's next value goes in the slot's band (row k: k * W + t), a
        // value past row cap to row cap (the column's count then tells it overflowed).
        T* b = band + q * band_rows * W;
        int64_t at[W];
        for (int64_t t = 0; t < W; ++t) at[t] = t;
        for (int64_t j = 0; j < used[q]; ++j) {
          const int64_t offset = list[j], col = offset & (W - 1);
          const int64_t a = at[col];
          b[std::min(a, cap * W + col)] = tile[offset];
          at[col] = a + W;
        }
        for (int64_t t = 0; t < W; ++t) count[q][t] = (at[t] - t) / W;
      } else {
        for (int64_t t = 0; t < W; t += L) {
          const Vec lo = *reinterpret_cast<const Vec*>(lower[q] + t);
          const Vec hi = *reinterpret_cast<const Vec*>(upper[q] + t);
          int64_t fill[L] = {};
          T* b = band + q * band_rows * W + t;
          for (int64_t i = 0; i < n; ++i) {
            const T* x_at = tile + i * W + t;
            uint32_t bits = keyed_tile ? band_bits(*reinterpret_cast<const Vec*>(x_at), lo, hi)
                                       : inside_bits(*reinterpret_cast<const Vec*>(x_at), lo, hi);
            while (bits) {
              const int l = __builtin_ctz(bits);
              bits &= bits - 1;
              const int64_t k = fill[l]++;
              b[std::min(k, cap) * W + l] = x_at[l];
            }
          }
          std::copy(fill, fill + L, count[q] + t);
        }
      }
      sorted[q] = sort_band<W>(band + q * band_rows * W, count[q], w);
    }

    // The values, column by column: from the slot's sorted band, or from a copy of the
    // column's band in `column` (n values and a vector of scratch) by select_in_band; a band
    // that overflowed (nb > cap) is replaced there by its interval's values collected from the
    // column.
    for (int64_t t = 0; t < w; ++t) {
      int64_t done[kMaxRanks] = {};  // slot e's values [0 .. done) in `column` lie below its next rank
      int64_t in_column = -1;        // the slot whose interval `column` holds (slots ascend with q)
      for (int64_t q = 0; q < n_ranks; ++q) {
        if (at_pivot[q][t]) {
          values[q][t] = pivot_value[q][t];
          continue;
        }
        const int64_t e = slot[q][t];
        const int64_t nb = count[e][t];
        int64_t rel = ranks[q] - base[e][t];
        if (rel < eq[e][t]) {
          values[q][t] = lower[e][t];
          continue;
        }
        rel -= eq[e][t];
        if (rel >= nb) {
          values[q][t] = kInf;  // only in the top interval: the +Inf values
          continue;
        }
        if (nb <= cap && sorted[e]) {
          values[q][t] = band[(e * band_rows + rel) * W + t];
          continue;
        }
        if (nb <= cap) {  // select_in_band rewrites its input: a copy (a second rank may share the band)
          const T* b = band + e * band_rows * W + t;
          for (int64_t k = 0; k < nb; ++k) column[k] = b[k * W];
          in_column = -1;
          values[q][t] = select_in_band(column, nb, rel);
          continue;
        }
        if (in_column != e) {
          int64_t k = 0;
          for (int64_t i = 0; i < n; ++i) {
            const T x = tile[i * W + t];
            const bool above_lower = keyed_tile ? lower[e][t] <= x : lower[e][t] < x;  // the band's lower end
            if (above_lower && x < upper[e][t]) column[k++] = x;  // k ends at nb
          }
          in_column = e;
          done[e] = 0;
        }
        std::nth_element(column + done[e], column + rel, column + nb);
        values[q][t] = column[rel];
        done[e] = rel + 1;
      }
    }
  }
};

// Rows up to which a full sort (all_ranks) runs on the network, std::sort beyond.
constexpr int64_t kNetworkMaxRows = 16384;

// Find, for every column t < w of a canonical tile, the values at a few ascending ranks:
// below kBandMinRows rows with the network, which permutes the tile in place; from there
// with BandFinder, which leaves it as it is and uses `scratch` (scratch_values() values).
// With all_ranks (Bulyan's full sort, sort_network) the network runs up to kNetworkMaxRows
// rows; the caller sorts larger columns itself.
template <class T>
struct RankFinder {
  int64_t n;
  bool use_network;
  std::vector<int64_t> ranks;  // ascending, distinct
  std::vector<NetworkStep> net;
  std::optional<BandFinder<T>> band;

  // The ranks r1 <= r2 (find); with all_ranks the network sorts every rank (sort_network).
  RankFinder(int64_t n_, int64_t r1, int64_t r2, bool all_ranks = false)
      : RankFinder(n_, r1 == r2 ? std::vector<int64_t>{r1} : std::vector<int64_t>{r1, r2}, all_ranks) {}

  // The ascending, distinct `ranks_` (find_ranks).
  explicit RankFinder(int64_t n_, const std::vector<int64_t>& ranks_, bool all_ranks = false)
      : n(n_), use_network(all_ranks ? n_ <= kNetworkMaxRows : n_ < kBandMinRows), ranks(ranks_) {
    if (!all_ranks && n >= kBandMinRows) band.emplace(n, ranks);
    if (!use_network) return;
    std::vector<int64_t> wanted = ranks;
    if (all_ranks) {
      wanted.clear();
      for (int64_t r = 0; r < n; ++r) wanted.push_back(r);
    }
    net = merge_network(n, wanted, kPresorted, kBlock);
  }

  // The network on a tile of kNetworkWidth<T> columns whose aligned blocks of 16 rows are
  // sorted (for_each_tile's presort), in place.
  void sort_network(T* tile) const { apply_merge_network(net, n, tile); }

  // Whether for_each_tile must sort the tile's blocks of 16 rows (the network path).
  bool presort() const { return use_network; }

  // Whether for_each_tile must make the tile's keys at the start of the finder's scratch
  // (BandFinder on float tiles).
  bool keyed_load() const { return band && band->keyed; }

  int64_t width() const {
    return use_network ? kNetworkWidth<T> : band ? band->width : tile_width<T>(n, 64 * 1024, 16, 256);
  }

  // Scratch values find_ranks needs beyond the tile (none on the network path).
  int64_t scratch_values() const { return band ? band->scratch_values() : 0; }

  // values[k][t] = the value of rank ranks[k] of column t < w (not for all_ranks); on the
  // network path the tile's blocks of 16 rows are sorted (presort()).
  void find_ranks(T* tile, int64_t w, int64_t width, T* scratch, T* const* values,
                  const TileAhead<T>& ahead) const {
    if (band) return band->find_ranks(tile, w, scratch, values, ahead);
    sort_network(tile);
    for (size_t k = 0; k < ranks.size(); ++k)
      for (int64_t t = 0; t < w; ++t) values[k][t] = tile[ranks[k] * width + t];
  }

  // lo[t], hi[t] = the values of ranks r1, r2 of column t < w (the first constructor).
  void find(T* tile, int64_t w, int64_t width, T* scratch, T* lo, T* hi, const TileAhead<T>& ahead) const {
    T* const values[2] = {lo, hi};
    find_ranks(tile, w, width, scratch, values, ahead);
    if (ranks.size() == 1) std::copy(lo, lo + w, hi);
  }
};
}  // namespace

template <class T>
void median(const RowsView<T>& u, T* out) {
  const int64_t n = u.n_rows;
  const RankFinder<T> finder(n, (n - 1) / 2, n / 2);
  const int64_t width = finder.width();
  // scratch layout: tile (n x width) | the finder's scratch
  for_each_tile(u, width, finder.scratch_values(), false, finder.presort(), finder.keyed_load(), [&](T* tile, int64_t j0, int64_t w, int64_t wd, const TileAhead<T>& ahead) {
    T* scratch = tile + n * wd;
    alignas(64) T lo[256], hi[256];
    finder.find(tile, w, wd, scratch, lo, hi, ahead);
    for (int64_t t = 0; t < w; ++t) out[j0 + t] = median_from_middle(lo[t], hi[t], n);
  });
}

// x (as many values of T as a double vector holds) converted to double, in one instruction
// (__builtin_convertvector splits the AVX-512 float case in two halves and joins them).
template <class DVec, class TL>
inline DVec widen(TL x) {
#if defined(FR_ARCH_AVX512)
  if constexpr (sizeof(x[0]) == 4) return (DVec)_mm512_cvtps_pd((__m256)x);
#elif defined(FR_ARCH_AVX2)
  if constexpr (sizeof(x[0]) == 4) return (DVec)_mm256_cvtps_pd((__m128)x);
#endif
  return __builtin_convertvector(x, DVec);
}

// trimmed_mean's pass over a tile of n rows x wd columns (lo, hi, the outputs: wd values,
// 64-byte aligned), in row order: per column, mid_sum = the sum in double, row after row from
// 0, of the values strictly between lo and hi; n_le = #{x <= lo}, n_ge = #{x >= hi}. Lanes =
// columns, kChunks vectors of LD columns (as many as a double vector holds) at a time, with
// the sums and counts in registers.
template <int kChunks, class T, class Count>
void trim_pass_chunks(const T* tile, int64_t n, int64_t wd, const T* lo, const T* hi, double* mid_sum, Count* n_le,
                      Count* n_ge) {
  using DVec = simd::V<double>;
  constexpr int64_t LD = simd::Vector<double>::lanes;
  typedef T TL __attribute__((vector_size(LD * sizeof(T))));  // LD values of T
  using TM = decltype(TL{} < TL{});
  for (int64_t t0 = 0; t0 < wd; t0 += kChunks * LD) {
    TL below[kChunks], above[kChunks];
    TM le_count[kChunks] = {}, ge_count[kChunks] = {};
    DVec sum[kChunks] = {};
    for (int k = 0; k < kChunks; ++k) {
      below[k] = *reinterpret_cast<const TL*>(lo + t0 + k * LD);
      above[k] = *reinterpret_cast<const TL*>(hi + t0 + k * LD);
    }
    for (int64_t i = 0; i < n; ++i) {
      const T* row = tile + i * wd + t0;
#pragma GCC unroll 4
      for (int k = 0; k < kChunks; ++k) {
        const TL x = *reinterpret_cast<const TL*>(row + k * LD);
        const TM le = x <= below[k], ge = x >= above[k];
        le_count[k] -= le;
        ge_count[k] -= ge;
        sum[k] += widen<DVec>((le | ge) ? TL{} : x);
      }
    }
    for (int k = 0; k < kChunks; ++k) {
      *reinterpret_cast<TM*>(n_le + t0 + k * LD) = le_count[k];
      *reinterpret_cast<TM*>(n_ge + t0 + k * LD) = ge_count[k];
      *reinterpret_cast<DVec*>(mid_sum + t0 + k * LD) = sum[k];
    }
  }
}

// trim_pass_chunks with as many chunks at a time as divide the tile's vectors (up to 4 with
// AVX-512's 32 registers, 2 below).
template <class T, class Count>
void trim_pass(const T* tile, int64_t n, int64_t wd, const T* lo, const T* hi, double* mid_sum, Count* n_le,
               Count* n_ge) {
  const int64_t chunks = wd / simd::Vector<double>::lanes;
  if (simd::kBytes == 64 && chunks % 4 == 0) return trim_pass_chunks<4>(tile, n, wd, lo, hi, mid_sum, n_le, n_ge);
  if (chunks % 2 == 0) return trim_pass_chunks<2>(tile, n, wd, lo, hi, mid_sum, n_le, n_ge);
  trim_pass_chunks<1>(tile, n, wd, lo, hi, mid_sum, n_le, n_ge);
}

template <class T>
void trimmed_mean(const RowsView<T>& u, int64_t beta, T* out) {
  const int64_t n = u.n_rows;
  const RankFinder<T> finder(n, beta, n - beta - 1);
  const int64_t width = finder.width();
  // scratch: tile | work copy of the tile (network path) | the finder's scratch
  const int64_t work = finder.use_network ? n * width : 0;
  for_each_tile(u, width, work + finder.scratch_values(), finder.use_network, finder.presort(), finder.keyed_load(), [&](T* tile, int64_t j0, int64_t w, int64_t wd, const TileAhead<T>& ahead) {
    T* work_tile = tile + n * wd;
    T* scratch = work_tile + work;
    alignas(64) T lo[256], hi[256];
    std::fill(lo + w, lo + wd, T(0));
    std::fill(hi + w, hi + wd, T(0));
    finder.find(finder.use_network ? work_tile : tile, w, wd, scratch, lo, hi, ahead);
    // One pass in row order: sum of the values strictly between the
    // thresholds, and how many values sit at or beyond each threshold.
    using Count = typename std::remove_reference<decltype(simd::Mask<T>{}[0])>::type;
    alignas(64) double mid_sum[256];
    alignas(64) Count n_le[256], n_ge[256];
    trim_pass(tile, n, wd, lo, hi, mid_sum, n_le, n_ge);
    for (int64_t t = 0; t < w; ++t)
      out[j0 + t] = trimmed_mean_from_pass(lo[t], hi[t], mid_sum[t], n_le[t], n_ge[t], n, beta);
  });
}

template <class T>
void leave_one_out_median(const RowsView<T>& u, T* out) {
  const int64_t m = u.n_rows, d = u.cols;
  const int64_t p = (m - 2) / 2;
  // The ranks order.h's leave_one_out_median_value reads: p, p + 1 (and p + 2 for odd m).
  std::vector<int64_t> ranks = {p, p + 1};
  if (m % 2 == 1) ranks.push_back(p + 2);
  const RankFinder<T> finder(m, ranks);
  const int64_t width = finder.width();
  // scratch: tile | work copy of the tile (network path) | the finder's scratch
  const int64_t work = finder.use_network ? m * width : 0;
  for_each_tile(u, width, work + finder.scratch_values(), finder.use_network, finder.presort(), finder.keyed_load(), [&](T* tile, int64_t j0, int64_t w, int64_t wd, const TileAhead<T>& ahead) {
    T* work_tile = tile + m * wd;
    T* scratch = work_tile + work;
    alignas(64) T vp[256], vp1[256], vp2[256];
    T* const values[3] = {vp, vp1, vp2};
    finder.find_ranks(finder.use_network ? work_tile : tile, w, wd, scratch, values, ahead);
    alignas(64) T row[256];
    for (int64_t i = 0; i < m; ++i) {  // order.h's leave_one_out_median_value, the parity hoisted
      const T* __restrict x = tile + i * wd;
      if (m % 2 == 0) {
        for (int64_t t = 0; t < w; ++t) row[t] = leave_one_out_median_even(x[t], vp[t], vp1[t]);
      } else {
        for (int64_t t = 0; t < w; ++t) row[t] = leave_one_out_median_odd(x[t], vp[t], vp1[t], vp2[t]);
      }
      store_streaming(row, w, out + i * d + j0);
    }
    end_streaming();  // this thread's streaming stores before any later access to out
  });
}

// The vector of lanes p[t .. t + lanes) (p 64-byte aligned, t a multiple of the lanes).
template <class W, class P>
W& lanes(P* p, int64_t t) {
  return *reinterpret_cast<W*>(p + t);
}
template <class W, class P>
const W& lanes(const P* p, int64_t t) {
  return *reinterpret_cast<const W*>(p + t);
}

// Whether every row-order sum of any subset of a column's n mid values (finite, canonical)
// is exact in double. All of them are integer multiples of q = 2^(ilogb(abs_min) - p + 1),
// p = T's mantissa digits and abs_min the smallest nonzero |value|; every such sum is at
// most n * abs_max < 2^(ceil(log2 n) + ilogb(abs_max) + 1) in size (abs_max any bound on the
// |values|), so a multiple of q below 2^53 q when ilogb(abs_max) - ilogb(abs_min) is at most
// 53 - p - ceil(log2 n). Then the sum without value i is s - x_i, exactly: the very bits of
// the row-order sum that skips row i. Never for double values (p = 53).
template <class T>
bool subset_sums_exact(T abs_min, T abs_max, int64_t n) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  if (abs_min == kInf) return true;  // no nonzero value
  if (!(abs_max < kInf)) return false;
  int64_t log2_n = 0;
  while ((int64_t{1} << log2_n) < n) ++log2_n;
  const int64_t spread = std::numeric_limits<double>::digits - std::numeric_limits<T>::digits - log2_n;
  return static_cast<int64_t>(std::ilogb(abs_max)) - std::ilogb(abs_min) <= spread;
}

// In a column whose subset sums are exact (subset_sums_exact), the row-order sums of the
// values in (a1, z0) and in (a0, z1) from s_mid, the sum of those in (a0, z0): the first
// leaves out the n_a1 values in (a0, a1], all equal to a1, the second the n_z1 values in
// [z1, z0), all equal to z1; each product and difference is itself a subset sum, so exact.
template <class T>
void sums_of_ends(T a0, T a1, T z1, T z0, double s_mid, int64_t n_a1, int64_t n_z1, double* s_low,
                  double* s_high) {
  *s_low = !(a1 < z0) ? 0.0 : n_a1 == 0 ? s_mid : s_mid - static_cast<double>(n_a1) * static_cast<double>(a1);
  *s_high = !(a0 < z1) ? 0.0 : n_z1 == 0 ? s_mid : s_mid - static_cast<double>(n_z1) * static_cast<double>(z1);
}

// The row-order sums of the mid values y[0 .. n) each without one of them, for every k at once:
// chain[k] = the prefix before y[k], then y[k+1], y[k+2], ... added in order (one vector add
// over k per y[j]), by the same additions as column.h's direct loop.
inline void skipping_sums(const double* y, int64_t n, double* __restrict chain) {
  double prefix = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double yj = y[j];
    for (int64_t k = 0; k < j; ++k) chain[k] += yj;
    chain[j] = prefix;
    prefix += yj;
  }
}

template <class T>
void leave_one_out_trimmed_mean(const RowsView<T>& u, int64_t b, T* out) {
  const int64_t m = u.n_rows, d = u.cols;
  // The ranks column.h's LeaveOneOutTrim reads, a0 a1 z1 z0, found once each.
  const int64_t wanted[4] = {b, b + 1, m - 2 - b, m - 1 - b};
  std::vector<int64_t> ranks(wanted, wanted + 4);  // b + 1 > m - 2 - b where 2b = m - 2
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  int slot[4];
  for (int k = 0; k < 4; ++k)
    slot[k] = static_cast<int>(std::lower_bound(ranks.begin(), ranks.end(), wanted[k]) - ranks.begin());
  const RankFinder<T> finder(m, ranks);
  const int64_t width = finder.width();
  const double bd = static_cast<double>(b), kept = static_cast<double>(m - 1 - 2 * b);
  using Vec = simd::V<T>;
  using Mask = simd::Mask<T>;
  using Count = typename std::remove_reference<decltype(Mask{}[0])>::type;
  constexpr int64_t L = simd::Vector<T>::lanes;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  // Whether the sums of the ends' cases come from the mid sum where subset_sums_exact.
  constexpr bool kEndsFromMid = std::numeric_limits<T>::digits < std::numeric_limits<double>::digits;
  using DVec = simd::V<double>;
  using DMask = simd::Mask<double>;
  constexpr int64_t LD = simd::Vector<double>::lanes;
  typedef T TL __attribute__((vector_size(LD * sizeof(T))));  // LD values of T
  // scratch: tile | work copy of the tile (network path) | the finder's scratch
  const int64_t work = finder.use_network ? m * width : 0;
  for_each_tile(u, width, work + finder.scratch_values(), finder.use_network, finder.presort(), finder.keyed_load(), [&](T* tile, int64_t j0, int64_t w, int64_t wd, const TileAhead<T>& ahead) {
    T* work_tile = tile + m * wd;
    T* scratch = work_tile + work;
    alignas(64) T v[4][256];
    T* const values[4] = {v[0], v[1], v[2], v[3]};
    finder.find_ranks(finder.use_network ? work_tile : tile, w, wd, scratch, values, ahead);
    const T *a0 = v[slot[0]], *a1 = v[slot[1]], *z1 = v[slot[2]], *z0 = v[slot[3]];
    // column.h's leave_one_out_trim_pass for every column at once, lanes = columns: the
    // four counts, the row-order sum of the mid values (in (a0, z0)) and their smallest
    // nonzero |value| for subset_sums_exact; for double values, which are never
    // exact, the sums of the ends' cases too (for float values sums_of_ends gives them).
    alignas(64) double s_low[256], s_high[256], s_mid[256];
    alignas(64) Count le_a0[256], le_a1[256], ge_z1[256], ge_z0[256];
    alignas(64) T abs_min[256], in_low[256], in_high[256], in_mid[256];
    std::fill(s_low, s_low + wd, 0.0);
    std::fill(s_high, s_high + wd, 0.0);
    std::fill(s_mid, s_mid + wd, 0.0);
    for (Count* n : {le_a0, le_a1, ge_z1, ge_z0}) std::fill(n, n + wd, Count(0));
    std::fill(abs_min, abs_min + wd, kInf);
    for (int64_t i = 0; i < m; ++i) {
      const T* row = tile + i * wd;
      for (int64_t t = 0; t < wd; t += L) {
        const Vec x = lanes<Vec>(row, t);
        const Vec va0 = lanes<Vec>(a0, t), va1 = lanes<Vec>(a1, t), vz1 = lanes<Vec>(z1, t),
                  vz0 = lanes<Vec>(z0, t);
        const Mask mid = (va0 < x) & (x < vz0);
        if constexpr (!kEndsFromMid) {
          lanes<Vec>(in_low, t) = ((va1 < x) & (x < vz0)) ? x : Vec{};
          lanes<Vec>(in_high, t) = ((va0 < x) & (x < vz1)) ? x : Vec{};
        }
        lanes<Vec>(in_mid, t) = mid ? x : Vec{};
        lanes<Mask>(le_a0, t) -= x <= va0;
        lanes<Mask>(le_a1, t) -= x <= va1;
        lanes<Mask>(ge_z1, t) -= x >= vz1;
        lanes<Mask>(ge_z0, t) -= x >= vz0;
        const Vec ax = simd::vmax(x, -x);
        lanes<Vec>(abs_min, t) = simd::vmin(lanes<Vec>(abs_min, t), (mid & (ax != Vec{})) ? ax : Vec{} + kInf);
      }
      if constexpr (!kEndsFromMid) {
        for (int64_t t = 0; t < wd; ++t) s_low[t] += static_cast<double>(in_low[t]);
        for (int64_t t = 0; t < wd; ++t) s_high[t] += static_cast<double>(in_high[t]);
      }
      for (int64_t t = 0; t < wd; ++t) s_mid[t] += static_cast<double>(in_mid[t]);
    }
    // Where a column's subset sums are not all exact, each middle row's skipping sum comes
    // from skipping_sums over the column's mid values (skip[i * wd + t]).
    thread_local std::vector<double> skip, y, chain;
    thread_local std::vector<int64_t> rows_of;
    skip.resize(static_cast<size_t>(m * wd));
    y.resize(m);
    chain.resize(m);
    rows_of.resize(m);
    alignas(64) int64_t exact[256];  // -1 where the subset sums are exact, else 0 (read as DMask lanes)
    for (int64_t t = 0; t < wd; ++t) {
      // Every mid value is in (a0, z0), so no larger than the larger of |a0| and |z0|.
      const T abs_max = std::max(std::abs(a0[t]), std::abs(z0[t]));
      exact[t] = (t >= w || subset_sums_exact(abs_min[t], abs_max, m)) ? -1 : 0;
      if constexpr (kEndsFromMid) {
        if (exact[t]) {
          sums_of_ends(a0[t], a1[t], z1[t], z0[t], s_mid[t], le_a1[t] - le_a0[t], ge_z1[t] - ge_z0[t],
                       &s_low[t], &s_high[t]);
        } else {
          const LeaveOneOutTrim<T> c = leave_one_out_trim_pass(tile + t, wd, m, a0[t], a1[t], z1[t], z0[t]);
          s_low[t] = c.s_low;
          s_high[t] = c.s_high;
        }
      }
      if (exact[t]) continue;
      int64_t n_mid = 0;
      for (int64_t i = 0; i < m; ++i) {
        const T xi = tile[i * wd + t];
        if (a0[t] < xi && xi < z0[t]) {
          rows_of[n_mid] = i;
          y[n_mid++] = static_cast<double>(xi);
        }
      }
      skipping_sums(y.data(), n_mid, chain.data());
      for (int64_t k = 0; k < n_mid; ++k) skip[rows_of[k] * wd + t] = chain[k];
    }
    // Each row's results, lanes = columns. Without a row outside the middle case (x <= a0,
    // x > z1, or x == z0) a column's result does not depend on the row's value (column.h:
    // the thresholds, sums and counts are the case's), so column.h's
    // leave_one_out_trim_value gives it once per column, from the value -Inf, +Inf or z0.
    // A middle row's result is ((skip_sum + P) + Q) / kept with the column's P = (le_a0 - b) a0
    // and Q = (ge_z0 - b) z0: the same operations in the same order, in double vectors.
    alignas(64) T r_low[256], r_high[256], r_top[256];
    alignas(64) double p_add[256], q_add[256];
    for (int64_t t = 0; t < wd; ++t) {
      const LeaveOneOutTrim<T> c{a0[t], a1[t], z1[t], z0[t], s_low[t], s_high[t], s_mid[t],
                                 le_a0[t], le_a1[t], ge_z1[t], ge_z0[t]};
      r_low[t] = leave_one_out_trim_value(-kInf, c, 0.0, m, b);
      r_high[t] = leave_one_out_trim_value(kInf, c, 0.0, m, b);
      r_top[t] = leave_one_out_trim_value(z0[t], c, 0.0, m, b);
      p_add[t] = static_cast<double>(le_a0[t] - b) * static_cast<double>(a0[t]);
      q_add[t] = static_cast<double>(ge_z0[t] - b) * static_cast<double>(z0[t]);
    }
    const DVec vkept = DVec{} + kept;
    const TL qnan = TL{} + std::numeric_limits<T>::quiet_NaN();
    alignas(64) T row_out[256];
    for (int64_t i = 0; i < m; ++i) {
      const T* row = tile + i * wd;
      const double* skip_row = skip.data() + i * wd;
      for (int64_t t = 0; t < wd; t += LD) {
        const TL x = lanes<TL>(row, t);
        const DVec xd = widen<DVec>(x);
        DVec skip_t;  // skip is a std::vector's memory: no vector alignment
        std::memcpy(&skip_t, skip_row + t, sizeof(DVec));
        const DVec skip_sum = lanes<DMask>(exact, t) ? lanes<DVec>(s_mid, t) - xd : skip_t;
        const DVec total = (skip_sum + lanes<DVec>(p_add, t)) + lanes<DVec>(q_add, t);
        TL middle = __builtin_convertvector(total / vkept, TL);
        middle = (middle != middle) ? qnan : middle;
        lanes<TL>(row_out, t) = !(x > lanes<TL>(a0, t)) ? lanes<TL>(r_low, t)
                                : x > lanes<TL>(z1, t)  ? lanes<TL>(r_high, t)
                                : x >= lanes<TL>(z0, t) ? lanes<TL>(r_top, t)
                                                        : middle;
      }
      store_streaming(row_out, w, out + i * d + j0);
    }
    end_streaming();  // this thread's streaming stores before any later access to out
  });
}

template <class T>
void closest_to_median_mean(const RowsView<T>& u, int64_t gamma, T* out) {
  const int64_t n = u.n_rows;
  const RankFinder<T> sorter(n, 0, n - 1, /*all_ranks=*/true);
  const int64_t width = sorter.width();
  for_each_tile(u, width, n, false, sorter.presort(), false, [&](T* tile, int64_t j0, int64_t w, int64_t wd, const TileAhead<T>& ahead) {
    if (sorter.use_network) {
      sorter.sort_network(tile);
      for (int64_t t = 0; t < w; ++t) out[j0 + t] = fedrobust::closest_to_median_mean(tile + t, wd, n, gamma);
      return;
    }
    T* column = tile + n * wd;
    for (int64_t t = 0; t < w; ++t) {
      for (int64_t i = 0; i < n; ++i) column[i] = tile[i * wd + t];
      std::sort(column, column + n);
      out[j0 + t] = fedrobust::closest_to_median_mean(column, 1, n, gamma);
    }
  });
}

template void median<float>(const RowsView<float>&, float*);
template void median<double>(const RowsView<double>&, double*);
template void trimmed_mean<float>(const RowsView<float>&, int64_t, float*);
template void trimmed_mean<double>(const RowsView<double>&, int64_t, double*);
template void leave_one_out_median<float>(const RowsView<float>&, float*);
template void leave_one_out_median<double>(const RowsView<double>&, double*);
template void leave_one_out_trimmed_mean<float>(const RowsView<float>&, int64_t, float*);
template void leave_one_out_trimmed_mean<double>(const RowsView<double>&, int64_t, double*);
template void closest_to_median_mean<float>(const RowsView<float>&, int64_t, float*);
template void closest_to_median_mean<double>(const RowsView<double>&, int64_t, double*);

}  // namespace fedrobust::cpu::FR_ARCH
