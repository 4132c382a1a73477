// Coordinate-wise order statistics: median, trimmed mean, and Bulyan's
// "mean of the values closest to the median".
//
// For each tile of columns (see tile.h) the kernel finds, per column, the
// values at the ranks it needs:
//   - n <= kNetworkMaxRows: a comparator network whose lanes are the tile's
//     columns (selection_network, pruned to the needed ranks). Every
//     comparator is one vector min and one vector max over a tile row, with
//     no branches;
//   - larger n: std::nth_element on each gathered column.
// Both give the same values (order statistics are unique), so the switch
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
#include "tile.h"

namespace fedrobust::cpu::FR_ARCH {
namespace {

constexpr int64_t kNetworkMaxRows = 16384;

// Columns per tile on the network path: 256 bytes of each row.
template <class T>
constexpr int64_t kNetworkWidth = 256 / static_cast<int64_t>(sizeof(T));

// Apply the network to all kNetworkWidth<T> columns of a tile in place:
// every comparator is one vector min and one vector max per tile row segment.
template <class T>
void apply_network(const std::vector<Comparator>& net, T* tile) {
  using Vec = simd::V<T>;
  constexpr int64_t W = kNetworkWidth<T>;
  constexpr int64_t kVectors = W / simd::Vector<T>::lanes;
  for (const Comparator& c : net) {
    Vec* a = reinterpret_cast<Vec*>(tile + c.first * W);
    Vec* b = reinterpret_cast<Vec*>(tile + c.second * W);
    for (int64_t k = 0; k < kVectors; ++k) {
      const Vec x = a[k], y = b[k];
      a[k] = simd::vmin(x, y);
      b[k] = simd::vmax(x, y);
    }
  }
}

// Sort every full aligned block of 16 tile rows, column by column, in
// registers: 63 comparators per 16 loads and 16 stores. These are the first
// four phases of the network (selection_network(..., kPresorted)).
constexpr int64_t kPresorted = 16;
constexpr Sort16 kSort16 = make_sort16();

template <class T>
void sort_blocks_of_16(int64_t n, T* tile) {
  using Vec = simd::V<T>;
  constexpr int64_t W = kNetworkWidth<T>;
  constexpr int64_t kVectors = W / simd::Vector<T>::lanes;
  for (int64_t b = 0; b + kPresorted <= n; b += kPresorted) {
    Vec* block = reinterpret_cast<Vec*>(tile + b * W);
    for (int64_t k = 0; k < kVectors; ++k) {
      Vec r[kPresorted];
#pragma GCC unroll 16
      for (int i = 0; i < kPresorted; ++i) r[i] = block[i * kVectors + k];
#pragma GCC unroll 63
      for (int c = 0; c < 63; ++c) {
        const Vec x = r[kSort16.a[c]], y = r[kSort16.b[c]];
        r[kSort16.a[c]] = simd::vmin(x, y);
        r[kSort16.b[c]] = simd::vmax(x, y);
      }
#pragma GCC unroll 16
      for (int i = 0; i < kPresorted; ++i) block[i * kVectors + k] = r[i];
    }
  }
}

// Run `per_tile(tile, j0, w, width)` over column tiles in parallel. Each
// thread owns a scratch tile of n x width values (+ `extra` values after it);
// with `twice`, the tile is loaded a second time right after the first
// (extra must leave room for it).
template <class T, class F>
void for_each_tile(const RowsView<T>& u, int64_t width, int64_t extra, bool twice, F per_tile) {
  const int64_t n_tiles = ceil_div(u.cols, width);
#pragma omp parallel if (worth_threads(u.n_rows * u.cols))
  {
    Scratch<T> scratch(static_cast<size_t>(u.n_rows * width + extra));
    T* second = twice ? scratch.data() + u.n_rows * width : nullptr;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_tiles; ++b) {
      const int64_t j0 = b * width;
      const int64_t w = std::min(width, u.cols - j0);
      load_canonical_tile(u, j0, w, width, scratch.data(), second);
      per_tile(scratch.data(), j0, w, width);
    }
  }
}

// dst[0 .. w) = src[0 .. w) (src any alignment), bypassing the caches where dst is 16-byte aligned: the
// leave-one-out kernel writes an (m, d) result that is never read back while it runs, and
// ordinary stores would first read every line they write. The caller ends its parallel
// region before anyone reads dst, after an sfence in the thread that stored.
template <class T>
void store_streaming(const T* src, int64_t w, T* dst) {
#if defined(__x86_64__)
  constexpr int64_t L = 16 / static_cast<int64_t>(sizeof(T));
  if (reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    int64_t t = 0;
    for (; t + L <= w; t += L) {
      if constexpr (sizeof(T) == 4) {
        _mm_stream_ps(reinterpret_cast<float*>(dst + t), _mm_loadu_ps(reinterpret_cast<const float*>(src + t)));
      } else {
        _mm_stream_pd(reinterpret_cast<double*>(dst + t), _mm_loadu_pd(reinterpret_cast<const double*>(src + t)));
      }
    }
    for (; t < w; ++t) dst[t] = src[t];
    return;
  }
#endif
  std::memcpy(dst, src, static_cast<size_t>(w) * sizeof(T));
}

// Find, for every column t < w of a canonical tile, the values at a few ascending ranks.
// On the network path the tile is permuted in place; on the scalar path it is
// left as it is and `column` (n values) is used as scratch.
template <class T>
struct RankFinder {
  int64_t n;
  bool use_network;
  std::vector<int64_t> ranks;  // ascending, distinct
  std::vector<Comparator> net;

