// CUDA pairwise distances and Krum (twins of csrc/cpu/distances.cpp and krum.cpp).
//
// Distances are exact in the same sense as the CPU's: direct differences (a - b)^2,
// never ||a||^2 + ||b||^2 - 2ab. A block stages a few columns of two groups of up to
// 128 rows in shared memory (column-major, so a thread reads its 4 rows' values side
// by side), and each thread accumulates one 4 x 4 micro-tile of row pairs over them
// (fedrobust/distance_tile.h: sums in T with FMA over the staged columns, like the
// CPU's float lanes over a chunk, then in double; a float stage that overflowed or may
// have underflowed is redone in double). Diagonal group pairs take only the micro-tiles
// on and above the diagonal. A block covers a fixed column chunk and writes one partial
// per pair; a second kernel adds the chunk partials in chunk order, so the result does
// not depend on scheduling. NaN or Inf in either row gives +Inf; the diagonal is exactly
// 0. The sums differ from the CPU's in the last bits only.
//
// Krum: up to kSortScoreRows rows, one thread per row sorts its distances to the other
// rows and sums the k = m - c - 2 smallest in ascending order (the CPU's order); beyond,
// a block per row selects the k-th smallest by radix selection and sums the k smallest in
// a fixed order (krum_scores_radix_kernel). The smallest score wins, ties to the lowest index.
#include <cuda_runtime.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "distances.h"
#include "block_sum.cuh"
#include "fedrobust/column.h"
#include "fedrobust/distance_tile.h"
#include "launch.h"

namespace fedrobust::cuda {
namespace {

constexpr int64_t kSortScoreRows = 1024;           // Krum scores by sorting up to this many rows
constexpr int kGroup = 128;                        // rows of a group
constexpr int kGroupTiles = kGroup / kMicroTile;   // micro-tile rows of a full group
constexpr int kSlice = 128;                        // threads of a block, one micro-tile each
constexpr int kPad = 4;                            // keeps staged columns 16-byte aligned

// Micro-tiles of a group pair: the upper triangle (p <= q) of b x b for a diagonal pair,
// bi x bj otherwise.
__host__ __device__ int64_t pair_tiles(bool diagonal, int64_t bi, int64_t bj) {
  return diagonal ? bi * (bi + 1) / 2 : bi * bj;
}

// partial[chunk][i][j] (i < j) = sum over the chunk's columns of (u_i - u_j)^2, for the
// micro-tiles of slice `blockIdx.x % slices` of group pair `blockIdx.x / slices`.
template <class T>
__global__ void __launch_bounds__(kSlice) partial_kernel(Matrix<T> u, int64_t chunk, int64_t groups, int64_t slices,
                                                          double* partial) {
  constexpr int S = kStageCols<T>, ld = kGroup + kPad;
  __shared__ __align__(16) T a[S * ld], b[S * ld];
  const int64_t m = u.rows;
  int64_t pair = blockIdx.x / slices, gi = 0;
  const int64_t slice = blockIdx.x % slices;
  while (pair >= groups - gi) pair -= groups - gi++;
  const int64_t gj = gi + pair, ri = gi * kGroup, rj = gj * kGroup;
  const int64_t ni = m - ri < kGroup ? m - ri : kGroup, nj = m - rj < kGroup ? m - rj : kGroup;
  const int64_t bi = (ni + kMicroTile - 1) / kMicroTile, bj = (nj + kMicroTile - 1) / kMicroTile;
  const bool diagonal = gi == gj;
  const int64_t tiles = pair_tiles(diagonal, bi, bj);
  if (slice * kSlice >= tiles) return;  // the whole block: this pair has no micro-tile here
  int64_t t = slice * kSlice + threadIdx.x, p = 0, q = 0;
  const bool active = t < tiles;
  if (active && diagonal) {
    while (t >= bi - p) t -= bi - p++;
    q = p + t;
  } else if (active) {
    p = t / bj;
    q = t % bj;
  }
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * chunk, c1 = c0 + chunk < u.cols ? c0 + chunk : u.cols;
  double total[kMicroTile][kMicroTile] = {};
  for (int64_t k0 = c0; k0 < c1; k0 += S) {
    // Stage S columns: adjacent threads read adjacent columns of a row (coalesced);
    // rows past m and columns past the chunk read as 0.
    for (int e = threadIdx.x; e < kGroup * S; e += kSlice) {
      const int r = e / S, c = e % S;
      const int64_t k = k0 + c;
      const bool in = k < c1;
      a[c * ld + r] = (in && r < ni) ? u.data[(ri + r) * u.row_stride + k * u.col_stride] : T(0);
      if (!diagonal) b[c * ld + r] = (in && r < nj) ? u.data[(rj + r) * u.row_stride + k * u.col_stride] : T(0);
    }
    __syncthreads();
    const int cols = c1 - k0 < S ? static_cast<int>(c1 - k0) : S;
    if (active) micro_tile_stage<T>(a + kMicroTile * p, (diagonal ? a : b) + kMicroTile * q, ld, cols, total);
    __syncthreads();
  }
  if (!active) return;
  for (int x = 0; x < kMicroTile; ++x)
    for (int y = 0; y < kMicroTile; ++y) {
      const int64_t i = ri + kMicroTile * p + x, j = rj + kMicroTile * q + y;
      if (i < j && j < m) partial[(static_cast<int64_t>(blockIdx.y) * m + i) * m + j] = total[x][y];
    }
}

// out[i][j] = out[j][i] = sum of the partials in chunk order; 0 on the diagonal; +Inf when not finite.
template <class T>
__global__ void reduce_kernel(const double* partial, int64_t chunks, int64_t m, double* sq, T* out, bool squared) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= m * m) return;
  const int64_t i = p / m, j = p % m;
  if (i > j) return;
  double total = 0.0;
  if (i != j)
    for (int64_t c = 0; c < chunks; ++c) total += partial[(c * m + i) * m + j];
  if (!(total <= 1.7976931348623157e308)) total = std::numeric_limits<double>::infinity();  // NaN, Inf -> +Inf
  sq[i * m + j] = sq[j * m + i] = total;
  if (out) out[i * m + j] = out[j * m + i] = static_cast<T>(squared ? total : sqrt(total));
}

