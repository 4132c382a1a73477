// Host entry points of the CUDA attack crafting (attacks.cu), the twins of
// craft_coordinates, norms_and_dots and krum_craft in csrc/cpu/attacks.cpp.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "coordinatewise.h"
#include "fedrobust/craft.h"

namespace fedrobust::cuda {

using fedrobust::CraftMode;

template <class T>
struct CraftSpec {
  Matrix<T> u;                 // all m rows; `rows` picks the ones whose statistics count
  std::vector<int64_t> rows;   // host
  CraftMode mode;
  const int8_t* direction;     // device (cols,), kTrimFull
  const T* base;               // device (cols,) or null
  double b, sigma_lo, sigma_hi;
  std::vector<uint64_t> prefix;  // host, one counter_prefix per output row
  T* out;                      // device (n_out, cols) row-major
  int8_t* direction_out;       // device (cols,)
};

template <class T>
void craft_coordinates(const CraftSpec<T>& spec, cudaStream_t stream);

// The Krum attack (twins of norms_and_dots and krum_craft in csrc/cpu/attacks.cpp).
// sq_norms[i] = ||u_i||^2 and dots[i] = <u_i, s> for every row i of u, in double:
// sq_norms, dots (rows,) device; direction s (cols,) device int8.
template <class T>
void norms_and_dots(const Matrix<T>& u, const int8_t* direction, double* sq_norms, double* dots,
                    cudaStream_t stream);

template <class T>
struct KrumCraft {
  const int8_t* direction;       // device (cols,) s
  int64_t cols;
  double lambda, eps;
  std::vector<uint64_t> prefix;  // host, one counter_prefix per output row
  T* out;                        // device (n_out, cols) row-major, n_out = prefix.size()
};

// out row 0 = -lambda s, row k >= 1 = -lambda s + (r_k / ||z_k||) z_k (fedrobust/krum_craft.h),
// the CPU's bits; waits for the stream.
template <class T>
void krum_craft(const KrumCraft<T>& spec, cudaStream_t stream);

}  // namespace fedrobust::cuda