  // The ranks r1 <= r2 (find); with all_ranks the network sorts every rank (sort_network).
  RankFinder(int64_t n_, int64_t r1, int64_t r2, bool all_ranks = false)
      : RankFinder(n_, r1 == r2 ? std::vector<int64_t>{r1} : std::vector<int64_t>{r1, r2}, all_ranks) {}

  // The ascending, distinct `ranks_` (find_ranks).
  explicit RankFinder(int64_t n_, const std::vector<int64_t>& ranks_, bool all_ranks = false)
      : n(n_), use_network(n_ <= kNetworkMaxRows), ranks(ranks_) {
    if (!use_network) return;
    std::vector<int64_t> wanted = ranks;
    if (all_ranks) {
      wanted.clear();
      for (int64_t r = 0; r < n; ++r) wanted.push_back(r);
    }
    net = selection_network(n, wanted, kPresorted);
  }

  // The whole network on a tile of kNetworkWidth<T> columns, in place.
  void sort_network(T* tile) const {
    sort_blocks_of_16(n, tile);
    apply_network(net, tile);
  }

  int64_t width() const {
    return use_network ? kNetworkWidth<T> : tile_width<T>(n, 64 * 1024, 16, 256);
  }

  // values[k][t] = the value of rank ranks[k] of column t < w.
  void find_ranks(T* tile, int64_t w, int64_t width, T* column, T* const* values) const {
    const int64_t k_ranks = static_cast<int64_t>(ranks.size());
    if (use_network) {
      sort_network(tile);
      for (int64_t k = 0; k < k_ranks; ++k)
        for (int64_t t = 0; t < w; ++t) values[k][t] = tile[ranks[k] * width + t];
      return;
    }
    for (int64_t t = 0; t < w; ++t) {
      for (int64_t i = 0; i < n; ++i) column[i] = tile[i * width + t];
      int64_t done = 0;  // column[0 .. done) holds the values below the next rank
      for (int64_t k = 0; k < k_ranks; ++k) {
        std::nth_element(column + done, column + ranks[k], column + n);
        values[k][t] = column[ranks[k]];
        done = ranks[k] + 1;
      }
    }
  }

  // lo[t], hi[t] = the values of ranks r1, r2 of column t < w (the first constructor).
  void find(T* tile, int64_t w, int64_t width, T* column, T* lo, T* hi) const {
    T* const values[2] = {lo, hi};
    find_ranks(tile, w, width, column, values);
    if (ranks.size() == 1) std::copy(lo, lo + w, hi);
  }
};
}  // namespace

template <class T>
void median(const RowsView<T>& u, T* out) {
  const int64_t n = u.n_rows;
  const RankFinder<T> finder(n, (n - 1) / 2, n / 2);
  const int64_t width = finder.width();
  // scratch layout: tile (n x width) | column (n)
  for_each_tile(u, width, n, false, [&](T* tile, int64_t j0, int64_t w, int64_t wd) {
    T* column = tile + n * wd;
    alignas(64) T lo[256], hi[256];
    finder.find(tile, w, wd, column, lo, hi);
    for (int64_t t = 0; t < w; ++t) out[j0 + t] = median_from_middle(lo[t], hi[t], n);
  });
}

