// CUDA twin of the attack crafting (csrc/cpu/attacks.cpp craft_coordinates): one
// thread per column computes the column's statistics over the chosen rows in row
// order, in double, as the CPU does, then the crafted values with the shared
// fedrobust/craft.h and random.h, so the values are the CPU's bits (built with
// --fmad=false).
#include <cuda_runtime.h>

#include <limits>

#include "attacks.h"
#include "fedrobust/craft.h"
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

template void craft_coordinates<float>(const CraftSpec<float>&, cudaStream_t);
template void craft_coordinates<double>(const CraftSpec<double>&, cudaStream_t);

}  // namespace fedrobust::cuda
