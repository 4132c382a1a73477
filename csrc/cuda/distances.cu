// CUDA pairwise distances and Krum (twins of csrc/cpu/distances.cpp and krum.cpp).
//
// Distances are exact in the same sense as the CPU's: direct differences, here
// taken and squared in double (a float difference of float inputs is exact in
// double), summed per column chunk by a 16 x 16 tile of row pairs (rows staged
// in shared memory), and the chunk partials added in chunk order by a second
// kernel, so the result does not depend on scheduling. NaN or Inf in either row
// gives +Inf; the diagonal is exactly 0. The sums differ from the CPU's
// float-lane sums in the last bits only.
//
// Krum: one thread per row sorts its distances to the other rows and sums the
// k = m - c - 2 smallest in ascending order (the CPU's order), then the
// smallest score wins, ties to the lowest index.
#include <cuda_runtime.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "distances.h"
#include "launch.h"

namespace fedrobust::cuda {
namespace {

constexpr int kTile = 16;    // rows per side of a pair tile
constexpr int kStage = 64;   // columns staged in shared memory at a time

// partial[chunk][i][j] = sum over the chunk's columns of (u_i - u_j)^2, for the tile pair (ti, tj).
template <class T>
__global__ void partial_kernel(Matrix<T> u, int64_t chunk, int tiles, double* partial) {
  __shared__ double a[kTile][kStage + 1], b[kTile][kStage + 1];
  // Blocks over (tile pair with ti <= tj, chunk).
  int64_t pair = blockIdx.x;
  int ti = 0;
  while (pair >= tiles - ti) pair -= tiles - ti++;
  const int tj = ti + static_cast<int>(pair);
  const int64_t m = u.rows, c0 = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t c1 = c0 + chunk < u.cols ? c0 + chunk : u.cols;
  const int r = threadIdx.y, s = threadIdx.x;  // this thread's pair: (ti*16 + r, tj*16 + s)
  const int64_t i = static_cast<int64_t>(ti) * kTile + r, j = static_cast<int64_t>(tj) * kTile + s;
  double sum = 0.0;
  for (int64_t k0 = c0; k0 < c1; k0 += kStage) {
    // Stage kStage columns of the 16 + 16 rows: each thread loads 4 + 4 values.
    for (int q = threadIdx.y * kTile + threadIdx.x; q < kTile * kStage; q += kTile * kTile) {
      const int row = q / kStage, col = q % kStage;
      const int64_t k = k0 + col;
      const int64_t ra = static_cast<int64_t>(ti) * kTile + row, rb = static_cast<int64_t>(tj) * kTile + row;
      a[row][col] = (ra < m && k < c1) ? static_cast<double>(u.data[ra * u.row_stride + k * u.col_stride]) : 0.0;
      b[row][col] = (rb < m && k < c1) ? static_cast<double>(u.data[rb * u.row_stride + k * u.col_stride]) : 0.0;
    }
    __syncthreads();
    for (int col = 0; col < kStage; ++col) {
      const double diff = a[r][col] - b[s][col];
      sum += diff * diff;
    }
    __syncthreads();
  }
  if (i < m && j < m) partial[(static_cast<int64_t>(blockIdx.y) * m + i) * m + j] = sum;
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
  const int64_t tiles = (m + kTile - 1) / kTile;
  // Column chunks: at least 4096 columns; more while the partials would pass 2^24 doubles
  // (one chunk at least) or the chunks the 65535 blocks of a grid's y dimension.
  int64_t chunk = 4096;
  while (chunk < u.cols && ((u.cols + chunk - 1) / chunk * m * m > (int64_t(1) << 24) ||
                            (u.cols + chunk - 1) / chunk > 65535))
    chunk *= 2;
  const int64_t chunks = (u.cols + chunk - 1) / chunk;
  double* partial = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&partial), chunks * m * m * sizeof(double), stream), "cudaMallocAsync");
  partial_kernel<T><<<dim3(static_cast<unsigned>(tiles * (tiles + 1) / 2), static_cast<unsigned>(chunks)),
                      dim3(kTile, kTile), 0, stream>>>(u, chunk, static_cast<int>(tiles), partial);
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
  check(cudaMallocAsync(reinterpret_cast<void**>(&work), m * m * sizeof(double), stream), "cudaMallocAsync");
  krum_scores_kernel<<<static_cast<unsigned>((m + 127) / 128), 128, 0, stream>>>(sq, m, c, squared, work, scores);
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) {
    argmin_kernel<<<1, 1, 0, stream>>>(scores, m, chosen);
    status = cudaGetLastError();
  }
  cudaFreeAsync(work, stream);
  check(status, "Krum kernels");
}

template void pairwise_sq_distances<float>(const Matrix<float>&, double*, float*, bool, cudaStream_t);
template void pairwise_sq_distances<double>(const Matrix<double>&, double*, double*, bool, cudaStream_t);

}  // namespace fedrobust::cuda
