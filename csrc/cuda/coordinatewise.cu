// CUDA twins of the coordinate-wise median and trimmed mean (csrc/cpu/coordinatewise.cpp).
//
// m <= kMaxRows: one thread per column runs column.h, the code the CPU tests exercise.
// Columns are read in row order by adjacent threads, so each row's reads coalesce when
// the columns are contiguous. While N = the next power of two >= max(m, 16) values of T
// fit in 128 registers (float up to m = 128, double up to 64), the thread sorts its column
// in registers with Batcher's network on N wires (column_ranks_network); beyond, it
// insertion-sorts a local array.
//
// m > kMaxRows: a block takes a tile of 32 columns (one per lane) and finds each rank by
// a radix selection whose histograms all 8 warps build together in shared memory (each
// warp takes every 8th row, so a warp reads 32 adjacent values of one row); lane j of
// warp 0 then moves column j's digit with column.h's radix_step. A float rank takes
// 4 passes over the tile, a double 8. The trimmed mean's final pass is column.h's
// row-order pass, run by warp 0. Both paths give the CPU's bits.
#include <cuda_runtime.h>

#include <type_traits>

#include "coordinatewise.h"
#include "fedrobust/column.h"
#include "launch.h"

namespace fedrobust::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileCols = 32;   // columns per block of the large-m kernels: one per lane
constexpr int kTileWarps = 8;   // warps per block; warp w reads rows w, w + 8, ...

template <class T>
__global__ void median_kernel(const T* u, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[j] = column_median<T, kMaxRows>(u + j * col_stride, row_stride, m);
}

template <class T>
__global__ void trimmed_mean_kernel(const T* u, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                                    int64_t beta, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[j] = column_trimmed_mean<T, kMaxRows>(u + j * col_stride, row_stride, m, beta);
}

template <class T>
__global__ void leave_one_out_median_kernel(Matrix<T> u, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < u.cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    column_leave_one_out_median<T, kMaxRows>(u.data + j * u.col_stride, u.row_stride, u.rows, out + j, u.cols);
}

template <class T>
__global__ void leave_one_out_trimmed_mean_kernel(Matrix<T> u, int64_t b, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < u.cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    column_leave_one_out_trimmed_mean<T, kMaxRows>(u.data + j * u.col_stride, u.row_stride, u.rows, b, out + j,
                                                   u.cols);
}

// Register path: Batcher's network on N wires.
template <class T, int N>
__global__ void __launch_bounds__(kThreads) median_network_kernel(Matrix<T> u, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < u.cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[j] = column_median_network<T, N>(u.data + j * u.col_stride, u.row_stride, u.rows);
}

template <class T, int N>
__global__ void __launch_bounds__(kThreads) trimmed_mean_network_kernel(Matrix<T> u, int64_t beta, T* out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < u.cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[j] = column_trimmed_mean_network<T, N>(u.data + j * u.col_stride, u.row_stride, u.rows, beta);
}

// Launch the network kernel for the smallest N in {16, 32, 64, 128} with m <= N and N values
// of T in at most 512 bytes; false when there is none.
template <class T, class Launch>
bool launch_network(int64_t m, Launch&& launch) {
  if (m <= 16) return launch(std::integral_constant<int, 16>{}), true;
  if (m <= 32) return launch(std::integral_constant<int, 32>{}), true;
  if (m <= 64) return launch(std::integral_constant<int, 64>{}), true;
  if constexpr (sizeof(T) == 4) {
    if (m <= 128) return launch(std::integral_constant<int, 128>{}), true;
  }
  return false;
}

// The shared state of a tile selection: per column a 256-bin histogram (padded to 257 so
// that lane j's bin b sits in bank (j + b) % 32) and the digits found so far.
template <class K>
struct TileSelect {
  uint32_t hist[kTileCols][257];
  K prefix[kTileCols], known[kTileCols];
  int64_t rank[kTileCols];
};

// The value of rank r (ascending, canonical) of column j = the tile's column `lane`,
// returned to every thread of that lane. All threads of the block must call it.
template <class T>
__device__ T tile_select(const Matrix<T>& u, int64_t j, bool valid, int64_t r,
                         TileSelect<typename KeyOf<T>::type>& s) {
  using K = typename KeyOf<T>::type;
  const int lane = threadIdx.x, warp = threadIdx.y;
  __syncthreads();  // every thread has read the previous selection's result
  if (warp == 0) {
    s.prefix[lane] = 0;
    s.known[lane] = 0;
    s.rank[lane] = r;
  }
  const T* column = u.data + (valid ? j : 0) * u.col_stride;
  for (int shift = 8 * static_cast<int>(sizeof(K)) - 8; shift >= 0; shift -= 8) {
    for (int q = warp * kTileCols + lane; q < kTileCols * 257; q += kTileCols * kTileWarps) (&s.hist[0][0])[q] = 0;
    __syncthreads();
    if (valid) {
      const K prefix = s.prefix[lane], known = s.known[lane];
#pragma unroll 4
      for (int64_t i = warp; i < u.rows; i += kTileWarps) {
        const K k = ordered_key(canonical(column[i * u.row_stride]));
        if (radix_matches(k, prefix, known)) atomicAdd(&s.hist[lane][radix_digit(k, shift)], 1u);
      }
    }
    __syncthreads();
    if (warp == 0 && valid) radix_step(s.hist[lane], shift, &s.rank[lane], &s.prefix[lane], &s.known[lane]);
    __syncthreads();
  }
  return from_ordered_key<T>(s.prefix[lane]);
}

