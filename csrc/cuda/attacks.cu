// CUDA twin of the attack crafting (csrc/cpu/attacks.cpp craft_coordinates): one
// thread per column computes the column's statistics over the chosen rows in row
// order, in double, as the CPU does, then the crafted values with the shared
// fedrobust/craft.h and random.h, so the values are the CPU's bits (built with
// --fmad=false).
//
// The Krum attack: norms_and_dots reduces each row in a block (a fixed tree, so the
// sums do not depend on scheduling; they differ from the CPU's lane sums in the last
// bits only); krum_craft runs fedrobust/krum_craft.h's steps in the CPU's order -
// normals rounded to T, chunk sums of squares in column order, the chunks added in
// order, the values - so it sends the CPU's bits.
#include <cuda_runtime.h>

#include <limits>

#include "attacks.h"
#include "block_sum.cuh"
#include "fedrobust/craft.h"
#include "fedrobust/krum_craft.h"
#include "fedrobust/random.h"
#include "launch.h"

namespace fedrobust::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void craft_kernel(Matrix<T> u, const int64_t* rows, int64_t n, CraftMode mode, const int8_t* direction,
                             const T* base, double b, double sigma_lo, double sigma_hi, const uint64_t* prefix,
                             int64_t n_out, T* out, int8_t* direction_out) {
  const int64_t d = u.cols;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* column = u.data + j * u.col_stride;
    double a = 0.0, c = 0.0;
    if (mode == CraftMode::kTrimFull) {
      a = -std::numeric_limits<double>::infinity();
      c = std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(column[rows[i] * u.row_stride]);
        a = a < v ? v : a;
        c = v < c ? v : c;
      }
    } else {
      for (int64_t i = 0; i < n; ++i) a += static_cast<double>(column[rows[i] * u.row_stride]);
      a /= static_cast<double>(n);
      for (int64_t i = 0; i < n; ++i) {
        const double dev = static_cast<double>(column[rows[i] * u.row_stride]) - a;
        c += dev * dev;
      }
      c = sqrt(c / static_cast<double>(n));
    }
    if (mode == CraftMode::kGaussian) {
      for (int64_t k = 0; k < n_out; ++k) {
        const NormalPair z = normal_pair(counter_hash_at(prefix[k], static_cast<uint64_t>(j & ~int64_t(1))));
        out[k * d + j] = static_cast<T>(a + c * ((j & 1) ? z.second : z.first));
      }
      direction_out[j] = 0;
      continue;
    }
    const TrimInterval iv = mode == CraftMode::kTrimFull
                                ? trim_full_interval(direction[j], a, c, base ? static_cast<double>(base[j]) : 0.0, b)
                                : trim_partial_interval(a, c, sigma_lo, sigma_hi);
    direction_out[j] = static_cast<int8_t>(iv.direction);
    for (int64_t k = 0; k < n_out; ++k) out[k * d + j] = static_cast<T>(trim_value(iv, prefix[k], static_cast<uint64_t>(j)));
  }
}

// A device copy of a host vector, allocated and freed in stream order.
template <class V>
V* device_copy(const std::vector<V>& host, cudaStream_t stream) {
  V* p = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&p), host.size() * sizeof(V), stream), "cudaMallocAsync");
  check(cudaMemcpyAsync(p, host.data(), host.size() * sizeof(V), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
  return p;
}

constexpr int kRowThreads = 256;  // norms_and_dots: threads per row (a power of two)

// Block b handles rows b, b + gridDim.x, ...: thread t sums columns t, t + 256, ... in
// order, then the 256 partial sums are added by a fixed tree.
template <class T>
__global__ void norms_and_dots_kernel(Matrix<T> u, const int8_t* direction, double* sq_norms, double* dots) {
  __shared__ double nn[kRowThreads], dd[kRowThreads];
  const int t = threadIdx.x;
  for (int64_t i = blockIdx.x; i < u.rows; i += gridDim.x) {
    const T* row = u.data + i * u.row_stride;
    double sn = 0.0, sd = 0.0;
    for (int64_t j = t; j < u.cols; j += kRowThreads) {
      const double v = static_cast<double>(row[j * u.col_stride]);
      sn += v * v;
      sd += v * static_cast<double>(direction[j]);
    }
    nn[t] = sn;
    dd[t] = sd;
    block_tree_sum(nn, dd);
    if (t == 0) {
      sq_norms[i] = nn[0];
      dots[i] = dd[0];
    }
    __syncthreads();  // nn, dd are reused by the next row
  }
}

// Supporter rows k = 1 .. n_out - 1: the normals, one Box-Muller pair per thread.
template <class T>
__global__ void krum_normals_kernel(const uint64_t* prefix, int64_t n_out, int64_t d, T* out) {
  const int64_t pairs = (d + 1) / 2;
  for (int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; item < (n_out - 1) * pairs;
       item += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = 1 + item / pairs, j = 2 * (item % pairs);
    krum_normal_pair<T>(prefix[k], j, d, out + k * d);
  }
}

// chunk_sq[(k - 1) n_chunks + c]: the sum of squares of supporter row k's chunk c.
template <class T>
__global__ void krum_chunk_sq_kernel(const T* out, int64_t n_out, int64_t d, double* chunk_sq) {
  const int64_t n_chunks = krum_chunks(d);
  for (int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; item < (n_out - 1) * n_chunks;
       item += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = 1 + item / n_chunks, j0 = (item % n_chunks) * kKrumChunk;
    chunk_sq[item] = krum_chunk_sq(out + k * d + j0, d - j0 < kKrumChunk ? d - j0 : kKrumChunk);
  }
}

// scale[k] = r_k / ||z_k|| for k >= 1; scale[0] = 0 (row 0 has no supporter term).
__global__ void krum_scale_kernel(const double* chunk_sq, const uint64_t* prefix, int64_t n_out, int64_t d,
                                  double eps, double* scale) {
  const int64_t n_chunks = krum_chunks(d);
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n_out;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    scale[k] = k == 0 ? 0.0 : krum_scale(chunk_sq + (k - 1) * n_chunks, n_chunks, eps, prefix[k], d);
}

// out = -lambda s (row 0), -lambda s + scale[k] z (rows k >= 1, z read from out).
template <class T>
__global__ void krum_values_kernel(const int8_t* direction, double lambda, const double* scale, int64_t n_out,
                                   int64_t d, T* out) {
  for (int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; item < n_out * d;
       item += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = item / d, j = item % d;
    out[item] = k == 0 ? krum_center<T>(lambda, direction[j])
                       : krum_supporter<T>(lambda, direction[j], scale[k], out[item]);
  }
}

}  // namespace