__global__ void krum_scores_kernel(const double* sq, int64_t m, int64_t c, bool squared, double* work,
                                   double* scores) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= m) return;
  double* v = work + i * m;
  int64_t n = 0;
  for (int64_t j = 0; j < m; ++j) {
    if (j == i) continue;
    const double x = squared ? sq[i * m + j] : sqrt(sq[i * m + j]);
    int64_t k = n++;
    for (; k > 0 && v[k - 1] > x; --k) v[k] = v[k - 1];
    v[k] = x;
  }
  const int64_t k = m - c - 2 > 0 ? m - c - 2 : 0;
  double score = 0.0;
  for (int64_t r = 0; r < k; ++r) score += v[r];
  scores[i] = score;
}

// Krum scores for many rows (m > kSortScoreRows): a block per row finds the k-th smallest
// of its distances to the other rows, t, by radix selection (column.h's radix_step on the
// ordered keys of the squared distances; sqrt is monotone), then
//   score = sum of f(v) over the others with v < t  +  (k - their count) * f(t),
// the sum of the k smallest, added per thread in index order and across threads in a
// fixed tree: deterministic, though not the ascending order of the sorting path.
constexpr int kScoreThreads = 256;

__global__ void __launch_bounds__(kScoreThreads) krum_scores_radix_kernel(const double* sq, int64_t m, int64_t c,
                                                                         bool squared, double* scores) {
  __shared__ uint32_t hist[256];
  __shared__ uint64_t prefix, known;
  __shared__ int64_t rank;
  __shared__ double part_sum[kScoreThreads];
  __shared__ int64_t part_count[kScoreThreads];
  const int64_t i = blockIdx.x, k = m - c - 2 > 0 ? m - c - 2 : 0;
  const double* row = sq + i * m;
  const int tid = threadIdx.x;
  if (k == 0) {
    if (tid == 0) scores[i] = 0.0;
    return;
  }
  if (tid == 0) {
    prefix = 0;
    known = 0;
    rank = k - 1;
  }
  for (int shift = 56; shift >= 0; shift -= 8) {
    hist[tid] = 0;
    __syncthreads();
    const uint64_t p = prefix, kn = known;
    for (int64_t j = tid; j < m; j += kScoreThreads) {
      const uint64_t key = ordered_key(row[j]);
      if (j != i && radix_matches(key, p, kn)) atomicAdd(&hist[radix_digit(key, shift)], 1u);
    }
    __syncthreads();
    if (tid == 0) radix_step(hist, shift, &rank, &prefix, &known);
    __syncthreads();
  }
  const double t = from_ordered_key<double>(prefix);
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t j = tid; j < m; j += kScoreThreads)
    if (j != i && row[j] < t) {
      sum += squared ? row[j] : sqrt(row[j]);
      ++count;
    }
  part_sum[tid] = sum;
  part_count[tid] = count;
  block_tree_sum(part_sum, part_count);
  if (tid == 0) scores[i] = part_sum[0] + static_cast<double>(k - part_count[0]) * (squared ? t : sqrt(t));
}

