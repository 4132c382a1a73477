// Exact pairwise squared Euclidean distances, all pairs of rows.
//
// ||a||^2 + ||b||^2 - 2ab cancels catastrophically for the near-identical
// vectors that attacks send, so this kernel takes direct differences
// (a - b)^2, which are exact for close values. Work is blocked over d: a
// chunk of all n rows (2 KiB of each row, whatever n) is packed once into a
// buffer the threads share and every pair assigned to a thread is accumulated over
// it, 3 x 4 pairs at a time in vector registers (6 x 4 in the avx512 build), the
// micro-tiles in blocks of 120 "b" rows (240 KiB, in L2) that every "a" tile walks
// in turn. Within a chunk the sums are float lanes for float32 input (double for
// float64), added into one double per pair in a fixed tree order (tree_sums, four
// pairs at once), and chunks are added in order: every pair is owned by one
// thread and accumulated in one fixed order, whatever the thread count.
//
// If a chunk's float sum overflows (differences near 1e19 and above) or may
// have underflowed (below 1e-30: differences near 1e-19 and below, or
// identical rows) the chunk is recomputed for that pair in double. A pair whose total is not finite (a
// NaN or an Inf in either row) gets +Inf. This file may contract a*b+c into
// FMA (the AVX2 and AVX-512 builds do, alike; the generic build has no FMA), so
// the generic level can differ from the others in the last bits of a distance.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <omp.h>
#include <vector>

#include "fedrobust/order.h"
#include "distances.h"

#include "threads.h"

FR_BEGIN_SIMD_CODE
#include "tile.h"

namespace fedrobust::cpu::FR_ARCH {
namespace {

template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int64_t lanes = 32 / sizeof(T);
};

template <class T>
__attribute__((always_inline)) inline typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The lanes of one accumulator, added in double in a fixed tree order:
// float lanes l0..l7 -> (l0+l4, l1+l5, l2+l6, l3+l7) = s0..s3 -> (s0+s2) + (s1+s3).
// sum_lanes adds s0..s3 so; lane_pairs gives s0..s3 (double lanes are s0..s3 themselves);
// tree_sums finishes the tree of four accumulators at once, with the same additions.
typedef double Double4 __attribute__((vector_size(32)));
inline double sum_lanes(Double4 s) { return (s[0] + s[2]) + (s[1] + s[3]); }
inline Double4 lane_pairs(Double4 s) { return s; }
inline Double4 lane_pairs(Vec<float>::type v) {
  const Double4 lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), Double4);
  const Double4 hi = __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), Double4);
  return lo + hi;
}
// result[p] = (s_p[0] + s_p[2]) + (s_p[1] + s_p[3]) for s = (a, b, c, d): a 4 x 4 transpose,
// then three vector additions.
inline Double4 tree_sums(Double4 a, Double4 b, Double4 c, Double4 d) {
  const Double4 ab02 = __builtin_shufflevector(a, b, 0, 4, 2, 6), ab13 = __builtin_shufflevector(a, b, 1, 5, 3, 7);
  const Double4 cd02 = __builtin_shufflevector(c, d, 0, 4, 2, 6), cd13 = __builtin_shufflevector(c, d, 1, 5, 3, 7);
  const Double4 s0 = __builtin_shufflevector(ab02, cd02, 0, 1, 4, 5), s2 = __builtin_shufflevector(ab02, cd02, 2, 3, 6, 7);
  const Double4 s1 = __builtin_shufflevector(ab13, cd13, 0, 1, 4, 5), s3 = __builtin_shufflevector(ab13, cd13, 2, 3, 6, 7);
  return (s0 + s2) + (s1 + s3);
}

