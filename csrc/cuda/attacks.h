// Host entry point of the CUDA attack crafting (attacks.cu), the twin of
// craft_coordinates in csrc/cpu/attacks.cpp.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "coordinatewise.h"

namespace fedrobust::cuda {

enum class CraftMode : int { kTrimFull = 0, kTrimPartial = 1, kGaussian = 2 };

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

}  // namespace fedrobust::cuda