template <class T>
void trimmed_mean(const RowsView<T>& u, int64_t beta, T* out) {
  const int64_t n = u.n_rows;
  const RankFinder<T> finder(n, beta, n - beta - 1);
  const int64_t width = finder.width();
  // scratch: tile | work copy of the tile (network path) | column
  const int64_t work = finder.use_network ? n * width : 0;
  for_each_tile(u, width, work + n, finder.use_network, [&](T* tile, int64_t j0, int64_t w, int64_t wd) {
    T* work_tile = tile + n * wd;
    T* column = work_tile + work;
    alignas(64) T lo[256], hi[256];
    std::fill(lo + w, lo + wd, T(0));
    std::fill(hi + w, hi + wd, T(0));
    finder.find(finder.use_network ? work_tile : tile, w, wd, column, lo, hi);
    // One pass in row order: sum of the values strictly between the
    // thresholds, and how many values sit at or beyond each threshold.
    using Vec = simd::V<T>;
    using Mask = simd::Mask<T>;
    using Count = typename std::remove_reference<decltype(Mask{}[0])>::type;
    constexpr int64_t L = simd::Vector<T>::lanes;
    alignas(64) double mid_sum[256];
    alignas(64) Count n_le[256], n_ge[256];
    alignas(64) T mid[256];
    std::fill(mid_sum, mid_sum + wd, 0.0);
    std::fill(n_le, n_le + wd, Count(0));
    std::fill(n_ge, n_ge + wd, Count(0));
    for (int64_t i = 0; i < n; ++i) {
      const T* row = tile + i * wd;
      for (int64_t t = 0; t < wd; t += L) {
        const Vec x = *reinterpret_cast<const Vec*>(row + t);
        const Mask le = x <= *reinterpret_cast<const Vec*>(lo + t);
        const Mask ge = x >= *reinterpret_cast<const Vec*>(hi + t);
        *reinterpret_cast<Mask*>(n_le + t) -= le;
        *reinterpret_cast<Mask*>(n_ge + t) -= ge;
        *reinterpret_cast<Vec*>(mid + t) = (le | ge) ? Vec{} : x;
      }
      for (int64_t t = 0; t < wd; ++t) mid_sum[t] += static_cast<double>(mid[t]);
    }
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
  // scratch: tile | work copy of the tile (network path) | column
  const int64_t work = finder.use_network ? m * width : 0;
  for_each_tile(u, width, work + m, finder.use_network, [&](T* tile, int64_t j0, int64_t w, int64_t wd) {
    T* work_tile = tile + m * wd;
    T* column = work_tile + work;
    alignas(64) T vp[256], vp1[256], vp2[256];
    T* const values[3] = {vp, vp1, vp2};
    finder.find_ranks(finder.use_network ? work_tile : tile, w, wd, column, values);
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
#if defined(__x86_64__)
    _mm_sfence();  // this thread's streaming stores before any later access to out
#endif
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
  // scratch: tile | work copy of the tile (network path) | column
  const int64_t work = finder.use_network ? m * width : 0;
  for_each_tile(u, width, work + m, finder.use_network, [&](T* tile, int64_t j0, int64_t w, int64_t wd) {
    T* work_tile = tile + m * wd;
    T* column = work_tile + work;
    alignas(64) T v[4][256];
    T* const values[4] = {v[0], v[1], v[2], v[3]};
    finder.find_ranks(finder.use_network ? work_tile : tile, w, wd, column, values);
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
        const DVec xd = __builtin_convertvector(x, DVec);
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
#if defined(__x86_64__)
    _mm_sfence();  // this thread's streaming stores before any later access to out
#endif
  });
}

template <class T>
void closest_to_median_mean(const RowsView<T>& u, int64_t gamma, T* out) {
  const int64_t n = u.n_rows;
  const RankFinder<T> sorter(n, 0, n - 1, /*all_ranks=*/true);
  const int64_t width = sorter.width();
  for_each_tile(u, width, n, false, [&](T* tile, int64_t j0, int64_t w, int64_t wd) {
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