__global__ void argmin_kernel(const double* scores, int64_t m, int64_t* chosen) {
  int64_t best = 0;
  for (int64_t i = 1; i < m; ++i)
    if (scores[i] < scores[best]) best = i;
  *chosen = best;
}

}  // namespace

template <class T>
void pairwise_sq_distances(const Matrix<T>& u, double* sq, T* out, bool squared, cudaStream_t stream) {
  const int64_t m = u.rows;
  if (m > kMaxDistanceRows)
    throw std::invalid_argument("pairwise distances on CUDA take at most " + std::to_string(kMaxDistanceRows) +
                                " rows, got " + std::to_string(m));
  const int64_t groups = (m + kGroup - 1) / kGroup;
  // Blocks per group pair: enough for a full off-diagonal pair, or for the one diagonal pair.
  const int64_t most_tiles =
      groups > 1 ? kGroupTiles * kGroupTiles : pair_tiles(true, (m + kMicroTile - 1) / kMicroTile, 0);
  const int64_t slices = (most_tiles + kSlice - 1) / kSlice;
  const int64_t chunk = distance_chunk_cols(m, u.cols);
  const int64_t chunks = (u.cols + chunk - 1) / chunk;
  double* partial = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&partial), chunks * m * m * sizeof(double), stream), "cudaMallocAsync");
  partial_kernel<T><<<dim3(static_cast<unsigned>(groups * (groups + 1) / 2 * slices), static_cast<unsigned>(chunks)),
                      kSlice, 0, stream>>>(u, chunk, groups, slices, partial);
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) {
    reduce_kernel<T><<<static_cast<unsigned>((m * m + 255) / 256), 256, 0, stream>>>(partial, chunks, m, sq, out,
                                                                                     squared);
    status = cudaGetLastError();
  }
  cudaFreeAsync(partial, stream);
  check(status, "distance kernels");
}

void krum_select(const double* sq, int64_t m, int64_t c, bool squared, double* scores, int64_t* chosen,
                 cudaStream_t stream) {
  double* work = nullptr;
  if (m <= kSortScoreRows) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&work), m * m * sizeof(double), stream), "cudaMallocAsync");
    krum_scores_kernel<<<static_cast<unsigned>((m + 127) / 128), 128, 0, stream>>>(sq, m, c, squared, work, scores);
  } else {
    krum_scores_radix_kernel<<<static_cast<unsigned>(m), kScoreThreads, 0, stream>>>(sq, m, c, squared, scores);
  }
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) {
    argmin_kernel<<<1, 1, 0, stream>>>(scores, m, chosen);
    status = cudaGetLastError();
  }
  if (work) cudaFreeAsync(work, stream);
  check(status, "Krum kernels");
}

template void pairwise_sq_distances<float>(const Matrix<float>&, double*, float*, bool, cudaStream_t);
template void pairwise_sq_distances<double>(const Matrix<double>&, double*, double*, bool, cudaStream_t);

}  // namespace fedrobust::cuda
