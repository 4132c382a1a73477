// Column tiles: the coordinate-wise kernels never stride through the (n, d)
// array one coordinate at a time. They copy a tile of all n rows x `width`
// consecutive columns (a few KiB per row-segment, contiguous reads per row)
// into a per-thread row-major scratch buffer and work there.
//
// Included by the vectorised units AFTER FR_BEGIN_SIMD_CODE (simd_level.h),
// so that it is compiled for the unit's SIMD level, in the level's namespace.
// It includes only keys.h (likewise compiled per level): the unit includes <algorithm>,
// <cstdint>, <cstdlib>, <cstring>, <limits>, <new>, fedrobust/order.h and its own header first.
#pragma once

#include "keys.h"

namespace fedrobust::cpu::FR_ARCH {

// 64-byte aligned scratch memory owned by one thread.
template <class T>
class Scratch {
 public:
  explicit Scratch(size_t n) {
    size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
    ptr_ = static_cast<T*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (!ptr_) throw std::bad_alloc();
  }
  ~Scratch() { std::free(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() { return ptr_; }

 private:
  T* ptr_;
};

// Copy columns [j0, j0 + w) of every row into tile (n_rows x width, row-major),
// mapping each value through canonical(); columns w .. width-1 are set to +Inf.
// With `copy`, the same tile is also written there; with kKeys (float), the tile's keys
// at `keys` (keys.h: keys[i * width + t] = key_of(tile[i * width + t])), on the way.
// Contiguous rows are copied a vector at a time. A small tile prefetches the same
// columns of the next tile (j0 + width ...), so that the n row streams are in flight
// while the caller works on this tile; a tile too large for the prefetched lines to
// survive in L2 beside it (over kPrefetchTileBytes) prefetches kRowsAhead rows ahead
// within itself instead.
constexpr int64_t kPrefetchTileBytes = 256 * 1024;
constexpr int64_t kRowsAhead = 64;

// Whether load_canonical_tile prefetches the next tile itself (a tile of n_rows x width
// values of T within kPrefetchTileBytes).
template <class T>
constexpr bool load_prefetches_next_tile(int64_t n_rows, int64_t width) {
  return n_rows * width * static_cast<int64_t>(sizeof(T)) <= kPrefetchTileBytes;
}

template <class T, bool kKeys = false>
void load_canonical_tile(const RowsView<T>& u, int64_t j0, int64_t w, int64_t width, T* tile,
                         T* copy = nullptr, Key* keys = nullptr) {
  static_assert(!kKeys || sizeof(T) == 4, "keys are made for float tiles");
  typedef T V __attribute__((vector_size(32)));
  constexpr int64_t L = 32 / sizeof(T);
  const T inf = std::numeric_limits<T>::infinity();
  const V inf_v = V{} + inf;
  const bool rows_ahead = !load_prefetches_next_tile<T>(u.n_rows, width);
  const bool prefetch = u.col_stride == 1 && j0 + width < u.cols && !rows_ahead;
  const int64_t next_bytes = std::min(width, u.cols - j0 - width) * static_cast<int64_t>(sizeof(T));
  const int64_t w_bytes = w * static_cast<int64_t>(sizeof(T));
  for (int64_t i = 0; i < u.n_rows; ++i) {
    const T* src = u.rows[i] + j0 * u.col_stride;
    T* dst = tile + i * width;
    int64_t t = 0;
    if (u.col_stride == 1) {
      if (prefetch)
        for (int64_t b = 0; b < next_bytes; b += 64)
          __builtin_prefetch(reinterpret_cast<const char*>(src + width) + b);
      if (rows_ahead && i + kRowsAhead < u.n_rows)
        for (int64_t b = 0; b < w_bytes; b += 64)
          __builtin_prefetch(reinterpret_cast<const char*>(u.rows[i + kRowsAhead] + j0) + b);
      for (; t + L <= w; t += L) {
        V x;
        std::memcpy(&x, src + t, sizeof(V));
        x = (x != x) ? inf_v : x + T(0);
        std::memcpy(dst + t, &x, sizeof(V));
        if constexpr (kKeys) {
          typedef int32_t Bits __attribute__((vector_size(32)));  // V's 8 floats
          typedef Key Keys __attribute__((vector_size(16)));
          const Keys k = keys_of_bits<Keys>((Bits)x);  // the floats' bits
          std::memcpy(keys + i * width + t, &k, sizeof(k));
        }
      }
      for (; t < w; ++t) dst[t] = canonical(src[t]);
    } else {
      for (; t < w; ++t) dst[t] = canonical(src[t * u.col_stride]);
    }
    for (t = w; t < width; ++t) dst[t] = inf;
    if constexpr (kKeys)
      for (t = u.col_stride == 1 ? w / L * L : 0; t < width; ++t) keys[i * width + t] = key_of(dst[t]);
    if (copy) std::memcpy(copy + i * width, dst, static_cast<size_t>(width) * sizeof(T));
  }
}

// Copy columns [j0, j0 + w) of every row, unchanged, into tile (n_rows x width);
// columns w .. width-1 are set to 0. Prefetches the next tile like
// load_canonical_tile.
template <class T>
void load_raw_tile(const RowsView<T>& u, int64_t j0, int64_t w, int64_t width, T* tile) {
  const bool prefetch = u.col_stride == 1 && j0 + width < u.cols;
  const int64_t next_bytes = std::min(width, u.cols - j0 - width) * static_cast<int64_t>(sizeof(T));
  for (int64_t i = 0; i < u.n_rows; ++i) {
    const T* src = u.rows[i] + j0 * u.col_stride;
    T* dst = tile + i * width;
    if (u.col_stride == 1) {
      if (prefetch)
        for (int64_t b = 0; b < next_bytes; b += 64)
          __builtin_prefetch(reinterpret_cast<const char*>(src + width) + b);
      std::memcpy(dst, src, static_cast<size_t>(w) * sizeof(T));
    } else {
      for (int64_t t = 0; t < w; ++t) dst[t] = src[t * u.col_stride];
    }
    std::fill(dst + w, dst + width, T(0));
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The tile a thread works on next: columns [j0, j0 + bytes / sizeof(T)) of every row of u,
// or none (rows == nullptr: no next tile, or rows that are not contiguous). A kernel whose
// tile is too large for load_canonical_tile's prefetch of the next tile
// (!load_prefetches_next_tile: the band path above 1,024 rows) prefetches it itself, a
// line at a time between its own work, so that the next load reads the lines from the
// caches instead of waiting on memory.
template <class T>
struct TileAhead {
  const T* const* rows = nullptr;
  int64_t j0 = 0, bytes = 0;

  TileAhead() = default;
  TileAhead(const RowsView<T>& u, int64_t next_j0, int64_t width) {
    if (u.col_stride != 1 || next_j0 >= u.cols) return;
    rows = u.rows;
    j0 = next_j0;
    bytes = std::min(width, u.cols - next_j0) * static_cast<int64_t>(sizeof(T));
  }
  // Prefetch (to L2: the lines are read once, by the next load) the line at byte offset
  // `at` (a multiple of 64) of row i's next tile, if the tile reaches it.
  void prefetch(int64_t i, int64_t at) const {
    if (rows && at < bytes) __builtin_prefetch(reinterpret_cast<const char*>(rows[i] + j0) + at, 0, 1);
  }
};

// Tile width (a multiple of `quantum` columns) such that n_rows x width values
// of T take about `budget_bytes`, clamped to [quantum, max_width].
template <class T>
int64_t tile_width(int64_t n_rows, int64_t budget_bytes, int64_t quantum, int64_t max_width) {
  int64_t w = budget_bytes / (static_cast<int64_t>(sizeof(T)) * std::max<int64_t>(n_rows, 1));
  w = (w / quantum) * quantum;
  return std::clamp<int64_t>(w, quantum, max_width);
}

}  // namespace fedrobust::cpu::FR_ARCH
