// What every CUDA unit needs around a launch: turning a CUDA error into an
// exception, and the grid size of a grid-stride loop over n items.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fedrobust::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// Blocks of `threads` for n items, capped (the kernels loop over the rest).
inline unsigned grid_blocks(int64_t n, int threads) {
  const int64_t wanted = (n + threads - 1) / threads;
  return static_cast<unsigned>(wanted < 65535 * 16 ? wanted : 65535 * 16);
}

}  // namespace fedrobust::cuda