template <class T>
__global__ void __launch_bounds__(kTileCols * kTileWarps) large_median_kernel(Matrix<T> u, T* out) {
  __shared__ TileSelect<typename KeyOf<T>::type> s;
  const int64_t m = u.rows;
  for (int64_t j0 = blockIdx.x * static_cast<int64_t>(kTileCols); j0 < u.cols;
       j0 += static_cast<int64_t>(gridDim.x) * kTileCols) {
    const int64_t j = j0 + threadIdx.x;
    const bool valid = j < u.cols;
    const T lo = tile_select(u, j, valid, (m - 1) / 2, s);
    const T hi = m % 2 == 1 ? lo : tile_select(u, j, valid, m / 2, s);
    if (threadIdx.y == 0 && valid) out[j] = median_from_middle(lo, hi, m);
  }
}

template <class T>
__global__ void __launch_bounds__(kTileCols * kTileWarps) large_trimmed_mean_kernel(Matrix<T> u, int64_t beta,
                                                                                     T* out) {
  __shared__ TileSelect<typename KeyOf<T>::type> s;
  const int64_t m = u.rows;
  for (int64_t j0 = blockIdx.x * static_cast<int64_t>(kTileCols); j0 < u.cols;
       j0 += static_cast<int64_t>(gridDim.x) * kTileCols) {
    const int64_t j = j0 + threadIdx.x;
    const bool valid = j < u.cols;
    const T lo = tile_select(u, j, valid, beta, s);
    const T hi = tile_select(u, j, valid, m - beta - 1, s);
    if (threadIdx.y == 0 && valid) out[j] = column_trimmed_pass(u.data + j * u.col_stride, u.row_stride, m, beta, lo, hi);
  }
}

const dim3 kTileBlock(kTileCols, kTileWarps);

}  // namespace

template <class T>
void median(const Matrix<T>& u, T* out, cudaStream_t stream) {
  const unsigned blocks = grid_blocks(u.cols, kThreads);
  if (u.rows > kMaxRows) {
    large_median_kernel<T><<<grid_blocks(u.cols, kTileCols), kTileBlock, 0, stream>>>(u, out);
  } else if (!launch_network<T>(u.rows, [&](auto n) {
               median_network_kernel<T, decltype(n)::value><<<blocks, kThreads, 0, stream>>>(u, out);
             })) {
    median_kernel<T><<<blocks, kThreads, 0, stream>>>(u.data, u.rows, u.cols, u.row_stride, u.col_stride, out);
  }
  check(cudaGetLastError(), "median kernel");
}

template <class T>
void trimmed_mean(const Matrix<T>& u, int64_t beta, T* out, cudaStream_t stream) {
  const unsigned blocks = grid_blocks(u.cols, kThreads);
  if (u.rows > kMaxRows) {
    large_trimmed_mean_kernel<T><<<grid_blocks(u.cols, kTileCols), kTileBlock, 0, stream>>>(u, beta, out);
  } else if (!launch_network<T>(u.rows, [&](auto n) {
               trimmed_mean_network_kernel<T, decltype(n)::value><<<blocks, kThreads, 0, stream>>>(u, beta, out);
             })) {
    trimmed_mean_kernel<T><<<blocks, kThreads, 0, stream>>>(u.data, u.rows, u.cols, u.row_stride, u.col_stride,
                                                          beta, out);
  }
  check(cudaGetLastError(), "trimmed mean kernel");
}

template <class T>
void leave_one_out_median(const Matrix<T>& u, T* out, cudaStream_t stream) {
  leave_one_out_median_kernel<T><<<grid_blocks(u.cols, kThreads), kThreads, 0, stream>>>(u, out);
  check(cudaGetLastError(), "leave-one-out median kernel");
}

template <class T>
void leave_one_out_trimmed_mean(const Matrix<T>& u, int64_t b, T* out, cudaStream_t stream) {
  leave_one_out_trimmed_mean_kernel<T><<<grid_blocks(u.cols, kThreads), kThreads, 0, stream>>>(u, b, out);
  check(cudaGetLastError(), "leave-one-out trimmed mean kernel");
}

template void leave_one_out_trimmed_mean<float>(const Matrix<float>&, int64_t, float*, cudaStream_t);
template void leave_one_out_trimmed_mean<double>(const Matrix<double>&, int64_t, double*, cudaStream_t);
template void leave_one_out_median<float>(const Matrix<float>&, float*, cudaStream_t);
template void leave_one_out_median<double>(const Matrix<double>&, double*, cudaStream_t);
template void median<float>(const Matrix<float>&, float*, cudaStream_t);
template void median<double>(const Matrix<double>&, double*, cudaStream_t);
template void trimmed_mean<float>(const Matrix<float>&, int64_t, float*, cudaStream_t);
template void trimmed_mean<double>(const Matrix<double>&, int64_t, double*, cudaStream_t);

}  // namespace fedrobust::cuda