// Pairs per micro-tile: 3 x 4, twelve accumulator chains (with the operands, the 16 vector
// registers of AVX2): enough independent multiply-adds to hide their latency (4 x 2 left
// the loop latency-bound, 40 % slower). The avx512 build addresses 32 vector registers and
// takes 6 x 4, 24 chains (the same 32-byte vectors and instructions, so the same bits; fewer
// loads per multiply-add and half the tiles: at (1000, 1e5) 0.78 -> 0.66-0.70 s with the
// vector epilogue). The tile's shape changes no bits: each pair's lanes and chunks are
// summed in the same order whatever its neighbours.
#if defined(FR_ARCH_AVX512)
constexpr int64_t kRowsA = 6, kRowsB = 4;
#else
constexpr int64_t kRowsA = 3, kRowsB = 4;
#endif
static_assert(kMaxChunkBytes / 32 == kMaxLaneTerms, "distances.h states the terms per lane");

// Columns per chunk: 2 KiB of each row, whatever the row count (a distance's bits depend
// on where its float sums start and stop). "b" rows per block of micro-tiles.
template <class T>
constexpr int64_t kChunk = kMaxChunkBytes / static_cast<int64_t>(sizeof(T));
constexpr int64_t kBlockRows = 120;

// Squared distances of rows a[0..kRowsA) x b[0..kRowsB) over `len` packed values (len >= the
// lanes): out[k][l] for a[k] and b[l], an "a" row's kRowsB distances in one Double4. The first
// step sets the accumulators (d * d is 0 + d * d, bit for bit), so they need no zeroing.
static_assert(kRowsB == 4, "an a row's kRowsB distances fill one Double4");
template <class T>
void micro_tile(const T* const a[kRowsA], const T* const b[kRowsB], int64_t len, Double4 out[kRowsA]) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  V acc[kRowsA][kRowsB];
  {
    V bl[kRowsB];
    for (int l = 0; l < kRowsB; ++l) bl[l] = load(b[l]);
    for (int k = 0; k < kRowsA; ++k) {
      const V ak = load(a[k]);
      for (int l = 0; l < kRowsB; ++l) {
        const V d = ak - bl[l];
        acc[k][l] = d * d;
      }
    }
  }
  for (int64_t e = L; e < len; e += L) {
    V bl[kRowsB];
    for (int l = 0; l < kRowsB; ++l) bl[l] = load(b[l] + e);
    for (int k = 0; k < kRowsA; ++k) {
      const V ak = load(a[k] + e);
      for (int l = 0; l < kRowsB; ++l) {
        const V d = ak - bl[l];
        acc[k][l] += d * d;
      }
    }
  }
  for (int k = 0; k < kRowsA; ++k)
    out[k] = tree_sums(lane_pairs(acc[k][0]), lane_pairs(acc[k][1]), lane_pairs(acc[k][2]), lane_pairs(acc[k][3]));
}

// The squared distance of two packed rows over `len` values (a multiple of
// 16) in double: four double lanes, summed as in sum_lanes.
template <class T>
double chunk_in_double(const T* a, const T* b, int64_t len) {
  Double4 acc = {};
  for (int64_t e = 0; e < len; e += 4) {
    const Double4 d = Double4{double(a[e]), double(a[e + 1]), double(a[e + 2]), double(a[e + 3])} -
                      Double4{double(b[e]), double(b[e + 1]), double(b[e + 2]), double(b[e + 3])};
    acc += d * d;
  }
  return sum_lanes(acc);
}

// A float chunk sum below this may have lost squares to underflow
// (differences under ~1e-19): such chunks are recomputed in double.
constexpr double kFloatUnderflowGuard = 1e-30;

template <class T>
bool needs_double(double s) {
  if (!std::isfinite(s)) return true;  // overflow (or NaN / Inf input: stays non-finite)
  return sizeof(T) == sizeof(float) && s < kFloatUnderflowGuard;
}