template <class T>
void craft_coordinates(const CraftSpec<T>& s, cudaStream_t stream) {
  int64_t* rows = device_copy(s.rows, stream);
  uint64_t* prefix = device_copy(s.prefix, stream);
  craft_kernel<T><<<grid_blocks(s.u.cols, kThreads), kThreads, 0, stream>>>(
      s.u, rows, static_cast<int64_t>(s.rows.size()), s.mode, s.direction, s.base, s.b, s.sigma_lo, s.sigma_hi,
      prefix, static_cast<int64_t>(s.prefix.size()), s.out, s.direction_out);
  const cudaError_t status = cudaGetLastError();
  cudaFreeAsync(rows, stream);
  cudaFreeAsync(prefix, stream);
  // The host vectors of the copies belong to the caller and go when it returns: wait for
  // the stream (crafting is not on a hot path of the device loop yet).
  const cudaError_t done = cudaStreamSynchronize(stream);
  check(status, "craft kernel");
  check(done, "craft kernel");
}

template <class T>
void norms_and_dots(const Matrix<T>& u, const int8_t* direction, double* sq_norms, double* dots,
                    cudaStream_t stream) {
  norms_and_dots_kernel<T><<<grid_blocks(u.rows, 1), kRowThreads, 0, stream>>>(u, direction, sq_norms, dots);
  check(cudaGetLastError(), "norms_and_dots kernel");
}

template <class T>
void krum_craft(const KrumCraft<T>& s, cudaStream_t stream) {
  const int64_t n_out = static_cast<int64_t>(s.prefix.size()), d = s.cols;
  if (n_out < 1 || d < 1) return;
  // One scratch allocation: prefix (n_out), scale (n_out), chunk_sq ((n_out - 1) n_chunks).
  const int64_t n_chunk_sq = (n_out - 1) * krum_chunks(d);
  void* work = nullptr;
  static_assert(sizeof(uint64_t) == sizeof(double), "one scratch array of 8-byte words");
  check(cudaMallocAsync(&work, static_cast<size_t>(2 * n_out + n_chunk_sq) * sizeof(double), stream),
        "cudaMallocAsync");
  uint64_t* prefix = static_cast<uint64_t*>(work);
  double* scale = reinterpret_cast<double*>(prefix + n_out);
  double* chunk_sq = scale + n_out;
  cudaError_t status = cudaMemcpyAsync(prefix, s.prefix.data(), static_cast<size_t>(n_out) * sizeof(uint64_t),
                                       cudaMemcpyHostToDevice, stream);
  if (status == cudaSuccess && n_out > 1) {
    krum_normals_kernel<T><<<grid_blocks((n_out - 1) * ((d + 1) / 2), kThreads), kThreads, 0, stream>>>(
        prefix, n_out, d, s.out);
    status = cudaGetLastError();
    if (status == cudaSuccess) {
      krum_chunk_sq_kernel<T><<<grid_blocks(n_chunk_sq, kThreads), kThreads, 0, stream>>>(s.out, n_out, d, chunk_sq);
      status = cudaGetLastError();
    }
  }
  if (status == cudaSuccess) {
    krum_scale_kernel<<<grid_blocks(n_out, kThreads), kThreads, 0, stream>>>(chunk_sq, prefix, n_out, d, s.eps,
                                                                             scale);
    status = cudaGetLastError();
  }
  if (status == cudaSuccess) {
    krum_values_kernel<T><<<grid_blocks(n_out * d, kThreads), kThreads, 0, stream>>>(s.direction, s.lambda, scale,
                                                                                     n_out, d, s.out);
    status = cudaGetLastError();
  }
  cudaFreeAsync(work, stream);
  // The host prefix belongs to the caller: wait for the stream before it goes.
  const cudaError_t done = cudaStreamSynchronize(stream);
  check(status, "krum_craft kernels");
  check(done, "krum_craft kernels");
}

template void craft_coordinates<float>(const CraftSpec<float>&, cudaStream_t);
template void craft_coordinates<double>(const CraftSpec<double>&, cudaStream_t);
template void norms_and_dots<float>(const Matrix<float>&, const int8_t*, double*, double*, cudaStream_t);
template void norms_and_dots<double>(const Matrix<double>&, const int8_t*, double*, double*, cudaStream_t);
template void krum_craft<float>(const KrumCraft<float>&, cudaStream_t);
template void krum_craft<double>(const KrumCraft<double>&, cudaStream_t);

}  // namespace fedrobust::cuda