// Whether needs_double holds for none of the four: its test on four lanes at once (four
// needs_double calls made the whole kernel 7-15 % slower at (1000, 1e5)).
template <class T>
bool all_fine(Double4 s) {
  auto bad = !(s <= std::numeric_limits<double>::max());  // overflow, NaN or Inf
  if constexpr (sizeof(T) == sizeof(float)) bad |= s < kFloatUnderflowGuard;
  return !(bad[0] | bad[1] | bad[2] | bad[3]);
}

// dst[0..4) += s, one vector add.
inline void add_to(double* dst, Double4 s) {
  Double4 v;
  std::memcpy(&v, dst, sizeof(v));
  v += s;
  std::memcpy(dst, &v, sizeof(v));
}

}  // namespace

template <class T>
void pairwise_sq_distances(const RowsView<T>& u, double* out) {
  const int64_t n = u.n_rows;
  std::fill(out, out + n * n, 0.0);
  if (n < 2) return;
  const int64_t chunk = kChunk<T>;
  const int64_t n_chunks = ceil_div(u.cols, chunk);

  // Micro-tiles (ia, jb) covering every pair i < j of the upper triangle: for each ia the
  // tiles jb = ia, ia + kRowsB, ..., taken in blocks of kBlockRows "b" rows (which stay in
  // L2 while every "a" tile walks them).
  std::vector<std::pair<int64_t, int64_t>> tiles;
  for (int64_t j0 = 0; j0 < n; j0 += kBlockRows) {
    const int64_t j1 = std::min(n, j0 + kBlockRows);
    for (int64_t ia = 0; ia < j1; ia += kRowsA)
      for (int64_t jb = ia >= j0 ? ia : ia + ceil_div(j0 - ia, kRowsB) * kRowsB; jb < j1; jb += kRowsB)
        tiles.emplace_back(ia, jb);
  }
  const int64_t n_tiles = static_cast<int64_t>(tiles.size());

  // Each chunk is packed once, into one of two buffers the threads share (chunk c into
  // buffer c % 2), every thread packing its own share of the rows; a barrier then lets them
  // all read it. A thread packs chunk c + 2 into the same buffer only after every thread has
  // passed chunk c + 1's barrier, so after all have finished with chunk c. (Each thread
  // packed all n rows before: at (1000, 1e5) the distances took 663-669 ms against 650-654
  // now, run in turn; reading whole chunks in place instead was slower, 692-697 ms.)
  Scratch<T> packed_even(static_cast<size_t>(n * chunk)), packed_odd(static_cast<size_t>(n * chunk));
  T* const packed_of[2] = {packed_even.data(), packed_odd.data()};
#pragma omp parallel if (worth_threads(n * n * u.cols / 2))
  {
    const int64_t threads = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t begin = n_tiles * tid / threads, end = n_tiles * (tid + 1) / threads;
    const int64_t r0 = n * tid / threads, r1 = n * (tid + 1) / threads;  // the rows this thread packs
    const RowsView<T> own_rows{u.rows + r0, r1 - r0, u.cols, u.col_stride};
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t j0 = c * chunk, w = std::min(chunk, u.cols - j0);
      T* const packed = packed_of[c % 2];
      if (r1 > r0) load_raw_tile(own_rows, j0, w, chunk, packed + r0 * chunk);
#pragma omp barrier
      const int64_t len = ceil_div(w, 16) * 16;
      for (int64_t t = begin; t < end; ++t) {
        const auto [ia, jb] = tiles[t];
        const T* a[kRowsA];
        const T* b[kRowsB];
        for (int k = 0; k < kRowsA; ++k) a[k] = packed + std::min(ia + k, n - 1) * chunk;
        for (int l = 0; l < kRowsB; ++l) b[l] = packed + std::min(jb + l, n - 1) * chunk;
        Double4 part[kRowsA];
        micro_tile<T>(a, b, len, part);
        const bool whole = ia + kRowsA <= jb && jb + kRowsB <= n;  // every pair i < j < n
        for (int k = 0; k < kRowsA; ++k) {
          const int64_t i = ia + k;
          if (whole && all_fine<T>(part[k])) {
            add_to(out + i * n + jb, part[k]);
            continue;
          }
          for (int l = 0; l < kRowsB; ++l) {
            const int64_t j = jb + l;
            if (i >= j || j >= n) continue;
            double s = part[k][l];
            if (needs_double<T>(s)) s = chunk_in_double(a[k], b[l], len);
            out[i * n + j] += s;
          }
        }
      }
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      double s = out[i * n + j];
      if (!std::isfinite(s)) s = inf;
      out[i * n + j] = out[j * n + i] = s;
    }
}

template <class T>
void sq_distance_rows(const RowsView<T>& u, const int64_t* rows, int64_t count, double* out) {
  const int64_t n = u.n_rows;
  std::fill(out, out + count * n, 0.0);
  if (n < 2 || count < 1) return;
  // The chunks and the micro-tile of pairwise_sq_distances, with every row as an "a" row and
  // the listed rows as the "b" rows: (a - b)^2 and (b - a)^2 round alike, so every value has
  // the full matrix's bits. Each thread takes a block of the "a" rows and packs, per chunk,
  // its own rows and the listed ones.
  const int64_t chunk = kChunk<T>;
  const int64_t n_chunks = ceil_div(u.cols, chunk);
  std::vector<const T*> listed(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) listed[r] = u.rows[rows[r]];
  const RowsView<T> listed_rows{listed.data(), count, u.cols, u.col_stride};

#pragma omp parallel if (worth_threads(count * n * u.cols))
  {
    const int64_t threads = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t begin = n * tid / threads, own = n * (tid + 1) / threads - begin;
    if (own > 0) {
      const RowsView<T> own_rows{u.rows + begin, own, u.cols, u.col_stride};
      Scratch<T> packed_own(static_cast<size_t>(own * chunk)), packed_listed(static_cast<size_t>(count * chunk));
      for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t j0 = c * chunk, w = std::min(chunk, u.cols - j0);
        // A whole chunk of contiguous rows is read in place; others are packed (padded).
        const bool in_place = u.col_stride == 1 && w == chunk;
        if (!in_place) load_raw_tile(own_rows, j0, w, chunk, packed_own.data());
        load_raw_tile(listed_rows, j0, w, chunk, packed_listed.data());
        const int64_t len = ceil_div(w, 16) * 16;
        for (int64_t ia = 0; ia < own; ia += kRowsA)
          for (int64_t rb = 0; rb < count; rb += kRowsB) {
            const T* a[kRowsA];
            const T* b[kRowsB];
            for (int k = 0; k < kRowsA; ++k) {
              const int64_t r = std::min(ia + k, own - 1);
              a[k] = in_place ? own_rows.rows[r] + j0 : packed_own.data() + r * chunk;
            }
            for (int l = 0; l < kRowsB; ++l) b[l] = packed_listed.data() + std::min(rb + l, count - 1) * chunk;
            Double4 part[kRowsA];
            micro_tile<T>(a, b, len, part);
            for (int k = 0; k < kRowsA; ++k)
              for (int l = 0; l < kRowsB; ++l) {
                const int64_t j = begin + ia + k, r = rb + l;
                if (ia + k >= own || r >= count || j == rows[r]) continue;
                double s = part[k][l];
                if (needs_double<T>(s)) s = chunk_in_double(a[k], b[l], len);
                out[r * n + j] += s;
              }
          }
      }
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t e = 0; e < count * n; ++e)
    if (!std::isfinite(out[e])) out[e] = inf;
}

template void pairwise_sq_distances<float>(const RowsView<float>&, double*);
template void pairwise_sq_distances<double>(const RowsView<double>&, double*);
template void sq_distance_rows<float>(const RowsView<float>&, const int64_t*, int64_t, double*);
template void sq_distance_rows<double>(const RowsView<double>&, const int64_t*, int64_t, double*);

}  // namespace fedrobust::cpu::FR_ARCH
